"""`Association`: one requestor association as the API's user holds it.

Holds `Association` (what `associate()` yields, and what `echo()` and
`verify()` run), the connect, the choice of driver by backend, the
mapping of the session's failures to the typed exceptions, and the log
events of the requestor side (one place for each event's fields, whatever
backend runs it) are `client_logs`'. May import the API's own modules
below it (`options`, `exceptions`, `results`, `logs`, `client_logs`),
`transport/` and `protocol/`.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import ssl as _ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from asyncecho import client_logs, logs
from asyncecho.exceptions import (
    AcseTimeout,
    AssociationAborted,
    AssociationRejected,
    ConnectTimeout,
    DeadlineExceeded,
    DimseTimeout,
    EchoError,
    EchoTimeout,
    NetworkTimeout,
    NoAcceptedContext,
    ProtocolError,
    TLSHandshakeFailed,
    connection_error,
)
from asyncecho.options import EchoOptions
from asyncecho.protocol.negotiation import build_rq
from asyncecho.protocol.pdu import Abort, AssociateAC, AssociateRQ
from asyncecho.protocol.pdu_items import UserIdentityAC
from asyncecho.protocol.requestor import RequestorSession
from asyncecho.protocol.requestor_events import (
    Accepted,
    ConnectionClosed,
    EchoAnswered,
    Failure,
    Limits,
    NoContext,
    PeerAborted,
    PeerReleased,
    ProtocolViolation,
    Rejected,
    SessionEvent,
    TimedOut,
)
from asyncecho.results import EchoResult, Timings
from asyncecho.transport.asyncio_channel import AsyncioChannel, open_asyncio_channel
from asyncecho.transport.asyncio_requestor import AsyncioRequestor
from asyncecho.transport.channel import ConnectOptions, on_asyncio

if TYPE_CHECKING:
    from asyncecho.transport.anyio_channel import AnyioChannel
    from asyncecho.transport.anyio_requestor import AnyioRequestor

_assoc_ids = itertools.count(1)

_TIMEOUTS: dict[str, type[EchoTimeout]] = {
    "connect": ConnectTimeout,
    "acse": AcseTimeout,
    "dimse": DimseTimeout,
    "network": NetworkTimeout,
    "deadline": DeadlineExceeded,
}


_last_limits: tuple[EchoOptions, Limits] | None = None


def _limits(options: EchoOptions) -> Limits:
    """The session's limits for `options`: one object for the associations
    of a sweep, which share their options."""
    global _last_limits
    if _last_limits is not None and _last_limits[0] is options:
        return _last_limits[1]
    limits = Limits(
        options.connect_timeout,
        options.acse_timeout,
        options.dimse_timeout,
        options.network_timeout,
        options.deadline,
    )
    _last_limits = (options, limits)
    return limits


def _root_os_error(exc: BaseException) -> BaseException:
    """anyio wraps the per-address errors of a failed connect: dig out one
    that says what happened."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen
        for inner in getattr(seen, "exceptions", None) or ():
            found = _root_os_error(inner)
            if isinstance(found, OSError) and found.errno is not None:
                return found
        seen = seen.__cause__
    return exc


class Association:
    """An association (requestor side), made by `associate()`.

    Methods: `echo()` (one C-ECHO, its status), `release()` (A-RELEASE),
    `abort()` (A-ABORT). Attributes: `host`, `port`, `options` (the
    `EchoOptions`), `id` (a per-process number, the `assoc` of log events),
    `rq` / `ac` (the A-ASSOCIATE-RQ sent and AC received), `context_id` and
    `transfer_syntax` (the accepted Verification context), `peer_max_pdu`,
    `user_identity_response`, `status` (of the last C-ECHO), `tls_version`,
    and the seconds the phases took: `connect_time`, `associate_time`,
    `echo_time`, `release_time`. The session and driver it runs are private.
    """

    __slots__ = ("_driver", "_session", "host", "id", "options", "port")

    def __init__(
        self, host: str, port: int, options: EchoOptions, *, echoes: bool = False
    ) -> None:
        self.host = host
        self.port = port
        self.options = options
        self.id = next(_assoc_ids)
        rq = build_rq(
            calling_ae=options.calling_ae,
            called_ae=options.called_ae,
            transfer_syntaxes=options.transfer_syntaxes,
            max_pdu=options.max_pdu,
            extra_user_items=(
                *options.user_items,
                *([options.user_identity] if options.user_identity else []),
            ),
        )
        self._session = RequestorSession(
            rq, _limits(options), echoes=echoes, verbose=logs.enabled
        )
        self._driver: AsyncioRequestor | AnyioRequestor | None = None

    # --- running it ---------------------------------------------------------------

    def _connecting(self) -> Awaitable[AsyncioChannel | AnyioChannel]:
        """A-ASSOCIATE request (Evt1): the clock starts; the transport
        connect to await, within the connect timeout and the deadline (it
        raises OSError, ssl.SSLError or TimeoutError: `_connect_failed`).
        A plain call returning the connect's coroutine, so that the caller's
        frame is the only one of ours while it is in flight."""
        session, options = self._session, self.options
        asyncio_loop = on_asyncio()
        session.start(_now())
        if logs.enabled:
            client_logs.log(self, "connect.start", tls=options.ssl is not None)
        limit, _ = session.connect_limit()
        server_hostname = options.server_hostname
        if server_hostname is None and options.ssl is not None:
            server_hostname = self.host
        if asyncio_loop:
            return open_asyncio_channel(self.host, self.port, limit, options.ssl, server_hostname)
        from asyncecho.transport.anyio_channel import open_anyio_channel

        return open_anyio_channel(
            ConnectOptions(self.host, self.port, limit, options.ssl, server_hostname)
        )

    def _attach(
        self, channel: AsyncioChannel | AnyioChannel, *, final: bool = False
    ) -> Awaitable[SessionEvent]:
        """The transport is connected (Evt2): the driver starts, the
        A-ASSOCIATE-RQ goes out; what to await for the next outcome (with
        `final`, the end): on asyncio a future, no frame of ours."""
        report = functools.partial(client_logs.report, self) if logs.enabled else None
        if isinstance(channel, AsyncioChannel):
            driver = AsyncioRequestor(self._session, channel, report)
            self._driver = driver
            driver.start()
            return driver.outcome(final=final)
        return self._attach_anyio(channel, report, final)

    async def _attach_anyio(
        self,
        channel: AnyioChannel,
        report: Callable[[SessionEvent], None] | None,
        final: bool,
    ) -> SessionEvent:
        from asyncecho.transport.anyio_requestor import AnyioRequestor

        driver = AnyioRequestor(self._session, channel, report)
        self._driver = driver
        await driver.start()
        return await driver.outcome(final=final)

    async def _outcome(self, *, final: bool = False) -> SessionEvent:
        """The session's next answer (or its end, with `final`); a failure
        raised as its exception. Cancelled or failed: aborted."""
        driver = self._driver
        assert driver is not None
        try:
            event = await driver.outcome(final=final)
        except BaseException:
            await self._abort_now()
            raise
        return self._succeeded(event)

    def _ended(self, end: SessionEvent) -> EchoResult:
        """The result of the finished exchange; a failure raised as its exception."""
        self._succeeded(end)
        return self.result()

    def _succeeded(self, event: SessionEvent) -> SessionEvent:
        """`event`, unless it is a failure: then its exception, raised."""
        if isinstance(event, Failure):
            raise self._error_for(event)
        return event

    async def _associate(self) -> None:
        """Connect and A-ASSOCIATE; raises unless an association with a
        Verification context exists."""
        try:
            channel = await self._connecting()
        except OSError as exc:  # (TimeoutError and ssl.SSLError among them)
            raise self._connect_failed(exc) from None
        try:
            accepted = await self._attach(channel)
        except BaseException:
            await self._abort_now()
            raise
        accepted = self._succeeded(accepted)
        assert isinstance(accepted, Accepted)
        if not accepted.context_id:
            await self._outcome(final=True)  # released, then NoContext raised

    async def echo(self) -> int:
        """Send one C-ECHO-RQ; return the response's status."""
        session = self._session
        if self._driver is None:
            raise RuntimeError("no established association")
        session.echo(self._driver.channel.now())
        event = await self._outcome()
        if not isinstance(event, EchoAnswered):
            # The peer released the association while nothing was outstanding
            # (answered at once); this request is what fails.
            raise self._error_for(PeerReleased())
        return event.status

    async def release(self) -> None:
        """A-RELEASE (PS3.8 7.2); handles a release collision (Sta9-Sta12)."""
        session = self._session
        if self._driver is None or session.finished:
            return
        session.release(self._driver.channel.now())
        await self._outcome()

    async def abort(self) -> None:
        """A-ABORT (PS3.8 7.3): send it and close at once."""
        client_logs.log(self, "abort.request")
        await self._abort_now()

    async def _abort_now(self) -> None:
        driver = self._driver
        if driver is None:
            return
        if isinstance(driver, AsyncioRequestor):
            driver.abort()  # (asyncio's transport calls never block: nothing to shield)
            return
        import anyio

        with anyio.CancelScope(shield=True):
            await driver.abort()

    # --- failures ---------------------------------------------------------------------

    def _connect_failed(self, exc: OSError) -> EchoError:
        """The typed failure for what the transport connect raised."""
        if isinstance(exc, TimeoutError):
            timed_out = self._session.connect_timed_out()
            timeout = _TIMEOUTS[timed_out.phase](timed_out.timeout)
            client_logs.log_failure(self, "connect.timeout", timeout, timeout=timeout.timeout)
            return timeout
        if isinstance(exc, _ssl.SSLError):
            return self._tls_failed(exc)
        root = _root_os_error(exc)
        error = connection_error(root if isinstance(root, OSError) else exc, self.host, self.port)
        client_logs.log_failure(self, "connect.failed", error, reason=error.reason, errno=error.errno)
        return error

    def _tls_failed(self, exc: _ssl.SSLError) -> TLSHandshakeFailed:
        from asyncecho.tls import describe_ssl_error

        why = describe_ssl_error(exc)
        error = TLSHandshakeFailed(
            f"TLS handshake with {self.host}:{self.port} failed: {why}",
            host=self.host,
            port=self.port,
            os_error=exc,
        )
        client_logs.log_failure(self, "connect.tls_failed", error, reason=why)
        return error

    def _error_for(self, failure: Failure) -> EchoError:
        """The exception for how the session failed (logged)."""
        if isinstance(failure, TimedOut):
            timeout = _TIMEOUTS[failure.phase](failure.timeout)
            client_logs.log_failure(self, "timeout", timeout, phase=timeout.phase, timeout=timeout.timeout)
            return timeout
        if isinstance(failure, Rejected):
            rejected = AssociationRejected(failure.rj)
            client_logs.log_failure(self,
                "associate.rejected",
                rejected,
                result=rejected.result_name,
                source=rejected.source_name,
                reason=rejected.reason_name,
                result_code=rejected.result,
                source_code=rejected.source,
                reason_code=rejected.reason,
            )
            return rejected
        if isinstance(failure, PeerAborted):
            pdu = Abort(failure.source, failure.reason)
            aborted = AssociationAborted(
                "association aborted by the peer "
                f"(source: {pdu.source_name}, reason: {pdu.reason_name})",
                source=failure.source,
                reason=failure.reason,
            )
            client_logs.log_failure(self,
                "aborted",
                aborted,
                reason="A-ABORT",
                source=pdu.source_name,
                abort_reason=pdu.reason_name,
            )
            return aborted
        if isinstance(failure, ConnectionClosed):
            return self._closed(failure)
        if isinstance(failure, ProtocolViolation):
            error = ProtocolError(
                f"protocol error from the peer, association aborted: {failure.problem}"
            )
            client_logs.log_failure(self, "protocol_error", error, reason=failure.problem)
            return error
        if isinstance(failure, NoContext):
            refused = NoAcceptedContext(failure.results)
            client_logs.log_failure(self,
                "associate.no_context",
                refused,
                results=[f"{cid}: {name}" for cid, name in sorted(failure.results.items())],
            )
            return refused
        assert isinstance(failure, PeerReleased)
        released = AssociationAborted("the peer released the association with a request outstanding")
        client_logs.log_failure(self, "aborted", released, reason="A-RELEASE-RQ with a request outstanding")
        return released

    def _closed(self, failure: ConnectionClosed) -> EchoError:
        channel = self._driver.channel if self._driver is not None else None
        cause = channel.error if channel is not None else None
        if isinstance(cause, _ssl.SSLError):
            # TLS 1.3 reports a refused client certificate after the
            # handshake, on the first read.
            return self._tls_failed(cause)
        if failure.unannounced:
            message = "the connection closed without an A-ABORT"
        else:
            message = "the peer closed the connection during the association"
            if self.tls_version and not failure.accepted:
                # TLS 1.3 checks a client certificate after the handshake;
                # asyncio reports the peer's alert only as a close.
                message += " (over TLS: the peer may require a client certificate we did not send)"
        closed = AssociationAborted(message)
        client_logs.log_failure(self, "aborted", closed, reason="connection closed")
        return closed

    # --- what the association is --------------------------------------------------------

    @property
    def rq(self) -> AssociateRQ:
        return self._session.rq

    @property
    def ac(self) -> AssociateAC | None:
        return self._session.ac

    @property
    def context_id(self) -> int:
        return self._session.context_id

    @property
    def transfer_syntax(self) -> str | None:
        return self._session.transfer_syntax

    @property
    def status(self) -> int | None:
        return self._session.status

    @property
    def connect_time(self) -> float | None:
        return self._session.connect_time

    @property
    def associate_time(self) -> float | None:
        return self._session.associate_time

    @property
    def echo_time(self) -> float | None:
        return self._session.echo_time

    @property
    def release_time(self) -> float | None:
        return self._session.release_time

    @property
    def tls_version(self) -> str | None:
        return self._driver.channel.tls_version if self._driver is not None else None

    @property
    def peer_max_pdu(self) -> int | None:
        ac = self._session.ac
        return ac.max_length if ac else None

    @property
    def user_identity_response(self) -> bytes | None:
        ac = self._session.ac
        if ac is None:
            return None
        for item in ac.user_items:
            if isinstance(item, UserIdentityAC):
                return item.server_response
        return None

    def elapsed(self) -> float | None:
        """Seconds since the association started (None before)."""
        session = self._session
        if session.started is None:
            return None
        return _now() - session.started

    def result(self, error: EchoError | None = None, *, now: float | None = None) -> EchoResult:
        """What the association learnt, as an `EchoResult` (with `error`:
        the failure, after the phases it got through); `total` up to `now`
        (default: the running loop's time)."""
        session = self._session
        ac = session.ac
        status = session.status
        return EchoResult(
            host=self.host,
            port=self.port,
            status=status,
            message_id=session.message_id if status is not None else None,
            timings=Timings(
                session.connect_time,
                session.associate_time,
                session.echo_time,
                session.release_time,
                self.elapsed() if now is None or session.started is None else now - session.started,
            ),
            peer_ae=ac.called_ae if ac else None,
            peer_implementation_class_uid=ac.implementation_class_uid if ac else None,
            peer_implementation_version_name=ac.implementation_version_name if ac else None,
            peer_max_pdu=ac.max_length if ac else None,
            transfer_syntax=session.transfer_syntax,
            tls_version=self.tls_version,
            user_identity_response=self.user_identity_response,
            error=error,
        )


def _now() -> float:
    """The running loop's clock (asyncio's own, else anyio's: trio's)."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        import anyio

        return anyio.current_time()

