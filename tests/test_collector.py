"""The collector tuning is opt-in: the library never changes the process's
collector settings, `tune_collector()` does, and asyncecho's own long-running
commands (sweep, echoscp, demo) call it once their start-up is done."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from asyncecho import collector
from asyncecho.cli import demo, sweep
from peers import closed_port, free_port, terminate, wait_listening

RUN_TIMEOUT = 60


def _python(source: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source), *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )


def test_the_library_leaves_the_collector_alone() -> None:
    done = _python(
        """
        import gc, anyio, asyncecho

        before = gc.get_threshold()

        async def main():
            async with asyncecho.serve("127.0.0.1", 0) as server:
                assert (await asyncecho.echo("127.0.0.1", server.port)).ok
                async with asyncecho.sweep([asyncecho.Target("127.0.0.1", server.port)]) as records:
                    async for record in records:
                        assert record.ok

        anyio.run(main)
        print(gc.get_threshold() == before, gc.get_freeze_count())
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "0"]


def test_tune_collector_freezes_and_raises_the_youngest_threshold() -> None:
    done = _python(
        """
        import gc, asyncecho

        older = gc.get_threshold()[1:]
        asyncecho.tune_collector()
        print(gc.get_threshold()[0], gc.get_threshold()[1:] == older, gc.get_freeze_count() > 0)
        asyncecho.tune_collector(5000)
        print(gc.get_threshold()[0])
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(collector.GEN0_THRESHOLD), "True", "True", "5000"]


@pytest.mark.parametrize(("value", "error"), [(0, ValueError), (True, TypeError), (1.5, TypeError)])
def test_tune_collector_checks_its_argument(value: object, error: type[Exception]) -> None:
    threshold = gc.get_threshold()
    with pytest.raises(error, match="gen0_threshold"):
        collector.tune_collector(value)  # type: ignore[arg-type]
    assert gc.get_threshold() == threshold


def _record_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(collector, "tune_collector", lambda: calls.append(1))
    return calls


def test_demo_tunes_the_collector(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _record_calls(monkeypatch)
    assert demo.main(["-n", "5"]) == 0
    assert calls == [1]


def test_sweep_tunes_the_collector(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = _record_calls(monkeypatch)
    targets = tmp_path / "targets.txt"
    targets.write_text(f"127.0.0.1:{closed_port()}\n")
    assert sweep.main([str(targets), "-q", "-o", str(tmp_path / "out.jsonl")]) == 1
    assert calls == [1]


def test_echoscp_tunes_the_collector() -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys
                from asyncecho import collector
                from asyncecho.__main__ import main

                collector.tune_collector = lambda: print("tuned", flush=True)
                sys.exit(main(["echoscp", "-q", "--bind-address", "127.0.0.1", sys.argv[1]]))
                """
            ),
            str(port),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        wait_listening(port, process)
        assert process.stdout is not None
        assert process.stdout.readline().strip() == b"tuned"
    finally:
        assert terminate(process) == 0
