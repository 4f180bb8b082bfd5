"""`asyncecho echoscp` run for real, as a subprocess: DCMTK's and pynetdicom's
echoscu (and ours) against it, its policy options, its log, and its clean
shutdown on SIGINT/SIGTERM."""

from __future__ import annotations

import contextlib
import datetime
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

import peers
from asyncecho._version import __version__
from asyncecho.protocol.negotiation import build_rq
from asyncecho.protocol.pdu import A_ABORT, A_ASSOCIATE_AC

pytestmark = pytest.mark.peer

RUN_TIMEOUT = 30.0
#: how long a signalled echoscp may take to exit
STOP_TIMEOUT = 5.0


Scp = peers.CliScp


def echoscp(*args: str) -> contextlib.AbstractContextManager[Scp]:
    return peers.asyncecho_echoscp(*args)


def run_asyncecho(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "asyncecho", "echoscu", "127.0.0.1", str(port), *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def refused(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture(scope="module")
def verbose_scp() -> Iterator[Scp]:
    with echoscp("-v") as scp:
        yield scp


@pytest.fixture(scope="module")
def strict_scp() -> Iterator[Scp]:
    """Only called AE MYSCP, only calling AE GOODSCU, only Implicit VR LE."""
    with echoscp(
        "-aet", "MYSCP", "--require-called-aet", "--allowed-calling-aet", "GOODSCU", "-xi", "-v"
    ) as scp:
        yield scp


# --- interoperability ------------------------------------------------------------------


def test_dcmtk_echoscu(verbose_scp: Scp) -> None:
    result = peers.run_dcmtk_echoscu(verbose_scp.port, "-v")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Received Echo Response (Success)" in result.stdout + result.stderr


def test_pynetdicom_echoscu(verbose_scp: Scp) -> None:
    result = peers.run_pynetdicom_echoscu(verbose_scp.port, "-v")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Received Echo Response (Status: 0x0000 - Success)" in result.stderr


def test_pynetdicom_echoscu_syntaxes(verbose_scp: Scp) -> None:
    for flag in ("-xe", "-xb", "-xi"):
        result = peers.run_pynetdicom_echoscu(verbose_scp.port, flag)
        assert result.returncode == 0, (flag, result.stdout + result.stderr)


def test_asyncecho_echoscu_and_the_log(verbose_scp: Scp) -> None:
    result = run_asyncecho(verbose_scp.port, "-aet", "LOGCHECK", "--repeat", "2")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    log = verbose_scp.wait_for_log("Association Released")
    accepted = [
        line for line in log.splitlines() if line.startswith("I: Association Accepted: LOGCHECK")
    ]
    assert len(accepted) == 1, log
    peer = accepted[0].rsplit(" from ", 1)[1]
    assert accepted[0] == f"I: Association Accepted: LOGCHECK -> ANY-SCP from {peer}"
    assert peer.startswith("127.0.0.1:")
    log = verbose_scp.wait_for_log(f"I: Association Released: {peer}")
    ours = [line for line in log.splitlines() if line.endswith(peer) or f"from {peer}" in line]
    assert ours == [
        f"I: Association Accepted: LOGCHECK -> ANY-SCP from {peer}",
        f"I: Received Echo Request (MsgID 1) from {peer}",
        f"I: Received Echo Request (MsgID 2) from {peer}",
        f"I: Association Released: {peer}",
    ]
    assert log.startswith(f"I: Listening on 127.0.0.1:{verbose_scp.port} as ANY-SCP\n")


# --- policy ------------------------------------------------------------------------------


def test_require_called_aet_rejects_wrong_called_ae(strict_scp: Scp) -> None:
    result = peers.run_pynetdicom_echoscu(strict_scp.port, "-aet", "GOODSCU", "-aec", "WRONG")
    assert result.returncode != 0
    assert "Called AE title not recognised" in result.stderr, result.stderr
    ours = run_asyncecho(strict_scp.port, "-aet", "GOODSCU", "-aec", "WRONG")
    assert (ours.returncode, ours.stdout) == (1, "")
    assert ours.stderr.splitlines() == [
        "E: Association Rejected",
        "E: Result: Rejected Permanent, Source: Service User",
        "E: Reason: Called AE title not recognised",
    ]
    log = strict_scp.wait_for_log("GOODSCU -> WRONG")
    assert "W: Association Rejected: GOODSCU -> WRONG from 127.0.0.1:" in log
    assert "Called AE title not recognised" in log


def test_allowed_calling_aet(strict_scp: Scp) -> None:
    result = run_asyncecho(strict_scp.port, "-aet", "BADSCU", "-aec", "MYSCP")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [
        "E: Association Rejected",
        "E: Result: Rejected Permanent, Source: Service User",
        "E: Reason: Calling AE title not recognised",
    ]


def test_strict_scp_accepts_the_right_titles(strict_scp: Scp) -> None:
    dcmtk = peers.run_dcmtk_echoscu(strict_scp.port, "-aet", "GOODSCU", "-aec", "MYSCP")
    assert dcmtk.returncode == 0, dcmtk.stdout + dcmtk.stderr
    pynetdicom = peers.run_pynetdicom_echoscu(
        strict_scp.port, "-aet", "GOODSCU", "-aec", "MYSCP", "-xi"
    )
    assert pynetdicom.returncode == 0, pynetdicom.stderr
    ours = run_asyncecho(strict_scp.port, "-aet", "GOODSCU", "-aec", "MYSCP")
    assert (ours.returncode, ours.stdout, ours.stderr) == (0, "", "")


def test_implicit_only_refuses_big_endian(strict_scp: Scp) -> None:
    pynetdicom = peers.run_pynetdicom_echoscu(
        strict_scp.port, "-aet", "GOODSCU", "-aec", "MYSCP", "-xb"
    )
    assert "No accepted presentation contexts" in pynetdicom.stderr, pynetdicom.stderr
    ours = run_asyncecho(strict_scp.port, "-aet", "GOODSCU", "-aec", "MYSCP", "-xb")
    assert (ours.returncode, ours.stdout, ours.stderr) == (
        1,
        "",
        "E: No accepted presentation contexts\n",
    )
    debug = run_asyncecho(strict_scp.port, "-aet", "GOODSCU", "-aec", "MYSCP", "-xb", "-d")
    assert "D:   Context ID:        1 (Transfer Syntax(es) Not Supported)" in debug.stderr


def test_max_associations_reached_rejects_transient() -> None:
    from asyncecho.protocol.negotiation import build_rq

    rq = build_rq(calling_ae="HOLDER", called_ae="ANY-SCP").encode()
    with echoscp("--max-associations", "1", "-v") as scp, contextlib.ExitStack() as stack:
        # An established association holds the one slot. (The start-up
        # check's own connection may hold it a moment: an RJ then, again.)
        for _ in range(50):
            held = stack.enter_context(
                socket.create_connection(("127.0.0.1", scp.port), timeout=RUN_TIMEOUT)
            )
            held.sendall(rq)
            if held.recv(1) == b"\x02":  # A-ASSOCIATE-AC
                break
        else:
            pytest.fail("no association to hold the slot")
        ours = run_asyncecho(scp.port)
        assert (ours.returncode, ours.stdout) == (1, "")
        assert ours.stderr.splitlines() == [
            "E: Association Rejected",
            "E: Result: Rejected Transient, Source: Service Provider (Presentation)",
            "E: Reason: Local limit exceeded",
        ]
        dcmtk = peers.run_dcmtk_echoscu(scp.port)
        assert dcmtk.returncode != 0
        assert "Local Limit Exceeded" in dcmtk.stdout + dcmtk.stderr
        assert "Local limit exceeded" in scp.wait_for_log("Local limit exceeded")


# --- logging levels ------------------------------------------------------------------------


def stopped_log(scp: Scp) -> str:
    """Stop `scp` (SIGTERM) and wait for it: then its log is complete."""
    scp.process.send_signal(signal.SIGTERM)
    assert scp.process.wait(STOP_TIMEOUT) == 0
    return scp.log()


def rejected_by(scp: Scp) -> None:
    """Have our echoscu (REFUSED -> WRONG) rejected by an SCP that runs
    --require-called-aet."""
    result = run_asyncecho(scp.port, "-aec", "WRONG", "-aet", "REFUSED")
    assert result.returncode == 1
    assert "E: Reason: Called AE title not recognised" in result.stderr


def test_default_level_says_start_and_stop_and_nothing_per_association() -> None:
    with echoscp() as scp:
        assert run_asyncecho(scp.port).returncode == 0
        log = stopped_log(scp)
    assert log.splitlines() == [
        f"I: Listening on 127.0.0.1:{scp.port} as ANY-SCP",
        "I: SIGTERM: stopping",
        f"I: Stopped listening on 127.0.0.1:{scp.port} "
        "(associations accepted: 1, echoes answered: 1)",
    ]


def test_default_level_shows_a_refusal_as_a_warning_with_peer_and_reason() -> None:
    with echoscp("--require-called-aet") as scp:
        rejected_by(scp)
        log = stopped_log(scp).splitlines()
    assert len(log) == 4, log
    assert log[0] == f"I: Listening on 127.0.0.1:{scp.port} as ANY-SCP"
    assert re.fullmatch(
        r"W: Association Rejected: REFUSED -> WRONG from 127\.0\.0\.1:\d+: "
        r"Called AE title not recognised",
        log[1],
    ), log[1]
    assert log[2:] == [
        "I: SIGTERM: stopping",
        f"I: Stopped listening on 127.0.0.1:{scp.port} "
        "(associations accepted: 0, echoes answered: 0)",
    ]


def test_verbose_adds_each_association_to_the_default_lines() -> None:
    with echoscp("-v", "--require-called-aet") as scp:
        rejected_by(scp)
        assert run_asyncecho(scp.port, "-aet", "WELCOME").returncode == 0
        log = stopped_log(scp)
    lines = [re.sub(r"127\.0\.0\.1:\d+", "PEER", line) for line in log.splitlines()]
    assert lines == [
        "I: Listening on PEER as ANY-SCP",
        "W: Association Rejected: REFUSED -> WRONG from PEER: Called AE title not recognised",
        "I: Association Accepted: WELCOME -> ANY-SCP from PEER",
        "I: Received Echo Request (MsgID 1) from PEER",
        "I: Association Released: PEER",
        "I: SIGTERM: stopping",
        "I: Stopped listening on PEER (associations accepted: 1, echoes answered: 1)",
    ]


def test_quiet_prints_nothing_not_even_a_refusal() -> None:
    with echoscp("-q", "--require-called-aet") as scp:
        rejected_by(scp)
        assert run_asyncecho(scp.port).returncode == 0
        assert stopped_log(scp) == ""


def test_log_level_warning_leaves_out_start_and_stop() -> None:
    with echoscp("-ll", "warning", "--require-called-aet") as scp:
        rejected_by(scp)
        log = stopped_log(scp).splitlines()
    assert len(log) == 1 and log[0].startswith("W: Association Rejected: REFUSED"), log


def test_timestamps_begin_every_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # Local time 14 hours ahead of UTC: the stamps must still be UTC.
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    with echoscp("--timestamps", "--require-called-aet") as scp:
        rejected_by(scp)
        log = stopped_log(scp).splitlines()
    assert len(log) == 4, log
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "
    for line, rest in zip(
        log,
        ["I: Listening on ", "W: Association Rejected: ", "I: SIGTERM: stopping", "I: Stopped "],
        strict=True,
    ):
        assert re.match(stamp + re.escape(rest), line), line
    # In the order they were printed, and UTC (not the local time).
    times = [datetime.datetime.fromisoformat(line.split(" ")[0][:-1]) for line in log]
    assert times == sorted(times)
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    assert abs((now - times[0]).total_seconds()) < 3600


def test_short_timestamps_option() -> None:
    with echoscp("-ts") as scp:
        log = stopped_log(scp).splitlines()
    assert re.fullmatch(r"\S+Z I: Listening on 127\.0\.0\.1:\d+ as ANY-SCP", log[0]), log


def test_debug_dumps_the_incoming_request() -> None:
    with echoscp("-d") as scp:
        result = run_asyncecho(scp.port, "-aet", "DUMPME")
        assert result.returncode == 0
        log = scp.wait_for_log("END A-ASSOCIATE-RQ PDU").splitlines()
    assert "D: ======================= INCOMING A-ASSOCIATE-RQ PDU ========================" in log
    assert "D: Calling Application Name:    DUMPME" in log
    assert "D: Their Max PDU Receive Size:  16382" in log
    assert any(line.startswith("I: Association Accepted: DUMPME -> ANY-SCP") for line in log)


# --- shutdown --------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_cleanly(signum: signal.Signals) -> None:
    with echoscp("-v") as scp:
        assert run_asyncecho(scp.port).returncode == 0
        # an association in flight: accepted, then idle
        with socket.create_connection(("127.0.0.1", scp.port), timeout=5) as held:
            held.sendall(build_rq(calling_ae="HOLDER", called_ae="ANY-SCP").encode())
            assert held.recv(1)[0] == A_ASSOCIATE_AC
            held.recv(65536)  # the rest of the AC
            start = time.monotonic()
            scp.process.send_signal(signum)
            assert scp.process.wait(STOP_TIMEOUT) == 0
            assert time.monotonic() - start < STOP_TIMEOUT
            # the held association was aborted (A-ABORT) or at least closed
            rest = held.recv(65536)
            assert rest == b"" or rest[0] == A_ABORT, rest
        assert refused(scp.port)
        assert "Traceback" not in scp.log()


def test_port_in_use() -> None:
    with peers.silent_listener() as port:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "asyncecho",
                "echoscp",
                str(port),
                "--bind-address",
                "127.0.0.1",
            ],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith(f"E: Cannot listen on 127.0.0.1:{port}: "), result.stderr
    assert "Traceback" not in result.stderr


# --- usage -----------------------------------------------------------------------------------


def run_echoscp_cli(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "asyncecho", "echoscp", *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.mark.parametrize(
    "args",
    [
        pytest.param((), id="missing-port"),
        pytest.param(("70000",), id="bad-port"),
        pytest.param(("11112", "-q", "-v"), id="quiet-and-verbose"),
        pytest.param(("11112", "--allowed-network", "not-a-network"), id="bad-network"),
        pytest.param(("11112", "-ta", "-1"), id="negative-timeout"),
        pytest.param(("11112", "-aet", "X" * 17), id="ae-title-too-long"),
        pytest.param(("11112", "--max-associations", "-1"), id="negative-max-associations"),
        pytest.param(("11112", "--max-associations", "0"), id="zero-max-associations"),
        pytest.param(("11112", "-ta", "nan"), id="nan-timeout"),
        pytest.param(("11112", "-tn", "inf"), id="infinite-timeout"),
        pytest.param(("11112", "-pdu", "1"), id="pdu-below-minimum"),
        pytest.param(("11112", "-pdu", "4294967296"), id="pdu-over-32-bits"),
    ],
)
def test_usage_errors(args: tuple[str, ...]) -> None:
    result = run_echoscp_cli(*args)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("usage: echoscp [options] port\n")


def test_version_and_help() -> None:
    version = run_echoscp_cli("--version")
    assert (version.returncode, version.stdout) == (0, f"asyncecho echoscp v{__version__}\n")
    help_ = run_echoscp_cli("--help")
    assert help_.returncode == 0
    for text in (
        "Parameters:",
        "General Options:",
        "Network Options:",
        "Transfer Syntax Options:",
        "--require-called-aet",
        "--allowed-calling-aet",
        "--max-associations",
        "--bind-address",
        "exit status",
    ):
        assert text in help_.stdout, text
