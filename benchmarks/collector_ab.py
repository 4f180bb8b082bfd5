"""`python -m benchmarks.collector_ab [-n 8000] [--rounds 3]`: what
`asyncecho.tune_collector()` buys, side by side.

Each round runs two fresh processes back to back, the same but for the
tuning: `serve()` and N concurrent `verify()` on one asyncio loop (what
`asyncecho demo` does), after a warm-up of 50 echoes. Reports the CPU per
association of each (median over the rounds) and the median of the
round-by-round ratios tuned / plain.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap

from .servers import child_env

_RUN = textwrap.dedent(
    """
    import asyncio, json, sys, time
    import asyncecho

    async def main(n, tuned):
        async with asyncecho.serve("127.0.0.1", 0, max_associations=n + 100) as server:
            for _ in range(50):
                await asyncecho.echo("127.0.0.1", server.port)
            if tuned:
                asyncecho.tune_collector()
            cpu = time.process_time()
            results = await asyncio.gather(
                *(asyncecho.verify("127.0.0.1", server.port, deadline=60) for _ in range(n))
            )
            cpu = time.process_time() - cpu
        if not all(results):
            raise SystemExit(f"{sum(not r for r in results)} of {n} failed")
        print(json.dumps({"cpu_us": cpu / n * 1e6}))

    asyncio.run(main(int(sys.argv[1]), sys.argv[2] == "tuned"))
    """
)


def _one(n: int, mode: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", _RUN, str(n), mode],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=600,
        check=True,
    )
    return float(json.loads(done.stdout.splitlines()[-1])["cpu_us"])


def report(n: int, rounds: int) -> str:
    plain: list[float] = []
    tuned: list[float] = []
    for _ in range(rounds):
        plain.append(_one(n, "plain"))
        tuned.append(_one(n, "tuned"))
    ratios = [t / p for p, t in zip(plain, tuned, strict=True)]
    return "\n".join(
        [
            f"CPU per association (client and server on one loop), N={n} concurrent, "
            f"median of {rounds} interleaved rounds",
            f"  plain   {statistics.median(plain):6.0f} µs",
            f"  tuned   {statistics.median(tuned):6.0f} µs   "
            f"(tune_collector(); x plain {statistics.median(ratios):.2f})",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.collector_ab", description=__doc__)
    parser.add_argument("-n", type=int, default=8000, help="concurrent associations (8000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    args = parser.parse_args(argv)
    print(report(args.n, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
