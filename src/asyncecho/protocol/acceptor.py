"""The Verification SCP's session: one incoming association, sans I/O.

`AcceptorSession` owns the SCP's whole association lifecycle: an
`UpperLayer` in the acceptor role, the SCP's decisions (accept or reject the
association, answer each C-ECHO-RQ, answer the release) and every timer as
data. A driver feeds it what the transport reports (`connection_made`,
`receive_data`, `touch`, `connection_lost`), writes `data_to_send()`, closes
when `should_close`, and arms one timer at `next_deadline()`, calling
`handle_timer(now)` when it comes. What happened comes back as events (the
classes below and `protocol.events`), each meaning one thing for the driver:
no driver looks at the state.

Imports only the rest of `asyncecho.protocol` (no I/O, no clock).
"""

from __future__ import annotations

from dataclasses import dataclass

from asyncecho.protocol.dimse import C_ECHO_RQ, STATUS_SUCCESS, decode_command, encode_echo_rsp
from asyncecho.protocol.errors import ABORT_REASON_NOT_SPECIFIED, PDUError
from asyncecho.protocol.events import AssociationRequested, Event, MessageReceived, ReleaseRequested
from asyncecho.protocol.negotiation import AcceptorPolicy, build_ac, busy_reject, user_identity
from asyncecho.protocol.pdu import (
    ABORT_SOURCE_PROVIDER,
    Abort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
)
from asyncecho.protocol.pdu_items import UserIdentityAC, UserIdentityRQ, UserItem
from asyncecho.protocol.state_machine import State
from asyncecho.protocol.upper_layer import UpperLayer

# PS3.7 C.5.3: status for an operation the SCP does not recognise.
STATUS_UNRECOGNIZED_OPERATION = 0x0211
# PS3.7 D.3.3.7 / PS3.8 Table 9-21: a refused identity is rejected permanent,
# by the service user, no reason given.
IDENTITY_REJECT = AssociateRJ(1, 1, 1)
# PS3.8 Table 9-26: A-ABORT from the service provider, reason not specified
# (what `fail()` sends).
PROVIDER_ABORT = Abort(ABORT_SOURCE_PROVIDER, ABORT_REASON_NOT_SPECIFIED).encode()

_STA2, _STA13 = State.STA2, State.STA13
# No association to abort: no transport (Sta1), or already over (Sta13).
# Once there, the association is over: `AssociationEnded`.
_OVER = _NOTHING_TO_ABORT = (State.STA1, State.STA13)


@dataclass(frozen=True, slots=True)
class EchoAnswered:
    """We answered a C-ECHO-RQ (or refused another request: any status
    but Success)."""

    message_id: int
    status: int


@dataclass(frozen=True, slots=True)
class AssociationRefused:
    """We sent an A-ASSOCIATE-RJ."""

    rq: AssociateRQ
    rj: AssociateRJ


@dataclass(frozen=True, slots=True)
class AssociationEstablished:
    """We sent an A-ASSOCIATE-AC: `ac` answers `rq`."""

    rq: AssociateRQ
    ac: AssociateAC


@dataclass(frozen=True, slots=True)
class IdentityCheckNeeded:
    """The RQ passed the policy; the user's identity check decides (call
    `decide`). `identity` is None when the requestor sent none."""

    rq: AssociateRQ
    identity: UserIdentityRQ | None


@dataclass(frozen=True, slots=True)
class Stalled:
    """The peer was too slow for our limits, and we aborted (an A-ABORT is
    in `data_to_send()`): the driver closes once it is written (ARTIM, now
    running, bounds that wait). `kind` is "idle" (nothing received for
    `network_timeout`), "slow-pdu" (one PDU took longer than
    `dimse_timeout`), or, from a driver that finds it itself, "not-reading"
    (the peer does not take what we send)."""

    kind: str


@dataclass(frozen=True, slots=True)
class AssociationEnded:
    """The association is over (released, rejected, aborted, timed out or
    closed: Sta13, where only the transport close is awaited, or Sta1).
    Handed out once per session, so that a driver frees the association's
    slot without waiting for the close."""


ENDED = AssociationEnded()


class AcceptorSession:
    """One incoming association, for the Verification SCP.

    Events out (lists, in the order they happened): `AssociationEstablished`,
    `AssociationRefused`, `IdentityCheckNeeded`, `EchoAnswered`,
    `ReleaseRequested`, `Aborted`, `Stalled`, `AssociationEnded`.

    Timers: `next_deadline()` is ARTIM while it runs (before the
    A-ASSOCIATE-RQ, and after the end until the close: PS3.8 9.1.4), else
    the nearer of the network idle limit (the last byte from the peer +
    `network_timeout`) and the slow-PDU limit (when the PDU in progress
    began + `dimse_timeout`; a trickle resets the first, never the second).
    `handle_timer(now)` does what is due at `now` and nothing before it.
    """

    __slots__ = (
        "_ended",
        "_happened",
        "_last",
        "_partial_since",
        "_upper",
        "busy",
        "check_identity",
        "dimse_timeout",
        "network_timeout",
        "policy",
    )

    def __init__(
        self,
        policy: AcceptorPolicy,
        *,
        artim_timeout: float = 30.0,
        busy: bool = False,
        check_identity: bool = False,
        network_timeout: float | None = None,
        dimse_timeout: float | None = None,
    ) -> None:
        self.policy = policy
        self.busy = busy  # every RQ is refused: transient, local limit exceeded
        self.check_identity = check_identity
        self.network_timeout = network_timeout
        self.dimse_timeout = dimse_timeout
        self._last = 0.0  # when the peer last sent anything (or took our data)
        self._partial_since: float | None = None  # when the PDU now in progress began
        self._happened: list[object] | None = None  # while a read is taken in
        self._ended = False  # AssociationEnded was handed out
        self._upper = UpperLayer(
            requestor=False, max_pdu=policy.max_pdu, artim_timeout=artim_timeout
        )

    # --- outputs ------------------------------------------------------------------------

    @property
    def should_close(self) -> bool:
        """The table says close the transport (at once, after a timer)."""
        return self._upper.should_close

    @property
    def partial_pdu(self) -> bool:
        """Part of a PDU is buffered (a moment to force out a TCP ACK)."""
        return self._partial_since is not None

    def data_to_send(self) -> bytes:
        return self._upper.data_to_send()

    def next_deadline(self) -> float | None:
        """When `handle_timer` next has something to do (None: nothing)."""
        artim = self._upper.artim_deadline
        if artim is not None:
            # ARTIM runs exactly while there is no association (Sta2, Sta13):
            # it alone bounds the wait then.
            return artim
        network, dimse, since = self.network_timeout, self.dimse_timeout, self._partial_since
        when = None if network is None else self._last + network
        if since is not None and dimse is not None:
            slow = since + dimse
            if when is None or slow < when:
                when = slow
        return when

    # --- inputs ---------------------------------------------------------------------------

    def connection_made(self, now: float) -> None:
        self._last = now
        self._upper.connection_made(now)  # Evt5: Sta2, ARTIM

    def touch(self, now: float) -> None:
        """The peer showed it is alive without sending (it read our data)."""
        self._last = now

    def receive_data(self, data: bytes, now: float) -> list[object]:
        """Bytes from the peer; what happened, in order."""
        self._last = now
        happened: list[object] = []
        self._happened = happened
        try:
            # Each event answered as its PDU is taken in, before the next
            # PDU of the same read: exactly as if TCP had delivered them
            # one by one (see UpperLayer.receive_data).
            self._upper.receive_data(data, now, self._on_event)
        finally:
            self._happened = None
        if not self._upper.partial_pdu:
            self._partial_since = None
        elif self._partial_since is None:
            self._partial_since = now
        return self._ending(happened)

    def decide(self, accepted: bool, server_response: bytes | None, now: float) -> list[object]:
        """The identity check's answer (after `IdentityCheckNeeded`). The
        server response is sent only if the requestor asked for one."""
        upper = self._upper
        rq = upper.rq
        if upper.state is not State.STA3 or rq is None:
            # Needed: the check ran while the peer could still act (an
            # A-ABORT, an invalid PDU, a close, our idle limit): then
            # there is nothing left to accept or reject.
            return []
        if not accepted:
            upper.reject(IDENTITY_REJECT, now)
            return self._ending([AssociationRefused(rq, IDENTITY_REJECT)])
        identity = user_identity(rq)
        extra: list[UserItem] = []
        if identity is not None and identity.positive_response_requested:
            extra.append(UserIdentityAC(server_response or b""))
        ac = build_ac(rq, self.policy, extra)
        upper.accept(ac, now)
        return [AssociationEstablished(rq, ac)]

    def handle_timer(self, now: float) -> list[object]:
        """Whatever is due at `now`: ARTIM's expiry (Evt18, AA-2: then
        `should_close`, and nothing more is awaited), or a peer too slow for
        our limits (an A-ABORT, `Stalled`). Before `next_deadline()`,
        nothing."""
        upper = self._upper
        if upper.artim_deadline is not None:
            # (a no-op before the deadline; after it AA-2: Sta1)
            return self._ending(list(upper.handle_timer(now)))
        kind: str | None = None
        network = self.network_timeout
        since, dimse = self._partial_since, self.dimse_timeout
        if network is not None and now >= self._last + network:
            kind = "idle"
        elif since is not None and dimse is not None and now >= since + dimse:
            kind = "slow-pdu"
        if kind is None:
            return []
        upper.abort(now)  # AA-1: A-ABORT, Sta13, ARTIM bounds the close
        self._partial_since = None
        return self._ending([Stalled(kind)])

    def connection_lost(self, now: float) -> list[object]:
        return self._ending(list(self._upper.connection_lost(now)))

    def abort(self, now: float) -> list[object]:
        """Abort the association (the server is shutting down): an A-ABORT
        to write before closing, where there is an association to abort.
        Before the A-ASSOCIATE-RQ (Sta2) there is none: just close."""
        if self._upper.state is _STA2:
            return []
        self._upper.abort(now)  # (a no-op in Sta1 and Sta13)
        return self._ending([])

    def fail(self) -> bytes:
        """A bug met while serving this connection ends it: the A-ABORT to
        write before closing (service provider, reason not specified), or
        nothing where there is no association to abort. The upper layer is
        not asked to do anything more (it may be what failed)."""
        return b"" if self._upper.state in _NOTHING_TO_ABORT else PROVIDER_ABORT

    # --- the SCP's decisions -----------------------------------------------------------------

    def _ending(self, happened: list[object]) -> list[object]:
        if not self._ended and self._upper.state in _OVER:
            self._ended = True
            happened.append(ENDED)
        return happened

    def _on_event(self, event: Event) -> None:
        # (a bound method and the read's list on self, not a closure per
        # read: fewer objects made for every PDU)
        happened = self._happened
        assert happened is not None
        now = self._last
        if isinstance(event, MessageReceived):
            self._answer(event, now, happened)
        elif isinstance(event, AssociationRequested):
            self._associate(event.rq, now, happened)
        elif isinstance(event, ReleaseRequested):
            # Delivered as the A-RELEASE-RQ is taken in (AR-2: Sta8), and an
            # SCP never requests a release itself (no collision, AR-8): the
            # response (AR-4) is always the table's next step.
            self._upper.release_response(now)
            happened.append(event)
        else:  # Aborted
            happened.append(event)

    def _associate(self, rq: AssociateRQ, now: float, happened: list[object]) -> None:
        # Delivered as the A-ASSOCIATE-RQ is taken in (AE-6, acceptable:
        # Sta3), before any later PDU of the same read could end it.
        answer = busy_reject() if self.busy else self.policy.answer(rq)
        if isinstance(answer, AssociateRJ):
            self._upper.reject(answer, now)
            happened.append(AssociationRefused(rq, answer))
        elif self.check_identity:
            happened.append(IdentityCheckNeeded(rq, user_identity(rq)))
        else:
            self._upper.accept(answer, now)
            happened.append(AssociationEstablished(rq, answer))

    def _answer(self, event: MessageReceived, now: float, happened: list[object]) -> None:
        upper = self._upper
        message = event.message
        try:
            command = decode_command(message.command)
        except PDUError as error:
            happened += upper.protocol_violation(error, now)
            return
        if command.message_id is None or command.command_field & 0x8000:
            # A response, or a request without a message ID: not ours to answer.
            unexpected = PDUError("unexpected DIMSE message (a response, or no Message ID)", 0)
            happened += upper.protocol_violation(unexpected, now)
            return
        # (A message comes only in Sta6: each is handed over as its PDU is
        # taken in, never from a PDU that went on to be invalid; an SCP
        # never asks to release, so never Sta7; Sta8 comes only after it.)
        if command.command_field == C_ECHO_RQ and not command.has_data_set:
            status = STATUS_SUCCESS
            rsp = encode_echo_rsp(command.message_id, status)
        else:
            status = STATUS_UNRECOGNIZED_OPERATION
            rsp = encode_echo_rsp(
                command.message_id,
                status,
                command.affected_sop_class_uid,
                command.command_field | 0x8000,
            )
        upper.send_message(message.context_id, rsp)
        happened.append(EchoAnswered(command.message_id, status))
