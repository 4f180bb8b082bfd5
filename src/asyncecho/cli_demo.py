"""`asyncecho demo`: the main job on an embedded default. Starts `serve()` on
an ephemeral loopback port, runs one verbose echo against it, then many
concurrent associations on one event loop, and prints what they took."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .cli_echoscu import _non_negative

PROG = "asyncecho demo"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    parser.add_argument(
        "-n",
        "--count",
        type=_non_negative,
        default=2000,
        help="concurrent associations in the second part (default: 2000)",
    )
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (if installed)")
    return parser


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def run(count: int) -> int:
    import asyncio
    import time

    from . import logs
    from .cli_output import CliLog
    from .client import echo, verify
    from .server import serve

    async with serve("127.0.0.1", 0) as server:
        print(f"Started a Verification SCP (asyncecho serve) on 127.0.0.1:{server.port}\n")
        # flushed: the echo's lines go to stderr and must come after this one
        print(f"$ asyncecho echoscu -v 127.0.0.1 {server.port}", flush=True)
        logs.enable_logging(CliLog("info", skip_prefix="scp."))
        try:
            result = await echo("127.0.0.1", server.port)
        finally:
            logs.disable_logging()
        phases = ", ".join(
            f"{name} {seconds * 1e3:.2f} ms"
            for name, seconds in (
                ("connect", result.timings.connect),
                ("associate", result.timings.associate),
                ("echo", result.timings.echo),
                ("release", result.timings.release),
            )
            if seconds is not None
        )
        print(f"\nEcho status {result.status_name}: {phases}\n")
        print(
            f"Now {count} concurrent associations (associate, C-ECHO, release) on one event loop ..."
        )
        start = time.perf_counter()
        results = await asyncio.gather(*(verify("127.0.0.1", server.port) for _ in range(count)))
        elapsed = time.perf_counter() - start
    ok = [r for r in results if r.ok]
    latencies = [r.timings.total for r in ok if r.timings.total is not None]
    failed = len(results) - len(ok)
    print(
        f"{len(ok)}/{count} succeeded, {failed} failed, in {elapsed:.2f} s: {count / elapsed:,.0f} associations/s"
    )
    if latencies:
        print(
            f"latency p50 {_percentile(latencies, 0.5) * 1e3:.1f} ms, p99 {_percentile(latencies, 0.99) * 1e3:.1f} ms "
            "(client and server share this one loop)"
        )
    if failed:
        outcomes: dict[str, int] = {}
        for r in results:
            if not r.ok:
                outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
        print("failures:", ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items())))
    return 0 if not failed else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import asyncio

    if args.uvloop:
        try:
            import uvloop
        except ImportError:
            print("uvloop is not installed; using asyncio's default loop")
        else:
            return int(uvloop.run(run(args.count)))
    return asyncio.run(run(args.count))
