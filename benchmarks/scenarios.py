"""P1-P6 of issue 7: what each mode runs, and running it.

The harness process only orchestrates: servers run in their own processes
(pinned to the last CPU), each measurement runs in a fresh worker process
(pinned to the other CPUs, see `worker`), and every wait is bounded.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from . import procstat, servers
from .servers import REPO_ROOT, ServerError, ServerProcess, child_env

HOST = "127.0.0.1"  # loopback only
FD_MARGIN = 256  # fds a process needs besides its associations
PYNETDICOM_MAX_N = 2000  # it fails near N=2,000 (MEASURED.md): no run above that
SWEEP_DEADLINE = 2.0
SWEEP_CONCURRENCY = 2000
READY_TIMEOUT = 90.0  # a worker's imports and warm-up (at most 30 s of it)


@dataclass(frozen=True)
class Plan:
    name: str
    p1: tuple[int, ...]  # concurrent N
    p2: int  # sequential N
    p3: int  # sequential N against storescp
    p4_runs: int  # whole-process CLI runs per command
    p5: int  # sweep targets
    p6: int  # concurrent N against each server
    rounds: int  # repeats of each asyncio measurement (the median-rate one is reported)
    cap_s: float  # time cap of one asyncio measurement
    pynetdicom_cap_s: float  # time cap of one pynetdicom measurement


PLANS = {
    "smoke": Plan("smoke", (20,), 20, 5, 3, 30, 20, 1, 20.0, 30.0),
    "quick": Plan("quick", (200, 1000), 200, 50, 20, 10_000, 1000, 1, 120.0, 120.0),
    "full": Plan("full", (1000, 5000, 10_000), 1000, 500, 30, 10_000, 10_000, 5, 300.0, 180.0),
}


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


class Bench:
    """One run of the harness: its servers, its rows, its notes."""

    def __init__(self, plan: Plan, log: Callable[[str], None]) -> None:
        self.plan = plan
        self.log = log
        self.rows: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.fd_soft, self.fd_hard = procstat.raise_fd_limit()
        self.client_cpus, self.server_cpus = procstat.cpu_split()
        self.client_pinned = procstat.pin(os.getpid(), self.client_cpus)  # workers inherit it
        self.loops = ["asyncio", "uvloop"] if uvloop_available() else ["asyncio"]
        self.load_loop = self.loops[-1]  # the fastest load server, so it is not the bottleneck
        self._servers: dict[str, ServerProcess] = {}
        self._p6_runs: dict[str, list[dict[str, Any]]] = {}
        if not uvloop_available():
            self.notes.append("uvloop is not installed: asyncio rows only")
        if self.client_cpus is None:
            self.notes.append("one CPU: servers and clients are not pinned apart")
        else:
            self.notes.append(
                f"servers pinned to CPU {sorted(self.server_cpus or ())}, "
                f"clients (workers, CLIs) to CPU {sorted(self.client_cpus)}"
            )
        self.notes.append(
            f"RLIMIT_NOFILE soft/hard {self.fd_soft}/{self.fd_hard}; concurrent N is clamped to "
            f"{self.fd_budget} (the limit minus {FD_MARGIN}) per process"
        )

    @property
    def fd_budget(self) -> int:
        return max(1, self.fd_soft - FD_MARGIN)

    def clamp(self, n: int, what: str) -> int:
        if n <= self.fd_budget:
            return n
        self.notes.append(
            f"{what}: N={n} clamped to {self.fd_budget} to stay under ulimit -n {self.fd_soft}"
        )
        self.log(f"! {self.notes[-1]}")
        return self.fd_budget

    # --- servers -----------------------------------------------------------------------

    def server(self, name: str) -> ServerProcess:
        """minimal/<loop>, asyncecho/<loop>, silent/<loop> or storescp, started
        once and kept for the run."""
        running = self._servers.get(name)
        if running is not None and running.alive():
            return running
        if running is not None:
            self.notes.append(f"server {name} died; restarted. stderr: {running.stderr_tail()}")
            running.stop()
        if name == "storescp":
            started = servers.start_storescp(self.server_cpus)
        else:
            kind, loop = name.split("/")
            started = servers.start_python_server(kind, loop, self.server_cpus)
        self._servers[name] = started
        self.log(f"  server {name} pid {started.pid} port {started.port}")
        return started

    def close(self) -> None:
        for server in self._servers.values():
            server.stop()
        self._servers.clear()

    # --- one measurement in a worker ----------------------------------------------------

    def measure(
        self, spec: dict[str, Any], server: ServerProcess, timeout: float
    ) -> dict[str, Any]:
        """Run `spec` in a fresh worker; add the server's CPU time over the
        measured part (between READY and RESULT)."""
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by its owner
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.worker", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=REPO_ROOT,
            env=child_env(),
        )
        assert process.stdin is not None and process.stdout is not None
        result: dict[str, Any]
        try:
            ready = _read_until(process.stdout, (b"READY", b"RESULT "), READY_TIMEOUT)
            if not ready.startswith(b"READY"):
                raise _WorkerFailed(f"no READY: {ready[:300]!r}")
            cpu_before = server.cpu_seconds()
            process.stdin.write(b"GO\n")
            process.stdin.flush()
            line = _read_until(process.stdout, (b"RESULT ",), timeout)
            cpu_after = server.cpu_seconds()
            if not line:
                raise _WorkerFailed(f"no result within {timeout:.0f} s (killed)")
            result = json.loads(line[len(b"RESULT ") :])
            if cpu_before is not None and cpu_after is not None:
                result["server_cpu_s"] = cpu_after - cpu_before
                n = spec["n"]
                result["server_cpu_us_per_assoc"] = (cpu_after - cpu_before) / n * 1e6
        except (_WorkerFailed, ValueError, OSError) as exc:
            stderr.seek(0)
            tail = stderr.read().decode(errors="replace")[-1500:]
            result = {"error": f"{exc}; worker stderr: {tail}"}
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(10)
            process.stdout.close()
            process.stdin.close()
            stderr.close()
        if "error" in result:
            self.log(f"  ! {spec['competitor']}/{spec['loop']}: {result['error'][:500]}")
        return result

    def settle(self) -> None:
        """Let the previous run's connections close before the next one."""
        time.sleep(0.5 if self.plan.name != "smoke" else 0.05)

    # --- the scenarios ------------------------------------------------------------------

    def client_competitors(self, n: int, concurrent: bool) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for loop in self.loops:
            out += [("raw", loop), ("asyncecho", loop)]
        if not concurrent or n <= PYNETDICOM_MAX_N:
            out.append(("pynetdicom", "threads"))
        return out

    def run_clients(
        self, scenario: str, n: int, concurrent: bool, server_name: str, rounds: int
    ) -> None:
        competitors = self.client_competitors(n, concurrent)
        if concurrent and n > PYNETDICOM_MAX_N:
            self.rows.append(
                _skipped(scenario, n, "pynetdicom/threads", f"not run above N={PYNETDICOM_MAX_N}")
            )
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {c: [] for c in competitors}
        server_label = server_name
        for round_no in range(rounds):
            for competitor, loop in competitors:
                if competitor == "pynetdicom" and round_no > 0:
                    continue  # slow, and its figure is not a ratio's denominator
                try:
                    server = self.server(server_name)
                except ServerError as exc:
                    self.notes.append(f"{scenario}: {exc}")
                    self.log(f"! {exc}")
                    return
                cap = self.plan.pynetdicom_cap_s if competitor == "pynetdicom" else self.plan.cap_s
                spec = {
                    "competitor": competitor,
                    "loop": loop,
                    "mode": "concurrent" if concurrent else "sequential",
                    "host": HOST,
                    "port": server.port,
                    "n": n,
                    "cap": cap,
                }
                self.log(f"  {scenario} N={n} {competitor}/{loop} round {round_no + 1}")
                runs[(competitor, loop)].append(self.measure(spec, server, cap + 30.0))
                self.settle()
        for (competitor, loop), results in runs.items():
            self.rows.append(
                _row(scenario, n, f"{competitor}/{loop}", server_label, results, concurrent)
            )

    def p1(self) -> None:
        for n in self.plan.p1:
            n = self.clamp(n, "P1")
            self.log(f"P1 concurrent N={n}")
            self.run_clients("P1", n, True, f"minimal/{self.load_loop}", self.plan.rounds)

    def p2(self) -> None:
        self.log(f"P2 sequential N={self.plan.p2}")
        self.run_clients("P2", self.plan.p2, False, f"minimal/{self.load_loop}", self.plan.rounds)

    def p3(self) -> None:
        self.log(f"P3 sequential N={self.plan.p3} against DCMTK storescp")
        if not servers.storescp_available():
            self.rows.append(_skipped("P3", self.plan.p3, "all", "DCMTK storescp not installed"))
            self.notes.append(f"P3 skipped: {servers.DCMTK_STORESCP} not installed")
            return
        self.run_clients("P3", self.plan.p3, False, "storescp", 1)

    def p4(self) -> None:
        runs = self.plan.p4_runs
        self.log(f"P4 CLI, one echo as a whole process, {runs} runs each")
        server = self.server(f"minimal/{self.load_loop}")
        port = str(server.port)
        commands: list[tuple[str, list[str]]] = [
            ("asyncecho echoscu", [sys.executable, "-m", "asyncecho", "echoscu", HOST, port]),
            ("pynetdicom echoscu", [sys.executable, "-m", "pynetdicom", "echoscu", HOST, port]),
            ("python -c pass", [sys.executable, "-c", "pass"]),
        ]
        if os.access(servers.DCMTK_ECHOSCU, os.X_OK):
            commands.append(("DCMTK echoscu", [servers.DCMTK_ECHOSCU, HOST, port]))
        else:
            self.notes.append(f"P4: {servers.DCMTK_ECHOSCU} not installed")
        samples: dict[str, list[tuple[float, float, int, int, float]]] = {
            c: [] for c, _ in commands
        }
        warmup = 2
        for index in range(warmup + runs):  # round-robin, so drift hits every command alike
            for label, argv in commands:
                cpu_before = server.cpu_seconds() or 0.0
                wall, cpu, rss, code = run_timed(argv, 60.0)
                server_cpu = (server.cpu_seconds() or 0.0) - cpu_before
                if index >= warmup:
                    samples[label].append((wall, cpu, rss, code, server_cpu))
        for label, argv in commands:
            self.rows.append(_cli_row(label, argv, samples[label], server.name))

    def p5(self) -> None:
        n = self.plan.p5
        concurrency = self.clamp(min(SWEEP_CONCURRENCY, n), "P5 concurrency")
        self.log(f"P5 sweep {n} targets, deadline {SWEEP_DEADLINE} s, concurrency {concurrency}")
        live = self.server(f"minimal/{self.load_loop}")
        silent = self.server(f"silent/{self.load_loop}")
        variants = [(loop, concurrency) for loop in self.loops]
        if self.plan.name == "full":
            variants.append(("asyncio", _sweep_default_concurrency()))
        with refused_port() as refused:
            for loop, limit in variants:
                spec: dict[str, Any] = {
                    "competitor": "asyncecho",
                    "loop": loop,
                    "mode": "sweep",
                    "host": HOST,
                    "port": live.port,
                    "live_port": live.port,
                    "refused_port": refused,
                    "silent_port": silent.port,
                    "n": n,
                    "cap": SWEEP_DEADLINE + 10.0 + 60.0,
                    "deadline": SWEEP_DEADLINE,
                    "concurrency": limit,
                }
                self.log(f"  P5 asyncecho/{loop} concurrency {limit}")
                result = self.measure(spec, live, float(spec["cap"]) + 30.0)
                label = f"asyncecho sweep/{loop} c={limit}"
                self.rows.append(_row("P5", n, label, "minimal+silent+refused", [result], False))
                self.settle()
                time.sleep(SWEEP_DEADLINE if self.plan.name != "smoke" else 0.0)

    def p6(self) -> None:
        n = self.clamp(self.plan.p6, "P6")
        client_loop = self.load_loop
        self.log(f"P6 servers under the raw client ({client_loop}), N={n} concurrent")
        for round_no in range(self.plan.rounds):
            for loop in self.loops:
                for kind in ("minimal", "asyncecho"):
                    server = self.server(f"{kind}/{loop}")
                    spec = {
                        "competitor": "raw",
                        "loop": client_loop,
                        "mode": "concurrent",
                        "host": HOST,
                        "port": server.port,
                        "n": n,
                        "cap": self.plan.cap_s,
                    }
                    self.log(f"  P6 {kind}/{loop} round {round_no + 1}")
                    result = self.measure(spec, server, self.plan.cap_s + 30.0)
                    self._p6_runs.setdefault(f"{kind}/{loop}", []).append(result)
                    self.settle()
        for name, results in self._p6_runs.items():
            kind, loop = name.split("/")
            label = f"{'asyncecho serve()' if kind == 'asyncecho' else 'minimal SCP'}/{loop}"
            self.rows.append(_row("P6", n, label, f"client raw/{client_loop}", results, True))

    def run(self, only: set[str] | None = None) -> None:
        steps = {"P1": self.p1, "P2": self.p2, "P3": self.p3, "P4": self.p4, "P5": self.p5}
        steps["P6"] = self.p6
        for name, step in steps.items():
            if only and name not in only:
                continue
            try:
                step()
            except ServerError as exc:
                self.notes.append(f"{name}: {exc}")
                self.rows.append(_skipped(name, 0, "all", str(exc)))


class _WorkerFailed(Exception):
    pass


def _read_until(stream: Any, prefixes: tuple[bytes, ...], timeout: float) -> bytes:
    """The first line starting with one of `prefixes` within `timeout` s;
    b"" on timeout or EOF. Other lines (stray prints) are skipped."""
    end = time.monotonic() + timeout
    for _ in range(10_000):
        left = end - time.monotonic()
        if left <= 0:
            return b""
        line = servers.read_line(stream, left)
        if not line:
            return b""
        if line.startswith(prefixes):
            return line.rstrip(b"\n")
    return b""


@contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port bound but not listening: connecting gets a RST."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        yield int(sock.getsockname()[1])


def _sweep_default_concurrency() -> int:
    """The default concurrency of asyncecho's sweep(), read from its signature."""
    import inspect

    import asyncecho

    try:
        value = inspect.signature(asyncecho.sweep).parameters["concurrency"].default
    except (AttributeError, KeyError, TypeError, ValueError):
        value = 256
    return value if isinstance(value, int) else 256


def run_timed(argv: list[str], timeout: float) -> tuple[float, float, int, int]:
    """(wall s, CPU s, peak RSS KB, exit code) of one whole process; killed
    after `timeout` s (exit code then negative)."""
    start = time.perf_counter()
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        timer.cancel()
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_utime + usage.ru_stime, int(usage.ru_maxrss), process.returncode


# --- rows ----------------------------------------------------------------------------------


def _row(
    scenario: str,
    n: int,
    label: str,
    server: str,
    results: list[dict[str, Any]],
    concurrent: bool,
) -> dict[str, Any]:
    """The reported figure is the round with the median rate; all rounds kept."""
    good = [r for r in results if "error" not in r and r.get("rate_per_s") is not None]
    row: dict[str, Any] = {
        "scenario": scenario,
        "n": n,
        "label": label,
        "server": server,
        "concurrent": concurrent,
    }
    if not good:
        row["error"] = results[0].get("error", "no successful association") if results else "none"
        if results:
            row.update({k: v for k, v in results[0].items() if k != "error"})
        return row
    ordered = sorted(good, key=lambda r: float(r["rate_per_s"]))
    chosen = ordered[(len(ordered) - 1) // 2]
    row.update(chosen)
    if len(results) > 1:
        row["rounds"] = results
        row["rate_per_s_all"] = [r.get("rate_per_s") for r in results]
    return row


def _skipped(scenario: str, n: int, label: str, why: str) -> dict[str, Any]:
    return {"scenario": scenario, "n": n, "label": label, "server": "-", "skipped": why}


def _cli_row(
    label: str,
    argv: list[str],
    samples: list[tuple[float, float, int, int, float]],
    server: str,
) -> dict[str, Any]:
    walls = sorted(s[0] for s in samples)
    failures = sum(1 for s in samples if s[3] != 0)
    median = statistics.median(walls) if walls else None
    cpu = statistics.median(s[1] for s in samples) if samples else None
    return {
        "scenario": "P4",
        "n": len(samples),
        "label": label,
        "server": server,
        "argv": argv,
        "concurrent": False,
        "ok": len(samples) - failures,
        "failures": failures,
        "rate_per_s": 1.0 / median if median else None,
        "median_s": median,
        "p50_ms": median * 1e3 if median is not None else None,
        "p90_ms": walls[int(0.9 * (len(walls) - 1))] * 1e3 if walls else None,
        "p99_ms": walls[-1] * 1e3 if walls else None,
        "min_ms": walls[0] * 1e3 if walls else None,
        "walls_s": [s[0] for s in samples],
        "client_cpu_s": cpu,
        "client_cpu_us_per_assoc": cpu * 1e6 if cpu is not None else None,
        "peak_rss_kb": statistics.median(s[2] for s in samples) if samples else None,
        "server_cpu_us_per_assoc": (
            statistics.median(s[4] for s in samples) * 1e6 if samples else None
        ),
        "exit_codes": sorted({s[3] for s in samples}),
    }
