"""The client transport on asyncio's own machinery (also uvloop): one
`asyncio.Protocol` per connection, no task, no thread, timers as loop
callbacks. `anyio.connect_tcp` was measured at half this rate here (its
happy-eyeballs connect), so the asyncio hot path does not go through anyio."""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
from typing import Any, Protocol, cast

from .channel import ConnectOptions, ReceiveTimeout

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


def handshake_eof() -> ssl.SSLEOFError:
    """The error for a peer that closed the connection during the TLS
    handshake (as a server refusing our certificate, or the lack of one,
    may do without sending an alert)."""
    return ssl.SSLEOFError(
        ssl.SSL_ERROR_EOF, "the peer closed the connection during the TLS handshake"
    )


def tune_socket(sock: Any) -> None:
    """TCP_NODELAY: our PDUs go out whole, never held for Nagle. (asyncio's
    and uvloop's TCP transports set it themselves: this is for the others.)"""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):  # pragma: no cover - non-TCP socket
        pass


class Listener(Protocol):
    """A callback-driven user of an `AsyncioChannel` (see `listen`). An
    object rather than two bound methods: fewer objects per connection."""

    def on_data(self, data: bytes) -> None:
        """Every read, as it comes; b"" once the peer has closed."""

    def on_timer(self) -> None:
        """The time asked for with `call_at` has come (or an earlier one)."""


class _ClientProtocol(asyncio.Protocol):
    __slots__ = ("_chunks", "_closed", "_error", "_waiter", "listener", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        # Reads not yet taken by `receive` (made at the first: a listener never needs it).
        self._chunks: list[bytes] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._error: BaseException | None = None
        # Set: bytes go straight to it (b"" once closed), nothing is buffered.
        self.listener: Listener | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance.
        # (TCP_NODELAY: asyncio and uvloop set it on every TCP transport.)
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.listener is not None:
            self.listener.on_data(data)
            return
        if self._chunks is None:
            self._chunks = [data]
        else:
            self._chunks.append(data)
        self._wake()

    def eof_received(self) -> bool:
        was_closed, self._closed = self._closed, True
        if self.listener is not None and not was_closed:
            self.listener.on_data(b"")
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        was_closed, self._closed = self._closed, True
        self._error = exc
        if self.listener is not None and not was_closed:
            self.listener.on_data(b"")
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class AsyncioChannel:
    __slots__ = (
        "_connecting",
        "_deadline",
        "_expired",
        "_loop",
        "_protocol",
        "_timer",
        "_transport",
        "tls_version",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport = cast(asyncio.Transport, None)  # set by _attach
        self._protocol: _ClientProtocol = cast(_ClientProtocol, None)
        # One timer per connection, from the connect timeout to the end,
        # re-armed lazily: a wait sets the deadline it needs, and a timer
        # that fires before it re-arms itself. A timer per wait cost more.
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None  # of the waiting `receive`
        self._connecting: asyncio.Task[Any] | None = None
        self._expired = False
        self.tls_version: str | None = None

    def _attach(self, transport: asyncio.Transport, protocol: _ClientProtocol) -> None:
        self._transport = transport
        self._protocol = protocol
        # Read now: an SSL transport forgets it once closed.
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.tls_version = str(ssl_object.version())

    def _fire(self) -> None:
        self._timer = None
        task = self._connecting
        if task is not None:  # the connect timeout
            self._expired = True
            task.cancel()
            self._connecting = None
        elif self._protocol.listener is not None:  # (attached: a failed connect stops it)
            self._protocol.listener.on_timer()
        else:
            self._on_timer()

    def now(self) -> float:
        return self._loop.time()

    async def send(self, data: bytes) -> None:
        if data and not self._transport.is_closing():
            self._transport.write(data)

    async def receive(self, timeout: float | None) -> bytes:
        protocol = self._protocol
        if not protocol._chunks and not protocol._closed:
            waiter = self._loop.create_future()
            protocol._waiter = waiter
            if timeout is None:
                self._deadline = None
            else:
                deadline = self._deadline = self._loop.time() + max(timeout, 0.0)
                timer = self._timer
                if timer is None or timer.when() > deadline:
                    if timer is not None:
                        timer.cancel()
                    self._timer = self._loop.call_at(deadline, self._fire)
            try:
                await waiter
            finally:
                protocol._waiter = None
                self._deadline = None
        chunks = protocol._chunks
        if chunks:
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
            return data
        return b""

    def _on_timer(self) -> None:
        deadline = self._deadline
        waiter = self._protocol._waiter
        if deadline is None or waiter is None or waiter.done():
            return  # nobody is waiting now; the next receive arms it again
        if self._loop.time() >= deadline:
            waiter.set_exception(ReceiveTimeout())
        else:
            self._timer = self._loop.call_at(deadline, self._fire)

    def listen(self, listener: Listener) -> None:
        """From now on hand every read to `listener.on_data` (b"" once the
        peer has closed) instead of buffering it for `receive`, what was
        buffered first; and the timer of `call_at` to `listener.on_timer`."""
        protocol = self._protocol
        protocol.listener = listener
        if protocol._chunks:
            data = b"".join(protocol._chunks)
            protocol._chunks.clear()
            listener.on_data(data)
        if protocol._closed:
            listener.on_data(b"")

    def stop_listening(self) -> None:
        """The listener is done with this connection: drop it (and the
        reference cycle through it, which the GC would otherwise have to find)."""
        self._protocol.listener = None

    def write(self, data: bytes) -> None:
        if data and not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self._stop_timer()
        self._transport.close()

    def call_at(self, when: float) -> None:
        """The connection's one timer, for the listener: its `on_timer` runs
        at `when` or earlier (a timer already due sooner is kept: `on_timer`
        must check the time and ask again)."""
        timer = self._timer
        if timer is not None and not timer.cancelled() and timer.when() <= when:
            return
        self._stop_timer()
        self._timer = self._loop.call_at(when, self._fire)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def quickack(self) -> None:
        sock = self._transport.get_extra_info("socket") if _QUICKACK is not None else None
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            except OSError:  # pragma: no cover - socket already gone
                pass

    async def aclose(self) -> None:
        self._stop_timer()
        self._transport.close()

    @property
    def error(self) -> BaseException | None:
        """What broke the connection, if it did not simply close."""
        return self._protocol._error

    async def abort(self) -> None:
        self._stop_timer()
        self._transport.abort()

    @property
    def peer(self) -> tuple[str, int] | None:
        peer = self._transport.get_extra_info("peername")
        return (str(peer[0]), int(peer[1])) if peer else None


async def open_asyncio_channel(options: ConnectOptions) -> AsyncioChannel:
    """Connect (and TLS handshake) within `options.timeout`; raises OSError,
    ssl.SSLError or TimeoutError for the caller to map."""
    loop = asyncio.get_running_loop()
    kwargs: dict[str, Any] = {}
    if options.ssl is not None:
        kwargs["ssl"] = options.ssl
        kwargs["server_hostname"] = options.server_hostname
        if options.timeout is not None:
            kwargs["ssl_handshake_timeout"] = max(options.timeout, 0.001)
    if options.local_address is not None:
        kwargs["local_addr"] = options.local_address
    connect = loop.create_connection(_ClientProtocol, options.host, options.port, **kwargs)
    channel = AsyncioChannel(loop)
    try:
        if options.timeout is None:
            transport, protocol = await connect
        elif sys.version_info < (3, 11):  # pragma: no cover - no Task.uncancel()
            transport, protocol = await asyncio.wait_for(connect, options.timeout)
        else:
            # asyncio.timeout(), on the timer the connection then keeps
            # (see `_fire`): one timer handle per connection, not two.
            task = asyncio.current_task()
            assert task is not None
            cancelling = task.cancelling()
            channel._connecting = task
            channel._timer = loop.call_at(loop.time() + max(options.timeout, 0.0), channel._fire)
            try:
                transport, protocol = await connect
            except BaseException as exc:
                channel._stop_timer()
                if (
                    isinstance(exc, asyncio.CancelledError)
                    and channel._expired
                    and task.uncancel() <= cancelling  # ours, not also someone else's
                ):
                    raise TimeoutError from None
                raise
            finally:
                channel._connecting = None
    except ConnectionResetError:
        if options.ssl is None:
            raise
        # asyncio's "connection lost during handshake": the TCP connect had
        # succeeded, so this is the TLS peer hanging up on our handshake.
        raise handshake_eof() from None
    channel._attach(transport, protocol)
    return channel
