"""What the SCP drivers (`asyncio_scp`, `anyio_scp`) share: the settings
they read, the sink they report to, and the making of a connection's
`AcceptorSession`.

The drivers only move bytes between a socket and the session and keep its
one timer; what happened goes to an `ScpSink` that the API layer
(`asyncecho.server`) passes in: per-connection events to count and log, the
identity check, the association slots. Imports `asyncecho.protocol` and the
standard library only (never the API modules above).
"""

from __future__ import annotations

import errno
import ssl as _ssl
from collections.abc import Collection, Sequence
from typing import Any, Protocol

from asyncecho.protocol.acceptor import AcceptorSession, IdentityCheckNeeded
from asyncecho.protocol.negotiation import AcceptorPolicy

# accept() failing for want of descriptors or memory: the listener stays
# readable, so accepting pauses rather than spin (PS3.8 says nothing here;
# this is the operating system's limit on open connections).
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# How long accepting pauses (on asyncio: unless one of our connections
# closes first).
ACCEPT_PAUSE = 0.1
# Leaving serve() sends each association an A-ABORT, but waits no longer than
# this for a peer that is not reading (asyncio's SCP does not wait at all).
SHUTDOWN_ABORT_WAIT = 1.0


class ScpSettings(Protocol):
    """What the drivers read of the server's options (`ServerOptions`)."""

    @property
    def policy(self) -> AcceptorPolicy: ...
    @property
    def acse_timeout(self) -> float: ...
    @property
    def dimse_timeout(self) -> float: ...
    @property
    def network_timeout(self) -> float: ...
    @property
    def ssl(self) -> _ssl.SSLContext | None: ...
    @property
    def backlog(self) -> int: ...
    @property
    def identity_check(self) -> object | None: ...

    def network_allowed(self, peer: Any) -> bool: ...


class ScpListening(Protocol):
    """What a driver's `serve_*()` yields: the bound address, and the open
    connections it keeps (for tests and diagnostics; trio's keep none)."""

    @property
    def address(self) -> tuple[str, int]: ...
    @property
    def connections(self) -> Collection[Any]: ...


class ScpSink(Protocol):
    """Where the drivers report what happened (implemented by the API layer).
    `peer` is the socket's remote address (None if unknown)."""

    def take_slot(self) -> bool:
        """A new connection: True if it holds one of the association slots,
        False if they are all taken (its session refuses, busy)."""

    def free_slot(self) -> None:
        """The association that took a slot is over (once per slot)."""

    def record(self, peer: Any, events: Sequence[object]) -> None:
        """What a session (or the driver: `Stalled("not-reading")`) did."""

    def refused_network(self, peer: Any) -> None:
        """A connection from outside the allowed networks, closed unanswered."""

    def tls_failed(self, peer: Any, error: BaseException) -> None:
        """A failed TLS handshake: the connection closed, no association."""

    def internal_error(self, peer: Any, bug: BaseException) -> None:
        """A bug met while serving one connection, which ended it."""

    def accept_failed(self, error: OSError, now: float, pause: float) -> None:
        """accept() failed for want of resources: accepting pauses `pause` s."""

    async def check_identity(self, item: IdentityCheckNeeded, peer: Any) -> bool | bytes:
        """The user's identity check: False (reject), True or the server
        response (accept)."""


def open_session(settings: ScpSettings, sink: ScpSink, now: float) -> AcceptorSession:
    """A new connection's session; it holds a slot unless `session.busy`."""
    session = AcceptorSession(
        settings.policy,
        artim_timeout=settings.acse_timeout,
        busy=not sink.take_slot(),
        check_identity=settings.identity_check is not None,
        network_timeout=settings.network_timeout,
        dimse_timeout=settings.dimse_timeout,
    )
    session.connection_made(now)
    return session
