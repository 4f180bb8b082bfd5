"""Every example runs as its docstring says: each `python examples/...`
line there is run here (against our SCP on loopback where it names a peer)."""

from __future__ import annotations

import ast
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from peers import asyncecho_echoscp, closed_port

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
RUN_TIMEOUT = 60


def _usage_lines(path: Path) -> list[list[str]]:
    """The `python examples/NAME.py ...` command lines of the docstring
    (comments after `#` dropped)."""
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return [
        shlex.split(line.split("#", 1)[0])
        for line in doc.splitlines()
        if line.strip().startswith(f"python examples/{path.name}")
    ]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=ROOT
    )


def test_there_are_examples() -> None:
    assert EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_documents_how_to_run_it(path: Path) -> None:
    assert _usage_lines(path), f"{path.name}'s docstring has no 'python examples/...' line"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_runs_as_documented_without_arguments(path: Path) -> None:
    # The argument-free form of each example needs no peer: it starts its own.
    bare = [argv for argv in _usage_lines(path) if len(argv) == 2]
    assert bare, f"{path.name} documents no argument-free run"
    done = _run(*bare[0][1:])
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


def _health(*args: str) -> tuple[int, dict[str, object], str]:
    done = _run("examples/health_check.py", *args)
    assert "Traceback" not in done.stderr, done.stderr
    report = json.loads(done.stdout) if done.stdout else {}
    return done.returncode, report, done.stderr


def test_health_check_against_a_peer_with_port_and_ae_title() -> None:
    with asyncecho_echoscp() as scp:
        code, report, _ = _health("127.0.0.1", str(scp.port), "ANY-SCP")
        assert code == 0 and report["ok"] is True and report["outcome"] == "success"
        code, report, _ = _health("127.0.0.1", str(scp.port))
        assert code == 0 and report["target"] == f"ANY-SCP@127.0.0.1:{scp.port}"


def test_health_check_with_a_host_alone_uses_the_dicom_port() -> None:
    # Port 104 needs root to listen on: the answer is a report either way,
    # never a crash (it once was an IndexError).
    code, report, _ = _health("127.0.0.1")
    assert report["target"] == "ANY-SCP@127.0.0.1:104"
    assert code == (0 if report["ok"] else 1)


def test_health_check_reports_a_refused_port() -> None:
    code, report, _ = _health("127.0.0.1", str(closed_port()))
    assert code == 1
    assert report["ok"] is False and report["outcome"] == "refused"


@pytest.mark.parametrize("args", [("127.0.0.1", "x"), ("127.0.0.1", "0"), ("127.0.0.1", "70000")])
def test_health_check_bad_arguments_are_usage_errors(args: tuple[str, ...]) -> None:
    done = _run("examples/health_check.py", *args)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "error:" in done.stderr
