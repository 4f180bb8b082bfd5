"""What the transports share: the connect's parameters (`ConnectOptions`),
which backend runs the task (`on_asyncio`), the error for a peer that hangs
up mid-handshake, TCP_NODELAY for sockets that lack it, and the signal of
a read that timed out (`ReceiveTimeout`, the anyio channel's). Two client
transports build on it: `asyncio_channel` (the loop's own transports, for
asyncio and uvloop) and `anyio_channel` (anyio byte streams, for trio).

May import the standard library only.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any, NamedTuple


class ReceiveTimeout(Exception):
    """`AnyioChannel.receive` saw nothing within its timeout (internal signal)."""


class ConnectOptions(NamedTuple):  # one per association: a tuple is cheapest
    host: str
    port: int
    timeout: float | None
    ssl: ssl.SSLContext | None = None
    server_hostname: str | None = None
    local_address: tuple[str, int] | None = None


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
