"""The SCP on any anyio backend but asyncio's (trio): each connection a task
reading an anyio byte stream into its `AcceptorSession`, waiting at most
until `session.next_deadline()` and then calling `session.handle_timer`.
The listener survives running out of descriptors (`PatientListener`), and a
failed TLS handshake is reported, not a traceback.

`serve_anyio()` yields the bound address; what happens goes to the
`ScpSink` the API layer passes in. Imports anyio, `asyncecho.protocol` and
the rest of `asyncecho.transport` only.
"""

from __future__ import annotations

import ssl as _ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.abc import ByteStream, SocketAttribute, TaskGroup
from anyio.streams.tls import TLSListener

from asyncecho.protocol.acceptor import AssociationEnded, IdentityCheckNeeded, Stalled
from asyncecho.transport.channel import tune_socket
from asyncecho.transport.scp import (
    ACCEPT_PAUSE,
    OUT_OF_RESOURCES,
    SHUTDOWN_ABORT_WAIT,
    ScpSettings,
    ScpSink,
    open_session,
)

_NOT_READING = Stalled("not-reading")


class Listening:
    """A serving SCP: its bound address (connections are tasks: none kept)."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.connections: frozenset[Any] = frozenset()


@asynccontextmanager
async def serve_anyio(
    host: str, port: int, settings: ScpSettings, sink: ScpSink
) -> AsyncIterator[Listening]:
    """Listen on (host, port) while the block runs; on leaving it, abort
    the associations in flight and stop listening."""
    tcp = await anyio.create_tcp_listener(
        local_host=host, local_port=port, backlog=settings.backlog
    )
    listener: Any = PatientListener(tcp, sink)
    sockname = tcp.extra(SocketAttribute.local_address)
    if settings.ssl is not None:
        listener = _QuietTLSListener(
            listener,
            settings.ssl,
            standard_compatible=False,
            handshake_timeout=settings.acse_timeout,
        )
        listener.sink = sink

    async def serve_one(stream: ByteStream) -> None:
        try:
            await _serve_connection(stream, settings, sink)
        except Exception as bug:
            # (before the association's own guard is in place: the same rule)
            sink.internal_error(stream.extra(SocketAttribute.remote_address, None), bug)
            with anyio.CancelScope(shield=True):
                await anyio.aclose_forcefully(stream)

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve_one, tg)
        try:
            yield Listening((str(sockname[0]), int(sockname[1])))
        finally:
            tg.cancel_scope.cancel()
    with anyio.CancelScope(shield=True):
        await listener.aclose()


async def _serve_connection(stream: ByteStream, settings: ScpSettings, sink: ScpSink) -> None:
    peer = stream.extra(SocketAttribute.remote_address, None)
    if not settings.network_allowed(peer):
        sink.refused_network(peer)
        await anyio.aclose_forcefully(stream)
        return
    tune_socket(stream.extra(SocketAttribute.raw_socket, None))
    session = open_session(settings, sink, anyio.current_time())
    counted = not session.busy
    send_wait = settings.network_timeout
    try:
        while not session.should_close:
            deadline = session.next_deadline()
            data: bytes | None = None
            wait = None if deadline is None else max(0.0, deadline - anyio.current_time())
            with anyio.move_on_after(wait):
                try:
                    data = await stream.receive(65536)
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError, _ssl.SSLError):
                    data = b""
            now = anyio.current_time()
            if data is None:  # the deadline came
                happened = session.handle_timer(now)
                if session.should_close:
                    break  # ARTIM expired (AA-2): close, nothing more awaited
                if not happened:
                    continue  # (woken early: wait again)
            elif data:
                happened = session.receive_data(data, now)
            else:
                sink.record(peer, session.connection_lost(now))
                break
            sent = await _send_quietly(stream, session.data_to_send(), send_wait)
            for item in list(happened):
                if isinstance(item, IdentityCheckNeeded):
                    verdict = await sink.check_identity(item, peer)
                    response = verdict if isinstance(verdict, bytes) else None
                    happened += session.decide(verdict is not False, response, anyio.current_time())
                    sent = await _send_quietly(stream, session.data_to_send(), send_wait)
            sink.record(peer, happened)
            stalled = False
            for item in happened:
                if isinstance(item, AssociationEnded):
                    if counted:
                        counted = False
                        sink.free_slot()
                elif isinstance(item, Stalled):
                    stalled = True  # we aborted: close once the A-ABORT is sent
            if stalled:
                break
            if not sent:
                # The peer does not read what we send (and we read no
                # faster than we can send): give up on it, as when idle.
                sink.record(peer, [_NOT_READING])
                break
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True):
            session.abort(anyio.current_time())
            await _send_quietly(stream, session.data_to_send(), SHUTDOWN_ABORT_WAIT)
        raise
    except Exception as bug:
        # A bug met while serving this connection (whatever the peer sent,
        # the session reports it as events): it ends this association
        # only, never the task group and with it serve(). An A-ABORT, one
        # report, the connection closed and its slot freed (below).
        sink.internal_error(peer, bug)
        with anyio.CancelScope(shield=True):
            await _send_quietly(stream, session.fail(), SHUTDOWN_ABORT_WAIT)
    finally:
        if counted:
            sink.free_slot()
        with anyio.CancelScope(shield=True):
            await anyio.aclose_forcefully(stream)


async def _send_quietly(stream: ByteStream, data: bytes, timeout: float) -> bool:
    """Send `data`; False if the peer has not taken it within `timeout`
    seconds (it is not reading: waiting longer would hold the association,
    and the task, for ever). A peer that is gone is left for the next
    receive to find."""
    if not data:
        return True
    with anyio.move_on_after(timeout):
        try:
            await stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError, _ssl.SSLError):
            pass
        return True
    return False


class PatientListener:
    """An anyio listener whose `serve()` survives running out of descriptors:
    anyio's lets accept()'s EMFILE out, which ends the task group and with it
    serve(). It pauses accepting instead, reporting it, and accepts again
    after the pause."""

    def __init__(self, listener: Any, sink: ScpSink) -> None:
        self.listener = listener
        self._sink = sink

    @property
    def extra_attributes(self) -> Any:
        return self.listener.extra_attributes

    def extra(self, attribute: Any, *default: Any) -> Any:
        return self.listener.extra(attribute, *default)

    async def serve(self, handler: Any, task_group: TaskGroup) -> None:
        # (several addresses: anyio's MultiListener, one TCP listener each)
        listeners = getattr(self.listener, "listeners", (self.listener,))
        for listener in listeners[1:]:
            task_group.start_soon(self._serve, listener, handler, task_group)
        await self._serve(listeners[0], handler, task_group)

    async def _serve(self, listener: Any, handler: Any, task_group: TaskGroup) -> None:
        while True:
            try:
                stream = await listener.accept()
            except (OSError, anyio.BrokenResourceError) as exc:
                # (anyio's trio backend reports the OSError as its cause)
                cause = exc if isinstance(exc, OSError) else exc.__cause__
                if not isinstance(cause, OSError) or cause.errno not in OUT_OF_RESOURCES:
                    raise
                self._sink.accept_failed(cause, anyio.current_time(), ACCEPT_PAUSE)
                await anyio.sleep(ACCEPT_PAUSE)
                continue
            task_group.start_soon(handler, stream)

    async def aclose(self) -> None:
        await self.listener.aclose()


class _QuietTLSListener(TLSListener):
    """anyio's TLSListener logs a traceback for every failed handshake; a
    client with the wrong certificate is an event, not a crash."""

    sink: ScpSink

    async def handle_handshake_error(self, exc: BaseException, stream: Any) -> None:  # type: ignore[override]
        self.sink.tls_failed(stream.extra(SocketAttribute.remote_address, None), exc)
        await anyio.aclose_forcefully(stream)
