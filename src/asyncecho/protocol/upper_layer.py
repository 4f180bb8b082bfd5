"""The sans-I/O DICOM upper layer: one association, either role.

Bytes from the peer go in (`receive_data`), primitives from the local user go
in (`request`, `accept`, `send_message`, `release`, `abort` ...), and what
comes out is events for the user, bytes to write (`data_to_send`), whether to
close the transport (`should_close`) and when the ARTIM timer next needs
attention (`next_deadline` / `handle_timer`). No sockets, no clocks: times
are passed in as `now` (any monotonic clock the caller uses consistently).

`UpperLayer` has a `StateMachine` (the table decides every transition; its
state is this object's `state`), turns PDUs into the table's events and
carries out the action each transition names (`_fire`, then the action's
method, inherited from `actions.Actions`). The calls that are deliberately no-ops where the table is blank
(`abort()` with no association to abort, `connection_lost()` after the
close, `protocol_violation()` after the end) say so in their docstrings.

May import the rest of `protocol/` only: no I/O, no clock, nothing above.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from asyncecho.protocol.actions import ACTIONS, Actions, Arg, InvalidContent
from asyncecho.protocol.dimse import Message, MessageAssembler
from asyncecho.protocol.errors import (
    LocalProtocolError,
    PDUError,
)
from asyncecho.protocol.events import (
    Event,
)
from asyncecho.protocol.framer import (
    DEFAULT_MAX_ASSOCIATE_LENGTH,
    UNLIMITED_PDATA_CAP,
    PDUFramer,
    single_pdu,
)
from asyncecho.protocol.negotiation import answered_contexts
from asyncecho.protocol.pdu import (
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
from asyncecho.protocol.state_machine import (
    CLOSES_TRANSPORT,
    STARTS_ARTIM,
    TABLE,
    Action,
    State,
    StateMachine,
)
from asyncecho.protocol.state_machine import Event as Evt

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


class UpperLayer(Actions):
    """One association's upper layer, as requestor or acceptor."""

    __slots__ = (
        "_framer",
        "_max_associate_length",
        "_max_pdata_length",
        "_stream_broken",
        "artim_deadline",
        "artim_timeout",
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
        self._machine = StateMachine(is_requestor=requestor)
        self.artim_timeout = artim_timeout
        self.artim_deadline: float | None = None
        self._max_pdata_length = max_pdu or UNLIMITED_PDATA_CAP
        self._max_associate_length = max_associate_length
        # Made at the first read that is not exactly one whole PDU: until
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
        self._stream_broken = False

    # --- outputs ---------------------------------------------------------------

    @property
    def state(self) -> State:
        """The state of PS3.8 Table 9-10 the association is in."""
        return self._machine.state

    def action_for(self, event: Evt) -> Action | None:
        """The action `event` would cause now; None where the table is blank."""
        return self._machine.action_for(event)

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
    # Each is the table's event: where its cell is blank it raises
    # LocalProtocolError and changes nothing, except where said otherwise.

    def request(self, rq: AssociateRQ) -> None:
        """A-ASSOCIATE request (Evt1): next, open the transport connection."""
        if not self._machine.is_requestor:
            # An acceptor's connection_made() is Evt5, never Evt2: it would stick in Sta4.
            raise LocalProtocolError("an acceptor cannot issue an A-ASSOCIATE request")
        self._fire(Evt.EVT1, None, rq)

    def connection_made(self, now: float) -> None:
        """Transport connect confirmation (Evt2) or indication (Evt5)."""
        self._fire(Evt.EVT2 if self._machine.is_requestor else Evt.EVT5, now)

    def accept(self, ac: AssociateAC, now: float = 0.0) -> None:
        """A-ASSOCIATE response primitive, accept (Evt7)."""
        self._fire(Evt.EVT7, now, ac)

    def reject(self, rj: AssociateRJ, now: float) -> None:
        """A-ASSOCIATE response primitive, reject (Evt8)."""
        self._fire(Evt.EVT8, now, rj)

    def send_message(self, context_id: int, command: bytes, data_set: bytes | None = None) -> None:
        """P-DATA request (Evt9): one DIMSE message, fragmented to the peer's maximum."""
        if context_id not in self.contexts:
            raise LocalProtocolError(f"presentation context {context_id} was not accepted")
        self._fire(Evt.EVT9, None, (context_id, command, data_set))

    def release(self) -> None:
        """A-RELEASE request (Evt11)."""
        self._fire(Evt.EVT11, None)

    def release_response(self, now: float) -> None:
        """A-RELEASE response primitive (Evt14)."""
        self._fire(Evt.EVT14, now)

    def abort(self, now: float) -> None:
        """A-ABORT request (Evt15).

        A deliberate no-op in Sta1 and Sta13, where the table leaves Evt15
        blank: PS3.8 has nothing to abort there (no transport connection, or
        an association already ended by an A-ABORT, a release or a rejection,
        with only the transport close awaited). So whoever gives up on an
        association (a timeout, a cancellation, a block exiting) may abort
        without checking the state first. In Sta2, also blank (no
        A-ASSOCIATE-RQ yet, so no association either), it raises
        LocalProtocolError like any other primitive: the caller closes the
        transport instead.
        """
        if self._machine.state in _NOTHING_TO_ABORT:
            return
        self._fire(Evt.EVT15, now)

    def connection_lost(self, now: float = 0.0) -> list[Event]:
        """Transport connection closed indication (Evt17). A no-op in Sta1:
        the association had already ended and the transport closed
        (AE-4, AR-3, AA-2 ... `should_close`); this is that close, reported."""
        if self._machine.state is State.STA1:
            return []
        return self._fire(Evt.EVT17, now)

    def handle_timer(self, now: float) -> list[Event]:
        """Call when `next_deadline()` has passed: ARTIM expired (Evt18).
        Before the deadline, or with no ARTIM running, Evt18 has not happened."""
        if self.artim_deadline is None or now < self.artim_deadline:
            return []
        return self._fire(Evt.EVT18, now)

    def protocol_violation(self, error: PDUError, now: float) -> list[Event]:
        """The user found a PDU's content invalid (e.g. a DIMSE command set it
        cannot decode): abort as for an invalid PDU (Evt19: AA-8, a
        service-provider A-ABORT with the error's reason).

        A no-op once the association is over (Sta13: e.g. a later PDU of the
        same read was invalid and AA-8 has already aborted, or the user
        judges a message after the end; Sta1), and in Sta4, before any PDU
        could arrive."""
        if self._machine.state in _NO_PDU_TO_JUDGE:
            return []
        return self._fire(Evt.EVT19, now, error)

    # --- input from the peer -------------------------------------------------------

    def receive_data(
        self, data: bytes, now: float, on_event: Callable[[Event], None] | None = None
    ) -> list[Event]:
        """Feed bytes from the peer; returns the events they cause.

        With `on_event`, each event is handed over as soon as its PDU has
        been taken in, before the next PDU of the same chunk is: so a user
        that answers at once (an SCP answering a C-ECHO-RQ) answers exactly
        as if TCP had delivered the PDUs one by one. Nothing is returned then.

        Bytes after the association has ended (`should_close`) or after an
        invalid PDU broke the stream's framing are ignored: nothing more in
        the stream can be read as PDUs.
        """
        if self.should_close or self._stream_broken:
            return []
        if self._machine.state in _UNCONNECTED:
            raise LocalProtocolError(
                f"no transport connection in {self._machine.state} to receive on"
            )
        events: list[Event] = []
        # Only the framing is inside the try: a PDUError here means the byte
        # stream itself is broken. What a whole PDU carries is judged by
        # _classify and by the action that takes it in (DT-2/AR-6), alike
        # however the PDU was split across reads.
        try:
            pdus = self._frame(data)
        except PDUError as framing_error:
            self._stream_broken = True
            return _deliver(self._fire(Evt.EVT19, now, framing_error), events, on_event)
        for pdu in pdus:
            event, arg = self._classify(pdu)
            _deliver(self._fire(event, now, arg), events, on_event)
            if self.should_close or event is _EVT19:
                return events
        framer = self._framer
        if framer is not None and framer.error is not None:
            # Valid PDUs came first in this chunk; now the invalid one.
            self._stream_broken = True
            _deliver(self._fire(Evt.EVT19, now, framer.error), events, on_event)
        return events

    def _frame(self, data: bytes) -> Sequence[PDU]:
        """The whole PDUs `data` completes; raises PDUError if the stream
        is invalid before the first of them."""
        framer = self._framer
        # Until a read splits a PDU (often never) there is no framer: a read
        # of exactly one PDU is decoded as it is. Making every read go
        # through a framer cost 3% (client) and 5% (SCP) of the core's
        # instructions per association, and one more object per connection.
        if framer is None:
            pdu = single_pdu(data, self._max_pdata_length, self._max_associate_length)
            if pdu is not None:
                return (pdu,)
            framer = self._framer = PDUFramer(self._max_pdata_length, self._max_associate_length)
        return framer.feed(data)

    def _classify(self, pdu: PDU) -> tuple[Evt, PDU | PDUError]:
        """The table's event for `pdu`, and what its action takes: the PDU,
        or for an invalid one (Evt19) the error. A PDU that breaks the
        association's own rules is invalid, checked only where the table
        would take it in (AE-3, DT-2, AR-6)."""
        event = _PDU_EVENT[type(pdu)]
        action = TABLE[event].get(self._machine.state)
        try:
            if action is _AE_3:
                assert self.rq is not None and isinstance(pdu, AssociateAC)
                answered_contexts(self.rq, pdu)  # check_ac, remembered for AE-3
            elif action is _DT_2 or action is _AR_6:
                assert isinstance(pdu, PDataTF)
                for pdv in pdu.pdvs:
                    if pdv.context_id not in self.contexts:
                        raise PDUError(
                            f"PDV for presentation context {pdv.context_id}, which is not accepted",
                            0,
                        )
        except PDUError as error:
            return Evt.EVT19, error
        return event, pdu

    # --- one transition --------------------------------------------------------------

    def _fire(self, event: Evt, now: float | None, arg: Arg = None) -> list[Event]:
        """Take the table's transition for `event` and carry out its action,
        which gets `arg`: what the event carries (a PDU, the error of an
        invalid one, the primitive's parameters). Returns the events for
        the user. `now` may be None only for events whose actions never
        start ARTIM (Evt1, Evt9, Evt11)."""
        acceptable = True
        if event is _EVT6:
            assert isinstance(arg, AssociateRQ)
            # AE-6's provider check: only the protocol version is the
            # provider's to judge; everything else is the user's (Evt7/Evt8).
            acceptable = bool(arg.protocol_version & PROTOCOL_VERSION)
        action = self._machine.fire(event, acceptable=acceptable)
        state = self._machine.state
        # ARTIM runs in exactly Sta2 and Sta13 (PS3.8 9.2.2: the actions
        # that enter them start it, AE-6 on its reject branch only; AA-1
        # restarts it; leaving them stops it).
        if action in STARTS_ARTIM or (action is _AE_6 and state is _STA13):
            assert now is not None
            self.artim_deadline = now + self.artim_timeout
        elif state not in _ARTIM_STATES:
            self.artim_deadline = None
        if action in CLOSES_TRANSPORT:
            self.should_close = True
        try:
            return ACTIONS[action](self, arg)
        except InvalidContent as invalid:
            # DT-2/AR-6 found the P-DATA's content invalid: that PDU is an
            # invalid PDU after all, Evt19 (AA-8), fired from the state DT-2
            # left us in. None of it is taken in: a message its PDVs
            # completed before the bad one is not handed over (its user
            # would meet it with the association already aborted).
            return self._fire(_EVT19, now, invalid.error)


_EVT6, _EVT19 = Evt.EVT6, Evt.EVT19
_STA13 = State.STA13
_AE_3, _AE_6, _DT_2, _AR_6 = Action.AE_3, Action.AE_6, Action.DT_2, Action.AR_6
# No transport connection to receive on (before AE-1's connect, or after it failed).
_UNCONNECTED = (State.STA1, State.STA4)
# The states ARTIM runs in (PS3.8 9.1.4, 9.2.2).
_ARTIM_STATES = (State.STA2, State.STA13)
# Evt15's blank cells in which abort() is a no-op rather than an error (see abort()).
_NOTHING_TO_ABORT = (State.STA1, State.STA13)
# Where protocol_violation() is a no-op (see there).
_NO_PDU_TO_JUDGE = (State.STA1, State.STA4, State.STA13)



__all__ = ["DEFAULT_ARTIM_TIMEOUT", "Message", "UpperLayer"]
