"""The sans-I/O DICOM upper layer: one association, either role.

Bytes from the peer go in (`receive_data`), primitives from the local user go
in (`request`, `accept`, `send_message`, `release`, `abort` ...), and what
comes out is events for the user, bytes to write (`data_to_send`), whether to
close the transport (`should_close`) and when the ARTIM timer next needs
attention (`next_deadline` / `handle_timer`). No sockets, no clocks: times
are passed in as `now` (any monotonic clock the caller uses consistently).

`UpperLayer` is a `StateMachine` (the table decides every transition; its
state is this object's `state`) that carries out the action the table names
and turns PDUs into the table's events. One object per association rather
than two: thousands of associations in flight each keep it alive, and every
live object is one more for the garbage collector to walk.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache

from .dimse import Message, MessageAssembler, fragment, whole_command
from .events import (
    Aborted,
    AssociationAccepted,
    AssociationRejected,
    AssociationRequested,
    Event,
    MessageReceived,
    ReleaseConfirmed,
    ReleaseRequested,
)
from .framer import DEFAULT_MAX_ASSOCIATE_LENGTH, UNLIMITED_PDATA_CAP, PDUFramer, single_pdu
from .negotiation import answered_contexts, our_contexts
from .pdu import (
    ABORT_SOURCE_PROVIDER,
    ABORT_SOURCE_USER,
    PDU,
    PROTOCOL_VERSION,
    Abort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    PDataTF,
    ReleaseRP,
    ReleaseRQ,
)
from .protocol_errors import (
    ABORT_REASON_NOT_SPECIFIED,
    ABORT_UNEXPECTED_PDU,
    LocalProtocolError,
    PDUError,
)
from .state_machine import Action, State, StateMachine
from .state_machine import Event as Evt

# PS3.8 9.1.4: ARTIM bounds the wait for the first PDU (acceptor) and for the
# transport close after the association ends.
DEFAULT_ARTIM_TIMEOUT = 30.0

_PDU_EVENT = {
    AssociateAC: Evt.EVT3,
    AssociateRJ: Evt.EVT4,
    AssociateRQ: Evt.EVT6,
    PDataTF: Evt.EVT10,
    ReleaseRQ: Evt.EVT12,
    ReleaseRP: Evt.EVT13,
    Abort: Evt.EVT16,
}


def _deliver(
    new: list[Event], events: list[Event], on_event: Callable[[Event], None] | None
) -> list[Event]:
    """Hand `new` to `on_event`, or collect it in `events` (returned)."""
    if on_event is None:
        events.extend(new)
    else:
        for event in new:
            on_event(event)
    return events


@lru_cache(maxsize=256)
def _encode_command(context_id: int, command: bytes, max_pdu: int) -> bytes:
    return b"".join(
        PDataTF((pdv,)).encode() for pdv in fragment(context_id, command, True, max_pdu)
    )


@lru_cache(maxsize=256)
def _encode_associate(pdu: AssociateRQ | AssociateAC) -> bytes:
    # The same RQ (or AC) goes out in every association of a sweep or SCP.
    return pdu.encode()


class UpperLayer(StateMachine):
    """One association's upper layer, as requestor or acceptor. (`fire`,
    inherited, is the bare table lookup: the primitives below are the way
    to drive an association.)"""

    __slots__ = (
        "_assembler",
        "_framer",
        "_max_associate_length",
        "_max_pdata_length",
        "_now",
        "_outbox",
        "_pending_command",
        "_pending_context_id",
        "_pending_data_set",
        "_stream_broken",
        "ac",
        "artim_deadline",
        "artim_timeout",
        "contexts",
        "peer_max_pdu",
        "rj",
        "rq",
        "sent_pdus",
        "should_close",
    )

    def __init__(
        self,
        *,
        requestor: bool,
        max_pdu: int = 16382,
        artim_timeout: float = DEFAULT_ARTIM_TIMEOUT,
        max_associate_length: int = DEFAULT_MAX_ASSOCIATE_LENGTH,
    ) -> None:
        super().__init__(is_requestor=requestor)
        self.artim_timeout = artim_timeout
        self.artim_deadline: float | None = None
        self._max_pdata_length = max_pdu or UNLIMITED_PDATA_CAP
        self._max_associate_length = max_associate_length
        # Made at the first read that is not exactly whole PDUs: until
        # then (often for the whole association) each read is one PDU.
        self._framer: PDUFramer | None = None
        # Made when a message first comes in fragments: a whole command in
        # one PDV (every C-ECHO) needs none.
        self._assembler: MessageAssembler | None = None
        self._outbox = bytearray()
        self.should_close = False
        self.rq: AssociateRQ | None = None
        self.ac: AssociateAC | None = None
        self.rj: AssociateRJ | None = None
        # {context ID: (abstract syntax, transfer syntax)} once accepted
        self.contexts: Mapping[int, tuple[str, str]] = {}
        self.peer_max_pdu = 0
        # Set for the diagnostics of whoever drives us: the last PDU sent/received.
        self.sent_pdus: list[PDU] | None = None
        # The message of the P-DATA request (Evt9) being carried out (three
        # slots, not a tuple made for every message).
        self._pending_context_id = 0
        self._pending_command = b""
        self._pending_data_set: bytes | None = None
        self._now = 0.0
        self._stream_broken = False

    # --- outputs ---------------------------------------------------------------

    @property
    def partial_pdu(self) -> bool:
        """Part of a PDU is buffered (a moment to force out a TCP ACK)."""
        return self._framer is not None and self._framer.partial

    def data_to_send(self) -> bytes:
        data = bytes(self._outbox)
        self._outbox.clear()
        return data

    def next_deadline(self) -> float | None:
        return self.artim_deadline

    # --- local primitives --------------------------------------------------------

    def request(self, rq: AssociateRQ) -> None:
        """A-ASSOCIATE request (Evt1): next, open the transport connection."""
        if not self.is_requestor:
            # An acceptor's connection_made() is Evt5, never Evt2: it would stick in Sta4.
            raise LocalProtocolError("an acceptor cannot issue an A-ASSOCIATE request")
        self._check_allowed(Evt.EVT1)
        self.rq = rq
        self._fire(Evt.EVT1, None)

    def connection_made(self, now: float) -> None:
        """Transport connect confirmation (Evt2) or indication (Evt5)."""
        self._fire(Evt.EVT2 if self.is_requestor else Evt.EVT5, now)

    def accept(self, ac: AssociateAC, now: float = 0.0) -> None:
        self._check_allowed(Evt.EVT7)
        self.ac = ac
        self._fire(Evt.EVT7, now)

    def reject(self, rj: AssociateRJ, now: float) -> None:
        self._check_allowed(Evt.EVT8)
        self.rj = rj
        self._fire(Evt.EVT8, now)

    def send_message(self, context_id: int, command: bytes, data_set: bytes | None = None) -> None:
        """P-DATA request (Evt9): one DIMSE message, fragmented to the peer's maximum."""
        if context_id not in self.contexts:
            raise LocalProtocolError(f"presentation context {context_id} was not accepted")
        self._check_allowed(Evt.EVT9)
        self._pending_context_id = context_id
        self._pending_command = command
        self._pending_data_set = data_set
        self._fire(Evt.EVT9, None)

    def release(self) -> None:
        self._fire(Evt.EVT11, None)

    def release_response(self, now: float) -> None:
        self._fire(Evt.EVT14, now)

    def abort(self, now: float) -> None:
        """A-ABORT request (Evt15). In Sta1 and Sta13 there is nothing to abort."""
        if self.state in (State.STA1, State.STA13):
            return
        self._fire(Evt.EVT15, now)

    def connection_lost(self, now: float = 0.0) -> list[Event]:
        """Transport connection closed indication (Evt17)."""
        if self.state is State.STA1:
            return []
        return self._fire(Evt.EVT17, now)

    def handle_timer(self, now: float) -> list[Event]:
        """Call when `next_deadline()` has passed: ARTIM expired (Evt18)."""
        if self.artim_deadline is None or now < self.artim_deadline:
            return []
        return self._fire(Evt.EVT18, now)

    # --- input from the peer -------------------------------------------------------

    def receive_data(
        self, data: bytes, now: float, on_event: Callable[[Event], None] | None = None
    ) -> list[Event]:
        """Feed bytes from the peer; returns the events they cause.

        With `on_event`, each event is handed over as soon as its PDU has
        been taken in, before the next PDU of the same chunk is: so a user
        that answers at once (an SCP answering a C-ECHO-RQ) answers exactly
        as if TCP had delivered the PDUs one by one. Nothing is returned then.
        """
        if self.should_close or self._stream_broken:
            # The association is over, or the byte stream lost its framing
            # after an invalid PDU: nothing more in it can be read as PDUs.
            return []
        if self.state in _UNCONNECTED:
            raise LocalProtocolError(
                f"no transport connection in {self.state} to receive on"
            )
        events: list[Event] = []
        framer = self._framer
        # Only the framing is inside the try: a PDUError here means the byte
        # stream itself is broken. What a whole PDU carries (its DIMSE
        # content) is judged by the action that takes it in (DT-2/AR-6),
        # which turns it into the table's Evt19 itself, whichever way the
        # PDU was split across reads.
        try:
            if framer is None:
                whole = single_pdu(data, self._max_pdata_length, self._max_associate_length)
            else:
                whole = framer.single(data)
            if whole is None:
                if framer is None:
                    framer = self._framer = PDUFramer(
                        self._max_pdata_length, self._max_associate_length
                    )
                pdus = framer.feed(data)
        except PDUError as framing_error:
            self._stream_broken = True
            return _deliver(self._fire(Evt.EVT19, now, error=framing_error), events, on_event)
        if whole is not None:  # the usual read: exactly one whole PDU
            event, error = self._classify(whole)
            return _deliver(self._fire(event, now, pdu=whole, error=error), events, on_event)
        assert framer is not None
        for pdu in pdus:
            event, error = self._classify(pdu)
            new = self._fire(event, now, pdu=pdu, error=error)
            if new:
                _deliver(new, events, on_event)
            if self.should_close or event is _EVT19:
                return events
        if framer.error is not None:
            # Valid PDUs came first in this chunk; now the invalid one.
            self._stream_broken = True
            _deliver(self._fire(Evt.EVT19, now, error=framer.error), events, on_event)
        return events

    def protocol_violation(self, error: PDUError, now: float) -> list[Event]:
        """The user found a PDU's content invalid (e.g. a DIMSE command set it
        cannot decode): abort as for an invalid PDU (Evt19: AA-8, a
        service-provider A-ABORT with the error's reason)."""
        if (
            self.state in (State.STA1, State.STA13)
            or self.action_for(Evt.EVT19) is None
        ):
            return []
        return self._fire(Evt.EVT19, now, error=error)

    def _classify(self, pdu: PDU) -> tuple[Evt, PDUError | None]:
        """The table's event for `pdu`; a PDU that breaks the association's
        own rules is an invalid PDU (Evt19), checked only where the table
        would otherwise take it in."""
        event = _PDU_EVENT[type(pdu)]
        try:
            if event is _EVT3 and self.state is _STA5:
                assert self.rq is not None and isinstance(pdu, AssociateAC)
                answered_contexts(self.rq, pdu)  # check_ac, remembered for AE-3
            elif event is _EVT10 and self.state in _DATA_STATES:
                assert isinstance(pdu, PDataTF)
                for pdv in pdu.pdvs:
                    if pdv.context_id not in self.contexts:
                        raise PDUError(
                            f"PDV for presentation context {pdv.context_id}, which is not accepted",
                            0,
                        )
        except PDUError as error:
            return Evt.EVT19, error
        return event, None

    # --- the actions ---------------------------------------------------------------

    def _check_allowed(self, event: Evt) -> None:
        """Refuse a primitive before it changes anything (fire() would refuse it later)."""
        if self.action_for(event) is None:
            raise LocalProtocolError(f"{event} is not allowed in {self.state}")

    def _send(self, pdu: PDU) -> None:
        if isinstance(pdu, (AssociateRQ, AssociateAC)):
            self._outbox += _encode_associate(pdu)
        else:
            self._outbox += pdu.encode()
        if self.sent_pdus is not None:
            self.sent_pdus.append(pdu)

    def _fire(
        self,
        event: Evt,
        now: float | None,
        *,
        pdu: PDU | None = None,
        error: PDUError | None = None,
    ) -> list[Event]:
        if now is not None:
            self._now = now
        acceptable = True
        if event is _EVT6:
            assert isinstance(pdu, AssociateRQ)
            # AE-6's provider check: only the protocol version is the
            # provider's to judge; everything else is the user's (Evt7/Evt8).
            acceptable = bool(pdu.protocol_version & PROTOCOL_VERSION)
        action = self.fire(event, acceptable=acceptable)
        cell = self.cell
        assert cell is not None
        out = _ACTIONS[action](self, pdu, error, acceptable)
        if cell.starts_artim or (action is _AE_6 and not acceptable):
            self.artim_deadline = self._now + self.artim_timeout
        elif self.state not in _ARTIM_KEPT:
            self.artim_deadline = None
        if cell.closes_transport:
            self.should_close = True
        return out

    # --- the actions (PS3.8 9.2.2), looked up in _ACTIONS ---------------------------
    # Each gets the PDU that caused it (if any), the error (Evt19) and AE-6's
    # condition, and returns the events for the user.

    def _act_nothing(self, pdu: PDU | None, error: PDUError | None, ok: bool) -> list[Event]:
        # AE-1 (the caller opens the transport), AE-5, AR-5, AA-2, AA-5, AA-6:
        # nothing beyond the state change, the ARTIM and close flags.
        return []

    def _act_ae_2(self, pdu: PDU | None, error: PDUError | None, ok: bool) -> list[Event]:
        assert self.rq is not None
        self._send(self.rq)
        return []

    def _act_ae_3(self, pdu: PDU | None, error: PDUError | None, ok: bool) -> list[Event]:
        assert isinstance(pdu, AssociateAC) and self.rq is not None
        self.ac = pdu
        self.contexts = answered_contexts(self.rq, pdu)  # (checked in _classify)
        self.peer_max_pdu = pdu.max_length or 0
        return [AssociationAccepted(pdu)]

    def _act_ae_4(self, pdu: PDU | None, error: PDUError | None, ok: bool) -> list[Event]:
        assert isinstance(pdu, AssociateRJ)
        self.rj = pdu
        return [AssociationRejected(pdu)]

    def _act_ae_6(self, pdu: PDU | None, error: PDUError | None, ok: bool) -> list[Event]:
        assert isinstance(pdu, AssociateRQ)
        self.rq = pdu
        if ok:
            return [AssociationRequested(pdu)]
        self.rj = AssociateRJ(1, 2, 2)  # PS3.8 Table 9-21: protocol version not supported
        self._send(self.rj)
        return []

    def _act_ae_7(self, pdu: PDU | None, error: PDUError | None, ok: bool) -> list[Event]:
        assert self.ac is not None and self.rq is not None
        self.contexts = our_contexts(self.rq, self.ac)
        self.peer_max_pdu = self.rq.max_length or 0
        self._send(self.ac)
        return []

    def _act_ae_8(self, pdu: PDU | None, error: PDUError | None, ok: bool) -> list[Event]:
        assert self.rj is not None
        self._send(self.rj)
        return []

    def _act_send_message(self, pdu: PDU | None, error: PDUError | None, ok: bool) -> list[Event]:
        # DT-1, AR-7
        context_id, command = self._pending_context_id, self._pending_command
        data_set = self._pending_data_set
        if data_set is None and self.sent_pdus is None:
            # A command alone (every C-ECHO): the same bytes for the same
            # command, context and peer maximum, so encoded once.
            self._outbox += _encode_command(context_id, command, self.peer_max_pdu)
            return []
        for payload, is_command in ((command, True), (data_set, False)):
            if payload is None:
                continue
            for pdv in fragment(context_id, payload, is_command, self.peer_max_pdu):
                self._send(PDataTF((pdv,)))
        return []

    def _act_message_in(self, pdu: PDU | None, error: PDUError | None, ok: bool) -> list[Event]:
        # DT-2, AR-6
        assert isinstance(pdu, PDataTF)
        return self._assemble(pdu)

    def _act_ar_1(self, pdu: PDU | None, error: PDUError | None, ok: bool) -> list[Event]:
        self._send(ReleaseRQ())
        return []

    def _act_ar_2(self, pdu: PDU | None, error: PDUError | None, ok: bool) -> list[Event]:
        return [ReleaseRequested()]

    def _act_released(self, pdu: PDU | None, error: PDUError | None, ok: bool) -> list[Event]:
        # AR-3, AR-10
        return [ReleaseConfirmed()]

    def _act_release_rp(self, pdu: PDU | None, error: PDUError | None, ok: bool) -> list[Event]:
        # AR-4, AR-9
        self._send(ReleaseRP())
        return []

    def _act_ar_8(self, pdu: PDU | None, error: PDUError | None, ok: bool) -> list[Event]:
        return [ReleaseRequested(collision=True)]

    def _act_aa_1(self, pdu: PDU | None, error: PDUError | None, ok: bool) -> list[Event]:
        # Sta2 receiving anything but an A-ASSOCIATE-RQ also lands here:
        # PS3.8 9.2.2 gives the A-ABORT a service-user source either way.
        self._send(Abort(ABORT_SOURCE_USER, ABORT_REASON_NOT_SPECIFIED))
        return []

    def _act_aa_3(self, pdu: PDU | None, error: PDUError | None, ok: bool) -> list[Event]:
        assert isinstance(pdu, Abort)
        return [Aborted(pdu.source, pdu.reason, by_peer=True)]

    def _act_aa_4(self, pdu: PDU | None, error: PDUError | None, ok: bool) -> list[Event]:
        return [
            Aborted(
                ABORT_SOURCE_PROVIDER,
                ABORT_REASON_NOT_SPECIFIED,
                by_peer=False,
                connection_lost=True,
            )
        ]

    def _act_aa_7(self, pdu: PDU | None, error: PDUError | None, ok: bool) -> list[Event]:
        self._send(
            Abort(ABORT_SOURCE_PROVIDER, error.abort_reason if error else ABORT_UNEXPECTED_PDU)
        )
        return []

    def _act_aa_8(self, pdu: PDU | None, error: PDUError | None, ok: bool) -> list[Event]:
        # Invalid PDU (Evt19) or a valid PDU at the wrong time.
        reason = error.abort_reason if error is not None else ABORT_UNEXPECTED_PDU
        self._send(Abort(ABORT_SOURCE_PROVIDER, reason))
        return [Aborted(ABORT_SOURCE_PROVIDER, reason, by_peer=False, error=error)]

    def _assemble(self, pdu: PDataTF) -> list[Event]:
        events: list[Event] = []
        assembler = self._assembler
        try:
            for pdv in pdu.pdvs:
                if assembler is None:
                    # No assembler until a message comes in fragments: none
                    # is kept for the association's life for a whole command.
                    whole = whole_command(pdv)
                    if whole is not None:
                        events.append(MessageReceived(whole))
                        continue
                    assembler = self._assembler = MessageAssembler()
                message = assembler.add(pdv)
                if message is not None:
                    events.append(MessageReceived(message))
        except PDUError as error:
            # A P-DATA whose content breaks PS3.8 Annex E or PS3.7 (fragment
            # flags, a command set that cannot be decoded): abort as for an
            # invalid PDU, the table's Evt19 from the state we are now in
            # (AA-8), after the messages its PDVs completed before the bad one.
            return events + self._fire(Evt.EVT19, None, error=error)
        return events


_EVT3, _EVT6, _EVT10, _EVT19 = Evt.EVT3, Evt.EVT6, Evt.EVT10, Evt.EVT19
_STA5 = State.STA5
# Where a P-DATA's PDVs are checked against the accepted contexts (Evt10 is taken in).
_DATA_STATES = (State.STA6, State.STA7)
# No transport connection to receive on (before AE-1's connect, or after it failed).
_UNCONNECTED = (State.STA1, State.STA4)
_AE_6 = Action.AE_6
# States in which ARTIM keeps running after a transition that does not start it.
_ARTIM_KEPT = (State.STA2, State.STA13)

_ActionMethod = Callable[[UpperLayer, "PDU | None", "PDUError | None", bool], list[Event]]
# One dict lookup instead of a chain of enum comparisons (each ~75 ns here).
_ACTIONS: dict[Action, _ActionMethod] = {
    Action.AE_1: UpperLayer._act_nothing,
    Action.AE_2: UpperLayer._act_ae_2,
    Action.AE_3: UpperLayer._act_ae_3,
    Action.AE_4: UpperLayer._act_ae_4,
    Action.AE_5: UpperLayer._act_nothing,
    Action.AE_6: UpperLayer._act_ae_6,
    Action.AE_7: UpperLayer._act_ae_7,
    Action.AE_8: UpperLayer._act_ae_8,
    Action.DT_1: UpperLayer._act_send_message,
    Action.DT_2: UpperLayer._act_message_in,
    Action.AR_1: UpperLayer._act_ar_1,
    Action.AR_2: UpperLayer._act_ar_2,
    Action.AR_3: UpperLayer._act_released,
    Action.AR_4: UpperLayer._act_release_rp,
    Action.AR_5: UpperLayer._act_nothing,
    Action.AR_6: UpperLayer._act_message_in,
    Action.AR_7: UpperLayer._act_send_message,
    Action.AR_8: UpperLayer._act_ar_8,
    Action.AR_9: UpperLayer._act_release_rp,
    Action.AR_10: UpperLayer._act_released,
    Action.AA_1: UpperLayer._act_aa_1,
    Action.AA_2: UpperLayer._act_nothing,
    Action.AA_3: UpperLayer._act_aa_3,
    Action.AA_4: UpperLayer._act_aa_4,
    Action.AA_5: UpperLayer._act_nothing,
    Action.AA_6: UpperLayer._act_nothing,
    Action.AA_7: UpperLayer._act_aa_7,
    Action.AA_8: UpperLayer._act_aa_8,
}
assert set(_ACTIONS) == set(Action), "every action of the table has a method"


__all__ = ["DEFAULT_ARTIM_TIMEOUT", "Message", "UpperLayer"]
