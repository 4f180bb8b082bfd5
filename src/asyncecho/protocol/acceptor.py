"""The Verification SCP as pure logic: an `UpperLayer` in the acceptor role
plus the decisions an SCP makes (accept or reject the association, answer
each C-ECHO-RQ, answer the release). Both server transports drive it."""

from __future__ import annotations

from dataclasses import dataclass

from asyncecho.protocol.dimse import C_ECHO_RQ, STATUS_SUCCESS, decode_command, encode_echo_rsp
from asyncecho.protocol.errors import PDUError
from asyncecho.protocol.events import AssociationRequested, Event, MessageReceived, ReleaseRequested
from asyncecho.protocol.negotiation import AcceptorPolicy, build_ac, busy_reject, user_identity
from asyncecho.protocol.pdu import AssociateRJ, AssociateRQ
from asyncecho.protocol.pdu_items import UserIdentityAC, UserIdentityRQ, UserItem
from asyncecho.protocol.state_machine import Event as Evt
from asyncecho.protocol.state_machine import State
from asyncecho.protocol.upper_layer import UpperLayer

# Before the A-ASSOCIATE-RQ and after the end, ARTIM bounds the waits instead.
_NOT_ASSOCIATED = (State.STA2, State.STA13)
# A C-ECHO-RQ may still be answered (Sta8: the peer asked to release in the
# same read, AR-7 before the RP).
_MAY_ANSWER = (State.STA6, State.STA8)

# PS3.7 C.5.3: status for an operation the SCP does not recognise.
STATUS_UNRECOGNIZED_OPERATION = 0x0211


@dataclass(frozen=True, slots=True)
class EchoAnswered:
    """We answered a C-ECHO-RQ (for logging)."""

    message_id: int
    status: int


@dataclass(frozen=True, slots=True)
class AssociationRefused:
    """We sent an A-ASSOCIATE-RJ (for logging)."""

    rq: AssociateRQ
    rj: AssociateRJ


@dataclass(frozen=True, slots=True)
class AssociationEstablished:
    rq: AssociateRQ


@dataclass(frozen=True, slots=True)
class IdentityCheckNeeded:
    """The RQ passed the policy; the user's identity check decides (call
    `decide`). `identity` is None when the requestor sent none."""

    rq: AssociateRQ
    identity: UserIdentityRQ | None


# PS3.7 D.3.3.7 / PS3.8 Table 9-21: a refused identity is rejected permanent,
# by the service user, no reason given.
IDENTITY_REJECT = AssociateRJ(1, 1, 1)


class VerificationAcceptor:
    """One incoming association. Feed it what the transport reports; write
    `data_to_send()`, close when `should_close`, call `handle_timer(now)` at
    `next_deadline()`."""

    __slots__ = (
        "_happened",
        "_last",
        "_partial_since",
        "busy",
        "check_identity",
        "dimse_timeout",
        "echoes",
        "network_timeout",
        "policy",
        "upper",
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
        self.busy = busy
        self.check_identity = check_identity
        self.network_timeout = network_timeout
        self.dimse_timeout = dimse_timeout
        self._last = 0.0  # when the peer last sent anything
        self._partial_since: float | None = None  # when the PDU now in progress began
        self._happened: list[object] | None = None  # while a read is taken in
        self.upper = UpperLayer(
            requestor=False, max_pdu=policy.max_pdu, artim_timeout=artim_timeout
        )
        self.echoes = 0

    @property
    def should_close(self) -> bool:
        return self.upper.should_close

    @property
    def state(self) -> State:
        return self.upper.state

    def data_to_send(self) -> bytes:
        return self.upper.data_to_send()

    def next_deadline(self) -> float | None:
        return self.upper.next_deadline()

    def connection_made(self, now: float) -> None:
        self._last = now
        self.upper.connection_made(now)

    def touch(self, now: float) -> None:
        """The peer showed it is alive without sending (it read our data)."""
        self._last = now

    def stall_deadline(self) -> float | None:
        """While associated: when the peer will have been too slow, silent
        for `network_timeout` or one PDU taking longer than `dimse_timeout`
        (a trickle resets the first, never the second). Before the RQ and
        after the end, ARTIM (`next_deadline`) bounds the wait instead."""
        if self.upper.state in _NOT_ASSOCIATED:
            return None
        when = None if self.network_timeout is None else self._last + self.network_timeout
        if self._partial_since is not None and self.dimse_timeout is not None:
            slow = self._partial_since + self.dimse_timeout
            when = slow if when is None else min(when, slow)
        return when

    def stalled(self, now: float) -> str | None:
        """ "idle" or "slow-pdu" once `stall_deadline()` has passed, else None."""
        if self.upper.state in _NOT_ASSOCIATED:
            return None
        if self.network_timeout is not None and now >= self._last + self.network_timeout:
            return "idle"
        if (
            self._partial_since is not None
            and self.dimse_timeout is not None
            and now >= self._partial_since + self.dimse_timeout
        ):
            return "slow-pdu"
        return None

    def connection_lost(self, now: float) -> list[object]:
        return list(self.upper.connection_lost(now))

    def handle_timer(self, now: float) -> list[object]:
        return list(self.upper.handle_timer(now))

    def abort(self, now: float) -> None:
        if self.upper.state is State.STA2:
            return  # no A-ASSOCIATE-RQ yet: nothing to abort, the caller just closes
        self.upper.abort(now)

    def receive_data(self, data: bytes, now: float) -> list[object]:
        """Returns what happened, for the caller's logs."""
        self._last = now
        happened: list[object] = []
        self._happened = happened
        try:
            # Each event answered as its PDU is taken in (see `receive_data`).
            self.upper.receive_data(data, now, self._on_event)
        finally:
            self._happened = None
        if not self.upper.partial_pdu:
            self._partial_since = None
        elif self._partial_since is None:
            self._partial_since = now
        return happened

    def _on_event(self, event: Event) -> None:
        # (a bound method and the read's state on self, not a closure per
        # read: fewer objects made for every PDU)
        assert self._happened is not None
        self._happened.extend(self._handle(event, self._last))

    def _handle(self, event: Event, now: float) -> list[object]:
        upper = self.upper
        if isinstance(event, AssociationRequested):
            if upper.state is not State.STA3:
                # A later PDU of the same read (invalid, or an A-ABORT) has
                # already ended it: there is nothing left to accept or reject.
                return []
            rq = event.rq
            answer = busy_reject() if self.busy else self.policy.answer(rq)
            if isinstance(answer, AssociateRJ):
                upper.reject(answer, now)
                return [AssociationRefused(rq, answer)]
            if self.check_identity:
                return [IdentityCheckNeeded(rq, user_identity(rq))]
            upper.accept(answer, now)
            return [AssociationEstablished(rq)]
        if isinstance(event, MessageReceived):
            return self._answer(event, now)
        if isinstance(event, ReleaseRequested):
            if upper.action_for(Evt.EVT14) is None:
                return [event]  # already aborted by a later PDU of the same read
            upper.release_response(now)  # AR-4 (or AR-4 from Sta12 in a collision)
            return [event]
        return [event]

    def decide(self, accepted: bool, server_response: bytes | None, now: float) -> list[object]:
        """The identity check's answer (after `IdentityCheckNeeded`). The
        server response is sent only if the requestor asked for one."""
        upper = self.upper
        rq = upper.rq
        if upper.state is not State.STA3 or rq is None:
            return []  # the requestor aborted or went away meanwhile
        if not accepted:
            upper.reject(IDENTITY_REJECT, now)
            return [AssociationRefused(rq, IDENTITY_REJECT)]
        identity = user_identity(rq)
        extra: list[UserItem] = []
        if identity is not None and identity.positive_response_requested:
            extra.append(UserIdentityAC(server_response or b""))
        upper.accept(build_ac(rq, self.policy, extra), now)
        return [AssociationEstablished(rq)]

    def _answer(self, event: MessageReceived, now: float) -> list[object]:
        message = event.message
        try:
            command = decode_command(message.command)
        except PDUError as error:
            return list(self.upper.protocol_violation(error, now))
        if command.message_id is None or command.command_field & 0x8000:
            # A response, or a request without a message ID: not ours to answer.
            unexpected = PDUError("unexpected DIMSE message (a response, or no Message ID)", 0)
            return list(self.upper.protocol_violation(unexpected, now))
        if self.upper.state not in _MAY_ANSWER:
            # AR-6/Sta7: no response once we asked to release. Sta8 (the peer
            # asked, in the same read) still allows it (AR-7), before the RP.
            return []
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
        self.upper.send_message(message.context_id, rsp)
        self.echoes += 1
        return [EchoAnswered(command.message_id, status)]
