"""Everything `echo()`, `associate()` and `serve()` raise for what the peer or
the network did: one hierarchy under `EchoError`.

    EchoError
    ├── ConnectionFailed            (also an OSError: errno / strerror kept)
    │   ├── ConnectionRefused
    │   ├── HostUnreachable
    │   ├── NameResolutionFailed
    │   └── TLSHandshakeFailed
    ├── LocalResourceError          (also an OSError) our machine's limit, not the peer
    ├── EchoTimeout                 (also the builtin TimeoutError)
    │   ├── ConnectTimeout          TCP connect (and TLS handshake)
    │   ├── AcseTimeout             waiting for A-ASSOCIATE-AC/RJ or A-RELEASE-RP
    │   ├── DimseTimeout            waiting for the C-ECHO-RSP
    │   ├── NetworkTimeout          no byte from the peer for network_timeout
    │   └── DeadlineExceeded        the overall deadline
    ├── AssociationRejected         A-ASSOCIATE-RJ: result, source, reason
    ├── AssociationAborted          A-ABORT / A-P-ABORT, or the peer hung up
    ├── NoAcceptedContext           the peer accepted none of our contexts
    └── ProtocolError               the peer broke PS3.7/PS3.8 (we aborted)

A C-ECHO-RSP with a non-success status is not an exception: it is the
`status` of the `EchoResult`, whose `ok` is then False.

May import `protocol/` (the PDUs they describe) and `tls` (error text) only.
"""

from __future__ import annotations

import errno as _errno

from asyncecho.protocol.pdu import AssociateRJ


class EchoError(Exception):
    """Base of every failure caused by the peer or the network."""

    #: short machine-readable class, e.g. "refused", "timeout-acse"
    outcome = "error"


class _SystemFailure(EchoError, OSError):
    """An EchoError that an OS call raised: also an OSError, errno kept."""

    def __init__(
        self, message: str, *, host: str = "", port: int = 0, os_error: BaseException | None = None
    ) -> None:
        code = os_error.errno if isinstance(os_error, OSError) else None
        OSError.__init__(self, code, message)
        self.message = message
        self.host = host
        self.port = port
        self.os_error = os_error

    def __str__(self) -> str:
        return self.message

    @property
    def reason(self) -> str:
        """The operating system's (or TLS library's) own words."""
        error = self.os_error
        if isinstance(error, OSError) and error.errno is not None and error.errno > 0:
            import os

            return os.strerror(error.errno)  # asyncio's strerror is "Connect call failed …"
        if isinstance(error, OSError) and error.strerror:
            return error.strerror
        return str(self.os_error) if self.os_error else self.message


class ConnectionFailed(_SystemFailure):
    """The transport connection to the peer could not be opened."""

    outcome = "unreachable"


class LocalResourceError(_SystemFailure):
    """The connection could not be opened for a reason of this machine, not
    the peer: out of file descriptors (EMFILE, ENFILE) or local ports
    (EADDRNOTAVAIL, EADDRINUSE), buffers (ENOBUFS) or memory (ENOMEM), or
    a local firewall rule (EPERM, EACCES).

    Deliberately not a `ConnectionFailed`: code that catches that to mark a
    peer as down must not blame the peer for our limits. It is an OSError
    (errno kept), as ConnectionFailed is."""

    outcome = "local-error"


# connect(2) errors that say nothing about the peer: our process or host ran
# out of something, or a local rule refused the connection.
LOCAL_ERRNOS = frozenset(
    {
        _errno.EMFILE,
        _errno.ENFILE,
        _errno.EADDRNOTAVAIL,
        _errno.EADDRINUSE,
        _errno.ENOBUFS,
        _errno.ENOMEM,
        _errno.EPERM,
        _errno.EACCES,
    }
)


class ConnectionRefused(ConnectionFailed):
    """Nothing listens on the port: the peer refused the TCP connection."""

    outcome = "refused"


class HostUnreachable(ConnectionFailed):
    """No route to the host (EHOSTUNREACH, ENETUNREACH, ENETDOWN)."""

    outcome = "unreachable"


class NameResolutionFailed(ConnectionFailed):
    """The host name does not resolve."""

    outcome = "dns"


class TLSHandshakeFailed(ConnectionFailed):
    """The TLS handshake failed; `reason` says why (unknown CA, host name
    mismatch, expired certificate, client certificate required, no TLS on
    that port)."""

    outcome = "tls"

    @property
    def reason(self) -> str:
        from asyncecho.tls import describe_ssl_error

        return describe_ssl_error(self.os_error) if self.os_error else self.message


class EchoTimeout(EchoError, TimeoutError):
    """A phase took longer than its timeout."""

    outcome = "timeout"
    phase = ""

    def __init__(self, timeout: float | None, message: str = "") -> None:
        self.timeout = timeout
        if not message:
            after = f" after {timeout:g} s" if timeout is not None else ""
            message = f"{self.phase} timed out{after}"
        super().__init__(message)


class ConnectTimeout(EchoTimeout):
    """The TCP connect (and the TLS handshake) took longer than
    `connect_timeout`."""

    outcome = "timeout-connect"
    phase = "TCP connect"


class AcseTimeout(EchoTimeout):
    """No A-ASSOCIATE-AC/RJ or A-RELEASE-RP within `acse_timeout`."""

    outcome = "timeout-acse"
    phase = "association (ACSE)"


class DimseTimeout(EchoTimeout):
    """No C-ECHO-RSP within `dimse_timeout`."""

    outcome = "timeout-dimse"
    phase = "C-ECHO response (DIMSE)"


class NetworkTimeout(EchoTimeout):
    """The peer sent nothing for `network_timeout`."""

    outcome = "timeout-network"
    phase = "network (no data from the peer)"


class DeadlineExceeded(EchoTimeout):
    """The overall `deadline` passed."""

    outcome = "timeout-deadline"
    phase = "overall deadline"


class AssociationRejected(EchoError):
    """The peer answered with an A-ASSOCIATE-RJ (PS3.8 9.3.4)."""

    outcome = "rejected"

    def __init__(self, rj: AssociateRJ) -> None:
        self.result, self.source, self.reason = rj.result, rj.source, rj.reason
        self.result_name, self.source_name, self.reason_name = (
            rj.result_name,
            rj.source_name,
            rj.reason_name,
        )
        super().__init__(
            f"association rejected: {self.result_name}, {self.source_name}: {self.reason_name}"
        )


class AssociationAborted(EchoError):
    """The association ended without a release: the peer sent an A-ABORT, the
    service provider aborted (A-P-ABORT), or the connection closed under it."""

    outcome = "aborted"

    def __init__(
        self, message: str, *, source: int | None = None, reason: int | None = None
    ) -> None:
        super().__init__(message)
        self.source = source
        self.reason = reason


class NoAcceptedContext(EchoError):
    """The peer accepted none of the proposed presentation contexts."""

    outcome = "no-context"

    def __init__(self, results: dict[int, str]) -> None:
        self.results = results
        detail = ", ".join(f"context {cid}: {name}" for cid, name in sorted(results.items()))
        super().__init__(
            f"no accepted presentation contexts ({detail})"
            if detail
            else "no accepted presentation contexts"
        )


class ProtocolError(EchoError):
    """The peer sent something PS3.7/PS3.8 does not allow; we aborted."""

    outcome = "protocol-error"


def connection_error(exc: OSError, host: str, port: int) -> ConnectionFailed | LocalResourceError:
    """Map an OS connect error (socket creation included) to its typed exception."""
    import socket

    where = f"{host}:{port}"
    # A gaierror's errno is an EAI_* code, not an errno (on some systems
    # they overlap): it is looked at first. EAI_SYSTEM never gets here as a
    # gaierror (Python raises the underlying OSError, EMFILE included).
    if isinstance(exc, socket.gaierror):
        if exc.errno == getattr(socket, "EAI_MEMORY", None):
            return LocalResourceError(
                f"cannot resolve {host!r}: {exc.strerror or exc} (a limit of this machine)",
                host=host,
                port=port,
                os_error=exc,
            )
        return NameResolutionFailed(
            f"cannot resolve {host!r}: {exc.strerror or exc}", host=host, port=port, os_error=exc
        )
    if exc.errno in LOCAL_ERRNOS:
        return LocalResourceError(
            f"cannot connect to {where}: {exc.strerror or exc} "
            "(a limit of this machine, not the peer)",
            host=host,
            port=port,
            os_error=exc,
        )
    if isinstance(exc, ConnectionRefusedError):
        return ConnectionRefused(
            f"connection to {where} refused", host=host, port=port, os_error=exc
        )
    if exc.errno in (
        _errno.EHOSTUNREACH,
        _errno.ENETUNREACH,
        _errno.ENETDOWN,
    ):
        return HostUnreachable(
            f"{where} unreachable: {exc.strerror}", host=host, port=port, os_error=exc
        )
    return ConnectionFailed(
        f"cannot connect to {where}: {exc.strerror or exc}", host=host, port=port, os_error=exc
    )
