"""`python -m benchmarks.shards_bench [-n 3000] [-c 256] [--json]`

Issue 16's Scale section: a list of N targets (a third live SCPs, a third
refused, a third silent; per-target deadline 2 s) swept as 3 shards by 3
local `asyncecho sweep --shard K/3` processes started at once, then
`asyncecho merge`d; against one `asyncecho sweep` process checking all N;
both at the same per-process concurrency. Then `asyncecho report` over the
merged records: its time (the whole command, and the rendering alone in
this process) and the page's size.

Loopback only. Live targets are `L<i>@127.0.0.1:PORT` over three
`asyncecho echoscp` processes (bound to 127.0.0.1; distinct called AE
titles make distinct targets); refused ones `127.2.x.y:11`, where nothing
listens; silent ones `S<i>@127.0.0.1:PORT` over four listeners in a child
process that accept and never say a word. Each target appears once, so the
shards split it by the stable hash of (called AE, host, port).

The silent third bounds both runs (N/3 targets holding a slot for 2 s each):
the sharded run has three times the slots. All processes share this
machine's CPUs, which the table reports. Never fails for a figure; exit 1
only if the harness broke (a record missing, a live target failing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from .servers import child_env, read_line

DEADLINE = 2.0
SHARDS = 3
LIVE_SCPS = 3
SILENT_PORTS = 4


class HarnessError(RuntimeError):
    pass


# --- the peers -----------------------------------------------------------------------


async def _silent(ports: list[int]) -> None:
    """Accept, never answer, close when the other side does."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.read(65536):
                pass
        except OSError:
            pass
        writer.close()

    servers = [await asyncio.start_server(hold, "127.0.0.1", 0, backlog=4096) for _ in ports]
    print(" ".join(str(s.sockets[0].getsockname()[1]) for s in servers), flush=True)
    await asyncio.Event().wait()


def start_silent() -> tuple[subprocess.Popen[bytes], list[int]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.shards_bench", "--silent-listeners"],
        stdout=subprocess.PIPE,
        env=child_env(),
    )
    assert process.stdout is not None
    line = read_line(process.stdout, 15.0)
    if not line:
        process.kill()
        raise HarnessError("the silent listeners did not start")
    return process, [int(port) for port in line.split()]


def start_scp() -> tuple[subprocess.Popen[bytes], int]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "asyncecho",
            "echoscp",
            str(port),
            "--bind-address",
            "127.0.0.1",
            "-q",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=child_env(),
    )
    end = time.monotonic() + 15.0
    while time.monotonic() < end:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process, port
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise HarnessError("echoscp did not start")


def target_lines(n: int, live: list[int], silent: list[int]) -> tuple[list[str], Counter[str]]:
    """N targets, a third of each kind, interleaved; and the count of each."""
    lines: list[str] = []
    kinds: Counter[str] = Counter()
    for i in range(n):
        kind = ("live", "refused", "silent")[i % 3]
        kinds[kind] += 1
        j = i // 3
        if kind == "live":
            lines.append(f"L{j}@127.0.0.1:{live[j % len(live)]}")
        elif kind == "refused":
            lines.append(f"127.2.{j // 250 % 250}.{j % 250 + 1}:11")
        else:
            lines.append(f"S{j}@127.0.0.1:{silent[j % len(silent)]}")
    return lines, kinds


# --- the runs ------------------------------------------------------------------------


def asyncecho(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "asyncecho", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=child_env(),
    )


def sweep(targets: Path, concurrency: int, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    """`asyncecho sweep` over `targets` as both runs do it (`extra`: --shard)."""
    return asyncecho(
        "sweep",
        str(targets),
        *extra,
        "-c",
        str(concurrency),
        "--deadline",
        str(DEADLINE),
        "-q",
        "-o",
        str(out),
    )


def finish(process: subprocess.Popen[bytes], allowed: tuple[int, ...]) -> None:
    _, err = process.communicate(timeout=3600)
    if process.returncode not in allowed:
        raise HarnessError(f"{process.args!r} exited {process.returncode}: {err.decode()[-1500:]}")


def outcomes(path: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    with path.open() as stream:
        for line in stream:
            record = json.loads(line)
            outcome = record["outcome"]
            counts["timeout" if outcome.startswith("timeout") else outcome] += 1
    return counts


def check(counts: Counter[str], kinds: Counter[str], what: str) -> None:
    expected = Counter(
        {"success": kinds["live"], "refused": kinds["refused"], "timeout": kinds["silent"]}
    )
    if counts != expected:
        raise HarnessError(f"{what}: outcomes {dict(counts)}, expected {dict(expected)}")


def run_single(work: Path, targets: Path, concurrency: int) -> tuple[float, Path]:
    out = work / "single.jsonl"
    start = time.perf_counter()
    process = sweep(targets, concurrency, out)
    finish(process, (0, 1))
    return time.perf_counter() - start, out


def run_sharded(work: Path, targets: Path, concurrency: int) -> dict[str, Any]:
    outs = [work / f"shard-{k}.jsonl" for k in range(1, SHARDS + 1)]
    merged = work / "merged.jsonl"
    start = time.perf_counter()
    processes = [
        sweep(targets, concurrency, out, "--shard", f"{k}/{SHARDS}")
        for k, out in enumerate(outs, 1)
    ]
    for process in processes:
        finish(process, (0, 1))
    shards_done = time.perf_counter()
    finish(asyncecho("merge", *map(str, outs), "-o", str(merged), "-q"), (0, 1))
    end = time.perf_counter()
    sizes = [sum(1 for _ in out.open()) for out in outs]
    return {
        "wall": end - start,
        "shards": shards_done - start,
        "merge": end - shards_done,
        "per_shard": sizes,
        "merged": merged,
    }


def time_report(work: Path, records: Path) -> dict[str, Any]:
    from asyncecho.report import render_html

    page = work / "report.html"
    start = time.perf_counter()
    finish(asyncecho("report", str(records), "-o", str(page), "-q"), (0,))
    command = time.perf_counter() - start
    rows = [json.loads(line) for line in records.open()]
    start = time.perf_counter()
    html = render_html(rows)
    render = time.perf_counter() - start
    return {
        "command_s": command,
        "render_s": render,
        "bytes": page.stat().st_size,
        "rendered_bytes": len(html.encode()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.shards_bench")
    parser.add_argument("-n", type=int, default=3000, help="targets (default: 3000)")
    parser.add_argument(
        "-c", "--concurrency", type=int, default=256, help="per process (default: 256, the sweep's)"
    )
    parser.add_argument(
        "--json", action="store_true", help="also print the figures as one JSON line"
    )
    parser.add_argument("--keep", metavar="DIR", help="leave the records and the report in DIR")
    parser.add_argument("--silent-listeners", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.silent_listeners:
        asyncio.run(_silent([0] * SILENT_PORTS))
        return 0

    children: list[subprocess.Popen[bytes]] = []
    try:
        silent_process, silent = start_silent()
        children.append(silent_process)
        live = []
        for _ in range(LIVE_SCPS):
            process, port = start_scp()
            children.append(process)
            live.append(port)
        with tempfile.TemporaryDirectory(prefix="shards-bench-") as temporary:
            work = Path(args.keep) if args.keep else Path(temporary)
            work.mkdir(parents=True, exist_ok=True)
            lines, kinds = target_lines(args.n, live, silent)
            targets = work / "targets.txt"
            targets.write_text("\n".join(lines) + "\n")

            sharded = run_sharded(work, targets, args.concurrency)
            check(outcomes(sharded["merged"]), kinds, "merged shards")
            single, single_out = run_single(work, targets, args.concurrency)
            check(outcomes(single_out), kinds, "single process")
            report = time_report(work, sharded["merged"])
    except HarnessError as exc:
        print(f"shards_bench: {exc}", file=sys.stderr)
        return 1
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(10)

    figures = {
        "n": args.n,
        "concurrency": args.concurrency,
        "deadline_s": DEADLINE,
        "cpus": os.cpu_count(),
        "single_s": round(single, 2),
        "sharded_s": round(sharded["wall"], 2),
        "shards_s": round(sharded["shards"], 2),
        "merge_s": round(sharded["merge"], 2),
        "per_shard": sharded["per_shard"],
        "speedup": round(single / sharded["wall"], 2),
        "report_command_s": round(report["command_s"], 2),
        "report_render_s": round(report["render_s"], 2),
        "report_bytes": report["bytes"],
    }
    n, c = args.n, args.concurrency
    print(
        f"{n:,} targets (1/3 live, 1/3 refused, 1/3 silent), deadline {DEADLINE:g} s, concurrency {c} per process, {os.cpu_count()} CPUs"
    )
    print(f"  one process, all targets:        {single:8.2f} s")
    print(
        f"  {SHARDS} shards at once + merge:        {sharded['wall']:8.2f} s  (shards {sharded['shards']:.2f} s, merge {sharded['merge']:.2f} s; targets per shard {sharded['per_shard']})"
    )
    print(f"  sharded / one process:           {single / sharded['wall']:8.2f}x faster")
    print(
        f"  report of the merged records:    {report['command_s']:8.2f} s as a command, {report['render_s']:.2f} s rendering; {report['bytes'] / 1e6:.2f} MB"
    )
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
