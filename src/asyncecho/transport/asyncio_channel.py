"""The client transport on asyncio's own machinery (also uvloop): one
`asyncio.Protocol` per connection, no task, no thread, timers as loop
callbacks. `anyio.connect_tcp` was measured at half this rate here (its
happy-eyeballs connect), so the asyncio hot path does not go through anyio.

May import asyncio and the rest of `transport/` only.
"""

from __future__ import annotations

import asyncio
import socket
import ssl as _ssl
import sys
from typing import Any, Protocol, cast

from asyncecho.transport import timer_wheel
from asyncecho.transport.channel import handshake_eof

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


class Listener(Protocol):
    """A callback-driven user of an `AsyncioChannel` (see `listen`). An
    object rather than two bound methods: fewer objects per connection."""

    def on_data(self, data: bytes) -> None:
        """Every read, as it comes; b"" once the peer has closed."""

    def on_timer(self) -> None:
        """The time asked for with `call_at` has come (or an earlier one)."""


class AsyncioChannel(asyncio.Protocol):
    """One client connection: the asyncio protocol of its transport (one
    object per connection, not a protocol and a channel), handing every read
    and its one timer to a `Listener` (the requestor driver)."""

    __slots__ = (
        "_chunks",
        "_closed",
        "_connecting",
        "_error",
        "_expired",
        "_loop",
        "_timer_key",
        "_transport",
        "_wheel",
        "listener",
        "tls_version",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport = cast(asyncio.Transport, None)  # connection_made
        # Reads before the listener is attached (made at the first: almost
        # always none, the listener attaches as the connect completes).
        self._chunks: list[bytes] | None = None
        self._closed = False
        self._error: BaseException | None = None
        # Set: bytes go straight to it (b"" once closed), nothing is buffered.
        self.listener: Listener | None = None
        # One timer per connection, from the connect timeout to the end,
        # re-armed lazily: a wait sets the deadline it needs, and a timer
        # that fires before it re-arms itself. A timer per wait cost more.
        # It is a place on the loop's timer wheel (the tick it is due in),
        # not a loop timer of its own.
        self._wheel = timer_wheel.for_loop(loop)
        self._timer_key: int | None = None
        self._connecting: asyncio.Task[Any] | None = None
        self._expired = False
        self.tls_version: str | None = None

    # --- the asyncio protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance.
        # (TCP_NODELAY: asyncio and uvloop set it on every TCP transport.)
        self._transport = cast(asyncio.Transport, transport)
        # Read now: an SSL transport forgets it once closed.
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.tls_version = str(ssl_object.version())

    def data_received(self, data: bytes) -> None:
        if self.listener is not None:
            self.listener.on_data(data)
            return
        if self._chunks is None:
            self._chunks = [data]
        else:
            self._chunks.append(data)

    def eof_received(self) -> bool:
        was_closed, self._closed = self._closed, True
        if self.listener is not None and not was_closed:
            self.listener.on_data(b"")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        was_closed, self._closed = self._closed, True
        self._error = exc
        if self.listener is not None and not was_closed:
            self.listener.on_data(b"")

    # --- the channel -----------------------------------------------------------------

    def on_timer(self) -> None:
        """(The timer wheel's call.)"""
        self._timer_key = None
        task = self._connecting
        if task is not None:  # the connect timeout
            self._expired = True
            task.cancel()
            self._connecting = None
        elif self.listener is not None:
            self.listener.on_timer()

    def now(self) -> float:
        return self._loop.time()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def listen(self, listener: Listener) -> None:
        """From now on hand every read to `listener.on_data` (b"" once the
        peer has closed) instead of buffering it, what was buffered first;
        and the timer of `call_at` to `listener.on_timer`."""
        self.listener = listener
        if self._chunks:
            data = b"".join(self._chunks)
            self._chunks.clear()
            listener.on_data(data)
        if self._closed:
            listener.on_data(b"")

    def stop_listening(self) -> None:
        """The listener is done with this connection: drop it (and the
        reference cycle through it, which the GC would otherwise have to find)."""
        self.listener = None

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
        wheel, key = self._wheel, self._timer_key
        if key is not None:
            if key <= wheel.key(when):
                return
            wheel.cancel(self, key)
        self._timer_key = wheel.schedule(self, when)

    def _stop_timer(self) -> None:
        if self._timer_key is not None:
            self._wheel.cancel(self, self._timer_key)
            self._timer_key = None

    def quickack(self) -> None:
        sock = self._transport.get_extra_info("socket") if _QUICKACK is not None else None
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            except OSError:  # pragma: no cover - socket already gone
                pass

    @property
    def error(self) -> BaseException | None:
        """What broke the connection (e.g. a TLS alert), if it did not simply close."""
        return self._error

    @property
    def peer(self) -> tuple[str, int] | None:
        peer = self._transport.get_extra_info("peername")
        return (str(peer[0]), int(peer[1])) if peer else None


async def open_asyncio_channel(
    host: str,
    port: int,
    timeout: float | None,
    ssl: _ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    local_address: tuple[str, int] | None = None,
) -> AsyncioChannel:
    """Connect (and TLS handshake) within `timeout`; raises OSError,
    ssl.SSLError or TimeoutError for the caller to map. The arguments are
    the fields of a `ConnectOptions` (`open_asyncio_channel(*options)`), so
    that the caller need not keep the tuple while the connect is in flight."""
    loop = asyncio.get_running_loop()
    kwargs: dict[str, Any] = {}
    if ssl is not None:
        kwargs["ssl"] = ssl
        kwargs["server_hostname"] = server_hostname
        if timeout is not None:
            # A backstop only: our own connect timeout (on the timer wheel,
            # up to a tick late) bounds connect and handshake together and
            # must be the one that fires, to be reported as a timeout.
            kwargs["ssl_handshake_timeout"] = max(timeout, 0.001) + 1.0
    if local_address is not None:
        kwargs["local_addr"] = local_address
    channel = AsyncioChannel(loop)
    connect = loop.create_connection(lambda: channel, host, port, **kwargs)
    try:
        if timeout is None:
            await connect  # (the transport: our connection_made has it)
        elif sys.version_info < (3, 11):  # pragma: no cover - no Task.uncancel()
            await asyncio.wait_for(connect, timeout)
        else:
            # asyncio.timeout(), on the timer the connection then keeps
            # (see `on_timer`): one timer per connection, not two.
            task = asyncio.current_task()
            assert task is not None
            cancelling = task.cancelling()
            channel._connecting = task
            channel.call_at(loop.time() + max(timeout, 0.0))
            try:
                await connect
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
        if ssl is None:
            raise
        # asyncio's "connection lost during handshake": the TCP connect had
        # succeeded, so this is the TLS peer hanging up on our handshake.
        raise handshake_eof() from None
    return channel
