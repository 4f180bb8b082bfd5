"""`asyncecho check`, the monitoring plugin: every state (OK, WARNING,
CRITICAL, UNKNOWN) against real peers and real failures (a refused port, a
silent listener, a rejecting SCP, a non-success status, TLS), every
threshold range form, the perfdata format, and the usage errors that must be
UNKNOWN (3) rather than argparse's 2. The ranges and the perfdata fields are
also tested on their own (cli/ranges.py)."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

import asyncecho
import certs as pki
import peers
from asyncecho.cli import check
from asyncecho.cli.ranges import Range, RangeError, perfdata_label, perfdata_seconds
from certs import Certs
from status_scp import status_scp

RUN_TIMEOUT = 30.0
OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
LINE = re.compile(r"^DICOM (OK|WARNING|CRITICAL|UNKNOWN) - ([^|\n]+?)(?: \| ([^|\n]+))?$")
#: label=value;warn;crit;min, as the guidelines write it (unquoted labels here)
PERFDATA = re.compile(r"^([a-z]+)=(\d+\.\d+)s((?:;[^; ]*){0,4})$")


@dataclass
class Outcome:
    code: int
    state: str
    text: str
    perfdata: dict[str, list[str]]  # label -> [value, warn, crit, min]
    stderr: str


def run_check(*args: str) -> Outcome:
    proc = subprocess.run(
        [sys.executable, "-m", "asyncecho", "check", *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    match = LINE.match(lines[0])
    assert match, lines[0]
    state, text, perf = match.groups()
    assert proc.returncode == ("OK", "WARNING", "CRITICAL", "UNKNOWN").index(state), proc.stdout
    perfdata: dict[str, list[str]] = {}
    for field in (perf or "").split():
        fields = PERFDATA.match(field)
        assert fields, field
        label, value, rest = fields.groups()
        perfdata[label] = [value, *rest.split(";")[1:]]
    return Outcome(proc.returncode, state, text, perfdata, proc.stderr)


@pytest.fixture(scope="module")
def storescp() -> Iterator[peers.Peer]:
    with peers.storescp() as peer:
        yield peer


def target(peer: peers.Peer) -> list[str]:
    return ["-H", "127.0.0.1", "-p", str(peer.port)]


# --- the threshold ranges on their own ----------------------------------------------------

#: (range, values that alert, values that do not): the guidelines' examples,
#: their endpoints included.
RANGE_CASES = [
    ("10", [-0.1, 10.01, 11], [0, 5, 10]),
    ("10:", [-1, 0, 9.99], [10, 11, 1e9]),
    ("~:10", [10.01, 100], [-1e9, 0, 10]),
    ("10:20", [9.99, 20.01, 0], [10, 15, 20]),
    ("@10:20", [10, 15, 20], [9.99, 20.01, 0]),
    (":10", [-0.1, 10.5], [0, 10]),  # start left out: 0
    ("@~:0.5", [-5, 0, 0.5], [0.51]),
    ("0", [0.000001], [0]),
    ("~:", [], [-1e9, 0, 1e9]),
    ("1.5:2.25", [1.4, 2.26], [1.5, 2.25]),
    (".5:1.", [0.4, 1.01], [0.5, 1]),
]


@pytest.mark.parametrize(("text", "alerting", "quiet"), RANGE_CASES)
def test_range_alerts(text: str, alerting: list[float], quiet: list[float]) -> None:
    limit = Range.parse(text)
    assert limit.text == text
    assert [value for value in alerting if not limit.alerts(value)] == []
    assert [value for value in quiet if limit.alerts(value)] == []


def test_range_bounds() -> None:
    assert Range.parse("10") == Range("10", 0.0, 10.0, False)
    assert Range.parse("10:") == Range("10:", 10.0, math.inf, False)
    assert Range.parse("~:10") == Range("~:10", -math.inf, 10.0, False)
    assert Range.parse("@10:20") == Range("@10:20", 10.0, 20.0, True)
    assert Range.parse("-5:-1.5") == Range("-5:-1.5", -5.0, -1.5, False)


@pytest.mark.parametrize(
    "text",
    ["", "@", "10:5", "abc", "1e3", "~", "10:~", " 10", "10::20", "@@1", "1,5", "inf", "nan"],
)
def test_bad_ranges(text: str) -> None:
    with pytest.raises(RangeError, match="invalid threshold range"):
        Range.parse(text)


def test_perfdata_labels_quoted_only_when_needed() -> None:
    assert perfdata_label("time") == "time"
    assert perfdata_label("round trip") == "'round trip'"
    assert perfdata_label("a=b") == "'a=b'"
    assert perfdata_label("peer's") == "'peer''s'"


def test_perfdata_plain_decimals() -> None:
    assert perfdata_seconds("time", 0.0000001) == "time=0.000000s;;;0"
    assert perfdata_seconds("time", 12345.5) == "time=12345.500000s;;;0"
    warn, crit = Range.parse("~:1.5"), Range.parse("@2:3")
    assert perfdata_seconds("time", 0.25, warn=warn, crit=crit) == "time=0.250000s;~:1.5;@2:3;0"
    assert perfdata_seconds("x", 1, crit=crit, minimum=None) == "x=1.000000s;;@2:3"
    assert perfdata_seconds("x", 1, minimum=None) == "x=1.000000s"


# --- OK, WARNING, CRITICAL on the total time, every range form -----------------------------------

# Every case is decided whatever the time: it is more than 0 and, under the
# -t 10 default, far less than 100000 s.
THRESHOLD_CASES = [
    pytest.param([], OK, id="no-thresholds"),
    pytest.param(["-w", "100000"], OK, id="w-end-quiet"),
    pytest.param(["-w", "0"], WARNING, id="w-end-alerts"),
    pytest.param(["-w", "0:"], OK, id="w-start-quiet"),
    pytest.param(["-w", "100000:"], WARNING, id="w-start-alerts"),
    pytest.param(["-w", "~:100000"], OK, id="w-minus-infinity-quiet"),
    pytest.param(["-w", "~:0"], WARNING, id="w-minus-infinity-alerts"),
    pytest.param(["-w", "0:100000"], OK, id="w-start-end-quiet"),
    pytest.param(["-w", "100000:200000"], WARNING, id="w-start-end-alerts"),
    pytest.param(["-w", "@100000:200000"], OK, id="w-inside-quiet"),
    pytest.param(["-w", "@0:100000"], WARNING, id="w-inside-alerts"),
    pytest.param(["-c", "100000"], OK, id="c-end-quiet"),
    pytest.param(["-c", "0"], CRITICAL, id="c-end-alerts"),
    pytest.param(["-c", "100000:"], CRITICAL, id="c-start-alerts"),
    pytest.param(["-c", "~:0"], CRITICAL, id="c-minus-infinity-alerts"),
    pytest.param(["-c", "100000:200000"], CRITICAL, id="c-start-end-alerts"),
    pytest.param(["-c", "@0:100000"], CRITICAL, id="c-inside-alerts"),
    pytest.param(["-w", "0", "-c", "100000"], WARNING, id="w-alerts-c-quiet"),
    pytest.param(["-w", "0", "-c", "@0:"], CRITICAL, id="both-alert-critical-wins"),
    pytest.param(["-w", "100000", "-c", "@0:"], CRITICAL, id="c-alerts-w-quiet"),
]


@pytest.mark.peer
@pytest.mark.parametrize(("thresholds", "expected"), THRESHOLD_CASES)
def test_thresholds_on_the_total_time(
    storescp: peers.Peer, thresholds: list[str], expected: int
) -> None:
    out = run_check(*target(storescp), *thresholds)
    assert out.code == expected, out
    assert out.text.startswith(f"C-ECHO to ANY-SCP@127.0.0.1:{storescp.port}: Success in ")
    given = dict(zip(thresholds[::2], thresholds[1::2], strict=True))
    warn, crit = given.get("-w", ""), given.get("-c", "")
    # time=<s>s;<w>;<c>;0 with the ranges as given, then one field per phase
    assert list(out.perfdata) == ["time", "connect", "associate", "echo", "release"]
    assert out.perfdata["time"][1:] == [warn, crit, "0"]
    for phase in ("connect", "associate", "echo", "release"):
        assert out.perfdata[phase][1:] == ["", "", "0"]
        assert float(out.perfdata[phase][0]) <= float(out.perfdata["time"][0])
    if expected == OK:
        assert "range" not in out.text
    else:
        name = "critical" if expected == CRITICAL else "warning"
        limit = crit if expected == CRITICAL else warn
        where = "inside" if limit.startswith("@") else "outside"
        assert out.text.endswith(f", time {where} the {name} range {limit}"), out.text


@pytest.mark.peer
def test_verbose_names_the_peer(storescp: peers.Peer) -> None:
    out = run_check(*target(storescp), "-v", "-aet", "MONITOR", "-aec", "STORESCP")
    assert out.code == OK
    assert "C-ECHO to STORESCP@127.0.0.1" in out.text
    # storescp answers with the called AE title it was sent, and its implementation
    assert "(peer STORESCP, OFFIS_DCMTK_" in out.text
    assert out.text.endswith("Explicit VR Little Endian)")
    assert out.stderr == ""


@pytest.mark.peer
def test_very_verbose_logs_on_stderr_only(storescp: peers.Peer) -> None:
    out = run_check(*target(storescp), "-vv")
    assert out.code == OK
    assert "I: Association Accepted" in out.stderr


# --- CRITICAL: what the peer or the network did ---------------------------------------------


def test_refused_is_critical() -> None:
    port = peers.closed_port()
    out = run_check("-H", "127.0.0.1", "-p", str(port))
    assert out.code == CRITICAL
    assert out.text == f"cannot connect to 127.0.0.1:{port}: Connection refused"
    assert list(out.perfdata) == ["time"]


def test_no_answer_within_the_timeout_is_critical() -> None:
    with peers.silent_listener() as port:
        out = run_check("-H", "127.0.0.1", "-p", str(port), "-t", "0.3", "-w", "5", "-c", "9")
    assert out.code == CRITICAL
    # the TCP connect went through (the backlog); no A-ASSOCIATE answer came
    assert out.text == f"no answer from ANY-SCP@127.0.0.1:{port} within 0.3 s (association)"
    assert list(out.perfdata) == ["time", "connect"]
    assert out.perfdata["time"][1:] == ["5", "9", "0"]


@pytest.mark.peer
def test_rejected_association_is_critical_with_the_reason() -> None:
    with peers.dcmqrscp("QRSCP") as peer:
        out = run_check(*target(peer), "-aec", "NOT-QRSCP")
    assert out.code == CRITICAL
    assert out.text == (
        f"NOT-QRSCP@127.0.0.1:{peer.port} rejected the association: "
        "Rejected Permanent, Service User: Called AE title not recognised"
    )
    assert list(out.perfdata) == ["time", "connect"]


@pytest.mark.peer
def test_non_success_status_is_critical() -> None:
    with status_scp(0x0122) as peer:
        out = run_check(*target(peer), "-w", "100000")
    assert out.code == CRITICAL
    assert re.fullmatch(
        rf"C-ECHO to ANY-SCP@127\.0\.0\.1:{peer.port}: status 0x0122 "
        r"\(Refused: SOP Class Not Supported\) in \d+\.\d{3} s",
        out.text,
    ), out.text
    assert list(out.perfdata) == ["time", "connect", "associate", "echo", "release"]


# --- TLS, as echoscu takes it -----------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return pki.session_certs(tmp_path_factory)


@pytest.fixture(scope="module")
def storescp_tls(certs: Certs) -> Iterator[peers.Peer]:
    # -vc: a client certificate is verified if sent, not required
    extra = ["+tls", *certs.server.args, "+cf", str(certs.ca), "-vc"]
    with peers.storescp(extra=extra) as peer:
        yield peer


@pytest.mark.peer
def test_tls(storescp_tls: peers.Peer, certs: Certs) -> None:
    out = run_check(*target(storescp_tls), "--tls", "+cf", str(certs.ca), "-v")
    assert out.code == OK, out
    assert out.text.endswith(", TLSv1.3)"), out.text


@pytest.mark.peer
def test_tls_peer_not_trusted_is_critical(storescp_tls: peers.Peer, certs: Certs) -> None:
    out = run_check(*target(storescp_tls), "--tls", "+cf", str(certs.other_ca))
    assert out.code == CRITICAL
    assert out.text.startswith(f"TLS handshake with 127.0.0.1:{storescp_tls.port} failed: ")
    assert "certificate" in out.text


# --- UNKNOWN: the service could not be checked -------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            [], "the following arguments are required: -H/--hostname, -p/--port", id="none"
        ),
        pytest.param(["-H", "127.0.0.1"], "required: -p/--port", id="no-port"),
        pytest.param(["-p", "104"], "required: -H/--hostname", id="no-host"),
        pytest.param(["-H", "127.0.0.1", "-p", "0"], "port must be 1-65535", id="port-0"),
        pytest.param(["-H", "127.0.0.1", "-p", "x"], "invalid port", id="port-text"),
        pytest.param(["-H", "", "-p", "104"], "empty host", id="empty-host"),
        pytest.param(
            ["-H", "127.0.0.1", "-p", "104", "-w", "10:5"],
            "argument -w/--warning: invalid threshold range '10:5': start is greater than end",
            id="w-reversed",
        ),
        pytest.param(
            ["-H", "127.0.0.1", "-p", "104", "-c", "1e3"],
            "argument -c/--critical: invalid threshold range '1e3': '1e3' is not a plain decimal",
            id="c-exponent",
        ),
        pytest.param(["-H", "127.0.0.1", "-p", "104", "-t", "0"], "more than 0 seconds", id="t-0"),
        pytest.param(["-H", "127.0.0.1", "-p", "104", "-t", "soon"], "invalid number", id="t-text"),
        pytest.param(
            ["-H", "127.0.0.1", "-p", "104", "--nope"], "unrecognized arguments", id="unknown"
        ),
        pytest.param(
            ["-H", "127.0.0.1", "-p", "104", "-aec", "A" * 17], "-aec/--called-aet", id="long-aet"
        ),
        pytest.param(
            ["-H", "127.0.0.1", "-p", "104", "--no-hostname-check"], "needs TLS", id="tls"
        ),
        pytest.param(
            ["-H", "127.0.0.1", "-p", "104", "--tls", "+cf", "/nonexistent/ca.pem"],
            "cannot load the TLS files",
            id="tls-file",
        ),
    ],
)
def test_usage_errors_are_unknown(args: list[str], message: str) -> None:
    out = run_check(*args)
    assert out.code == UNKNOWN
    assert message in out.text, out.text
    assert out.perfdata == {}


def test_usage_error_shows_the_synopsis_on_stderr() -> None:
    out = run_check("-H", "127.0.0.1")
    assert out.text == "usage error: the following arguments are required: -p/--port"
    assert out.stderr.startswith("usage: asyncecho check -H HOST -p PORT")


@pytest.mark.parametrize("flag", ["-h", "--help", "-V", "--version"])
def test_help_and_version_exit_unknown(flag: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "asyncecho", "check", flag],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert proc.returncode == UNKNOWN
    expected = "usage: asyncecho check" if flag.startswith("-h") or flag == "--help" else "v"
    assert expected in proc.stdout
    if "V" in flag or flag == "--version":
        assert proc.stdout == f"asyncecho check v{asyncecho.__version__}\n"


def test_unresolvable_host_is_unknown() -> None:
    # .invalid never resolves (RFC 6761): this machine cannot check the peer
    out = run_check("-H", "dicom.invalid", "-p", "104", "-t", "5")
    assert out.code == UNKNOWN
    assert out.text.startswith("cannot resolve 'dicom.invalid'")


def test_internal_error_is_unknown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(asyncecho, "verify", broken)
    assert check.main(["-H", "127.0.0.1", "-p", "104"]) == UNKNOWN
    out, err = capsys.readouterr()
    assert out == "DICOM UNKNOWN - internal error: RuntimeError: a bug\n"
    assert "Traceback" not in err


def test_status_line_keeps_one_line_and_the_pipe_for_perfdata() -> None:
    line = check.status_line(CRITICAL, "peer said a|b\nand more", "time=1.000000s;;;0")
    assert line == "DICOM CRITICAL - peer said a/b and more | time=1.000000s;;;0"
