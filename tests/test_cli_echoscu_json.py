"""`asyncecho echoscu --json`, run for real against real peers and real
failures: one JSON object per association on stdout with the sweep record's
fields (`SweepRecord.as_dict()`) and `tls_version`, nothing else on stdout,
the log lines on stderr and the exit status as without `--json`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

import certs as pki
import peers
from asyncecho import SweepRecord, Target
from certs import Certs
from status_scp import status_scp

RUN_TIMEOUT = 30.0
#: the sweep's record columns, then what the record has no field for
FIELDS = [
    *SweepRecord(
        Target("127.0.0.1", 104, "A", "B"), "success", datetime.now(timezone.utc)
    ).as_dict(),
    "tls_version",
]
PHASES = ["connect_ms", "associate_ms", "echo_ms", "release_ms"]
STARTED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def run_echoscu(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "asyncecho", "echoscu", *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


def run_json(port: int, *args: str) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    """The one object on stdout (checked: one line, the record's fields in
    order), and the run."""
    proc = run_echoscu("127.0.0.1", str(port), "--json", *args)
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    record = json.loads(lines[0])
    assert list(record) == FIELDS
    assert record["host"] == "127.0.0.1"
    assert record["port"] == port
    assert STARTED.fullmatch(record["started"]), record["started"]
    assert record["ok"] is (record["outcome"] == "success")
    assert isinstance(record["total_ms"], float) and record["total_ms"] > 0
    return record, proc


def reached(record: dict[str, Any]) -> list[str]:
    """The phases with a time, each a number of milliseconds."""
    for phase in PHASES:
        assert record[phase] is None or isinstance(record[phase], float), record
    return [phase for phase in PHASES if record[phase] is not None]


@pytest.fixture(scope="module")
def storescp() -> Iterator[peers.Peer]:
    with peers.storescp() as peer:
        yield peer


# --- success ------------------------------------------------------------------------------


@pytest.mark.peer
def test_success(storescp: peers.Peer) -> None:
    record, proc = run_json(storescp.port, "-aet", "SCRIPT", "-aec", "STORESCP")
    assert proc.returncode == 0
    assert proc.stderr == ""
    assert record["called_aet"] == "STORESCP"
    assert record["calling_aet"] == "SCRIPT"
    assert (record["outcome"], record["status"], record["detail"]) == ("success", 0, "")
    assert reached(record) == PHASES
    assert record["peer_aet"] == "STORESCP"
    assert record["implementation_class_uid"].startswith("1.2.276.0.7230010.3")
    assert record["implementation_version_name"].startswith("OFFIS_DCMTK_")
    assert record["transfer_syntax"] == "1.2.840.10008.1.2.1"
    assert record["tls_version"] is None


@pytest.mark.peer
def test_requested_transfer_syntax(storescp: peers.Peer) -> None:
    record, proc = run_json(storescp.port, "-xi")
    assert proc.returncode == 0
    assert record["transfer_syntax"] == "1.2.840.10008.1.2"


@pytest.mark.peer
def test_repeat_is_one_object_for_the_association(storescp: peers.Peer) -> None:
    record, proc = run_json(storescp.port, "--repeat", "3")
    assert proc.returncode == 0
    assert record["outcome"] == "success"
    assert reached(record) == PHASES


@pytest.mark.peer
def test_abort_has_no_release(storescp: peers.Peer) -> None:
    record, proc = run_json(storescp.port, "--abort")
    assert proc.returncode == 0
    assert record["outcome"] == "success"
    assert reached(record) == ["connect_ms", "associate_ms", "echo_ms"]


@pytest.mark.peer
def test_verbose_log_goes_to_stderr(storescp: peers.Peer) -> None:
    record, proc = run_json(storescp.port, "-v")
    assert proc.returncode == 0
    assert record["ok"] is True
    assert "I: Association Accepted" in proc.stderr


# --- failures: the record says what happened; stderr and the exit status as without --json -----


def test_refused() -> None:
    port = peers.closed_port()
    record, proc = run_json(port)
    assert proc.returncode == 1
    assert (record["outcome"], record["status"]) == ("refused", None)
    assert record["detail"] == f"connection to 127.0.0.1:{port} refused"
    assert reached(record) == []
    assert proc.stderr.splitlines() == [
        "E: Association request failed: unable to connect to remote",
        "E: TCP Initialisation Error: Connection refused",
    ]


def test_quiet_keeps_the_record_and_nothing_else() -> None:
    record, proc = run_json(peers.closed_port(), "-q")
    assert proc.returncode == 1
    assert record["outcome"] == "refused"
    assert proc.stderr == ""


@pytest.mark.parametrize("repeat", ["1", "2"])
def test_no_answer(repeat: str) -> None:
    with peers.silent_listener() as port:
        record, proc = run_json(port, "-ta", "0.3", "--repeat", repeat)
    assert proc.returncode == 1
    assert record["outcome"] == "timeout-acse"
    assert record["detail"] == "association (ACSE) timed out after 0.3 s"
    # one echo: verify() keeps the phases a failure got through; with
    # --repeat the association was never established: the total only
    assert reached(record) == (["connect_ms"] if repeat == "1" else [])
    assert proc.stderr.startswith("E: ACSE timeout reached")


@pytest.mark.peer
@pytest.mark.parametrize("repeat", ["1", "2"])
def test_rejected(repeat: str) -> None:
    with peers.dcmqrscp("QRSCP") as peer:
        record, proc = run_json(peer.port, "-aec", "NOT-QRSCP", "--repeat", repeat)
    assert proc.returncode == 1
    assert record["outcome"] == "rejected"
    assert record["called_aet"] == "NOT-QRSCP"
    assert record["detail"] == (
        "association rejected: Rejected Permanent, Service User: Called AE title not recognised"
    )
    assert "E: Reason: Called AE title not recognised" in proc.stderr


@pytest.mark.peer
@pytest.mark.parametrize("repeat", ["1", "2"])
def test_non_success_status(repeat: str) -> None:
    with status_scp(0x0122) as peer:
        record, proc = run_json(peer.port, "--repeat", repeat)
        plain = run_echoscu("127.0.0.1", str(peer.port), "--repeat", repeat)
    assert proc.returncode == plain.returncode == 1
    assert (record["outcome"], record["status"]) == ("status-0x0122", 0x0122)
    assert record["detail"] == "Refused: SOP Class Not Supported"
    assert reached(record) == PHASES
    assert record["implementation_version_name"].startswith("PYNETDICOM")
    # the same E: line as without --json, once per run
    assert proc.stderr == plain.stderr.splitlines()[0] + "\n"


def test_exit_status_as_without_json_on_a_usage_error() -> None:
    proc = run_echoscu("127.0.0.1", "0", "--json")
    assert proc.returncode == 2
    assert proc.stdout == ""


# --- TLS --------------------------------------------------------------------------------------


@pytest.mark.peer
def test_tls_version(tmp_path_factory: pytest.TempPathFactory) -> None:
    certs: Certs = pki.session_certs(tmp_path_factory)
    extra = ["+tls", *certs.server.args, "+cf", str(certs.ca), "-vc"]
    with peers.storescp(extra=extra) as peer:
        record, proc = run_json(peer.port, "--tls", "+cf", str(certs.ca))
    assert proc.returncode == 0, proc.stderr
    assert record["tls_version"] == "TLSv1.3"
