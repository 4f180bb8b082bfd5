"""What the client needs from a transport: the seam between the I/O-free
core and a concrete event loop. Two implementations: `asyncio_channel`
(the loop's own transports, for asyncio and uvloop) and `anyio_channel`
(anyio byte streams, for trio)."""

from __future__ import annotations

import ssl
from typing import NamedTuple, Protocol


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
