"""`python -m benchmarks.exporter_bench [-n 2000] [--rounds 3]`

Issue 15's performance target: one `asyncecho exporter` process holds the
probes of thousands of targets. Each round sends N `/probe` requests at once
(targets `T<i>@127.0.0.1:PORT`, all on the minimal loopback SCP, one
keep-alive HTTP connection each, as Prometheus keeps one per target) and
times every answer; side by side, in the same run, a bare loop sends N
`asyncecho.verify()` at once from a process of its own against the same SCP.

Reported per side: probes (echoes) per second (the median round), the
CPU of the process doing the probing per probe, p50/p99 latency over every
measured probe, and failures; then the ratios. Goal: the exporter's rate
>= 0.7x the bare loop's. The first round of each side warms up and is not
counted. With two CPUs or more, the prober (the bare loop's process, or
the exporter) has the first CPU and the rest of the world (the SCP, and
this process sending the HTTP requests as Prometheus would) the last, so
that the load generator's own CPU, reported apart, is not charged to the
exporter.
Never fails for a missed goal; exit 1 only if the harness broke.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
from typing import Any

from . import procstat
from .servers import REPO_ROOT, ServerProcess, child_env, read_line, start_python_server
from .worker import percentile

#: Seconds a probe may take (the module's timeout and the bare deadline).
PROBE_SECONDS = 30.0


def _summary(
    rounds: list[dict[str, float]], latencies: list[float], failures: int
) -> dict[str, Any]:
    ordered = sorted(latencies)
    rates = [r["count"] / r["wall"] for r in rounds]
    cpu = sum(r["cpu"] for r in rounds) / sum(r["count"] for r in rounds)
    p50, p99 = percentile(ordered, 50), percentile(ordered, 99)
    return {
        "rate": statistics.median(rates),
        "rates": rates,
        "cpu_us_per_probe": cpu * 1e6,
        "p50_ms": p50 * 1e3 if p50 is not None else None,
        "p99_ms": p99 * 1e3 if p99 is not None else None,
        "failures": failures,
    }


# --- the bare loop (a process of its own) ---------------------------------------------------


async def _bare(port: int, n: int, rounds: int) -> dict[str, Any]:
    import asyncecho

    asyncecho.tune_collector()  # as the exporter command does after start-up
    measured: list[dict[str, float]] = []
    latencies: list[float] = []
    failures = 0

    async def one(i: int) -> tuple[bool, float]:
        start = time.perf_counter()
        result = await asyncecho.verify(
            "127.0.0.1", port, called_ae=f"T{i}", deadline=PROBE_SECONDS
        )
        return result.ok, time.perf_counter() - start

    for round_no in range(rounds + 1):
        cpu, wall = time.process_time(), time.perf_counter()
        results = await asyncio.gather(*(one(i) for i in range(n)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if round_no:  # round 0 warms up
            measured.append({"count": n, "wall": wall, "cpu": cpu})
            latencies += [seconds for _, seconds in results]
            failures += sum(1 for ok, _ in results if not ok)
    return _summary(measured, latencies, failures)


def run_bare(port: int, n: int, rounds: int, cpus: set[int] | None) -> dict[str, Any]:
    done = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks.exporter_bench"),
            *("--bare-worker", str(port), "-n", str(n), "--rounds", str(rounds)),
            *(("--pin", str(min(cpus))) if cpus else ()),
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=child_env(),
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bare worker failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# --- through the exporter -------------------------------------------------------------------

_SUCCESS = re.compile(rb"^probe_success 1\.0$", re.MULTILINE)


def start_exporter(n: int, cpus: set[int] | None) -> ServerProcess:
    import tempfile

    stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by its owner
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "asyncecho", "exporter"),
            *("--listen", "127.0.0.1:0", "--max-in-flight", str(n)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=REPO_ROOT,
        env=child_env(),
    )
    procstat.pin_tree(process.pid, cpus)
    assert process.stderr is not None
    line = read_line(process.stderr, 30.0).decode()
    match = re.search(r"listening on http://127\.0\.0\.1:(\d+)/", line)
    if match is None:
        process.kill()
        raise RuntimeError(f"the exporter did not start: {line!r}")
    return ServerProcess("exporter", process, int(match.group(1)), False, stderr)


async def _through_exporter(
    exporter: ServerProcess, scp_port: int, n: int, rounds: int
) -> tuple[dict[str, Any], float]:
    import aiohttp

    url = f"http://127.0.0.1:{exporter.port}/probe"
    headers = {"X-Prometheus-Scrape-Timeout-Seconds": str(PROBE_SECONDS + 1)}
    measured: list[dict[str, float]] = []
    latencies: list[float] = []
    failures = 0
    client_cpu = 0.0
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=PROBE_SECONDS * 2)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(i: int) -> tuple[bool, float]:
            start = time.perf_counter()
            params = {"target": f"T{i}@127.0.0.1:{scp_port}"}
            try:
                async with session.get(url, params=params, headers=headers) as response:
                    body = await response.read()
                    ok = response.status == 200 and _SUCCESS.search(body) is not None
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            return ok, time.perf_counter() - start

        for round_no in range(rounds + 1):
            before = exporter.cpu_seconds() or 0.0
            own, wall = time.process_time(), time.perf_counter()
            results = await asyncio.gather(*(one(i) for i in range(n)))
            own, wall = time.process_time() - own, time.perf_counter() - wall
            cpu = (exporter.cpu_seconds() or 0.0) - before
            if round_no:
                measured.append({"count": n, "wall": wall, "cpu": cpu})
                latencies += [seconds for _, seconds in results]
                failures += sum(1 for ok, _ in results if not ok)
                client_cpu += own
    return _summary(measured, latencies, failures), client_cpu / (n * rounds) * 1e6


# --- the report ---------------------------------------------------------------------------


def report(n: int, bare: dict[str, Any], exporter: dict[str, Any], client_us: float) -> str:
    def row(name: str, r: dict[str, Any]) -> str:
        return (
            f"{name:<16}{r['rate']:>10.0f}{r['cpu_us_per_probe']:>14.0f}"
            f"{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}{r['failures']:>10}"
        )

    rate_ratio = exporter["rate"] / bare["rate"]
    cpu_ratio = exporter["cpu_us_per_probe"] / bare["cpu_us_per_probe"]
    verdict = "met" if rate_ratio >= 0.7 else "MISSED"
    return "\n".join(
        [
            f"N = {n} probes at once, minimal loopback SCP",
            f"{'':<16}{'probes/s':>10}{'CPU us/probe':>14}{'p50 ms':>10}{'p99 ms':>10}{'failures':>10}",
            row("bare verify()", bare),
            row("exporter", exporter),
            f"exporter / bare: rate {rate_ratio:.2f}x (goal >= 0.7x: {verdict}), "
            f"CPU per probe {cpu_ratio:.2f}x",
            f"load generator (aiohttp client, this process): {client_us:.0f} us CPU per probe",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.exporter_bench", description=__doc__
    )
    parser.add_argument("-n", type=int, default=2000, help="probes at once (default 2000)")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds (default 3)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument("--bare-worker", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--pin", type=int, metavar="CPU", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    procstat.raise_fd_limit()
    if args.bare_worker:
        if args.pin is not None:
            procstat.pin(os.getpid(), {args.pin})
        print(json.dumps(asyncio.run(_bare(args.bare_worker, args.n, args.rounds))))
        return 0
    prober_cpus, world_cpus = procstat.cpu_split()
    if prober_cpus is not None:
        prober_cpus = {min(prober_cpus)}
    pinned = procstat.pin(os.getpid(), world_cpus)
    scp = start_python_server("minimal", "asyncio", world_cpus)
    try:
        bare = run_bare(scp.port, args.n, args.rounds, prober_cpus)
        exporter = start_exporter(args.n, prober_cpus)
        try:
            through, client_us = asyncio.run(
                _through_exporter(exporter, scp.port, args.n, args.rounds)
            )
        finally:
            exporter.stop()
    finally:
        scp.stop()
    if pinned:
        print(
            f"prober on CPU {sorted(prober_cpus or ())}, SCP and load generator on CPU {sorted(world_cpus or ())}"
        )
    print(report(args.n, bare, through, client_us))
    if args.json:
        print(json.dumps({"n": args.n, "bare": bare, "exporter": through, "client_us": client_us}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
