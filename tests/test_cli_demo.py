"""`asyncecho demo`, the README's main-job command, run for real."""

from __future__ import annotations

import re
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

RUN_TIMEOUT = 60.0

VERBOSE_ECHO = [
    "I: Requesting Association",
    "I: Association Accepted",
    "I: Sending Echo Request: MsgID 1",
    "I: Received Echo Response (Status: Success)",
    "I: Releasing Association",
]


def run_demo(*args: str, merged: bool = False) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "asyncecho", "demo", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merged else subprocess.PIPE,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert "Traceback" not in result.stdout, result.stdout
    assert "Traceback" not in (result.stderr or ""), result.stderr
    return result


def test_demo_200() -> None:
    result = run_demo("-n", "200")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.splitlines() == VERBOSE_ECHO
    out = result.stdout.splitlines()
    started = re.fullmatch(
        r"Started a Verification SCP \(asyncecho serve\) on 127\.0\.0\.1:(\d+)", out[0]
    )
    assert started, out[0]
    assert f"$ asyncecho echoscu -v 127.0.0.1 {started[1]}" in out
    assert any(line.startswith("Echo status Success: connect ") for line in out), out
    summary = [line for line in out if "succeeded" in line]
    assert len(summary) == 1, out
    assert re.fullmatch(
        r"200/200 succeeded, 0 failed, in [\d.]+ s: [\d,]+ associations/s", summary[0]
    ), summary
    assert any(line.startswith("latency p50 ") for line in out), out
    assert not any(line.startswith("failures:") for line in out), out


def test_demo_output_in_order_when_merged() -> None:
    """stdout and stderr interleave in reading order when both go to one pipe."""
    result = run_demo("-n", "3", merged=True)
    assert result.returncode == 0, result.stdout
    out = result.stdout.splitlines()
    command = next(i for i, line in enumerate(out) if line.startswith("$ asyncecho echoscu"))
    assert out[command + 1 : command + 6] == VERBOSE_ECHO
    assert out[-2].startswith("3/3 succeeded, 0 failed")


def test_demo_console_script() -> None:
    script = Path(sys.executable).parent / "asyncecho"
    result = subprocess.run(
        [str(script), "demo", "--count", "1"], capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1/1 succeeded, 0 failed" in result.stdout


@pytest.mark.parametrize("count", ["-1", "many", "1000001", "1" + "0" * 23])
def test_demo_usage_error(count: str) -> None:
    result = run_demo("-n", count)
    assert (result.returncode, result.stdout) == (2, "")
    assert "error: argument -n/--count" in result.stderr


def test_demo_help() -> None:
    result = run_demo("--help")
    assert (result.returncode, result.stderr) == (0, "")
    assert "--count" in result.stdout


# --- the open-file limit (issue #13: 257,434 tracebacks under `ulimit -n 1024`) --------

MASS_FAILURE = """\
import sys
from asyncecho.cli import demo as cli_demo
# as before the fix: every association at once, whatever the open-file limit
cli_demo.concurrency_for = lambda count: (count, "")
sys.exit(cli_demo.main(["-n", "600"]))
"""


def _limit_open_files(soft: int, hard: int | None) -> Callable[[], None]:
    def limit() -> None:
        _, current_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, current_hard if hard is None else hard))

    return limit


def _run_limited(argv: list[str], soft: int, hard: int | None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=RUN_TIMEOUT,
        preexec_fn=_limit_open_files(soft, hard),
    )
    assert "Traceback" not in result.stdout, result.stdout[-3000:]
    assert len(result.stdout.splitlines()) < 100, result.stdout[-3000:]
    return result


@pytest.mark.parametrize(
    ("soft", "hard"),
    [(1024, None), (1024, 1024), (256, 256)],
    ids=["soft-1024", "soft-and-hard-1024", "soft-and-hard-256"],
)
def test_demo_works_under_a_low_open_file_limit(soft: int, hard: int | None) -> None:
    result = _run_limited([sys.executable, "-m", "asyncecho", "demo"], soft, hard)
    assert result.returncode == 0, result.stdout[-3000:]
    out = result.stdout.splitlines()
    assert any(re.match(r"2000/2000 succeeded, 0 failed, in ", line) for line in out), out
    limited = [line for line in out if "at a time: the open-file limit" in line]
    if hard is None:
        assert limited == [], out  # the soft limit is raised, as sweep does
    else:
        assert len(limited) == 1, out
        assert f"(ulimit -n {soft}, hard {hard})" in limited[0]


def test_a_mass_failure_is_summed_up_not_printed_per_association() -> None:
    result = _run_limited([sys.executable, "-c", MASS_FAILURE], 256, 256)
    assert result.returncode == 1, result.stdout[-3000:]
    out = result.stdout.splitlines()
    assert any(line.startswith("failures: ") for line in out), out
