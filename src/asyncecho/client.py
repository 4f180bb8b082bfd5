"""The requestor side: `echo()`, `verify()` and `associate()`.

A thin driver of the sans-I/O `UpperLayer`: it moves bytes between the core
and a `Channel`, and bounds every wait by the timeout of its phase, the idle
network timeout and the overall deadline, whichever is nearest.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl as _ssl
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, NoReturn, TypeVar

from asyncecho import arguments, logs
from asyncecho.arguments import defaults_of, given
from asyncecho.echo_driver import EchoDriver
from asyncecho.exceptions import (
    AcseTimeout,
    AssociationAborted,
    ConnectTimeout,
    DeadlineExceeded,
    DimseTimeout,
    EchoError,
    EchoTimeout,
    LocalResourceError,
    NetworkTimeout,
    NoAcceptedContext,
    ProtocolError,
    TLSHandshakeFailed,
    connection_error,
)
from asyncecho.exceptions import AssociationRejected as AssociationRejectedError
from asyncecho.protocol import uids
from asyncecho.protocol.dimse import C_ECHO_RSP, decode_command, encode_echo_rq
from asyncecho.protocol.errors import PDUError
from asyncecho.protocol.events import (
    Aborted,
    AssociationAccepted,
    AssociationRejected,
    Event,
    MessageReceived,
    ReleaseConfirmed,
    ReleaseRequested,
)
from asyncecho.protocol.negotiation import build_rq
from asyncecho.protocol.pdu import AssociateAC, AssociateRQ
from asyncecho.protocol.pdu_items import (
    PC_RESULT_NAMES,
    USER_IDENTITY_TYPE_NAMES,
    UserIdentityAC,
    UserIdentityRQ,
    UserItem,
)
from asyncecho.protocol.state_machine import Event as Evt
from asyncecho.protocol.state_machine import State
from asyncecho.protocol.upper_layer import UpperLayer
from asyncecho.results import EchoResult, Timings
from asyncecho.transport.asyncio_channel import open_asyncio_channel
from asyncecho.transport.channel import Channel, ConnectOptions, ReceiveTimeout, on_asyncio

_assoc_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class EchoOptions:
    """Everything that shapes one association; defaults follow echoscu."""

    calling_ae: str = "ECHOSCU"
    called_ae: str = "ANY-SCP"
    transfer_syntaxes: Sequence[str] = uids.DEFAULT_TRANSFER_SYNTAXES
    max_pdu: int = 16382
    connect_timeout: float | None = 30.0
    acse_timeout: float | None = 30.0
    dimse_timeout: float | None = 30.0
    network_timeout: float | None = 30.0
    deadline: float | None = None
    ssl: _ssl.SSLContext | None = None
    server_hostname: str | None = None
    #: User Identity negotiation (see `asyncecho.identity.user_identity`)
    user_identity: UserIdentityRQ | None = None
    #: any further User Information sub-items to send
    user_items: Sequence[UserItem] = ()

    def __post_init__(self) -> None:
        # Every field checked once, when the options are made (see
        # `arguments`): a bad value is the caller's TypeError/ValueError,
        # the same on every backend, before any I/O.
        put = object.__setattr__
        put(self, "calling_ae", arguments.ae_title(self.calling_ae, "calling_ae"))
        put(self, "called_ae", arguments.ae_title(self.called_ae, "called_ae"))
        syntaxes = self.transfer_syntaxes
        if syntaxes is not uids.DEFAULT_TRANSFER_SYNTAXES:
            put(self, "transfer_syntaxes", arguments.uid_list(syntaxes, "transfer_syntaxes"))
        arguments.max_pdu(self.max_pdu)
        for name in _TIMEOUT_FIELDS:
            arguments.seconds(getattr(self, name), name)
        arguments.ssl_context(self.ssl)
        arguments.optional_str(self.server_hostname, "server_hostname")
        if self.user_identity is not None and not isinstance(self.user_identity, UserIdentityRQ):
            raise TypeError(
                "user_identity must be a UserIdentityRQ (asyncecho.identity.user_identity()) "
                f"or None, not {type(self.user_identity).__name__}"
            )
        if self.user_items != ():
            put(
                self,
                "user_items",
                arguments.instances(self.user_items, "user_items", UserItem, "User Information items"),
            )


_TIMEOUT_FIELDS = ("connect_timeout", "acse_timeout", "dimse_timeout", "network_timeout", "deadline")


# Typed Any (the parameters are typed as the options' fields): `_OPTION[name]`
# is the default of the keyword `name` of echo(), verify(), associate() and
# sweep(). _OPTION_NAMES is the order in which they pass their keywords on.
_OPTION: dict[str, Any] = defaults_of(EchoOptions)
_OPTION_NAMES = tuple(_OPTION)
_NOTHING_GIVEN = tuple(_OPTION.values())


def _clock() -> float:
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        pass
    import anyio

    return anyio.current_time()


def _root_os_error(exc: BaseException) -> BaseException:
    """anyio wraps the per-address errors of a failed connect: dig out one
    that says what happened."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen
        group = getattr(seen, "exceptions", None)
        if group:
            for inner in group:
                found = _root_os_error(inner)
                if isinstance(found, OSError) and found.errno is not None:
                    return found
        seen = seen.__cause__
    return exc


class Association:
    """An established association (requestor side), made by `associate()`.

    Methods: `echo()` (one C-ECHO, its status), `release()` (A-RELEASE),
    `abort()` (A-ABORT). Attributes: `host`, `port`, `options` (the
    `EchoOptions`), `id` (a per-process number, the `assoc` of log events),
    `rq` / `ac` (the A-ASSOCIATE-RQ sent and AC received), `context_id` and
    `transfer_syntax` (the accepted Verification context), `peer_max_pdu`,
    `user_identity_response`, and the seconds the phases took:
    `connect_time`, `associate_time`, `release_time`. The upper layer and
    the channel it drives are private.
    """

    __slots__ = (
        "_channel",
        "_deadline",
        "_message_ids",
        "_pending",
        "_started",
        "_upper",
        "ac",
        "associate_time",
        "connect_time",
        "context_id",
        "echo_time",
        "host",
        "id",
        "options",
        "port",
        "release_time",
        "rq",
        "status",
        "transfer_syntax",
    )

    def __init__(self, host: str, port: int, options: EchoOptions) -> None:
        self.host = host
        self.port = port
        self.options = options
        self.id = next(_assoc_ids)
        self._upper = UpperLayer(requestor=True, max_pdu=options.max_pdu)
        self._channel: Channel | None = None
        self.rq: AssociateRQ = build_rq(
            calling_ae=options.calling_ae,
            called_ae=options.called_ae,
            transfer_syntaxes=options.transfer_syntaxes,
            max_pdu=options.max_pdu,
            extra_user_items=(
                *options.user_items,
                *([options.user_identity] if options.user_identity else []),
            ),
        )
        self.ac: AssociateAC | None = None
        self.context_id = 0
        self.transfer_syntax: str | None = None
        self._message_ids = 0  # the last one used
        # Events a read produced after the one its phase waited for (see
        # _next_event): almost always none, so no list until there are.
        self._pending: list[Event] | tuple[()] = ()
        self._started = 0.0
        self._deadline: float | None = None
        self.connect_time: float | None = None
        self.associate_time: float | None = None
        self.release_time: float | None = None
        self.echo_time: float | None = None
        self.status: int | None = None

    # --- opening --------------------------------------------------------------------

    def _connect_request(self) -> tuple[ConnectOptions, type[EchoTimeout]]:
        """A-ASSOCIATE request (Evt1: next, the transport connect): start the
        clock; what to connect to within which limit, and the timeout error
        for that limit."""
        options = self.options
        self._started = _clock()
        if options.deadline is not None:
            self._deadline = self._started + options.deadline
        self._upper.request(self.rq)  # Evt1 -> AE-1: open the transport
        if logs.enabled:
            self._log("connect.start", tls=options.ssl is not None)
        timeout, kind = self._limit(options.connect_timeout, ConnectTimeout, self._started)
        connect = ConnectOptions(
            self.host,
            self.port,
            timeout,
            options.ssl,
            options.server_hostname
            if options.server_hostname is not None
            else (self.host if options.ssl else None),
        )
        return connect, kind

    def _connect_failed(self, exc: OSError, kind: type[EchoTimeout]) -> EchoError:
        """The typed failure for what the transport connect raised."""
        if isinstance(exc, TimeoutError):
            options = self.options
            timeout = kind(options.connect_timeout if kind is ConnectTimeout else options.deadline)
            self._log_failure("connect.timeout", timeout, timeout=timeout.timeout)
            return timeout
        if isinstance(exc, _ssl.SSLError):
            return self._tls_failed(exc)
        root = _root_os_error(exc)
        error = connection_error(root if isinstance(root, OSError) else exc, self.host, self.port)
        self._log_failure("connect.failed", error, reason=error.reason, errno=error.errno)
        return error

    async def _connect(self) -> None:
        """Evt1 and the transport connect, within the connect timeout and
        the deadline; raises the typed failure."""
        connect, kind = self._connect_request()
        try:
            if on_asyncio():
                channel: Channel = await open_asyncio_channel(*connect)
            else:
                from asyncecho.transport.anyio_channel import open_anyio_channel

                channel = await open_anyio_channel(connect)
        except OSError as exc:  # (TimeoutError and ssl.SSLError among them)
            raise self._connect_failed(exc, kind) from None
        self._channel = channel
        self.connect_time = channel.now() - self._started

    async def _open(self) -> None:
        """Connect, then A-ASSOCIATE; raises unless an association exists."""
        await self._connect()
        channel = self._channel
        assert channel is not None
        options = self.options
        now = channel.now()
        if logs.enabled:
            self._log_request()
        self._upper.connection_made(now)  # Evt2 -> AE-2: send the A-ASSOCIATE-RQ
        await channel.send(self._upper.data_to_send())
        event = await self._next_event(AcseTimeout, options.acse_timeout)
        if not isinstance(event, AssociationAccepted):
            self._raise_for(event)
        self._accepted(event.ac)
        self.associate_time = channel.now() - now
        if logs.enabled:
            self._log_accepted()
        if not self.context_id:
            error = self._no_context()
            await self._release_quietly()
            raise error

    def _no_context(self) -> NoAcceptedContext:
        """The error for an AC that accepted none of our contexts (logged)."""
        assert self.ac is not None
        results = {
            pc.context_id: PC_RESULT_NAMES[pc.result] for pc in self.ac.presentation_contexts
        }
        error = NoAcceptedContext(results)
        self._log_failure(
            "associate.no_context",
            error,
            results=[f"{cid}: {name}" for cid, name in sorted(results.items())],
        )
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
        self._log_failure("connect.tls_failed", error, reason=why)
        return error

    def _accepted(self, ac: AssociateAC) -> None:
        self.ac = ac
        for context_id, (abstract, transfer) in sorted(self._upper.contexts.items()):
            if abstract == uids.VERIFICATION:
                self.context_id, self.transfer_syntax = context_id, transfer
                break

    # --- waiting ----------------------------------------------------------------------

    def _limit(
        self, phase_timeout: float | None, phase: type[EchoTimeout], now: float
    ) -> tuple[float | None, type[EchoTimeout]]:
        limit, kind = phase_timeout, phase
        if self._deadline is not None:
            left = self._deadline - now
            if limit is None or left < limit:
                limit, kind = left, DeadlineExceeded
        return limit, kind

    async def _next_event(self, phase: type[EchoTimeout], phase_timeout: float | None) -> Event:
        """The association's next event. One read can complete several PDUs
        (an A-ASSOCIATE-AC and an A-ABORT in one segment); the events after
        the one a phase waits for are kept for the next phase, never dropped."""
        pending = self._pending
        if not pending:
            pending = self._pending = await self._events(phase, phase_timeout)
        assert isinstance(pending, list)
        return pending.pop(0)

    async def _events(self, phase: type[EchoTimeout], phase_timeout: float | None) -> list[Event]:
        """Read until the upper layer has something to say."""
        channel, upper = self._channel, self._upper
        assert channel is not None
        start = channel.now()
        phase_end = None if phase_timeout is None else start + phase_timeout
        network = self.options.network_timeout
        while True:
            now = channel.now()
            limit, kind = self._limit(None if phase_end is None else phase_end - now, phase, now)
            if network is not None and (limit is None or network < limit):
                limit, kind = network, NetworkTimeout
            try:
                data = await channel.receive(limit)
            except ReceiveTimeout:
                await self._abort_now()
                value = {NetworkTimeout: network, DeadlineExceeded: self.options.deadline}.get(
                    kind, phase_timeout
                )
                error = kind(value)
                self._log_timeout(error)
                raise error from None
            now = channel.now()
            if not data and isinstance(channel.error, _ssl.SSLError):
                # TLS 1.3 reports a refused client certificate after the
                # handshake, on the first read.
                await channel.abort()
                raise self._tls_failed(channel.error)
            events = upper.receive_data(data, now) if data else upper.connection_lost(now)
            out = upper.data_to_send()
            if out:
                await channel.send(out)
            if upper.should_close or upper.state is State.STA13:
                await channel.aclose()
            elif upper.partial_pdu:
                channel.quickack()
            if events:
                return events
            if not data or upper.state in (State.STA1, State.STA13):
                await channel.aclose()
                raise AssociationAborted("the connection closed without an A-ABORT")

    def _raise_for(self, event: Event) -> NoReturn:
        """Turn an event that ends the association into its exception."""
        if isinstance(event, AssociationRejected):
            rejected = AssociationRejectedError(event.rj)
            self._log_failure(
                "associate.rejected",
                rejected,
                result=rejected.result_name,
                source=rejected.source_name,
                reason=rejected.reason_name,
                result_code=rejected.result,
                source_code=rejected.source,
                reason_code=rejected.reason,
            )
            raise rejected
        if isinstance(event, Aborted):
            if event.error is not None or not (event.by_peer or event.connection_lost):
                # AA-8: our upper layer aborted, for an invalid PDU or for a
                # valid one the state table does not allow now (PS3.8 9.2).
                problem = (
                    event.error.message
                    if event.error is not None
                    else "unexpected PDU for the state of the association"
                )
                raise self._protocol_error(problem)
            if event.connection_lost:
                hint = ""
                if self._channel is not None and self._channel.tls_version and self.ac is None:
                    # TLS 1.3 checks a client certificate after the handshake;
                    # asyncio reports the peer's alert only as a close.
                    hint = " (over TLS: the peer may require a client certificate we did not send)"
                closed = AssociationAborted(
                    "the peer closed the connection during the association" + hint
                )
                self._log_failure("aborted", closed, reason="connection closed")
                raise closed
            from asyncecho.protocol.pdu import Abort

            pdu = Abort(event.source, event.reason)
            aborted = AssociationAborted(
                "association aborted by the peer "
                f"(source: {pdu.source_name}, reason: {pdu.reason_name})",
                source=event.source,
                reason=event.reason,
            )
            self._log_failure(
                "aborted",
                aborted,
                reason="A-ABORT",
                source=pdu.source_name,
                abort_reason=pdu.reason_name,
            )
            raise aborted
        if isinstance(event, ReleaseRequested):
            released = AssociationAborted(
                "the peer released the association with a request outstanding"
            )
            self._log_failure("aborted", released, reason="A-RELEASE-RQ with a request outstanding")
            raise released
        raise self._protocol_error(f"unexpected {type(event).__name__} from the peer")

    # --- the service --------------------------------------------------------------------

    async def echo(self) -> int:
        """Send one C-ECHO-RQ; return the response's status."""
        channel, upper = self._channel, self._upper
        if channel is None or (upper.state is not State.STA6 and not self._pending):
            raise RuntimeError(f"no established association ({upper.state})")
        # PS3.7 9.3.1.2: unique among the association's outstanding requests.
        self._message_ids = message_id = self._message_ids % 0xFFFF + 1
        if upper.state is State.STA6:
            # (otherwise a pending event ended the association: it is raised below)
            upper.send_message(self.context_id, encode_echo_rq(message_id))
            if logs.enabled:
                self._log("echo.request", message_id=message_id)
            await channel.send(upper.data_to_send())
        start = channel.now()
        while True:
            event = await self._next_event(DimseTimeout, self.options.dimse_timeout)
            if isinstance(event, MessageReceived):
                status = await self._echo_response(event, message_id)
                if logs.enabled:
                    self._log_echo_response(message_id, status, channel.now() - start)
                return status
            if isinstance(event, ReleaseRequested):
                # The peer released with our request outstanding: answer
                # it (PS3.8 Evt14) rather than leave it waiting, then fail.
                await self._answer_release()
                await channel.aclose()
            self._raise_for(event)

    def _check_echo_response(
        self, event: MessageReceived, message_id: int
    ) -> tuple[int, str | None]:
        """(status, None) for a valid C-ECHO-RSP to `message_id`, else (0, why not)."""
        message = event.message
        try:
            command = decode_command(message.command)
        except PDUError as exc:
            return 0, exc.message
        if command.command_field != C_ECHO_RSP:
            return 0, f"expected a C-ECHO-RSP, got command field 0x{command.command_field:04X}"
        if command.message_id_being_responded_to != message_id:
            answered = command.message_id_being_responded_to
            return 0, f"C-ECHO-RSP answers message ID {answered}, not {message_id}"
        if command.status is None:
            return 0, "C-ECHO-RSP has no Status (0000,0900)"
        if message.data_set is not None or command.has_data_set:
            return 0, "C-ECHO-RSP carries a data set"
        return command.status, None

    def _violation(self, problem: str, now: float) -> ProtocolError:
        """PS3.8 AA-8 for a response we cannot accept: a service-provider
        A-ABORT (reason: invalid PDU parameter value) goes out."""
        self._upper.protocol_violation(PDUError(problem, 0), now)
        return self._protocol_error(problem)

    def _protocol_error(self, problem: str) -> ProtocolError:
        error = ProtocolError(f"protocol error from the peer, association aborted: {problem}")
        self._log_failure("protocol_error", error, reason=problem)
        return error

    async def _echo_response(self, event: MessageReceived, message_id: int) -> int:
        status, problem = self._check_echo_response(event, message_id)
        if problem is not None:
            assert self._channel is not None
            error = self._violation(problem, self._channel.now())
            await self._channel.send(self._upper.data_to_send())
            await self._channel.aclose()
            raise error
        return status

    async def release(self) -> None:
        """A-RELEASE (PS3.8 7.2); handles a release collision (Sta9-Sta12)."""
        channel, upper = self._channel, self._upper
        if channel is None or (upper.state is not State.STA6 and not self._pending):
            return
        start = channel.now()
        if upper.state is State.STA6:
            # (otherwise the read that ended the last phase also ended, or
            # began to release, the association: the pending events say how)
            upper.release()
            if logs.enabled:
                self._log("release.request")
            await channel.send(upper.data_to_send())
        try:
            while self._pending or not upper.should_close:
                event = await self._next_event(AcseTimeout, self.options.acse_timeout)
                if isinstance(event, ReleaseConfirmed):
                    continue
                if isinstance(event, ReleaseRequested):
                    # A collision: the requestor answers first (PS3.8 7.2,
                    # AR-9, Sta11). Or the peer asked first, in the read that
                    # ended the echo (AR-4): the association is released.
                    await self._answer_release()
                    if event.collision:
                        continue
                    break
                if isinstance(event, MessageReceived):
                    continue  # AR-6: a late message, nothing to do with it
                self._raise_for(event)
        except BaseException:
            # Cancelled or failed while the association still exists (Sta7):
            # abort it, A-ABORT first, rather than only drop the connection.
            await _shielded_abort(self)
            raise
        await channel.aclose()
        self.release_time = channel.now() - start
        if logs.enabled:
            self._log_released()

    async def _answer_release(self) -> None:
        """A-RELEASE response (Evt14), unless a later PDU of the same read
        has already ended the association."""
        channel, upper = self._channel, self._upper
        assert channel is not None
        if upper.action_for(Evt.EVT14) is not None:
            upper.release_response(channel.now())
            await channel.send(upper.data_to_send())

    async def abort(self) -> None:
        """A-ABORT (PS3.8 7.3): send it and close at once."""
        self._log("abort.request")
        await self._abort_now()

    async def _abort_now(self) -> None:
        channel, upper = self._channel, self._upper
        if channel is None:
            return
        if upper.state not in (State.STA1, State.STA13):
            upper.abort(channel.now())
            await channel.send(upper.data_to_send())
        # AA-1 would wait in Sta13 for the peer to close; nothing more is
        # expected from it, so close now (after the A-ABORT is flushed).
        await channel.aclose()

    async def _release_quietly(self) -> None:
        try:
            await self.release()
        except EchoError:
            await self._abort_now()

    # --- log events ------------------------------------------------------------------
    # One place for each event's fields, so that they are the same whichever
    # path runs the association (this coroutine one, or echo_driver's on
    # asyncio): every event has `assoc` and `peer`; the values are flat
    # (str, int, float, bool, None, lists of str), never PDU objects, except
    # in the two debug-level `*.pdu` events that exist to carry the PDU.
    # Callers on the hot path test `logs.enabled` first.

    def _log(self, event: str, level: str = "info", **fields: Any) -> None:
        logs.log(event, level, assoc=self.id, peer=self._peer_text, **fields)

    def _log_request(self) -> None:
        """associate.request: what we propose (the connect is done by now)."""
        rq, options = self.rq, self.options
        # The PDU itself only in a debug event of its own, for a renderer
        # that dumps it (the CLI's -d; its repr never shows a passcode).
        self._log("associate.request.pdu", "debug", pdu=rq)
        contexts = rq.presentation_contexts
        identity = options.user_identity
        self._log(
            "associate.request",
            calling_ae=rq.calling_ae,
            called_ae=rq.called_ae,
            contexts=len(contexts),
            abstract_syntaxes=sorted({pc.abstract_syntax for pc in contexts}),
            transfer_syntaxes=list(options.transfer_syntaxes),
            max_pdu=options.max_pdu,
            user_identity=None
            if identity is None
            else USER_IDENTITY_TYPE_NAMES.get(identity.identity_type, str(identity.identity_type)),
            tls_version=self._channel.tls_version if self._channel is not None else None,
            connect_seconds=self.connect_time,
        )

    def _log_accepted(self) -> None:
        ac = self.ac
        assert ac is not None
        self._log("associate.accepted.pdu", "debug", pdu=ac, rq=self.rq)
        self._log(
            "associate.accepted",
            calling_ae=self.rq.calling_ae,
            called_ae=self.rq.called_ae,
            peer_ae=ac.called_ae,
            contexts_accepted=sum(1 for pc in ac.presentation_contexts if pc.result == 0),
            transfer_syntax=self.transfer_syntax,
            peer_max_pdu=ac.max_length,
            peer_implementation_class_uid=ac.implementation_class_uid,
            peer_implementation_version_name=ac.implementation_version_name,
            seconds=self.associate_time,
        )

    def _log_echo_response(self, message_id: int, status: int, seconds: float) -> None:
        from asyncecho.protocol.dimse import status_name

        self._log(
            "echo.response",
            message_id=message_id,
            status=status,
            status_name=status_name(status),
            seconds=seconds,
        )

    def _log_released(self) -> None:
        total = self._channel.now() - self._started if self._channel is not None else None
        self._log("release.confirmed", seconds=self.release_time, total_seconds=total)

    def _log_timeout(self, error: EchoTimeout) -> None:
        self._log_failure("timeout", error, phase=error.phase, timeout=error.timeout)

    def _log_failure(self, event: str, error: EchoError, **fields: Any) -> None:
        """A failure: a warning when the peer or the network is the cause (a
        target being down is no error of this program), an error when this
        machine is (LocalResourceError)."""
        if logs.enabled:
            level = "error" if isinstance(error, LocalResourceError) else "warning"
            self._log(event, level, outcome=error.outcome, **fields)

    # --- what the association is --------------------------------------------------------

    @property
    def _peer_text(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def peer_max_pdu(self) -> int | None:
        return self.ac.max_length if self.ac else None

    @property
    def user_identity_response(self) -> bytes | None:
        if self.ac is None:
            return None
        for item in self.ac.user_items:
            if isinstance(item, UserIdentityAC):
                return item.server_response
        return None

    def result(
        self,
        status: int | None,
        message_id: int | None,
        echo_time: float | None,
        *,
        total: float | None,
    ) -> EchoResult:
        ac = self.ac
        return EchoResult(
            host=self.host,
            port=self.port,
            status=status,
            message_id=message_id,
            timings=Timings(
                self.connect_time, self.associate_time, echo_time, self.release_time, total
            ),
            peer_ae=ac.called_ae if ac else None,
            peer_implementation_class_uid=ac.implementation_class_uid if ac else None,
            peer_implementation_version_name=ac.implementation_version_name if ac else None,
            peer_max_pdu=ac.max_length if ac else None,
            transfer_syntax=self.transfer_syntax,
            tls_version=self._channel.tls_version if self._channel else None,
            user_identity_response=self.user_identity_response,
        )


_DEFAULT_OPTIONS = EchoOptions()  # frozen: one for every call that changes nothing


def _options(base: EchoOptions | None, settings: tuple[object, ...]) -> EchoOptions:
    """`base` (or the defaults) with the keywords given applied on top (the
    documented behaviour of echo(), verify() and associate()). `settings`:
    every option keyword's value, in `_OPTION_NAMES` order."""
    if base is None:
        base = _DEFAULT_OPTIONS
    elif not isinstance(base, EchoOptions):
        raise TypeError(f"options must be an EchoOptions or None, not {type(base).__name__}")
    # The usual call gives none: every value is its own Default, which the
    # tuple comparison finds by identity, item by item, without building
    # anything (echo() is the hot path of a sweep).
    if settings == _NOTHING_GIVEN:
        return base
    return replace(base, **given(_OPTION_NAMES, settings))


def _checked(host: str, port: int) -> tuple[str, int]:
    """Checked before any I/O, so that every backend answers alike (asyncio
    took None for localhost; a port out of range was a raw OverflowError,
    an ExceptionGroup on trio, and a str port a name-resolution failure)."""
    return arguments.host(host), arguments.port(port)



# The options' entries of the Args section, the same for echo(), verify()
# and associate(): written once, put in place of each docstring's "@options".
_OPTIONS_DOC = """\
        calling_ae: Our AE title. Default "ECHOSCU".
        called_ae: The peer's AE title. Default "ANY-SCP".
        transfer_syntaxes: The transfer syntax UIDs proposed for
            Verification. Default: Explicit VR Little Endian, Implicit VR
            Little Endian, Deflated Explicit VR Little Endian, Explicit VR
            Big Endian (`uids.DEFAULT_TRANSFER_SYNTAXES`).
        max_pdu: The largest PDU we accept, in bytes (PS3.8 D.1); 0 = no
            limit, else 7-4294967295. Default 16382.
        connect_timeout: Seconds for the TCP connect and the TLS handshake.
            Default 30.
        acse_timeout: Seconds for each A-ASSOCIATE and A-RELEASE answer.
            Default 30.
        dimse_timeout: Seconds for each C-ECHO-RSP. Default 30.
        network_timeout: Seconds without a byte from the peer. Default 30.
        deadline: Seconds for everything, connect to release. Default None
            (no limit but the phases').
        ssl: An `ssl.SSLContext` for DICOM over TLS (see `asyncecho.tls`).
            Default None: plain TCP.
        server_hostname: The name the peer's certificate must match.
            Default None: `host` (with `ssl`).
        user_identity: User Identity negotiation (PS3.7 D.3.3.7), from
            `asyncecho.identity.user_identity()`. Default None.
        user_items: Further User Information sub-items to send. Default ().
        options: An `EchoOptions` holding any of the above; the keywords
            given as well apply on top of it (even one given with its
            default value). Default None: the defaults.
"""

_F = TypeVar("_F", bound=Callable[..., Any])


def _options_documented(func: _F) -> _F:
    if func.__doc__:  # (none under python -OO)
        func.__doc__ = func.__doc__.replace("        @options\n", _OPTIONS_DOC)
    return func


@_options_documented
def associate(
    host: str,
    port: int,
    *,
    calling_ae: str = _OPTION["calling_ae"],
    called_ae: str = _OPTION["called_ae"],
    transfer_syntaxes: Sequence[str] = _OPTION["transfer_syntaxes"],
    max_pdu: int = _OPTION["max_pdu"],
    connect_timeout: float | None = _OPTION["connect_timeout"],
    acse_timeout: float | None = _OPTION["acse_timeout"],
    dimse_timeout: float | None = _OPTION["dimse_timeout"],
    network_timeout: float | None = _OPTION["network_timeout"],
    deadline: float | None = _OPTION["deadline"],
    ssl: _ssl.SSLContext | None = _OPTION["ssl"],
    server_hostname: str | None = _OPTION["server_hostname"],
    user_identity: UserIdentityRQ | None = _OPTION["user_identity"],
    user_items: Sequence[UserItem] = _OPTION["user_items"],
    options: EchoOptions | None = None,
) -> AbstractAsyncContextManager[Association]:
    """Open an association for several echoes.

    `async with associate(host, port) as assoc:` then `await assoc.echo()`
    (message IDs 1, 2, ...); released on normal exit, aborted on an
    exception or cancellation.

    Every timeout is a finite number of seconds > 0, or None for no limit;
    a limit never fires early (on asyncio, up to 10 ms late).

    Args:
        host: The peer's host name or address.
        port: Its TCP port, 1-65535.
        @options

    Raises:
        EchoError: On entering the block, a subclass for anything the peer
            or the network did (see the README's Failures table).
        TypeError, ValueError: A bad argument, at the call (before any I/O).
    """
    host, port = _checked(host, port)
    settings = (
        calling_ae,
        called_ae,
        transfer_syntaxes,
        max_pdu,
        connect_timeout,
        acse_timeout,
        dimse_timeout,
        network_timeout,
        deadline,
        ssl,
        server_hostname,
        user_identity,
        user_items,
    )
    return _associated(Association(host, port, _options(options, settings)))


@asynccontextmanager
async def _associated(assoc: Association) -> AsyncIterator[Association]:
    try:
        await assoc._open()
    except BaseException:
        await _shielded_abort(assoc)
        raise
    try:
        yield assoc
    except BaseException:
        await _shielded_abort(assoc)
        raise
    try:
        await assoc.release()
    except BaseException:
        await _shielded_abort(assoc)
        raise


async def _shielded_abort(assoc: Association) -> None:
    if assoc._channel is None:
        return
    if on_asyncio():
        # asyncio's transport calls never block: nothing to shield.
        await assoc._abort_now()
        return
    import anyio

    with anyio.CancelScope(shield=True):
        await assoc._abort_now()


async def _echo_streams(assoc: Association) -> EchoResult:
    """`echo()` on other backends (trio): the coroutine path."""
    async with _associated(assoc):
        channel = assoc._channel
        assert channel is not None
        start = channel.now()
        assoc.status = await assoc.echo()
        assoc.echo_time = channel.now() - start
    return assoc.result(assoc.status, 1, assoc.echo_time, total=channel.now() - assoc._started)


@_options_documented
async def echo(
    host: str,
    port: int,
    *,
    calling_ae: str = _OPTION["calling_ae"],
    called_ae: str = _OPTION["called_ae"],
    transfer_syntaxes: Sequence[str] = _OPTION["transfer_syntaxes"],
    max_pdu: int = _OPTION["max_pdu"],
    connect_timeout: float | None = _OPTION["connect_timeout"],
    acse_timeout: float | None = _OPTION["acse_timeout"],
    dimse_timeout: float | None = _OPTION["dimse_timeout"],
    network_timeout: float | None = _OPTION["network_timeout"],
    deadline: float | None = _OPTION["deadline"],
    ssl: _ssl.SSLContext | None = _OPTION["ssl"],
    server_hostname: str | None = _OPTION["server_hostname"],
    user_identity: UserIdentityRQ | None = _OPTION["user_identity"],
    user_items: Sequence[UserItem] = _OPTION["user_items"],
    options: EchoOptions | None = None,
) -> EchoResult:
    """Associate, send one C-ECHO, release; return the result.

    Every timeout is a finite number of seconds > 0, or None for no limit;
    a limit never fires early (on asyncio, up to 10 ms late).

    Args:
        host: The peer's host name or address.
        port: Its TCP port, 1-65535.
        @options

    Returns:
        The `EchoResult`; a non-success C-ECHO status is in it (falsy), not
        raised.

    Raises:
        EchoError: A subclass for anything the peer or the network did (see
            the README's Failures table).
        TypeError, ValueError: A bad argument, before any I/O.
    """
    host, port = _checked(host, port)
    settings = (
        calling_ae,
        called_ae,
        transfer_syntaxes,
        max_pdu,
        connect_timeout,
        acse_timeout,
        dimse_timeout,
        network_timeout,
        deadline,
        ssl,
        server_hostname,
        user_identity,
        user_items,
    )
    assoc = Association(host, port, _options(options, settings))
    del settings  # not kept alive in the frame while the association runs
    try:
        if not on_asyncio():
            return await _echo_streams(assoc)
        # On asyncio, after the connect, the association runs in the
        # transport's callbacks (see `echo_driver`) and this task wakes once.
        # Written out here rather than in a helper coroutine, and with
        # Association._connect inline: every coroutine level is one more
        # object per association in flight for the collector to walk.
        connect, kind = assoc._connect_request()
        opening = open_asyncio_channel(*connect)
        del connect  # not kept alive while the connect is in flight: one object fewer
        try:
            channel = await opening
        except OSError as exc:  # (TimeoutError and ssl.SSLError among them)
            raise assoc._connect_failed(exc, kind) from None
        del opening  # (finished) nor while the association runs
        assoc._channel = channel
        assoc.connect_time = channel.now() - assoc._started
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        driver = EchoDriver(assoc, channel, done)
        try:
            driver.start()
            status = await done
        except BaseException:
            driver.abort()
            raise
        return assoc.result(status, 1, assoc.echo_time, total=channel.now() - assoc._started)
    except EchoError as error:
        error._association = assoc  # what was learnt before it, for verify()
        raise


@_options_documented
async def verify(
    host: str,
    port: int,
    *,
    calling_ae: str = _OPTION["calling_ae"],
    called_ae: str = _OPTION["called_ae"],
    transfer_syntaxes: Sequence[str] = _OPTION["transfer_syntaxes"],
    max_pdu: int = _OPTION["max_pdu"],
    connect_timeout: float | None = _OPTION["connect_timeout"],
    acse_timeout: float | None = _OPTION["acse_timeout"],
    dimse_timeout: float | None = _OPTION["dimse_timeout"],
    network_timeout: float | None = _OPTION["network_timeout"],
    deadline: float | None = _OPTION["deadline"],
    ssl: _ssl.SSLContext | None = _OPTION["ssl"],
    server_hostname: str | None = _OPTION["server_hostname"],
    user_identity: UserIdentityRQ | None = _OPTION["user_identity"],
    user_items: Sequence[UserItem] = _OPTION["user_items"],
    options: EchoOptions | None = None,
) -> EchoResult:
    """Like `echo()`, but never raises for what the peer or the network did.

    Every timeout is a finite number of seconds > 0, or None for no limit;
    a limit never fires early (on asyncio, up to 10 ms late).

    Args:
        host: The peer's host name or address.
        port: Its TCP port, 1-65535.
        @options

    Returns:
        The `EchoResult`: truthy only on success; otherwise its `error` is
        the `EchoError` and its timings those of the phases it got through.

    Raises:
        TypeError, ValueError: A bad argument, before any I/O.
        Cancellation propagates.
    """
    settings = (
        calling_ae,
        called_ae,
        transfer_syntaxes,
        max_pdu,
        connect_timeout,
        acse_timeout,
        dimse_timeout,
        network_timeout,
        deadline,
        ssl,
        server_hostname,
        user_identity,
        user_items,
    )
    merged = _options(options, settings)
    del settings
    try:
        return await echo(host, port, options=merged)
    except EchoError as error:
        assoc = error._association
        if assoc is None:  # pragma: no cover - echo() sets it on every EchoError
            return EchoResult(host, port, error=error)
        end = assoc._channel.now() if assoc._channel is not None else _clock()
        total = end - assoc._started if assoc._started else None
        message_id = 1 if assoc.status is not None else None
        partial = assoc.result(assoc.status, message_id, assoc.echo_time, total=total)
        return replace(partial, error=error)
