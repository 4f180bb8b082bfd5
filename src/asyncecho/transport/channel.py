"""What the client needs from a transport: the seam between the I/O-free
core and a concrete event loop. Two implementations: `asyncio_channel`
(the loop's own transports, for asyncio and uvloop) and `anyio_channel`
(anyio byte streams, for trio)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any, NamedTuple, Protocol


class ReceiveTimeout(Exception):
    """`Channel.receive` saw nothing within its timeout (internal signal)."""


class ConnectOptions(NamedTuple):  # one per association: a tuple is cheapest
    host: str
    port: int
    timeout: float | None
    ssl: ssl.SSLContext | None = None
    server_hostname: str | None = None
    local_address: tuple[str, int] | None = None


class Channel(Protocol):
    def now(self) -> float:
        """The loop's clock, in seconds."""

    async def send(self, data: bytes) -> None: ...

    async def receive(self, timeout: float | None) -> bytes:
        """The next bytes from the peer; b"" once it has closed. Raises
        ReceiveTimeout when nothing arrives within `timeout` seconds."""

    def quickack(self) -> None:
        """Ask the kernel to ACK at once (Linux TCP_QUICKACK), so a peer
        with Nagle on does not hold back the rest of a PDU."""

    async def aclose(self) -> None:
        """Close after what was sent is flushed."""

    async def abort(self) -> None:
        """Close now, dropping anything unsent."""

    @property
    def peer(self) -> tuple[str, int] | None: ...

    @property
    def error(self) -> BaseException | None:
        """What broke the connection (e.g. a TLS alert), if it did not simply close."""

    @property
    def tls_version(self) -> str | None:
        """The negotiated TLS version ("TLSv1.3"), None without TLS."""


def on_asyncio() -> bool:
    """Whether an asyncio loop (or uvloop) runs this task: its own
    transports then; anyio streams otherwise (trio)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


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
