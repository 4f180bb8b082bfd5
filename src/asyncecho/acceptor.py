"""The Verification SCP as pure logic: an `UpperLayer` in the acceptor role
plus the decisions an SCP makes (accept or reject the association, answer
each C-ECHO-RQ, answer the release). Both server transports drive it."""

from __future__ import annotations

from dataclasses import dataclass

from .dimse import C_ECHO_RQ, STATUS_SUCCESS, decode_command, encode_echo_rsp
from .events import Aborted, AssociationRequested, Event, MessageReceived, ReleaseRequested
from .negotiation import AcceptorPolicy, build_ac, busy_reject, reject_for
from .pdu import AssociateRJ, AssociateRQ
from .protocol_errors import PDUError
from .state_machine import State
from .upper_layer import UpperLayer

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


class VerificationAcceptor:
    """One incoming association. Feed it what the transport reports; write
    `data_to_send()`, close when `should_close`, call `handle_timer(now)` at
    `next_deadline()`."""

    def __init__(
        self, policy: AcceptorPolicy, *, artim_timeout: float = 30.0, busy: bool = False
    ) -> None:
        self.policy = policy
        self.busy = busy
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
        self.upper.connection_made(now)

    def connection_lost(self, now: float) -> list[object]:
        return list(self.upper.connection_lost(now))

    def handle_timer(self, now: float) -> list[object]:
        return list(self.upper.handle_timer(now))

    def abort(self, now: float) -> None:
        self.upper.abort(now)

    def receive_data(self, data: bytes, now: float) -> list[object]:
        """Returns what happened, for the caller's logs."""
        happened: list[object] = []
        for event in self.upper.receive_data(data, now):
            happened.extend(self._handle(event, now))
        return happened

    def _handle(self, event: Event, now: float) -> list[object]:
        upper = self.upper
        if isinstance(event, AssociationRequested):
            rq = event.rq
            rj = busy_reject() if self.busy else reject_for(rq, self.policy)
            if rj is not None:
                upper.reject(rj, now)
                return [AssociationRefused(rq, rj)]
            upper.accept(build_ac(rq, self.policy), now)
            return [AssociationEstablished(rq)]
        if isinstance(event, MessageReceived):
            return self._answer(event, now)
        if isinstance(event, ReleaseRequested):
            upper.release_response(now)  # AR-4 (or AR-4 from Sta12 in a collision)
            return [event]
        return [event]

    def _answer(self, event: MessageReceived, now: float) -> list[object]:
        message = event.message
        try:
            command = decode_command(message.command)
        except PDUError as error:
            self.upper.abort(now)
            return [Aborted(2, error.abort_reason, by_peer=False, error=error)]
        if command.message_id is None or command.command_field & 0x8000:
            # A response, or a request without a message ID: not ours to answer.
            self.upper.abort(now)
            return [Aborted(2, 2, by_peer=False, error=PDUError("unexpected DIMSE message", 0))]
        if self.upper.state is not State.STA6:
            return []  # AR-6/Sta7: no response once we asked to release
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
