"""Profile asyncecho's hot paths with cProfile:

    python -m benchmarks.profiling client [-n 2000] [--concurrent]   # echo() vs the minimal SCP
    python -m benchmarks.profiling server [-n 2000]                  # serve() under the raw client
    python -m benchmarks.profiling import                            # `python -m asyncecho echoscu` start-up
    python -m benchmarks.profiling core [-n 20000] [--profile]       # the sans-I/O core alone (core_cost.py)
    python -m benchmarks.profiling ablation [-n 1000]                # raw vs raw+core vs echo() (ablation.py)
    python -m benchmarks.profiling server-ablation [-n 10000]        # minimal vs minimal+core vs serve()

The side being profiled runs in this process on the asyncio loop; the other
side in its own process (pinned apart where possible), as in the benchmarks.
Prints the top functions by own time and by cumulative time, and the CPU
time per association without the profiler for scale.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

from . import procstat
from .servers import REPO_ROOT, child_env, start_python_server

HOST = "127.0.0.1"


def _stats(profile: cProfile.Profile, top: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


async def _batch(one: Callable[[], Awaitable[object]], n: int, concurrent: bool) -> None:
    if concurrent:
        await asyncio.gather(*(one() for _ in range(n)))
    else:
        for _ in range(n):
            await one()


def _run(one: Callable[[], Awaitable[object]], n: int, concurrent: bool, top: int) -> None:
    async def main() -> None:
        await _batch(one, min(n, 50), False)  # warm-up: lazy imports, first calls
        cpu = time.process_time()
        await asyncio.wait_for(_batch(one, n, concurrent), 300)
        plain = time.process_time() - cpu
        profile = cProfile.Profile()
        profile.enable()
        await asyncio.wait_for(_batch(one, n, concurrent), 300)
        profile.disable()
        print(f"CPU per association without the profiler: {plain / n * 1e6:.0f} µs (n={n})")
        print(_stats(profile, top))

    asyncio.run(main())


def profile_client(n: int, concurrent: bool, top: int) -> None:
    import asyncecho

    client_cpus, server_cpus = procstat.cpu_split()
    procstat.pin(os.getpid(), client_cpus)
    server = start_python_server("minimal", "asyncio", server_cpus)
    try:

        async def one() -> object:
            return await asyncecho.echo(HOST, server.port)

        _run(one, n, concurrent, top)
    finally:
        server.stop()


def _start_raw_client(port: int, n: int, cpus: set[int] | None) -> subprocess.Popen[bytes]:
    """The raw client in a child: 50 warm-up associations, then N concurrent
    twice, printing `done` after each batch and waiting for a line between."""
    code = f"""
import asyncio, sys
sys.path.insert(0, {str(REPO_ROOT)!r})
from benchmarks.raw_client import raw_echo
async def main():
    for n in (50, {n}, {n}):
        await asyncio.gather(*(raw_echo("{HOST}", {port}) for _ in range(n)))
        print("done", flush=True)
        sys.stdin.readline()
asyncio.run(main())
"""
    client = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_env()
    )
    procstat.pin(client.pid, cpus)
    return client


def profile_server(n: int, top: int) -> None:
    """serve() in this process; the raw client in a child, N concurrent."""
    import asyncecho

    client_cpus, server_cpus = procstat.cpu_split()
    procstat.pin(os.getpid(), server_cpus)

    async def main() -> None:
        async with asyncecho.serve(HOST, 0, max_associations=1_000_000) as server:
            port = server.port
            client = _start_raw_client(port, n, client_cpus)
            assert client.stdin is not None and client.stdout is not None
            loop = asyncio.get_running_loop()
            profile = cProfile.Profile()
            plain = 0.0
            try:
                for step in ("warm", "plain", "profiled"):
                    cpu = time.process_time()
                    if step == "profiled":
                        profile.enable()
                    line = await asyncio.wait_for(
                        loop.run_in_executor(None, client.stdout.readline), 300
                    )
                    profile.disable()
                    if step == "plain":
                        plain = time.process_time() - cpu
                    if not line:
                        raise RuntimeError("the raw client died")
                    client.stdin.write(b"\n")
                    client.stdin.flush()
            finally:
                client.kill()
                client.wait(10)
            print(
                f"server CPU per association without the profiler: {plain / n * 1e6:.0f} µs (n={n})"
            )
            print(_stats(profile, top))

    asyncio.run(main())


def profile_import(top: int) -> None:
    """What one `python -m asyncecho echoscu` against a local SCP imports,
    by cumulative time (-X importtime)."""
    server = start_python_server("minimal", "asyncio", None)
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-X",
                "importtime",
                "-m",
                "asyncecho",
                "echoscu",
                HOST,
                str(server.port),
            ],
            capture_output=True,
            timeout=60,
            check=False,
            env=child_env(),
        )
    finally:
        server.stop()
    print(f"exit status {done.returncode}")
    rows: list[tuple[int, int, str]] = []
    for line in done.stderr.decode(errors="replace").splitlines():
        fields = line.removeprefix("import time:").split("|")
        if len(fields) != 3 or not fields[0].strip().isdigit():
            continue  # not an import line, or the header
        rows.append((int(fields[1]), int(fields[0]), fields[2].rstrip()))
    rows.sort(reverse=True)
    print("cumulative µs   self µs   module")
    for cumulative, own, name in rows[:top]:
        print(f"{cumulative:>12}  {own:>8}   {name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profiling")
    parser.add_argument("side", choices=["client", "server", "import", "core", "ablation", "server-ablation"])
    parser.add_argument("-n", type=int, default=None, help="associations (2000; core: 20000)")
    parser.add_argument("--concurrent", action="store_true")
    parser.add_argument("--profile", action="store_true", help="core: with cProfile tables")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    procstat.raise_fd_limit()
    if args.side == "core":
        from .core_cost import report

        print(report(args.n or 20_000, args.profile, args.top), end="")
        return 0
    if args.side == "ablation":
        from .ablation import report as ablation_report

        print(ablation_report(args.n or 1000), end="")
        return 0
    if args.side == "server-ablation":
        from .server_ablation import report as server_ablation_report

        print(server_ablation_report(args.n or 10_000), end="")
        return 0
    args.n = args.n or 2000
    if args.side == "client":
        profile_client(args.n, args.concurrent, args.top)
    elif args.side == "server":
        profile_server(args.n, args.top)
    else:
        profile_import(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
