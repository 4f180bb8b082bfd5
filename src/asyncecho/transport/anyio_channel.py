"""The client transport over anyio byte streams: the same core under trio
(or any anyio backend).

May import anyio and `transport/channel` only: nothing of the API above,
nothing of the core below.
"""

from __future__ import annotations

import socket
import ssl

import anyio
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.tls import TLSAttribute, TLSStream

from asyncecho.transport.channel import ConnectOptions, ReceiveTimeout, handshake_eof, tune_socket

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)
_RECEIVE_SIZE = 65536


class AnyioChannel:
    __slots__ = ("_closed", "_stream", "error", "tls_version")

    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream
        self._closed = False
        self.error: BaseException | None = None
        tune_socket(stream.extra(SocketAttribute.raw_socket, None))
        ssl_object = stream.extra(TLSAttribute.ssl_object, None)
        self.tls_version: str | None = str(ssl_object.version()) if ssl_object is not None else None

    def now(self) -> float:
        return anyio.current_time()

    async def send(self, data: bytes) -> None:
        if data and not self._closed:
            try:
                await self._stream.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                self._closed = True

    async def receive(self, timeout: float | None) -> bytes:
        if self._closed:
            return b""
        try:
            if timeout is None:
                return await self._stream.receive(_RECEIVE_SIZE)
            with anyio.move_on_after(max(timeout, 0.0)):
                return await self._stream.receive(_RECEIVE_SIZE)
        except ssl.SSLError as exc:  # e.g. a TLS 1.3 alert after the handshake
            self._closed = True
            self.error = exc
            return b""
        except (
            anyio.EndOfStream,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            OSError,
        ):
            self._closed = True
            return b""
        raise ReceiveTimeout()

    def quickack(self) -> None:
        sock = self._stream.extra(SocketAttribute.raw_socket, None)
        if _QUICKACK is not None and sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            except OSError:  # pragma: no cover
                pass

    async def aclose(self) -> None:
        self._closed = True
        with anyio.move_on_after(1.0, shield=True):
            await self._stream.aclose()

    async def abort(self) -> None:
        self._closed = True
        with anyio.CancelScope(shield=True):
            await anyio.aclose_forcefully(self._stream)

    @property
    def peer(self) -> tuple[str, int] | None:
        peer = self._stream.extra(SocketAttribute.remote_address, None)
        return (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None


async def open_anyio_channel(options: ConnectOptions) -> AnyioChannel:
    stream: ByteStream
    with anyio.fail_after(options.timeout):
        stream = await anyio.connect_tcp(
            options.host,
            options.port,
            local_host=options.local_address[0] if options.local_address else None,
        )
        if options.ssl is not None:
            try:
                stream = await TLSStream.wrap(
                    stream,
                    server_side=False,
                    hostname=options.server_hostname,
                    ssl_context=options.ssl,
                    standard_compatible=False,
                )
            except (anyio.EndOfStream, anyio.BrokenResourceError) as exc:
                # The peer hung up mid-handshake (our server, and asyncio's,
                # close without an alert when they refuse a client): a TLS
                # failure, not a bare anyio exception.
                await anyio.aclose_forcefully(stream)
                cause = exc.__context__ if exc.__cause__ is None else exc.__cause__
                if isinstance(cause, ssl.SSLError) and not isinstance(cause, ssl.SSLEOFError):
                    raise cause from None
                raise handshake_eof() from None
            except BaseException:
                await anyio.aclose_forcefully(stream)
                raise
    return AnyioChannel(stream)
