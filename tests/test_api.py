"""The public API end to end: `echo()`, `verify()`, `associate()`, the
exception hierarchy, `EchoOptions`, argument checks and logging, against
asyncecho's own `serve()` in the same event loop (or a small raw peer).

Every async test runs under asyncio and trio (see conftest.py).
"""

from __future__ import annotations

import asyncio
import errno
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

import asyncecho
from asyncecho import (
    AcseTimeout,
    AssociationAborted,
    AssociationRejected,
    ConnectionFailed,
    ConnectionRefused,
    ConnectTimeout,
    DeadlineExceeded,
    DimseTimeout,
    EchoError,
    EchoOptions,
    EchoTimeout,
    HostUnreachable,
    LocalResourceError,
    NameResolutionFailed,
    NetworkTimeout,
    NoAcceptedContext,
    ProtocolError,
    TLSHandshakeFailed,
    associate,
    disable_logging,
    echo,
    enable_logging,
    serve,
    uids,
    verify,
)
from asyncecho.protocol.dimse import decode_command, encode_echo_rsp
from asyncecho.protocol.negotiation import AcceptorPolicy, build_ac
from asyncecho.protocol.pdu import PDV, AssociateRQ, PDataTF, ReleaseRP, ReleaseRQ, decode_pdu
from peers import closed_port, silent_listener

pytestmark = pytest.mark.anyio

LOCALHOST = "127.0.0.1"


# --- a small raw SCP ------------------------------------------------------------------


async def read_pdu(reader: BufferedByteReceiveStream) -> bytes:
    header = await reader.receive_exactly(6)
    return header + await reader.receive_exactly(int.from_bytes(header[2:6], "big"))


class RawScp:
    """Accepts any association with a hand-built A-ASSOCIATE-AC, records the
    message ID of each C-ECHO-RQ and answers it with `status` (or never, if
    `status` is None), and answers the A-RELEASE-RQ."""

    def __init__(self, status: int | None = 0x0000) -> None:
        self.status = status
        self.message_ids: list[int] = []
        self.done = anyio.Event()

    async def handle(self, stream: SocketStream) -> None:
        reader = BufferedByteReceiveStream(stream)
        try:
            while True:
                try:
                    pdu = decode_pdu(await read_pdu(reader))
                except (anyio.IncompleteRead, anyio.EndOfStream, anyio.BrokenResourceError):
                    return
                if isinstance(pdu, AssociateRQ):
                    await stream.send(build_ac(pdu, AcceptorPolicy()).encode())
                elif isinstance(pdu, PDataTF):
                    pdv = pdu.pdvs[0]
                    command = decode_command(pdv.data)
                    assert command.message_id is not None
                    self.message_ids.append(command.message_id)
                    if self.status is not None:
                        rsp = encode_echo_rsp(command.message_id, self.status)
                        await stream.send(PDataTF((PDV(pdv.context_id, True, True, rsp),)).encode())
                elif isinstance(pdu, ReleaseRQ):
                    await stream.send(ReleaseRP().encode())
        finally:
            await anyio.aclose_forcefully(stream)
            self.done.set()


@asynccontextmanager
async def running(peer: RawScp) -> AsyncIterator[int]:
    """Serve `peer` on an ephemeral loopback port while the block runs."""
    listener = await anyio.create_tcp_listener(local_host=LOCALHOST)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, peer.handle)
        yield int(listener.extra(SocketAttribute.local_port))
        tg.cancel_scope.cancel()


# --- echo(): the result --------------------------------------------------------------------


async def test_echo_result_fields() -> None:
    async with serve() as server:
        result = await echo(LOCALHOST, server.port)
    assert result.status == 0
    assert result.status_name == "Success"
    assert result.ok is True
    assert bool(result) is True
    assert result.outcome == "success"
    assert result.error is None
    assert result.host == LOCALHOST and result.port == server.port
    assert result.message_id == 1
    timings = result.timings
    for phase in ("connect", "associate", "echo", "release", "total"):
        value = getattr(timings, phase)
        assert value is not None and value > 0, phase
    assert timings.total is not None
    assert timings.total >= max(timings.connect or 0, timings.associate or 0, timings.echo or 0)
    assert result.peer_ae == "ANY-SCP"
    assert result.peer_implementation_class_uid == uids.IMPLEMENTATION_CLASS_UID
    assert result.peer_implementation_version_name == uids.IMPLEMENTATION_VERSION_NAME
    # Our SCP prefers Implicit VR LE, which echoscu's default list proposes too.
    assert result.transfer_syntax == uids.IMPLICIT_VR_LE
    assert result.peer_max_pdu == 16382
    assert result.tls_version is None


async def test_echo_result_reports_the_scp_ae_title_and_max_pdu() -> None:
    async with serve(ae_title="MYSCP", max_pdu=32768) as server:
        result = await echo(LOCALHOST, server.port, called_ae="MYSCP")
    assert result.ok
    assert result.peer_ae == "MYSCP"
    assert result.peer_max_pdu == 32768


async def test_non_success_status_is_a_result_not_an_exception() -> None:
    peer = RawScp(status=0xC000)
    async with running(peer) as port:
        result = await echo(LOCALHOST, port)
    assert result.status == 0xC000
    assert result.status_name == "Failed: Unable to Process"
    assert result.error is None
    assert not result.ok and not result
    assert result.outcome == "status-0xC000"


# --- verify(): never raises for the peer or the network ------------------------------------


async def test_verify_success_is_truthy() -> None:
    async with serve() as server:
        result = await verify(LOCALHOST, server.port)
    assert result and result.ok and result.error is None and result.outcome == "success"


async def test_verify_connection_refused() -> None:
    port = closed_port()
    result = await verify(LOCALHOST, port, connect_timeout=5)
    assert not result
    assert isinstance(result.error, ConnectionRefused)
    assert result.error.errno == errno.ECONNREFUSED
    assert result.outcome == "refused"
    assert result.status is None and result.status_name is None
    assert (result.host, result.port) == (LOCALHOST, port)


async def test_verify_unresolvable_host() -> None:
    result = await verify("no-such-host.invalid", 104, connect_timeout=5)
    assert not result
    assert isinstance(result.error, NameResolutionFailed)
    assert result.outcome == "dns"


async def test_verify_rejected() -> None:
    async with serve(require_called_ae=True) as server:
        result = await verify(LOCALHOST, server.port, called_ae="SOMEONE-ELSE")
    assert not result
    assert isinstance(result.error, AssociationRejected)
    assert result.outcome == "rejected"


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"acse_timeout": 0.2}, AcseTimeout),
        ({"acse_timeout": 5.0, "network_timeout": 0.2}, NetworkTimeout),
        ({"acse_timeout": 5.0, "deadline": 0.2}, DeadlineExceeded),
    ],
    ids=["acse", "network", "deadline"],
)
async def test_verify_timeouts_waiting_for_the_ac(
    settings: dict[str, Any], expected: type[EchoTimeout]
) -> None:
    with silent_listener() as port:
        with anyio.fail_after(5):
            result = await verify(LOCALHOST, port, **settings)
    assert not result
    assert type(result.error) is expected
    assert isinstance(result.error, TimeoutError)
    assert result.outcome == expected.outcome
    assert result.error.timeout == pytest.approx(0.2)


async def test_verify_dimse_timeout() -> None:
    peer = RawScp(status=None)  # accepts, never answers the C-ECHO-RQ
    async with running(peer) as port:
        with anyio.fail_after(5):
            result = await verify(LOCALHOST, port, dimse_timeout=0.2)
        assert isinstance(result.error, DimseTimeout)
        assert result.outcome == "timeout-dimse"
        with anyio.fail_after(5):
            await peer.done.wait()  # we aborted and closed


async def test_cancellation_propagates_through_verify() -> None:
    with silent_listener() as port:
        reached_end = False
        with anyio.move_on_after(0.2) as scope:
            await verify(LOCALHOST, port, acse_timeout=5.0)
            reached_end = True
        assert scope.cancelled_caught
        assert not reached_end


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_task_cancel_propagates_through_verify() -> None:
    with silent_listener() as port:
        task = asyncio.ensure_future(verify(LOCALHOST, port, acse_timeout=5.0))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


# --- associate(): several echoes on one association ----------------------------------------


async def test_associate_several_echoes_message_ids_seen_by_a_raw_peer() -> None:
    peer = RawScp()
    async with running(peer) as port:
        async with associate(LOCALHOST, port) as assoc:
            statuses = [await assoc.echo() for _ in range(5)]
            assert assoc.context_id == 1
            assert assoc.transfer_syntax == uids.IMPLICIT_VR_LE
            assert assoc.peer_max_pdu == 16382
        with anyio.fail_after(5):
            await peer.done.wait()
    assert statuses == [0] * 5
    assert peer.message_ids == [1, 2, 3, 4, 5]


async def test_associate_several_echoes_counted_by_serve() -> None:
    async with serve() as server:
        async with associate(LOCALHOST, server.port) as assoc:
            for _ in range(4):
                assert await assoc.echo() == 0
            assert server.active == 1
        assert server.accepted_total == 1
        assert server.echoes_total == 4
        assert assoc.release_time is not None and assoc.release_time > 0


async def test_echo_after_release_is_a_usage_error() -> None:
    async with serve() as server:
        async with associate(LOCALHOST, server.port) as assoc:
            pass
        with pytest.raises(RuntimeError):
            await assoc.echo()


# --- the exception hierarchy ---------------------------------------------------------------

EXCEPTION_OUTCOMES: dict[type[EchoError], str] = {
    EchoError: "error",
    ConnectionFailed: "unreachable",
    ConnectionRefused: "refused",
    HostUnreachable: "unreachable",
    NameResolutionFailed: "dns",
    TLSHandshakeFailed: "tls",
    LocalResourceError: "local-error",
    EchoTimeout: "timeout",
    ConnectTimeout: "timeout-connect",
    AcseTimeout: "timeout-acse",
    DimseTimeout: "timeout-dimse",
    NetworkTimeout: "timeout-network",
    DeadlineExceeded: "timeout-deadline",
    AssociationRejected: "rejected",
    AssociationAborted: "aborted",
    NoAcceptedContext: "no-context",
    ProtocolError: "protocol-error",
}


def test_every_exported_exception_is_under_echo_error() -> None:
    exported = [
        getattr(asyncecho, name)
        for name in asyncecho.__all__
        if isinstance(getattr(asyncecho, name), type)
        and issubclass(getattr(asyncecho, name), BaseException)
    ]
    assert set(exported) == set(EXCEPTION_OUTCOMES)
    for cls in exported:
        assert issubclass(cls, EchoError), cls
        assert issubclass(cls, Exception) and not issubclass(cls, asyncio.CancelledError)


@pytest.mark.parametrize("cls", list(EXCEPTION_OUTCOMES), ids=lambda c: c.__name__)
def test_exception_outcome_strings(cls: type[EchoError]) -> None:
    assert cls.outcome == EXCEPTION_OUTCOMES[cls]


def test_timeouts_are_builtin_timeout_errors() -> None:
    for cls in (EchoTimeout, ConnectTimeout, AcseTimeout, DimseTimeout, NetworkTimeout):
        assert issubclass(cls, TimeoutError)
    assert issubclass(DeadlineExceeded, TimeoutError)
    error = AcseTimeout(0.5)
    assert isinstance(error, TimeoutError) and isinstance(error, EchoError)
    assert "0.5 s" in str(error) and error.timeout == 0.5


def test_connection_failures_are_os_errors() -> None:
    for cls in (
        ConnectionFailed,
        ConnectionRefused,
        HostUnreachable,
        NameResolutionFailed,
        LocalResourceError,
    ):
        assert issubclass(cls, OSError)
    # A limit of our own machine is not the peer being unreachable: code
    # that catches ConnectionFailed to mark a peer as down must not see it.
    assert not issubclass(LocalResourceError, ConnectionFailed)
    cause = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    error = ConnectionRefused("refused", host="h", port=1, os_error=cause)
    assert isinstance(error, OSError) and error.errno == errno.ECONNREFUSED
    assert error.reason == "Connection refused"
    assert str(error) == "refused"


def test_non_connection_errors_are_not_os_or_timeout_errors() -> None:
    for cls in (AssociationRejected, AssociationAborted, NoAcceptedContext, ProtocolError):
        assert not issubclass(cls, OSError)
        assert not issubclass(cls, TimeoutError)


async def test_echo_raises_typed_errors() -> None:
    with pytest.raises(ConnectionRefused):
        await echo(LOCALHOST, closed_port())
    with silent_listener() as port, pytest.raises(AcseTimeout):
        await echo(LOCALHOST, port, acse_timeout=0.1)


# --- EchoOptions ---------------------------------------------------------------------------


async def test_echo_options_as_options_and_as_overrides() -> None:
    options = EchoOptions(calling_ae="GOODSCU", called_ae="CHECKED", acse_timeout=5.0)
    async with serve(
        ae_title="CHECKED", require_called_ae=True, allowed_calling_aes={"GOODSCU"}
    ) as server:
        result = await echo(LOCALHOST, server.port, options=options)
        assert result.ok and result.peer_ae == "CHECKED"

        # Keyword overrides apply on top of `options`...
        with pytest.raises(AssociationRejected) as info:
            await echo(LOCALHOST, server.port, options=options, calling_ae="BADSCU")
        assert info.value.reason == 3

        # ...and on their own, over the defaults.
        result = await echo(LOCALHOST, server.port, calling_ae="GOODSCU", called_ae="CHECKED")
        assert result.ok
        with pytest.raises(AssociationRejected) as info:
            await echo(LOCALHOST, server.port, calling_ae="GOODSCU")  # called AE: ANY-SCP
        assert info.value.reason == 7

        async with associate(LOCALHOST, server.port, options=options) as assoc:
            assert assoc.options == options
            assert await assoc.echo() == 0
    assert options.calling_ae == "GOODSCU"  # overrides never change the caller's object


async def test_echo_options_transfer_syntax_override() -> None:
    async with serve() as server:
        result = await echo(LOCALHOST, server.port, transfer_syntaxes=[uids.EXPLICIT_VR_BE])
    assert result.ok
    assert result.transfer_syntax == uids.EXPLICIT_VR_BE


async def test_unknown_override_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        await echo(LOCALHOST, closed_port(), no_such_option=1)  # type: ignore[call-arg]


# --- argument checks happen before any connection -------------------------------------------

BAD_AE_TITLES = ["", "    ", "A" * 17, "BACK\\SLASH", "TAB\tBED", "NON-ASCII-É"]


@pytest.mark.parametrize("title", BAD_AE_TITLES)
@pytest.mark.parametrize("which", ["calling_ae", "called_ae"])
async def test_invalid_ae_title_raises_value_error_before_connecting(
    which: str, title: str
) -> None:
    # Nothing listens on the port: a connection attempt would raise
    # ConnectionRefused, so ValueError proves nothing was attempted.
    port = closed_port()
    settings: dict[str, Any] = {which: title}
    with pytest.raises(ValueError):
        await echo(LOCALHOST, port, **settings)
    with pytest.raises(ValueError):
        await verify(LOCALHOST, port, **settings)  # our mistake, not the peer's
    with pytest.raises(ValueError):
        async with associate(LOCALHOST, port, options=EchoOptions(**settings)):
            pass  # pragma: no cover


async def test_invalid_ae_title_never_reaches_a_listener() -> None:
    accepted = 0

    async def count(stream: SocketStream) -> None:
        nonlocal accepted
        accepted += 1
        await stream.aclose()

    listener = await anyio.create_tcp_listener(local_host=LOCALHOST)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, count)
        port = int(listener.extra(SocketAttribute.local_port))
        with pytest.raises(ValueError):
            await echo(LOCALHOST, port, calling_ae="X" * 20)
        await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    assert accepted == 0


def test_invalid_server_ae_title_raises_value_error() -> None:
    with pytest.raises(ValueError):
        asyncecho.ServerOptions(ae_title="")
    with pytest.raises(ValueError):
        asyncecho.ServerOptions(ae_title="TOO-LONG-AE-TITLE-X")


# --- logging ----------------------------------------------------------------------------------


class CapturingLogger:
    """A structlog-style logger that records (event, fields)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, Any]]] = []

    def _record(self, level: str, event: str, fields: dict[str, Any]) -> None:
        self.records.append((level, event, fields))

    def info(self, event: str, **fields: Any) -> None:
        self._record("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._record("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._record("error", event, fields)

    def debug(self, event: str, **fields: Any) -> None:
        self._record("debug", event, fields)

    @property
    def events(self) -> list[str]:
        return [event for _, event, _ in self.records]


CLIENT_EVENTS = [
    "connect.start",
    "associate.request",
    "associate.accepted",
    "echo.request",
    "echo.response",
    "release.request",
    "release.confirmed",
]


async def test_enable_logging_sees_the_client_events_and_disable_stops_them() -> None:
    logger = CapturingLogger()
    async with serve() as server:
        enable_logging(logger)
        try:
            result = await echo(LOCALHOST, server.port)
        finally:
            disable_logging()
        assert result.ok
        client = [
            e for e in logger.events if not e.startswith("scp.") and not e.endswith(".pdu")
        ]
        assert client == CLIENT_EVENTS
        # The server logs through the same logger.
        assert "scp.associate.accepted" in logger.events
        assert "scp.echo" in logger.events
        fields = dict((event, f) for _, event, f in logger.records)
        assert fields["connect.start"]["peer"] == f"{LOCALHOST}:{server.port}"
        assert fields["echo.response"]["status"] == 0
        assert fields["echo.response"]["message_id"] == 1
        assert fields["associate.accepted"]["seconds"] > 0
        assoc_ids = {f["assoc"] for _, e, f in logger.records if e in CLIENT_EVENTS}
        assert len(assoc_ids) == 1

        count = len(logger.records)
        assert (await echo(LOCALHOST, server.port)).ok
        assert len(logger.records) == count


async def test_logging_reports_a_peer_that_is_down_as_a_warning() -> None:
    # A target being down is a warning for an operator, not an error of the
    # program (errors are for our own machine: see test_log_events.py).
    logger = CapturingLogger()
    enable_logging(logger)
    try:
        result = await verify(LOCALHOST, closed_port())
    finally:
        disable_logging()
    assert not result
    assert ("warning", "connect.failed") in [(lvl, e) for lvl, e, _ in logger.records]


# --- import cost --------------------------------------------------------------------------------

_NO_HEAVY_IMPORTS = textwrap.dedent(
    """
    import sys
    import asyncecho
    heavy = ("pydicom", "structlog")
    def loaded():
        return sorted(m for m in sys.modules if m.split(".")[0] in heavy)
    assert not loaded(), loaded()
    import anyio

    async def main():
        async with asyncecho.serve() as server:
            result = await asyncecho.echo("127.0.0.1", server.port)
            assert result.ok, result
            assert (await asyncecho.verify("127.0.0.1", server.port)).ok

    anyio.run(main, backend=sys.argv[1])
    assert not loaded(), loaded()
    print("clean")
    """
)


def test_import_does_not_load_pydicom_or_structlog() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import asyncecho, sys; "
            "assert 'pydicom' not in sys.modules, 'pydicom'; "
            "assert 'structlog' not in sys.modules, 'structlog'",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_full_echo_does_not_load_pydicom_or_structlog(backend: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _NO_HEAVY_IMPORTS, backend],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "clean"


def _nodelay(sock: Any) -> int:
    import socket

    return int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


async def test_tcp_nodelay_on_both_ends() -> None:
    """Every PDU goes out at once, never held back by Nagle waiting for the
    peer's ACK (which costs ~40 ms per round trip against a delayed ACK)."""
    from asyncecho.transport.anyio_channel import AnyioChannel
    from asyncecho.transport.asyncio_channel import AsyncioChannel

    async with serve(LOCALHOST, 0) as server, associate(LOCALHOST, server.port) as assoc:
        assert assoc._driver is not None
        channel = assoc._driver.channel
        if isinstance(channel, AsyncioChannel):
            client_sock = channel._transport.get_extra_info("socket")
            (scp,) = (scp for scp in server._closers if scp._peer == client_sock.getsockname())
            server_sock = scp._transport.get_extra_info("socket")
            assert _nodelay(server_sock) == 1
        else:
            assert isinstance(channel, AnyioChannel)
            client_sock = channel._stream.extra(SocketAttribute.raw_socket)
        assert _nodelay(client_sock) == 1
        assert await assoc.echo() == 0
