"""The SCP on asyncio (also uvloop): each connection an `asyncio.Protocol`
driving its `AcceptorSession` in the transport's callbacks: no task per
connection, and its one timer on the server's timer wheel, armed at
`session.next_deadline()`. Out of descriptors, our accept loop pauses
instead of asyncio's retry storm (`AcceptLoop`; uvloop keeps libuv's).

`serve_asyncio()` yields the bound address and the open connections; what
happens goes to the `ScpSink` the API layer passes in. Imports asyncio,
`asyncecho.protocol` and the rest of `asyncecho.transport` only.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

from asyncecho.protocol.acceptor import (
    AcceptorSession,
    AssociationEnded,
    IdentityCheckNeeded,
    Stalled,
)
from asyncecho.transport.channel import tune_socket
from asyncecho.transport.scp import (
    ACCEPT_PAUSE,
    OUT_OF_RESOURCES,
    ScpSettings,
    ScpSink,
    open_session,
)
from asyncecho.transport.timer_wheel import TimerWheel

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)
# Connections taken per readiness of a listener, as asyncio's own loop does.
_ACCEPT_BATCH = 128


class Listening:
    """A serving SCP: its bound address, its connections and its tasks (the
    identity checks; the TLS handshakes of our accept loop)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, settings: ScpSettings, sink: ScpSink
    ) -> None:
        self.loop = loop
        self.settings = settings
        self.sink = sink
        self.wheel = TimerWheel(loop)  # every connection's timer
        self.address: tuple[str, int] = ("", 0)
        self.connections: set[ScpProtocol] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.accepting: AcceptLoop | None = None

    def start(self, coroutine: Any) -> None:
        task = self.loop.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def protocol(self) -> ScpProtocol:
        return ScpProtocol(self)


class ScpProtocol(asyncio.Protocol):
    """One connection: bytes in and out of its session, its timer armed."""

    __slots__ = (
        "_counted",
        "_listening",
        "_loop",
        "_peer",
        "_session",
        "_sock",
        "_timer_key",
        "_transport",
        "_wheel",
    )

    def __init__(self, listening: Listening) -> None:
        self._listening = listening
        self._loop = listening.loop
        self._wheel = listening.wheel
        self._transport: asyncio.Transport | None = None
        self._timer_key: int | None = None  # the wheel's tick we are due in
        self._counted = False  # holds an association slot
        self._peer: Any = None
        self._sock: Any = None
        self._session: AcceptorSession | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance.
        self._transport = cast(asyncio.Transport, transport)
        try:
            self._connection_made(self._transport)
        except Exception as bug:
            self._contain(bug)

    def _connection_made(self, transport: asyncio.Transport) -> None:
        listening = self._listening
        self._peer = transport.get_extra_info("peername")
        if not listening.settings.network_allowed(self._peer):
            listening.sink.refused_network(self._peer)
            transport.abort()
            return
        # (TCP_NODELAY: asyncio and uvloop set it on every TCP transport.)
        self._sock = transport.get_extra_info("socket") if _QUICKACK is not None else None
        listening.connections.add(self)
        self._session = session = open_session(
            listening.settings, listening.sink, self._loop.time()
        )
        self._counted = not session.busy
        self._arm()

    def _arm(self) -> None:
        session = self._session
        if session is None:
            return
        deadline = session.next_deadline()
        if deadline is None:
            return
        wheel, key = self._wheel, self._timer_key
        if key is not None:
            if key <= wheel.key(deadline):
                return  # fires early enough; it re-arms itself if it was too early
            wheel.cancel(self, key)
        self._timer_key = wheel.schedule(self, deadline)

    def on_timer(self) -> None:
        self._timer_key = None
        session, transport = self._session, self._transport
        if session is None or transport is None:
            return
        try:
            happened = session.handle_timer(self._loop.time())
            if session.should_close:
                # ARTIM expired (AA-2): nothing more is awaited, not even
                # our last bytes to a peer that does not read them.
                transport.abort()
                return
            if not happened or not self._after(happened):
                self._arm()
        except Exception as bug:
            self._contain(bug)

    def data_received(self, data: bytes) -> None:
        session = self._session
        if session is None:
            return
        try:
            if self._after(session.receive_data(data, self._loop.time())):
                return
            if session.partial_pdu and self._sock is not None:
                try:
                    self._sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
                except OSError:  # pragma: no cover
                    pass
            self._arm()
        except Exception as bug:
            self._contain(bug)

    def _after(self, happened: list[object]) -> bool:
        """Write, report and act on what the session did; True once closing."""
        session, transport = self._session, self._transport
        assert session is not None and transport is not None
        out = session.data_to_send()
        if out and not transport.is_closing():
            transport.write(out)
        if happened:
            listening = self._listening
            listening.sink.record(self._peer, happened)
            for item in happened:
                if isinstance(item, AssociationEnded):
                    self._uncount()
                elif isinstance(item, IdentityCheckNeeded):
                    listening.start(self._check_identity(item))
                elif isinstance(item, Stalled):
                    # We aborted. close() waits for the A-ABORT to be
                    # flushed, which a peer that does not read never lets
                    # happen: ARTIM (Sta13, started by AA-1, armed next)
                    # bounds that wait as it bounds the peer's close
                    # (PS3.8 9.1.4).
                    transport.close()
        if session.should_close:
            transport.close()
            return True
        return False

    async def _check_identity(self, item: IdentityCheckNeeded) -> None:
        verdict = await self._listening.sink.check_identity(item, self._peer)
        session = self._session
        if session is None or self._transport is None:
            return  # the connection closed meanwhile
        response = verdict if isinstance(verdict, bytes) else None
        try:
            self._after(session.decide(verdict is not False, response, self._loop.time()))
            self._arm()
        except Exception as bug:
            self._contain(bug)

    def _contain(self, bug: Exception) -> None:
        """A bug met while serving this connection (whatever the peer sent,
        the session reports it as events): it ends this association only.
        An A-ABORT, one log line, the connection closed and its slot freed;
        never the loop's "Fatal error" traceback, and the server goes on."""
        session, transport = self._session, self._transport
        self._session = None  # nothing more is fed to it, nor reported for it
        if self._timer_key is not None:
            self._wheel.cancel(self, self._timer_key)
            self._timer_key = None
        self._listening.sink.internal_error(self._peer, bug)
        if transport is not None and not transport.is_closing():
            if session is not None:
                out = session.fail()
                if out:
                    transport.write(out)
            transport.close()
        self._uncount()

    def pause_writing(self) -> None:
        # The peer does not read our responses as fast as it sends requests:
        # stop reading them until it does, so what we buffer for it stays
        # bounded (by the transport's high-water mark and one read).
        assert self._transport is not None
        self._transport.pause_reading()

    def resume_writing(self) -> None:
        transport = self._transport
        assert transport is not None
        if self._session is not None:
            self._session.touch(self._loop.time())  # the peer took our data: not idle
        transport.resume_reading()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer_key is not None:
            self._wheel.cancel(self, self._timer_key)
            self._timer_key = None
        listening, session = self._listening, self._session
        if session is not None:
            self._session = None
            happened = session.connection_lost(self._loop.time())
            if happened:
                listening.sink.record(self._peer, happened)
        self._uncount()
        listening.connections.discard(self)
        if listening.accepting is not None:
            listening.accepting.resume()  # a descriptor is free again

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            self._listening.sink.free_slot()

    def shutdown(self) -> None:
        """Abort the association (the server is stopping)."""
        session, transport = self._session, self._transport
        if session is not None and transport is not None and not transport.is_closing():
            session.abort(self._loop.time())
            out = session.data_to_send()
            if out:
                transport.write(out)
            transport.close()
            if transport.get_write_buffer_size():
                # The peer is not reading: it cannot take the A-ABORT, and a
                # shutdown does not wait for it.
                transport.abort()


@asynccontextmanager
async def serve_asyncio(
    host: str, port: int, settings: ScpSettings, sink: ScpSink
) -> AsyncIterator[Listening]:
    """Listen on (host, port) while the block runs; on leaving it, abort
    the associations in flight and stop listening."""
    loop = asyncio.get_running_loop()
    listening = Listening(loop, settings, sink)
    tls = settings.ssl
    if type(loop).__module__.startswith("uvloop"):
        # libuv accepts in C and, out of descriptors, neither spins nor
        # logs (it sheds the pending connections with its reserve
        # descriptor): its own accept loop is kept, and its speed.
        aserver = await loop.create_server(
            listening.protocol,
            host,
            port,
            backlog=settings.backlog,
            ssl=tls,
            ssl_handshake_timeout=settings.acse_timeout if tls else None,
        )
    else:
        # asyncio binds and listens (its address handling), but we accept:
        # its accept loop, out of descriptors, logs a traceback and
        # schedules a retry for every slot of the backlog, every time (tens
        # of thousands a second at full CPU). Ours pauses (`AcceptLoop`).
        aserver = await loop.create_server(
            listening.protocol, host, port, backlog=settings.backlog, start_serving=False
        )
        socks = [socket.fromfd(s.fileno(), s.family, s.type) for s in aserver.sockets]
        listening.accepting = AcceptLoop(listening, socks)
    sockname = aserver.sockets[0].getsockname()
    listening.address = (str(sockname[0]), int(sockname[1]))
    try:
        yield listening
    finally:
        if listening.accepting is not None:
            listening.accepting.stop()
        aserver.close()
        for task in list(listening.tasks):
            task.cancel()
        for protocol in list(listening.connections):
            protocol.shutdown()
        await aserver.wait_closed() if not listening.connections else None


class AcceptLoop:
    """Accepts on asyncio's listening sockets (reader callbacks); out of
    descriptors, it stops watching them for `ACCEPT_PAUSE` seconds, or
    until one of our connections closes, and reports it."""

    def __init__(self, listening: Listening, socks: list[socket.socket]) -> None:
        self._listening = listening
        self._loop = listening.loop
        self._socks = socks  # (duplicates of asyncio's, closed on stop)
        for sock in socks:
            sock.setblocking(False)
            sock.listen(listening.settings.backlog)  # (start_serving=False: not yet)
        self._paused: asyncio.TimerHandle | None = None
        self._stopped = False
        self._watch()

    def _watch(self) -> None:
        for sock in self._socks:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                conn, _addr = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in OUT_OF_RESOURCES:
                    self._listening.sink.accept_failed(exc, self._loop.time(), ACCEPT_PAUSE)
                    self._pause()
                    return
                raise
            conn.setblocking(False)
            tune_socket(conn)  # (asyncio sets TCP_NODELAY only on what it accepts itself)
            self._listening.start(self._connect(conn))

    def _pause(self) -> None:
        for sock in self._socks:
            self._loop.remove_reader(sock.fileno())
        self._paused = self._loop.call_later(ACCEPT_PAUSE, self.resume)

    def resume(self) -> None:
        """Accept again (a descriptor may be free: one of ours closed)."""
        if self._paused is None or self._stopped:
            return
        self._paused.cancel()
        self._paused = None
        self._watch()

    def stop(self) -> None:
        self._stopped = True
        if self._paused is not None:
            self._paused.cancel()
        else:
            for sock in self._socks:
                self._loop.remove_reader(sock.fileno())
        for sock in self._socks:
            sock.close()

    async def _connect(self, conn: socket.socket) -> None:
        listening = self._listening
        tls = listening.settings.ssl
        # (asked now: a failed handshake leaves no socket to ask)
        peer = _peer_of(conn) if tls is not None else None
        try:
            await self._loop.connect_accepted_socket(
                listening.protocol,
                conn,
                ssl=tls,
                ssl_handshake_timeout=listening.settings.acse_timeout if tls else None,
            )
        except (OSError, asyncio.TimeoutError) as exc:
            # A failed TLS handshake, or a peer gone before the transport
            # was made: an event, not a crash.
            if tls is not None:
                listening.sink.tls_failed(peer, exc)
            conn.close()


def _peer_of(sock: socket.socket) -> Any:
    try:
        return sock.getpeername()
    except OSError:
        return None
