"""`asyncecho demo`: the main job on an embedded default. Starts `serve()` on
an ephemeral loopback port, runs one verbose echo against it, then many
concurrent associations on one event loop, and prints what they took.

May import the public API (`asyncecho`, `client`, `server`, `results`,
`collector`) and the CLI's shared modules.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from asyncecho.cli import argtypes

PROG = "asyncecho demo"


#: A demo, not a load test: its results are kept in memory.
MAX_COUNT = 1_000_000


def _count(text: str) -> int:
    value = argtypes.non_negative(text)
    if value > MAX_COUNT:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_COUNT:,}: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    parser.add_argument(
        "-n",
        "--count",
        type=_count,
        default=2000,
        help="concurrent associations in the second part (default: 2000)",
    )
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (if installed)")
    return parser


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


#: Descriptors kept free beside the associations: standard streams, the
#: listening socket, the event loop's own, a resolver thread's.
FD_HEADROOM = 64

#: Client and server share this process: an association holds the client's
#: socket and the server's accepted one, and the server's may outlive the
#: client's by a loop iteration (it closes on the client's FIN, PS3.8 9.1.6):
#: three descriptors per slot keep accept() clear of EMFILE.
FDS_PER_SLOT = 3

#: Per association, connect to release: a demo never waits 30 s on one.
DEADLINE = 10.0


def concurrency_for(count: int) -> tuple[int, str]:
    """How many associations may be in flight at once under the open-file
    limit (raised toward the hard limit first), and a line saying so when
    that is fewer than `count`."""
    from asyncecho.cli.sweep import raise_open_file_limit

    limits = raise_open_file_limit(FDS_PER_SLOT * count + FD_HEADROOM)
    if limits is None:  # unlimited, or not POSIX
        return count, ""
    soft, hard = limits
    allowed = max(1, (soft - FD_HEADROOM) // FDS_PER_SLOT)
    if allowed >= count:
        return count, ""
    return allowed, (
        f"at most {allowed} at a time: the open-file limit (ulimit -n {soft}, hard {hard}) "
        "allows no more with client and server in this one process"
    )


class LoopErrors:
    """The event loop's exception handler for the mass part: a failure that
    hits every association (say, EMFILE on accept) is counted and summed up
    in a few lines at the end, never printed with a traceback each."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def __call__(self, _loop: object, context: dict[str, object]) -> None:
        exc = context.get("exception")
        what = str(context.get("message") or "error")
        if isinstance(exc, BaseException):
            what += f" ({type(exc).__name__}: {exc})"
        self.counts[what] = self.counts.get(what, 0) + 1

    def summary(self, shown: int = 3) -> list[str]:
        ordered = sorted(self.counts.items(), key=lambda item: -item[1])
        lines = [f"the event loop reported {sum(self.counts.values())} error(s):"]
        lines += [f"  {count} x {what}" for what, count in ordered[:shown]]
        if len(ordered) > shown:
            lines.append(f"  and {len(ordered) - shown} other kind(s)")
        return lines if ordered else []


async def run(count: int) -> int:
    import asyncio
    import time

    from asyncecho import logs
    from asyncecho.cli.output import CliLog
    from asyncecho.client import echo, verify
    from asyncecho.collector import tune_collector
    from asyncecho.results import EchoResult
    from asyncecho.server import serve

    tune_collector()  # start-up is done: see asyncecho.collector
    slots, limited = concurrency_for(count)
    loop = asyncio.get_running_loop()
    errors = LoopErrors()
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
        if limited:
            print(
                f"Now {count} associations (associate, C-ECHO, release) on one event loop, "
                f"{limited} ...",
                flush=True,
            )
        else:
            print(
                f"Now {count} concurrent associations (associate, C-ECHO, release) "
                "on one event loop ...",
                flush=True,
            )
        results: list[EchoResult] = []
        pending = iter(range(count))

        async def worker() -> None:
            for _ in pending:
                results.append(await verify("127.0.0.1", server.port, deadline=DEADLINE))

        previous = loop.get_exception_handler()
        loop.set_exception_handler(errors)
        try:
            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(min(slots, count))))
            elapsed = time.perf_counter() - start
        finally:
            loop.set_exception_handler(previous)
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
    for line in errors.summary():
        print(line)
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
