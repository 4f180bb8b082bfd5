"""`asyncecho echoscu` run for real, as a subprocess, against real peers:
stdout, stderr and exit status compared with the specification
(shared/seed/echoscu.md) and the reference capture of pynetdicom's echoscu
(shared/seed/reference/)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import peers
from asyncecho._version import __version__
from asyncecho.protocol import uids
from asyncecho.protocol.dimse import decode_command, encode_echo_rsp, status_name
from asyncecho.protocol.negotiation import AcceptorPolicy, build_ac
from asyncecho.protocol.pdu import (
    ABORT_SOURCE_USER,
    PDU,
    PDV,
    Abort,
    AssociateRQ,
    PDataTF,
    ReleaseRP,
    ReleaseRQ,
    decode_pdu,
)

pytestmark = pytest.mark.peer

CONSOLE_SCRIPT = Path(sys.executable).parent / "asyncecho"

VERBOSE_SUCCESS = [
    "I: Requesting Association",
    "I: Association Accepted",
    "I: Sending Echo Request: MsgID 1",
    "I: Received Echo Response (Status: Success)",
    "I: Releasing Association",
]
REFUSED = [
    "E: Association request failed: unable to connect to remote",
    "E: TCP Initialisation Error: Connection refused",
]
CALLED_AE_REJECTED = [
    "E: Association Rejected",
    "E: Result: Rejected Permanent, Source: Service User",
    "E: Reason: Called AE title not recognised",
]

#: generous bound on any single CLI run: a hung CLI fails the test, not the suite
RUN_TIMEOUT = 30.0


def run_echoscu(*args: str, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "asyncecho", "echoscu", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert "Traceback" not in result.stdout, result.stdout
    return result


def lines(text: str) -> list[str]:
    return text.splitlines()


# --- peers --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def storescp() -> Iterator[peers.Peer]:
    with peers.storescp() as peer:
        yield peer


@pytest.fixture(scope="module")
def dcmqrscp() -> Iterator[peers.Peer]:
    with peers.dcmqrscp("QRSCP") as peer:
        yield peer


@pytest.fixture(scope="module")
def no_verification_scp() -> Iterator[peers.Peer]:
    with peers.pynetdicom_scp("no-verification") as peer:
        yield peer


@pytest.fixture(scope="module")
def called_aet_scp() -> Iterator[peers.Peer]:
    with peers.pynetdicom_scp("require-called-aet", ae_title="PYNETDICOM") as peer:
        yield peer


@pytest.fixture(scope="module")
def silent_port() -> Iterator[int]:
    with peers.silent_listener() as port:
        yield port


async def _read_pdu(reader: asyncio.StreamReader) -> PDU:
    header = await reader.readexactly(6)
    body = await reader.readexactly(int.from_bytes(header[2:6], "big"))
    return decode_pdu(header + body)


class RawScp:
    """A hand-made SCP on its own asyncio loop in a thread (the CLI under test
    is a blocking subprocess). It accepts every association; the called AE
    title picks what it does with each C-ECHO-RQ:

    STATUS-xxxx  answer with status 0xxxxx
    ABORT        send an A-ABORT
    HANGUP       close the connection
    GARBAGE      send a PDU of an unknown type
    MUTE         never answer
    """

    def __init__(self) -> None:
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    def __enter__(self) -> RawScp:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the raw SCP did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(server.sockets[0].getsockname()[1])
        self._ready.set()
        await self._stop.wait()
        server.close()  # asyncio.run cancels the connections still open

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            rq = await _read_pdu(reader)
            assert isinstance(rq, AssociateRQ)
            behaviour = rq.called_ae
            writer.write(build_ac(rq, AcceptorPolicy(ae_title=rq.called_ae)).encode())
            while True:
                pdu = await _read_pdu(reader)
                if isinstance(pdu, ReleaseRQ):
                    writer.write(ReleaseRP().encode())
                    await writer.drain()
                    break
                if not isinstance(pdu, PDataTF):
                    break  # A-ABORT
                if behaviour == "MUTE":
                    continue
                if behaviour == "ABORT":
                    writer.write(Abort(ABORT_SOURCE_USER, 0).encode())
                    await writer.drain()
                    break
                if behaviour == "HANGUP":
                    break
                if behaviour == "GARBAGE":
                    writer.write(b"\x7f\x00\x00\x00\x00\x00")
                    await writer.drain()
                    await asyncio.sleep(1)
                    break
                status = int(behaviour.removeprefix("STATUS-"), 16)
                pdv = pdu.pdvs[0]
                command = decode_command(pdv.data)
                rsp = encode_echo_rsp(command.message_id or 0, status)
                writer.write(PDataTF((PDV(pdv.context_id, True, True, rsp),)).encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture(scope="module")
def raw_scp() -> Iterator[RawScp]:
    with RawScp() as scp:
        yield scp


# --- success against DCMTK storescp -----------------------------------------------------


def test_success_is_silent(storescp: peers.Peer) -> None:
    result = run_echoscu("127.0.0.1", str(storescp.port))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_console_script(storescp: peers.Peer) -> None:
    assert CONSOLE_SCRIPT.is_file(), f"{CONSOLE_SCRIPT} is not installed"
    result = subprocess.run(
        [str(CONSOLE_SCRIPT), "echoscu", "-v", "127.0.0.1", str(storescp.port)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert (result.returncode, result.stdout) == (0, "")
    assert lines(result.stderr) == VERBOSE_SUCCESS


def test_verbose(storescp: peers.Peer) -> None:
    result = run_echoscu("127.0.0.1", str(storescp.port), "-v")
    assert (result.returncode, result.stdout) == (0, "")
    assert lines(result.stderr) == VERBOSE_SUCCESS


def test_long_options(storescp: peers.Peer) -> None:
    result = run_echoscu(
        "127.0.0.1",
        str(storescp.port),
        "--verbose",
        "--calling-aet",
        "LONGSCU",
        "--called-aet",
        "LONGSCP",
        "--acse-timeout",
        "5",
        "--dimse-timeout",
        "5",
        "--network-timeout",
        "5",
        "--max-pdu",
        "16384",
        "--request-little",
    )
    assert (result.returncode, result.stdout) == (0, "")
    assert lines(result.stderr) == VERBOSE_SUCCESS


def test_abort(storescp: peers.Peer) -> None:
    result = run_echoscu("127.0.0.1", str(storescp.port), "-v", "--abort")
    assert (result.returncode, result.stdout) == (0, "")
    assert lines(result.stderr) == [*VERBOSE_SUCCESS[:-1], "I: Aborting Association"]


def test_repeat_uses_increasing_message_ids(storescp: peers.Peer) -> None:
    result = run_echoscu("127.0.0.1", str(storescp.port), "-v", "--repeat", "3")
    assert (result.returncode, result.stdout) == (0, "")
    assert lines(result.stderr) == [
        "I: Requesting Association",
        "I: Association Accepted",
        "I: Sending Echo Request: MsgID 1",
        "I: Received Echo Response (Status: Success)",
        "I: Sending Echo Request: MsgID 2",
        "I: Received Echo Response (Status: Success)",
        "I: Sending Echo Request: MsgID 3",
        "I: Received Echo Response (Status: Success)",
        "I: Releasing Association",
    ]


def _reference_debug_capture() -> list[str]:
    """The reference `-d` capture against storescp, with what must differ
    for asyncecho: our version line, our implementation UID/name, no pydicom
    line, and the specification's `(Status: Success)`."""
    # A copy of shared/seed/reference/ (the real pynetdicom 3.0.4 echoscu's output).
    path = Path(__file__).parent / "fixtures/reference/pynetdicom-echoscu-debug-vs-storescp.txt"
    expected = []
    for line in path.read_text().splitlines():
        if line.startswith("D: echoscu.py v"):
            line = f"D: asyncecho echoscu v{__version__}"
        elif line.startswith("D: Our Implementation Class UID:"):
            line = f"D: Our Implementation Class UID:      {uids.IMPLEMENTATION_CLASS_UID}"
        elif line.startswith("D: Our Implementation Version Name:"):
            line = f"D: Our Implementation Version Name:   {uids.IMPLEMENTATION_VERSION_NAME}"
        elif line.startswith("D: pydicom.read_dataset()"):
            continue
        elif line == "I: Received Echo Response (Status: 0x0000 - Success)":
            line = "I: Received Echo Response (Status: Success)"
        expected.append(line)
    return expected


def test_debug_matches_reference_capture(storescp: peers.Peer) -> None:
    result = run_echoscu("127.0.0.1", str(storescp.port), "-d")
    assert (result.returncode, result.stdout) == (0, "")
    got = lines(result.stderr)
    # spot checks first, for a readable failure
    assert got[:2] == [f"D: asyncecho echoscu v{__version__}", "D: "]
    assert "D: ======================= OUTGOING A-ASSOCIATE-RQ PDU ========================" in got
    assert "D: ======================= INCOMING A-ASSOCIATE-AC PDU ========================" in got
    assert "D:     Abstract Syntax: =Verification SOP Class" in got
    start = got.index("D:     Proposed Transfer Syntaxes:")
    assert got[start + 1 : start + 5] == [
        "D:       =Explicit VR Little Endian",
        "D:       =Implicit VR Little Endian",
        "D:       =Deflated Explicit VR Little Endian",
        "D:       =Explicit VR Big Endian",
    ]
    assert "D: Their Implementation Version Name: OFFIS_DCMTK_367" in got
    assert got == _reference_debug_capture()


def test_log_level_debug_equals_debug(storescp: peers.Peer) -> None:
    debug = run_echoscu("127.0.0.1", str(storescp.port), "-d")
    log_level = run_echoscu("127.0.0.1", str(storescp.port), "-ll", "debug")
    assert log_level.returncode == 0
    assert log_level.stderr == debug.stderr


@pytest.mark.parametrize(
    ("flag", "syntax"),
    [
        ("-xe", "=Explicit VR Little Endian"),
        ("-xb", "=Explicit VR Big Endian"),
        ("-xi", "=Implicit VR Little Endian"),
        ("--request-big", "=Explicit VR Big Endian"),
    ],
)
def test_single_transfer_syntax(storescp: peers.Peer, flag: str, syntax: str) -> None:
    result = run_echoscu("127.0.0.1", str(storescp.port), "-d", flag)
    assert (result.returncode, result.stdout) == (0, "")
    got = lines(result.stderr)
    start = got.index("D:     Proposed Transfer Syntax:")
    assert got[start + 1] == f"D:       {syntax}"
    assert not got[start + 2].startswith("D:       ")  # that one syntax only
    assert f"D:     Accepted Transfer Syntax: {syntax}" in got
    assert got[-1] == "I: Releasing Association"


def test_transfer_syntax_options_are_exclusive() -> None:
    result = run_echoscu("127.0.0.1", "104", "-xe", "-xb")
    assert (result.returncode, result.stdout) == (2, "")
    assert "not allowed with" in result.stderr


def test_ae_titles_in_debug_dump(storescp: peers.Peer) -> None:
    result = run_echoscu("127.0.0.1", str(storescp.port), "-d", "-aet", "MYSCU", "-aec", "THEIRSCP")
    assert result.returncode == 0
    got = lines(result.stderr)
    assert got.count("D: Calling Application Name:    MYSCU") == 2  # RQ and AC
    assert got.count("D: Called Application Name:     THEIRSCP") == 2


@pytest.mark.parametrize("pdu", ["0", "32768"])
def test_max_pdu_in_debug_dump(storescp: peers.Peer, pdu: str) -> None:
    result = run_echoscu("127.0.0.1", str(storescp.port), "-d", "-pdu", pdu)
    assert result.returncode == 0
    assert f"D: Our Max PDU Receive Size:    {pdu}" in lines(result.stderr)


def test_timeouts_accept_floats(storescp: peers.Peer) -> None:
    result = run_echoscu(
        "127.0.0.1", str(storescp.port), "-ta", "2.5", "-td", "0.75", "-tn", "3.25"
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_log_level_info_equals_verbose(storescp: peers.Peer) -> None:
    result = run_echoscu("127.0.0.1", str(storescp.port), "-ll", "info")
    assert (result.returncode, result.stdout) == (0, "")
    assert lines(result.stderr) == VERBOSE_SUCCESS


@pytest.mark.parametrize("level", ["critical", "error", "warning", "warn", "WARN"])
def test_quieter_log_levels_print_nothing_on_success(storescp: peers.Peer, level: str) -> None:
    result = run_echoscu("127.0.0.1", str(storescp.port), "-ll", level)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_log_level_error_shows_errors() -> None:
    result = run_echoscu("127.0.0.1", str(peers.closed_port()), "-ll", "error")
    assert (result.returncode, result.stdout) == (1, "")
    assert lines(result.stderr) == REFUSED


def test_quiet_prints_nothing_even_on_failure(dcmqrscp: peers.Peer) -> None:
    for args in (
        ("-q", "127.0.0.1", str(peers.closed_port())),
        ("--quiet", "127.0.0.1", str(dcmqrscp.port), "-aec", "WRONG"),
    ):
        result = run_echoscu(*args)
        assert (result.returncode, result.stdout, result.stderr) == (1, "", ""), args


# --- failures ------------------------------------------------------------------------


def test_dcmqrscp_accepts_its_ae_title(dcmqrscp: peers.Peer) -> None:
    result = run_echoscu("127.0.0.1", str(dcmqrscp.port), "-aec", "QRSCP")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_dcmqrscp_rejects_wrong_called_ae(dcmqrscp: peers.Peer) -> None:
    result = run_echoscu("127.0.0.1", str(dcmqrscp.port), "-aec", "WRONG")
    assert (result.returncode, result.stdout) == (1, "")
    assert lines(result.stderr) == CALLED_AE_REJECTED


def test_rejected_verbose(dcmqrscp: peers.Peer) -> None:
    result = run_echoscu("127.0.0.1", str(dcmqrscp.port), "-aec", "WRONG", "-v")
    assert result.returncode == 1
    assert lines(result.stderr) == ["I: Requesting Association", *CALLED_AE_REJECTED]


def test_pynetdicom_without_verification(no_verification_scp: peers.Peer) -> None:
    result = run_echoscu("127.0.0.1", str(no_verification_scp.port))
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        "E: No accepted presentation contexts\n",
    )


def test_pynetdicom_requiring_called_ae(called_aet_scp: peers.Peer) -> None:
    result = run_echoscu("127.0.0.1", str(called_aet_scp.port))
    assert (result.returncode, result.stdout) == (1, "")
    assert lines(result.stderr) == CALLED_AE_REJECTED
    ok = run_echoscu("127.0.0.1", str(called_aet_scp.port), "-aec", "PYNETDICOM")
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "", "")


def test_closed_port() -> None:
    result = run_echoscu("127.0.0.1", str(peers.closed_port()))
    assert (result.returncode, result.stdout) == (1, "")
    assert lines(result.stderr) == REFUSED


def test_unresolvable_host() -> None:
    result = run_echoscu("nonexistent.invalid", "104")
    assert (result.returncode, result.stdout) == (1, "")
    got = lines(result.stderr)
    assert len(got) == 2, got
    assert got[0] == REFUSED[0]
    assert got[1].startswith("E: TCP Initialisation Error: ")


@pytest.mark.parametrize(
    ("args", "words"),
    [(("-ta", "0.5"), "ACSE timeout"), (("-tn", "0.5"), "Network timeout")],
)
def test_silent_peer_times_out(silent_port: int, args: tuple[str, ...], words: str) -> None:
    start = time.monotonic()
    result = run_echoscu("127.0.0.1", str(silent_port), *args)
    elapsed = time.monotonic() - start
    assert (result.returncode, result.stdout) == (1, "")
    got = lines(result.stderr)
    assert got and all(line.startswith("E: ") for line in got), got
    assert words in got[0]
    assert elapsed < 10, elapsed


# --- a hand-made SCP: statuses, aborts, protocol errors --------------------------------


def test_non_success_status(raw_scp: RawScp) -> None:
    result = run_echoscu("127.0.0.1", str(raw_scp.port), "-aec", "STATUS-0110")
    assert (result.returncode, result.stdout) == (1, "")
    got = lines(result.stderr)
    assert len(got) == 1 and got[0].startswith("E: ") and "0x0110" in got[0], got
    assert got == [f"E: Received Echo Response (Status: 0x0110 - {status_name(0x0110)})"]


def test_non_success_status_verbose(raw_scp: RawScp) -> None:
    result = run_echoscu("127.0.0.1", str(raw_scp.port), "-aec", "STATUS-0110", "-v")
    assert (result.returncode, result.stdout) == (1, "")
    assert lines(result.stderr) == [
        "I: Requesting Association",
        "I: Association Accepted",
        "I: Sending Echo Request: MsgID 1",
        f"I: Received Echo Response (Status: 0x0110 - {status_name(0x0110)})",
        "I: Releasing Association",
    ]


def test_warning_status_is_a_failure(raw_scp: RawScp) -> None:
    result = run_echoscu("127.0.0.1", str(raw_scp.port), "-aec", "STATUS-B000", "--repeat", "2")
    assert (result.returncode, result.stdout) == (1, "")
    assert (
        lines(result.stderr)
        == [f"E: Received Echo Response (Status: 0xB000 - {status_name(0xB000)})"] * 2
    )


def test_raw_scp_success(raw_scp: RawScp) -> None:
    result = run_echoscu("127.0.0.1", str(raw_scp.port), "-aec", "STATUS-0000", "--repeat", "2")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.parametrize(
    ("behaviour", "first"),
    [
        ("ABORT", "E: Association Aborted"),
        ("HANGUP", "E: Association Aborted"),
        ("GARBAGE", "E: Protocol error: "),
    ],
)
def test_peer_breaks_off(raw_scp: RawScp, behaviour: str, first: str) -> None:
    result = run_echoscu("127.0.0.1", str(raw_scp.port), "-aec", behaviour, "-td", "10")
    assert (result.returncode, result.stdout) == (1, "")
    got = lines(result.stderr)
    assert len(got) == 2 and all(line.startswith("E: ") for line in got), got
    assert got[0].startswith(first), got


def test_dimse_timeout(raw_scp: RawScp) -> None:
    start = time.monotonic()
    result = run_echoscu("127.0.0.1", str(raw_scp.port), "-aec", "MUTE", "-td", "0.5")
    assert time.monotonic() - start < 10
    assert (result.returncode, result.stdout) == (1, "")
    got = lines(result.stderr)
    assert got and all(line.startswith("E: ") for line in got), got
    assert "DIMSE timeout" in got[0]


# --- usage ---------------------------------------------------------------------------


def test_version_alone() -> None:
    result = run_echoscu("--version")
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        f"asyncecho echoscu v{__version__}\n",
        "",
    )


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("-q", "-v", "127.0.0.1", "104"), id="quiet-and-verbose"),
        pytest.param(("-v", "-d", "127.0.0.1", "104"), id="verbose-and-debug"),
        pytest.param(("127.0.0.1",), id="missing-port"),
        pytest.param((), id="no-arguments"),
        pytest.param(("127.0.0.1", "http"), id="port-not-a-number"),
        pytest.param(("127.0.0.1", "0"), id="port-zero"),
        pytest.param(("127.0.0.1", "70000"), id="port-too-big"),
        pytest.param(("127.0.0.1", "104", "-ta", "-1"), id="negative-acse-timeout"),
        pytest.param(("127.0.0.1", "104", "-td", "-0.5"), id="negative-dimse-timeout"),
        pytest.param(("127.0.0.1", "104", "-tn", "-3"), id="negative-network-timeout"),
        pytest.param(("127.0.0.1", "104", "-ta", "soon"), id="timeout-not-a-number"),
        pytest.param(("127.0.0.1", "104", "-pdu", "-1"), id="negative-pdu"),
        pytest.param(("127.0.0.1", "104", "--repeat", "0"), id="repeat-zero"),
        pytest.param(("127.0.0.1", "104", "-aet", "A" * 17), id="calling-aet-too-long"),
        pytest.param(("127.0.0.1", "104", "-aec", ""), id="called-aet-empty"),
        pytest.param(("127.0.0.1", "104", "-ll", "verbose"), id="bad-log-level"),
        pytest.param(("127.0.0.1", "104", "--frobnicate"), id="unknown-option"),
        # issue #13: each of these was a traceback, or a run that failed late
        pytest.param(("127.0.0.1", "104", "-pdu", "1099511627776"), id="pdu-over-32-bits"),
        pytest.param(("127.0.0.1", "104", "-pdu", "4294967296"), id="pdu-2-to-the-32"),
        pytest.param(("127.0.0.1", "104", "-tn", "nan"), id="network-timeout-nan"),
        pytest.param(("127.0.0.1", "104", "-ta", "inf"), id="acse-timeout-inf"),
        pytest.param(("127.0.0.1", "104", "-td", "-inf"), id="dimse-timeout-minus-inf"),
        pytest.param(("127.0.0.1", "104", "-ta", "1e400"), id="acse-timeout-overflows"),
        pytest.param(("127.0.0.1", "104", "-tn", "1e300"), id="network-timeout-too-long"),
        pytest.param(("a" * 300, "104"), id="host-label-too-long-for-idna"),
        pytest.param(("a..example", "104"), id="host-empty-label"),
        pytest.param((".".join(["a" * 60] * 5), "104"), id="host-over-253-characters"),
        pytest.param(("", "104"), id="host-empty"),
    ],
)
def test_usage_errors(args: tuple[str, ...]) -> None:
    result = run_echoscu(*args)
    assert (result.returncode, result.stdout) == (2, "")
    got = lines(result.stderr)
    assert got[0] == "usage: echoscu [options] addr port"
    assert got[-1].startswith("echoscu: error: ")


def test_usage_error_names_the_bad_host_briefly() -> None:
    result = run_echoscu("a" * 300, "104")
    assert result.returncode == 2
    assert "label too long" in result.stderr
    assert len(result.stderr) < 400, result.stderr


def test_longest_timeouts_and_pdu_length_are_accepted(storescp: peers.Peer) -> None:
    year = str(365 * 24 * 3600)
    result = run_echoscu(
        "127.0.0.1",
        str(storescp.port),
        *("-ta", year, "-td", year, "-tn", year),
        *("-pdu", str(2**32 - 1)),
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_bracketed_ipv6_loopback_is_an_address() -> None:
    result = run_echoscu("[::1]", str(peers.closed_port()))
    assert (result.returncode, result.stdout) == (1, "")
    assert lines(result.stderr)[0] == REFUSED[0]


def test_verbose_refused_says_it_requested_the_association() -> None:
    result = run_echoscu("-v", "127.0.0.1", str(peers.closed_port()))
    assert (result.returncode, result.stdout) == (1, "")
    assert lines(result.stderr) == ["I: Requesting Association", *REFUSED]


@pytest.mark.parametrize("option", ["-ta", "-tn"])
def test_local_timeout_says_this_side_aborted(silent_port: int, option: str) -> None:
    result = run_echoscu("-v", "127.0.0.1", str(silent_port), option, "0.2")
    assert result.returncode == 1
    got = lines(result.stderr)
    assert got[0] == "I: Requesting Association"
    assert got[-1] == "E: Association Aborted by this side (A-ABORT sent, the connection closed)"
    assert "E: Association Aborted" not in got


def test_help_to_a_full_disk_is_one_error_line() -> None:
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "asyncecho", "--help"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=RUN_TIMEOUT,
        )
    assert result.returncode == 1
    assert lines(result.stderr) == ["E: No space left on device"]


def test_an_unforeseen_error_is_one_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from asyncecho import __main__
    from asyncecho.cli import echoscu as cli_echoscu

    def broken(argv: object) -> int:
        raise RuntimeError("something nobody foresaw")

    monkeypatch.setattr(cli_echoscu, "main", broken)
    assert __main__.main(["echoscu", "127.0.0.1", "104"]) == 1
    out, err = capsys.readouterr()
    assert (out, err) == ("", "E: unexpected error: RuntimeError: something nobody foresaw\n")


def test_help() -> None:
    result = run_echoscu("--help")
    assert (result.returncode, result.stderr) == (0, "")
    text = result.stdout
    assert text.startswith("usage: echoscu [options] addr port\n")
    headings = [
        "Parameters:",
        "General Options:",
        "Network Options:",
        "Transfer Syntax Options:",
        "Miscellaneous Options:",
    ]
    positions = [text.index(f"\n{heading}\n") for heading in headings]
    assert positions == sorted(positions)
    for option in (
        "--version",
        "-q, --quiet",
        "-v, --verbose",
        "-d, --debug",
        "-ll [l], --log-level [l]",
        "-aet [a]etitle, --calling-aet [a]etitle",
        "-aec [a]etitle, --called-aet [a]etitle",
        "-ta [s]econds, --acse-timeout [s]econds",
        "-td [s]econds, --dimse-timeout [s]econds",
        "-tn [s]econds, --network-timeout [s]econds",
        "-pdu [n]umber of bytes, --max-pdu [n]umber of bytes",
        "-xe, --request-little",
        "-xb, --request-big",
        "-xi, --request-implicit",
        "--repeat [n]umber",
        "--abort",
    ):
        assert option in text, option
    for default in ("ECHOSCU", "ANY-SCP", "30 s", "16382"):
        assert f"default: {default}" in text, default
    flat = " ".join(text.split())
    assert "exit status: 0 if every echo returned Success; 1 " in flat
    assert "2 for usage errors" in flat


def test_top_level_help() -> None:
    for command in ([sys.executable, "-m", "asyncecho", "--help"], [str(CONSOLE_SCRIPT), "-h"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT)
        assert (result.returncode, result.stderr) == (0, ""), command
        listed = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")]
        assert listed[:3] == ["echoscu", "echoscp", "demo"], result.stdout


def test_top_level_version_and_unknown_command() -> None:
    version = subprocess.run(
        [sys.executable, "-m", "asyncecho", "--version"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert (version.returncode, version.stdout, version.stderr) == (
        0,
        f"asyncecho {__version__}\n",
        "",
    )
    unknown = subprocess.run(
        [sys.executable, "-m", "asyncecho", "echo"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert (unknown.returncode, unknown.stdout) == (2, "")
    assert "unknown command 'echo'" in unknown.stderr
    bare = subprocess.run(
        [sys.executable, "-m", "asyncecho"], capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    assert (bare.returncode, bare.stdout) == (2, "")
    assert bare.stderr.startswith("usage: asyncecho COMMAND")


_OUT_OF_DESCRIPTORS = """
import errno, os, resource, socket, sys
from asyncecho.__main__ import main

# One echo first, so that every module it needs is imported (an import
# opens files too). Then every descriptor but the ones the event loop needs is taken: the
# connect's socket() fails with EMFILE, a limit of this machine.
assert main(["echoscu", "-v", "127.0.0.1", sys.argv[1]]) == 0
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 4, hard))
hold = []
try:
    while True:
        hold.append(socket.socket())
except OSError as exc:
    assert exc.errno == errno.EMFILE, exc
for sock in hold[:3]:  # the selector and the loop's self-pipe
    sock.close()
sys.exit(main(["echoscu", "-v", "127.0.0.1", sys.argv[1]]))
"""


def test_out_of_descriptors_is_said_to_be_this_machine(storescp: peers.Peer) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _OUT_OF_DESCRIPTORS, str(storescp.port)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert lines(done.stderr)[-2:] == [
        "E: Association request failed: unable to connect to remote",
        "E: TCP Initialisation Error: Too many open files (a limit of this machine)",
    ]
