"""One measurement in a fresh client process:
`python -m benchmarks.worker SPEC_JSON`.

A fresh process per measurement, so that the RSS one run grows is not
hidden by memory an earlier run freed, and so that a competitor that hangs
(pynetdicom near N=2,000) can be killed without taking the harness along.

Protocol with the harness: the worker imports its competitor and warms it
up (so lazy imports and first-call costs are not measured), prints `READY`,
waits for a line on stdin (the harness reads the server's CPU time
meanwhile), measures, and prints `RESULT <json>`.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from . import procstat
from .scp_process import run_on

WARMUP = 20


@dataclass
class Tally:
    """What one measured run saw."""

    n: int
    latencies: list[float] = field(default_factory=list)
    ok: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    wall: float = 0.0
    cpu: float = 0.0
    in_flight: int = 0
    max_in_flight: int = 0
    capped: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def failed(self, why: str) -> None:
        self.errors[why] += 1


def percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return None
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(tally: Tally, rss_base_kb: int | None, reset_ok: bool) -> dict[str, Any]:
    ordered = sorted(tally.latencies)
    hwm = procstat.status_kb("VmHWM")
    growth = hwm - rss_base_kb if hwm is not None and rss_base_kb is not None and reset_ok else None
    failures = tally.n - tally.ok
    return {
        "n": tally.n,
        "ok": tally.ok,
        "failures": failures,
        "errors": dict(tally.errors.most_common(8)),
        "wall_s": tally.wall,
        "rate_per_s": tally.ok / tally.wall if tally.wall > 0 else None,
        "p50_ms": _ms(percentile(ordered, 50)),
        "p90_ms": _ms(percentile(ordered, 90)),
        "p99_ms": _ms(percentile(ordered, 99)),
        "max_ms": _ms(ordered[-1] if ordered else None),
        "client_cpu_s": tally.cpu,
        "client_cpu_us_per_assoc": tally.cpu / tally.n * 1e6 if tally.n else None,
        "rss_base_kb": rss_base_kb,
        "peak_rss_kb": hwm,
        "rss_growth_kb": growth,
        "max_in_flight": tally.max_in_flight,
        "rss_kb_per_in_flight": (
            growth / tally.max_in_flight if growth is not None and tally.max_in_flight > 1 else None
        ),
        "capped": tally.capped,
        **tally.extra,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


# --- the asyncio competitors -------------------------------------------------------------


def asyncio_one(competitor: str, host: str, port: int) -> Callable[[], Awaitable[bool]]:
    if competitor == "raw":
        from .raw_client import raw_echo

        def raw() -> Awaitable[bool]:
            return raw_echo(host, port)

        return raw
    if competitor == "asyncecho":
        import asyncecho

        async def one() -> bool:
            result = await asyncecho.echo(host, port)
            return result.status == 0

        return one
    raise ValueError(f"unknown asyncio competitor {competitor!r}")


async def _timed(one: Callable[[], Awaitable[bool]], tally: Tally) -> None:
    # perf_counter, not loop.time(): uvloop's clock ticks in milliseconds.
    start = time.perf_counter()
    tally.in_flight += 1
    if tally.in_flight > tally.max_in_flight:
        tally.max_in_flight = tally.in_flight
    try:
        ok = await one()
    except Exception as exc:  # a failed association is a figure, not a crash
        tally.failed(type(exc).__name__)
    else:
        if ok:
            tally.ok += 1
            tally.latencies.append(time.perf_counter() - start)
        else:
            tally.failed("not ok")
    finally:
        tally.in_flight -= 1


async def run_asyncio(
    one: Callable[[], Awaitable[bool]], n: int, concurrent: bool, cap: float, tally: Tally
) -> None:
    """N associations, all at once or one after another, within `cap` s;
    what has not finished by then counts as failed ("time cap")."""
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    cpu = time.process_time()
    done = 0

    async def body() -> None:
        nonlocal done
        if concurrent:
            tasks = [loop.create_task(_timed(one, tally)) for _ in range(n)]
            try:
                await asyncio.gather(*tasks)
            finally:
                done = sum(1 for task in tasks if task.done() and not task.cancelled())
        else:
            for _ in range(n):
                await _timed(one, tally)
                done += 1

    try:
        await asyncio.wait_for(body(), cap)
    except asyncio.TimeoutError:
        tally.capped = True
        tally.errors["time cap"] += n - done
    tally.wall = time.perf_counter() - start
    tally.cpu = time.process_time() - cpu


async def warm_asyncio(one: Callable[[], Awaitable[bool]], count: int, cap: float) -> None:
    async def body() -> None:
        for _ in range(count):
            try:
                await one()
            except Exception:
                pass

    try:
        await asyncio.wait_for(body(), min(cap, 30.0))
    except asyncio.TimeoutError:
        pass  # the measurement will say what is wrong


# --- the sweep (P5) ----------------------------------------------------------------------


def _expected(port: int, spec: dict[str, Any]) -> str:
    return {spec["live_port"]: "live", spec["refused_port"]: "refused"}.get(port, "silent")


def _outcome_of_result(result: Any) -> str:
    """success / refused / timeout / other, from an EchoResult (fallback)."""
    import asyncecho

    error = getattr(result, "error", None)
    if error is None:
        return "success" if result.status == 0 else "other"
    if isinstance(error, asyncecho.ConnectionRefused):
        return "refused"
    if isinstance(error, asyncecho.EchoTimeout):
        return "timeout"
    return "other"


def _outcome_class(outcome: str) -> str:
    """success / refused / timeout / other, from an outcome class of issue 6."""
    if outcome.startswith("timeout"):
        return "timeout"
    return outcome if outcome in ("success", "refused") else "other"


def _from_record(record: Any) -> tuple[str, int | None, float | None]:
    outcome = getattr(record, "outcome", None)
    port = getattr(getattr(record, "target", None), "port", None)
    timings = getattr(record, "timings", None)
    return (
        outcome if isinstance(outcome, str) else "?",
        port if isinstance(port, int) else None,
        getattr(timings, "total", None),
    )


def sweep_api() -> tuple[Any, Any] | None:
    """asyncecho's public `sweep` and `Target` once they exist (issue 6),
    else None (the fallback: `verify()` under an anyio CapacityLimiter)."""
    import asyncecho

    if not (hasattr(asyncecho, "sweep") and hasattr(asyncecho, "Target")):
        return None
    return asyncecho.sweep, asyncecho.Target


async def run_sweep(spec: dict[str, Any], tally: Tally) -> None:
    """10k targets (a third each live, refused, silent), interleaved."""
    import asyncecho

    host, n, deadline = spec["host"], spec["n"], spec["deadline"]
    ports = (spec["live_port"], spec["refused_port"], spec["silent_port"])
    targets = [(host, ports[i % 3]) for i in range(n)]
    outcomes: collections.Counter[str] = collections.Counter()
    start = time.perf_counter()
    cpu = time.process_time()
    records = 0
    public = sweep_api()
    api = "asyncecho.sweep" if public is not None else "verify+CapacityLimiter"

    def count(outcome: str, port: int | None, seconds: float | None) -> None:
        nonlocal records
        records += 1
        outcomes[outcome] += 1  # as the API named it (e.g. timeout-acse)
        expected = _expected(port, spec) if port is not None else "?"
        right = {"live": "success", "refused": "refused", "silent": "timeout"}.get(expected)
        if _outcome_class(outcome) == right:
            tally.ok += 1
        else:
            tally.failed(f"{expected}->{outcome}")
        if seconds is not None:
            tally.latencies.append(seconds)

    async def body() -> None:
        if public is not None:
            sweep, target_type = public
            running: Any = sweep(
                [target_type(h, p) for h, p in targets],
                concurrency=spec["concurrency"],
                deadline=deadline,
            )
            # issue 6 first said "an async iterator"; sweep.py made it an
            # async context manager whose value iterates: take either.
            if hasattr(running, "__aenter__"):
                async with running as records_in:
                    async for record in records_in:
                        count(*_from_record(record))
            else:
                async for record in running:
                    count(*_from_record(record))
        else:
            import anyio

            limiter = anyio.CapacityLimiter(spec["concurrency"])

            async def one(target_host: str, port: int) -> None:
                async with limiter:
                    tally.in_flight += 1
                    tally.max_in_flight = max(tally.max_in_flight, tally.in_flight)
                    try:
                        result = await asyncecho.verify(target_host, port, deadline=deadline)
                    finally:
                        tally.in_flight -= 1
                count(_outcome_of_result(result), port, result.timings.total)

            async with anyio.create_task_group() as group:
                for target_host, port in targets:
                    group.start_soon(one, target_host, port)

    try:
        await asyncio.wait_for(body(), spec["cap"])
    except asyncio.TimeoutError:
        tally.capped = True
        tally.errors["time cap"] += n - records
    tally.wall = time.perf_counter() - start
    tally.cpu = time.process_time() - cpu
    tally.extra.update(
        records=records,
        outcomes=dict(outcomes),
        api=api,
        deadline_s=deadline,
        concurrency=spec["concurrency"],
    )


# --- pynetdicom, one thread per association ------------------------------------------------


def pynetdicom_one(host: str, port: int) -> Callable[[], bool]:
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    ae = AE(ae_title="ECHOSCU")
    ae.add_requested_context(Verification)

    def one() -> bool:
        assoc = ae.associate(host, port, ae_title="ANY-SCP")
        if not assoc.is_established:
            return False
        status = assoc.send_c_echo()
        assoc.release()
        return bool(status) and getattr(status, "Status", None) == 0

    return one


def run_threads(
    one: Callable[[], bool], n: int, concurrent: bool, cap: float, tally: Tally
) -> None:
    lock = threading.Lock()

    def timed() -> None:
        start = time.perf_counter()
        with lock:
            tally.in_flight += 1
            tally.max_in_flight = max(tally.max_in_flight, tally.in_flight)
        try:
            ok = one()
        except Exception as exc:
            ok = False
            why = type(exc).__name__
        else:
            why = "not ok"
        with lock:
            tally.in_flight -= 1
            if ok:
                tally.ok += 1
                tally.latencies.append(time.perf_counter() - start)
            else:
                tally.failed(why)

    start = time.perf_counter()
    cpu = time.process_time()
    end = start + cap
    if concurrent:
        threads: list[threading.Thread] = []
        for _ in range(n):
            thread = threading.Thread(target=timed, daemon=True)
            try:
                thread.start()
            except RuntimeError:  # can't start new thread
                tally.failed("thread start")
                continue
            threads.append(thread)
        for thread in threads:
            thread.join(max(0.0, end - time.perf_counter()))
        stuck = sum(1 for thread in threads if thread.is_alive())
        if stuck:
            tally.capped = True
            with lock:
                tally.errors["time cap"] += stuck
    else:
        for i in range(n):
            if time.perf_counter() >= end:
                tally.capped = True
                tally.errors["time cap"] += n - i
                break
            timed()
    tally.wall = time.perf_counter() - start
    tally.cpu = time.process_time() - cpu


# --- the process -----------------------------------------------------------------------


def _handshake() -> None:
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    sys.stdin.readline()  # the harness has read the server's CPU time


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    competitor, loop, mode = spec["competitor"], spec["loop"], spec["mode"]
    host, port, n, cap = spec["host"], spec["port"], spec["n"], spec["cap"]
    tally = Tally(n)
    reset_ok = False
    base: int | None = None

    def baseline() -> None:
        nonlocal reset_ok, base
        reset_ok = procstat.reset_peak_rss()
        base = procstat.status_kb("VmRSS")

    if competitor == "pynetdicom":
        one_thread = pynetdicom_one(host, port)
        for _ in range(min(WARMUP // 4, n)):
            try:
                one_thread()
            except Exception:
                pass
        _handshake()
        baseline()
        run_threads(one_thread, n, mode == "concurrent", cap, tally)
    else:

        async def main() -> None:
            if mode == "sweep":
                await warm_asyncio(asyncio_one("asyncecho", host, spec["live_port"]), 5, cap)
                sweep_api()  # imported before the clock starts
                import anyio  # noqa: F401

                _handshake()
                baseline()
                await run_sweep(spec, tally)
                return
            one = asyncio_one(competitor, host, port)
            await warm_asyncio(one, min(WARMUP, n), cap)
            _handshake()
            baseline()
            await run_asyncio(one, n, mode == "concurrent", cap, tally)

        run_on(loop, main())
    return summary(tally, base, reset_ok)


def main() -> None:
    spec = json.loads(sys.argv[1])
    procstat.raise_fd_limit()
    try:
        result = measure(spec)
    except Exception as exc:
        result = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()
    # pynetdicom may leave association threads behind: do not wait for them.
    os._exit(0)


if __name__ == "__main__":
    main()
