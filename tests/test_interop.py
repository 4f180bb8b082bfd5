"""Interoperability with DICOM software we did not write, in both directions.

1. asyncecho as SCU (`echo` / `verify` / `associate`) against DCMTK storescp
   and dcmqrscp, Orthanc, a pynetdicom AE and pynetdicom's echoscp app: every
   transfer syntax each peer accepts (and the typed failure for the ones it
   does not), the result's fields, several echoes on one association, abort,
   A-ASSOCIATE-RJ, no accepted context, and the network failures (refused,
   silent peer, unresolvable host).
2. DCMTK's and pynetdicom's echoscu against `asyncecho.serve()`.

Every async test runs under asyncio and trio (`anyio_backend` in conftest).
The third-party SCPs are started once per module and shared (`PeerPool`);
a peer whose log a test reads is started for that test alone. Timeouts are
small so that a hang fails in seconds, not minutes.
"""

from __future__ import annotations

import errno
import functools
import re
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
import pytest

import asyncecho
import peers
from asyncecho.protocol import uids

pytestmark = pytest.mark.peer

IMPLICIT = uids.IMPLICIT_VR_LE
EXPLICIT_LE = uids.EXPLICIT_VR_LE
DEFLATED = uids.DEFLATED_EXPLICIT_VR_LE
EXPLICIT_BE = uids.EXPLICIT_VR_BE
ALL_SYNTAXES = (IMPLICIT, EXPLICIT_LE, DEFLATED, EXPLICIT_BE)
SYNTAX_IDS = {
    IMPLICIT: "implicit-le",
    EXPLICIT_LE: "explicit-le",
    DEFLATED: "deflated-le",
    EXPLICIT_BE: "explicit-be",
}
ALL_FOUR = frozenset(ALL_SYNTAXES)
NOT_DEFLATED = frozenset({IMPLICIT, EXPLICIT_LE, EXPLICIT_BE})

DCMTK_ROOT = "1.2.276.0.7230010.3"
PYNETDICOM_ROOT = "1.2.826.0.1.3680043.9.3811"

#: every wait bounded, so that a peer that hangs fails the test in seconds
OPTIONS = asyncecho.EchoOptions(
    connect_timeout=5.0, acse_timeout=5.0, dimse_timeout=5.0, network_timeout=5.0
)
#: a timeout under test must fire within this much of its nominal value
SLACK = 1.0
SHORT = 0.3

StartPeer = Callable[[], AbstractContextManager[peers.Peer]]


# --- the third-party SCPs -------------------------------------------------------------


@dataclass(frozen=True)
class Scp:
    """A third-party Verification SCP and what it is known to do."""

    id: str
    start: StartPeer
    #: the called AE title it accepts
    called_ae: str
    #: the transfer syntaxes it accepts for Verification
    accepts: frozenset[str]
    implementation_root: str
    version_prefix: str
    max_pdu: int


def _dcmtk(name: str, start: StartPeer, called_ae: str, accepts: frozenset[str]) -> Scp:
    return Scp(name, start, called_ae, accepts, DCMTK_ROOT, "OFFIS_DCMTK", 16384)


def _pynetdicom(name: str, start: StartPeer, called_ae: str = "ANY-SCP") -> Scp:
    # pynetdicom accepts all four for Verification (peers.py proposes them).
    return Scp(name, start, called_ae, ALL_FOUR, PYNETDICOM_ROOT, "PYNETDICOM", 16382)


STORESCP = _dcmtk("dcmtk-storescp", peers.storescp, "ANY-SCP", NOT_DEFLATED)
STORESCP_NODELAY = _dcmtk(
    "dcmtk-storescp-nodelay",
    functools.partial(peers.storescp, nodelay=True),
    "ANY-SCP",
    NOT_DEFLATED,
)
# storescp accepts Deflated Explicit VR Little Endian only with +xd.
STORESCP_DEFLATE = _dcmtk(
    "dcmtk-storescp-xd", functools.partial(peers.storescp, extra=["+xd"]), "ANY-SCP", ALL_FOUR
)
DCMQRSCP = _dcmtk("dcmtk-dcmqrscp", peers.dcmqrscp, "QRSCP", NOT_DEFLATED)
# Orthanc is built on DCMTK (its implementation class UID says so) and, for
# Verification, accepts the three uncompressed syntaxes but not Deflated.
ORTHANC = _dcmtk("orthanc", peers.orthanc, "ORTHANC", NOT_DEFLATED)
PYNETDICOM_AE = _pynetdicom(
    "pynetdicom-ae", functools.partial(peers.pynetdicom_scp, "verification")
)
PYNETDICOM_AE_CALLED = _pynetdicom(
    "pynetdicom-ae-require-called-aet",
    functools.partial(peers.pynetdicom_scp, "require-called-aet"),
    "PYNETDICOM",
)
PYNETDICOM_ECHOSCP = _pynetdicom("pynetdicom-echoscp", peers.pynetdicom_echoscp)

ACCEPTING_SCPS = (
    STORESCP,
    STORESCP_NODELAY,
    STORESCP_DEFLATE,
    DCMQRSCP,
    ORTHANC,
    PYNETDICOM_AE,
    PYNETDICOM_AE_CALLED,
    PYNETDICOM_ECHOSCP,
)

#: SCPs that reject a called AE title they do not know, with the title to send
REJECTING_SCPS = (
    pytest.param(DCMQRSCP, "ANY-SCP", id="dcmtk-dcmqrscp"),
    pytest.param(ORTHANC, "ANY-SCP", id="orthanc"),
    pytest.param(PYNETDICOM_AE_CALLED, "WRONG-AE", id="pynetdicom-ae-require-called-aet"),
)


def _scp_params(scps: tuple[Scp, ...]) -> list[Any]:
    return [pytest.param(scp, id=scp.id) for scp in scps]


def _syntax_params(*, accepted: bool) -> list[Any]:
    return [
        pytest.param(scp, syntax, id=f"{scp.id}-{SYNTAX_IDS[syntax]}")
        for scp in ACCEPTING_SCPS
        for syntax in ALL_SYNTAXES
        if (syntax in scp.accepts) == accepted
    ]


class PeerPool:
    """Third-party SCPs started on first use and kept for the whole module."""

    def __init__(self, stack: ExitStack) -> None:
        self._stack = stack
        self._running: dict[str, peers.Peer] = {}

    def get(self, key: str, start: StartPeer) -> peers.Peer:
        peer = self._running.get(key)
        if peer is None:
            peer = self._running[key] = self._stack.enter_context(start())
        if peer.process.poll() is not None:
            raise RuntimeError(f"{key} exited with {peer.process.returncode}")
        return peer

    def scp(self, scp: Scp) -> peers.Peer:
        return self.get(scp.id, scp.start)


@pytest.fixture(scope="module")
def pool() -> Iterator[PeerPool]:
    with ExitStack() as stack:
        yield PeerPool(stack)


@pytest.fixture(scope="module")
def silent_port() -> Iterator[int]:
    with peers.silent_listener() as port:
        yield port


def stop_and_read_log(peer: peers.Peer) -> str:
    """Stop a peer (its context manager's exit then finds it stopped) and
    return everything it printed."""
    peer.process.terminate()
    peer.process.wait(5)
    assert peer.process.stdout is not None
    return peer.process.stdout.read().decode(errors="replace")


def echo_request_ids(log: str) -> list[int]:
    # DCMTK storescp -v and pynetdicom echoscp -v both log this line.
    return [int(n) for n in re.findall(r"Received Echo Request \(MsgID (\d+)\)", log)]


# --- asyncecho SCU -> their SCP: success ------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("scp", "syntax"), _syntax_params(accepted=True))
async def test_echo_with_each_accepted_transfer_syntax(
    pool: PeerPool, scp: Scp, syntax: str
) -> None:
    peer = pool.scp(scp)
    result = await asyncecho.echo(
        peer.host, peer.port, options=OPTIONS, called_ae=scp.called_ae, transfer_syntaxes=[syntax]
    )
    assert result.ok
    assert result.status == 0x0000
    assert result.transfer_syntax == syntax


@pytest.mark.anyio
@pytest.mark.parametrize(("scp", "syntax"), _syntax_params(accepted=False))
async def test_echo_with_a_refused_transfer_syntax(pool: PeerPool, scp: Scp, syntax: str) -> None:
    peer = pool.scp(scp)
    with pytest.raises(asyncecho.NoAcceptedContext) as info:
        await asyncecho.echo(
            peer.host,
            peer.port,
            options=OPTIONS,
            called_ae=scp.called_ae,
            transfer_syntaxes=[syntax],
        )
    assert info.value.results == {1: "Transfer Syntax(es) Not Supported"}
    assert info.value.outcome == "no-context"


@pytest.mark.anyio
@pytest.mark.parametrize("scp", _scp_params(ACCEPTING_SCPS))
@pytest.mark.parametrize("function", [asyncecho.echo, asyncecho.verify], ids=["echo", "verify"])
async def test_result_fields(pool: PeerPool, scp: Scp, function: Callable[..., Any]) -> None:
    peer = pool.scp(scp)
    result: asyncecho.EchoResult = await function(
        peer.host, peer.port, options=OPTIONS, called_ae=scp.called_ae
    )
    assert result.error is None
    assert result.ok and bool(result)
    assert result.status == 0
    assert result.status_name == "Success"
    assert result.outcome == "success"
    assert (result.host, result.port) == (peer.host, peer.port)
    assert result.message_id == 1
    assert result.peer_ae == scp.called_ae
    assert result.peer_implementation_class_uid is not None
    assert result.peer_implementation_class_uid.startswith(scp.implementation_root + ".")
    assert result.peer_implementation_version_name is not None
    assert result.peer_implementation_version_name.startswith(scp.version_prefix)
    assert result.peer_max_pdu == scp.max_pdu
    assert result.transfer_syntax in scp.accepts
    assert result.tls_version is None
    timings = result.timings
    phases = [timings.connect, timings.associate, timings.echo, timings.release]
    assert all(t is not None and t >= 0 for t in phases), timings
    assert timings.total is not None
    assert sum(t for t in phases if t is not None) <= timings.total + 1e-6, timings
    assert timings.total < 5.0, timings


@pytest.mark.anyio
@pytest.mark.parametrize("scp", _scp_params(ACCEPTING_SCPS))
async def test_several_echoes_on_one_association(pool: PeerPool, scp: Scp) -> None:
    peer = pool.scp(scp)
    async with asyncecho.associate(
        peer.host, peer.port, options=OPTIONS, called_ae=scp.called_ae
    ) as assoc:
        statuses = [await assoc.echo() for _ in range(5)]
        assert assoc.transfer_syntax in scp.accepts
        assert assoc.peer_max_pdu == scp.max_pdu
    assert statuses == [0] * 5
    assert assoc.release_time is not None  # released, not aborted


@pytest.mark.anyio
@pytest.mark.parametrize("scp", _scp_params(ACCEPTING_SCPS))
async def test_abort_then_the_peer_still_answers(pool: PeerPool, scp: Scp) -> None:
    peer = pool.scp(scp)
    async with asyncecho.associate(
        peer.host, peer.port, options=OPTIONS, called_ae=scp.called_ae
    ) as assoc:
        assert await assoc.echo() == 0
        await assoc.abort()
        with pytest.raises(RuntimeError, match="no established association"):
            await assoc.echo()
    assert assoc.release_time is None  # the exit did not try to release
    result = await asyncecho.echo(peer.host, peer.port, options=OPTIONS, called_ae=scp.called_ae)
    assert result.ok


VERBOSE_SCPS = [
    pytest.param(
        functools.partial(peers.storescp, extra=["-v"]),
        "Association Release",
        "Association Aborted",
        id="dcmtk-storescp",
    ),
    pytest.param(
        functools.partial(peers.pynetdicom_echoscp, extra=["-v"]),
        "Association Released",
        None,  # pynetdicom's echoscp logs nothing for an A-ABORT
        id="pynetdicom-echoscp",
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("start", "released", "aborted"), VERBOSE_SCPS)
async def test_peer_log_shows_message_ids_release_and_abort(
    start: StartPeer, released: str, aborted: str | None
) -> None:
    """The peer's own log: message IDs 1..N on one association, then a
    release; on a second association an abort (no release)."""
    with start() as peer:
        async with asyncecho.associate(peer.host, peer.port, options=OPTIONS) as assoc:
            for _ in range(4):
                assert await assoc.echo() == 0
        async with asyncecho.associate(peer.host, peer.port, options=OPTIONS) as assoc:
            assert await assoc.echo() == 0
            await assoc.abort()
        # storescp serves one association at a time: once a third one has
        # been answered, it has logged the abort of the second.
        assert (await asyncecho.echo(peer.host, peer.port, options=OPTIONS)).ok
        log = stop_and_read_log(peer)
    assert echo_request_ids(log) == [1, 2, 3, 4, 1, 1], log
    assert log.count(released) == 2, log
    if aborted is not None:
        assert log.count(aborted) == 1, log


# --- asyncecho SCU -> their SCP: refusals ---------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("scp", "called_ae"), REJECTING_SCPS)
async def test_called_ae_rejected(pool: PeerPool, scp: Scp, called_ae: str) -> None:
    peer = pool.scp(scp)
    with pytest.raises(asyncecho.AssociationRejected) as info:
        await asyncecho.echo(peer.host, peer.port, options=OPTIONS, called_ae=called_ae)
    error = info.value
    assert (error.result, error.source, error.reason) == (1, 1, 7)
    assert error.result_name == "Rejected Permanent"
    assert error.source_name == "Service User"
    assert error.reason_name == "Called AE title not recognised"
    assert error.outcome == "rejected"
    assert "Called AE title not recognised" in str(error)


@pytest.mark.anyio
@pytest.mark.parametrize(("scp", "called_ae"), REJECTING_SCPS)
async def test_called_ae_rejected_through_verify_and_associate(
    pool: PeerPool, scp: Scp, called_ae: str
) -> None:
    peer = pool.scp(scp)
    result = await asyncecho.verify(peer.host, peer.port, options=OPTIONS, called_ae=called_ae)
    assert not result
    assert isinstance(result.error, asyncecho.AssociationRejected)
    assert result.outcome == "rejected"
    assert result.status is None
    with pytest.raises(asyncecho.AssociationRejected):
        async with asyncecho.associate(peer.host, peer.port, options=OPTIONS, called_ae=called_ae):
            pytest.fail("associate() entered a rejected association")  # pragma: no cover


@pytest.mark.anyio
async def test_no_verification_context(pool: PeerPool) -> None:
    peer = pool.get(
        "pynetdicom-ae-no-verification", functools.partial(peers.pynetdicom_scp, "no-verification")
    )
    with pytest.raises(asyncecho.NoAcceptedContext) as info:
        await asyncecho.echo(peer.host, peer.port, options=OPTIONS)
    assert info.value.results == {1: "Abstract Syntax Not Supported"}
    result = await asyncecho.verify(peer.host, peer.port, options=OPTIONS)
    assert isinstance(result.error, asyncecho.NoAcceptedContext)
    assert result.outcome == "no-context"


# --- asyncecho SCU -> the network -----------------------------------------------------


@pytest.mark.anyio
async def test_connection_refused() -> None:
    port = peers.closed_port()
    with pytest.raises(asyncecho.ConnectionRefused) as info:
        await asyncecho.echo("127.0.0.1", port, options=OPTIONS)
    error = info.value
    assert isinstance(error, asyncecho.ConnectionFailed)
    assert isinstance(error, OSError)
    assert error.errno == errno.ECONNREFUSED
    assert (error.host, error.port) == ("127.0.0.1", port)
    assert error.outcome == "refused"
    result = await asyncecho.verify("127.0.0.1", port, options=OPTIONS)
    assert isinstance(result.error, asyncecho.ConnectionRefused)
    assert result.outcome == "refused"
    with pytest.raises(OSError) as caught:  # catchable as a plain OSError too
        async with asyncecho.associate("127.0.0.1", port, options=OPTIONS):
            pytest.fail("associate() entered on a closed port")  # pragma: no cover
    assert isinstance(caught.value, asyncecho.ConnectionRefused)
    assert caught.value.errno == errno.ECONNREFUSED


SILENT_CASES = [
    pytest.param({"acse_timeout": SHORT}, asyncecho.AcseTimeout, id="acse-timeout"),
    pytest.param(
        {"network_timeout": SHORT, "acse_timeout": 5.0},
        asyncecho.NetworkTimeout,
        id="network-timeout-under-acse-timeout",
    ),
    pytest.param(
        {"deadline": SHORT, "acse_timeout": 5.0}, asyncecho.DeadlineExceeded, id="deadline"
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("settings", "expected"), SILENT_CASES)
async def test_silent_peer_times_out(
    silent_port: int, settings: dict[str, Any], expected: type[asyncecho.EchoTimeout]
) -> None:
    started = time.monotonic()
    with pytest.raises(expected) as info:
        await asyncecho.echo("127.0.0.1", silent_port, options=OPTIONS, **settings)
    elapsed = time.monotonic() - started
    assert isinstance(info.value, TimeoutError)
    assert info.value.timeout == SHORT
    # A bound, not a benchmark: not (much) early, and not long after.
    assert SHORT - 0.05 <= elapsed < SHORT + SLACK, elapsed


@pytest.mark.anyio
@pytest.mark.parametrize(("settings", "expected"), SILENT_CASES)
async def test_silent_peer_times_out_through_verify_and_associate(
    silent_port: int, settings: dict[str, Any], expected: type[asyncecho.EchoTimeout]
) -> None:
    started = time.monotonic()
    result = await asyncecho.verify("127.0.0.1", silent_port, options=OPTIONS, **settings)
    assert isinstance(result.error, expected)
    assert result.outcome == expected.outcome
    with pytest.raises(expected):
        async with asyncecho.associate("127.0.0.1", silent_port, options=OPTIONS, **settings):
            pytest.fail("associate() entered with a silent peer")  # pragma: no cover
    assert time.monotonic() - started < 2 * (SHORT + SLACK)


@pytest.mark.anyio
async def test_unresolvable_host() -> None:
    host = "nonexistent.invalid"
    with pytest.raises(asyncecho.NameResolutionFailed) as info:
        await asyncecho.echo(host, 104, options=OPTIONS)
    assert isinstance(info.value, asyncecho.ConnectionFailed)
    assert isinstance(info.value, OSError)
    assert info.value.host == host
    assert info.value.outcome == "dns"
    result = await asyncecho.verify(host, 104, options=OPTIONS)
    assert isinstance(result.error, asyncecho.NameResolutionFailed)
    assert not result


# --- their SCU -> asyncecho.serve() -----------------------------------------------------


@dataclass(frozen=True)
class ScuCase:
    """One run of a third-party echoscu against a `serve()` with `settings`."""

    id: str
    args: tuple[str, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)
    ok: bool = True
    #: text the tool's output (stdout + stderr) must contain
    says: tuple[str, ...] = ()
    #: the tool prints nothing at all
    silent: bool = False
    accepted: int = 1
    echoes: int = 1


CALLED_AE_REQUIRED = {"require_called_ae": True, "ae_title": "ANY-SCP"}
IMPLICIT_ONLY = {"transfer_syntaxes": [IMPLICIT]}
EXPLICIT_BE_ONLY = {"transfer_syntaxes": [EXPLICIT_BE]}

# DCMTK echoscu has no option to pick one transfer syntax: it proposes the
# first -pts N of its list, Implicit VR LE first (-pts 1, the default, is
# Implicit only; -pts 3 adds Explicit LE and Explicit BE).
DCMTK_CASES = [
    ScuCase("default", silent=True),
    ScuCase(
        "verbose",
        ("-v",),
        says=("Association Accepted", "Received Echo Response (Success)", "Releasing Association"),
    ),
    ScuCase("repeat-3-on-one-association", ("--repeat", "3"), echoes=3),
    ScuCase("abort-instead-of-release", ("--abort", "-v"), says=("Aborting Association",)),
    ScuCase("38-syntaxes-in-128-contexts", ("-pts", "38", "-ppc", "128")),
    ScuCase("called-ae-required-and-right", ("-aec", "ANY-SCP"), CALLED_AE_REQUIRED),
    ScuCase(
        "called-ae-required-and-wrong",
        ("-aec", "WRONG"),
        CALLED_AE_REQUIRED,
        ok=False,
        says=("Association Rejected", "Called AE Title Not Recognized"),
        accepted=0,
        echoes=0,
    ),
    ScuCase("implicit-only-scp", (), IMPLICIT_ONLY),
    ScuCase("explicit-be-only-scp-pts-3", ("-pts", "3"), EXPLICIT_BE_ONLY),
    # The A-ASSOCIATE-AC (with every context refused) still counts as accepted.
    ScuCase(
        "explicit-be-only-scp-implicit-proposed",
        (),
        EXPLICIT_BE_ONLY,
        ok=False,
        says=("No Acceptable Presentation Contexts",),
        echoes=0,
    ),
]

PYNETDICOM_CASES = [
    ScuCase("default", silent=True),
    ScuCase("verbose", ("-v",), says=("Association Accepted", "Received Echo Response")),
    ScuCase(
        "implicit-le",
        ("-d", "-xi"),
        says=("Accepted Transfer Syntax: =Implicit VR Little Endian",),
    ),
    ScuCase(
        "explicit-le",
        ("-d", "-xe"),
        says=("Accepted Transfer Syntax: =Explicit VR Little Endian",),
    ),
    ScuCase(
        "explicit-be",
        ("-d", "-xb"),
        says=("Accepted Transfer Syntax: =Explicit VR Big Endian",),
    ),
    ScuCase("repeat-2-then-abort", ("--repeat", "2", "--abort"), echoes=2),
    ScuCase(
        "called-ae-required-and-wrong",
        ("-aec", "WRONG"),
        CALLED_AE_REQUIRED,
        ok=False,
        says=("Association Rejected", "Called AE title not recognised"),
        accepted=0,
        echoes=0,
    ),
    ScuCase("implicit-only-scp-implicit-proposed", ("-xi",), IMPLICIT_ONLY),
    ScuCase(
        "implicit-only-scp-explicit-be-proposed",
        ("-xb",),
        IMPLICIT_ONLY,
        ok=False,
        says=("No accepted presentation contexts",),
        echoes=0,
    ),
]

RunScu = Callable[..., subprocess.CompletedProcess[str]]


def _scu_params(tool: str, run: RunScu, cases: list[ScuCase]) -> list[Any]:
    return [pytest.param(run, case, id=f"{tool}-{case.id}") for case in cases]


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll `predicate` (a server counter settles when the socket closes)."""
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return True
        await anyio.sleep(0.01)
    return predicate()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("run", "case"),
    _scu_params("dcmtk-echoscu", peers.run_dcmtk_echoscu, DCMTK_CASES)
    + _scu_params("pynetdicom-echoscu", peers.run_pynetdicom_echoscu, PYNETDICOM_CASES),
)
async def test_their_echoscu_against_serve(run: RunScu, case: ScuCase) -> None:
    async with asyncecho.serve(**case.settings) as server:
        # A blocking subprocess.run would stall the loop serve() runs on.
        done = await anyio.to_thread.run_sync(functools.partial(run, server.port, *case.args))
        output = done.stdout + done.stderr
        if case.ok:
            assert done.returncode == 0, output
        else:
            assert done.returncode != 0, output
        for text in case.says:
            assert text in output
        if case.silent:
            assert output == ""
        assert server.accepted_total == case.accepted
        assert server.echoes_total == case.echoes
        assert await wait_until(lambda: server.active == 0), server.active
