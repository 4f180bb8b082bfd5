"""The requestor session: one association as the SCU lives it, from the
A-ASSOCIATE request to the release or the failure, as pure logic.

Holds `RequestorSession`; the `Limits` it enforces, the events it reports
and the failures it ends with are data in `requestor_events`. May import the rest of `protocol/` only: no I/O, no clock.

A driver feeds it what happens (`connection_made`, `receive_data`,
`connection_lost`, `handle_timer`) and what its user asks (`echo`,
`release`, `abort`), each with `now` from the driver's clock; after each
call it writes `data_to_send()`, closes the transport once `should_close`,
arms one timer for `next_deadline()`, and takes the events one at a time
from `next_event()`. Every limit a user sets is here, as a time: the
A-ASSOCIATE and A-RELEASE answers (ACSE), the C-ECHO-RSP (DIMSE), silence
from the peer while an answer is awaited (network), the overall deadline;
ARTIM is the upper layer's. The TCP connect is the driver's to bound, with
`connect_limit()`.

Each PDU's event is acted on as the PDU is taken in, before the next PDU of
the same read (`UpperLayer.receive_data`'s `on_event`). The session's own
next request (with `echoes=True`: the C-ECHO-RQ after the A-ASSOCIATE-AC,
the A-RELEASE-RQ after the C-ECHO-RSP) goes out once the whole read is
taken in, if the association still stands: a peer that answers and
releases, or accepts and aborts, in one write gets no request it would
have to refuse. The one terminal event (`Released` or a `Failure`) is the
last the session reports.
"""

from __future__ import annotations

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
from asyncecho.protocol.pdu import AssociateAC, AssociateRQ
from asyncecho.protocol.pdu_items import PC_RESULT_NAMES
from asyncecho.protocol.requestor_events import (
    Accepted,
    ConnectionClosed,
    EchoAnswered,
    EchoSent,
    Failure,
    Limits,
    NoContext,
    PeerAborted,
    PeerReleased,
    Phase,
    ProtocolViolation,
    Rejected,
    Released,
    ReleaseSent,
    RequestSent,
    SessionEvent,
    TimedOut,
)
from asyncecho.protocol.upper_layer import UpperLayer

# What the session waits for, if anything: the phase's limit applies.
_IDLE, _ASSOCIATING, _ECHOING, _RELEASING, _OVER = range(5)
_PHASE_LIMIT: dict[int, Phase] = {_ASSOCIATING: "acse", _ECHOING: "dimse", _RELEASING: "acse"}


class RequestorSession:
    """One association as the requestor. `echoes=True` runs the whole
    exchange by itself (associate, one C-ECHO, release: `echo()`'s
    lifecycle); otherwise the user calls `echo()` and `release()` once
    `Accepted` is reported."""

    __slots__ = (
        "_answers",
        "_chatty",
        "_ends",
        "_events",
        "_idle_from",
        "_message_id",
        "_now",
        "_outstanding",
        "_phase",
        "_phase_started",
        "_release_then",
        "_then",
        "ac",
        "associate_time",
        "auto",
        "connect_time",
        "context_id",
        "echo_time",
        "limits",
        "release_time",
        "rq",
        "started",
        "status",
        "transfer_syntax",
        "upper",
    )

    def __init__(
        self, rq: AssociateRQ, limits: Limits, *, echoes: bool = False, verbose: bool = True
    ) -> None:
        self.rq = rq
        self.limits = limits
        self.auto = echoes
        # Which events are reported: with verbose=False (nobody logs), only
        # what the user waits for: the answers when the user asks (not with
        # echoes=True), and the end. Every event is one more object for the
        # collector per association; echo() on a quiet sweep needs the end only.
        self._chatty = verbose
        self._answers = verbose or not echoes
        self._now = 0.0  # (the read being taken in: see receive_data)
        max_pdu = rq.max_length or 0
        self.upper = UpperLayer(requestor=True, max_pdu=max_pdu)
        # Made at the first event (a quiet echo() has one: its end).
        self._events: list[SessionEvent] | None = None
        self._phase = _IDLE
        self._phase_started = 0.0
        self._idle_from = 0.0
        self._ends: float | None = None  # the overall deadline, as a time
        self._message_id = 0  # the last one used
        self._outstanding = 0  # the C-ECHO-RQ awaiting its response
        self._release_then: Failure | None = None  # NoContext: fail once released
        self._then = _IDLE  # our next request, once the read is taken in (see above)
        self.started: float | None = None  # (start())
        self.ac: AssociateAC | None = None
        self.context_id = 0
        self.transfer_syntax: str | None = None
        self.status: int | None = None
        self.connect_time: float | None = None
        self.associate_time: float | None = None
        self.echo_time: float | None = None
        self.release_time: float | None = None

    # --- outputs -----------------------------------------------------------------

    def data_to_send(self) -> bytes:
        return self.upper.data_to_send()

    @property
    def should_close(self) -> bool:
        """Close the transport (after writing `data_to_send()`): the
        association is over, one way or another. (In Sta13 the standard
        would wait for the peer to close; nothing more is expected from it.)"""
        return self._phase == _OVER

    @property
    def partial_pdu(self) -> bool:
        """Part of a PDU is buffered (a moment to force out a TCP ACK)."""
        return self.upper.partial_pdu

    @property
    def finished(self) -> bool:
        """The association is over and every event has been taken."""
        return self._phase == _OVER and not self._events

    @property
    def message_id(self) -> int:
        """The last C-ECHO-RQ's message ID (0 before the first)."""
        return self._message_id

    def next_event(self) -> SessionEvent | None:
        """The next thing that happened, oldest first; None when none is left."""
        events = self._events
        return events.pop(0) if events else None

    def next_deadline(self) -> float | None:
        """When `handle_timer` must next be called; None: no timer needed.
        While an answer is awaited: the nearest of the phase's limit, the
        network limit (from the last byte heard) and the overall deadline."""
        if self._phase == _IDLE or self._phase == _OVER:
            return None
        when = self._phase_end()
        ends = self._ends
        if ends is not None and (when is None or ends < when):
            when = ends
        network = self.limits.network
        if network is not None:
            idle = self._idle_from + network
            if when is None or idle < when:
                when = idle
        return when

    def connect_limit(self) -> tuple[float | None, Phase]:
        """Seconds the driver may spend on the transport connect (after
        `start`), and which limit that is (reported by `connect_timed_out`)."""
        limit: float | None = self.limits.connect
        phase: Phase = "connect"
        if self._ends is not None:
            assert self.started is not None
            left = self._ends - self.started
            if limit is None or left < limit:
                return left, "deadline"
        return limit, phase

    def elapsed(self, now: float) -> float:
        assert self.started is not None
        return now - self.started

    # --- what the driver reports --------------------------------------------------

    def start(self, now: float) -> None:
        """A-ASSOCIATE request (Evt1): the driver connects next."""
        self.started = now
        if self.limits.deadline is not None:
            self._ends = now + self.limits.deadline
        self.upper.request(self.rq)

    def connect_timed_out(self) -> TimedOut:
        """The connect took longer than `connect_limit()`."""
        _, phase = self.connect_limit()
        self._phase = _OVER
        value = self.limits.connect if phase == "connect" else self.limits.deadline
        return TimedOut(phase, value)

    def connection_made(self, now: float) -> None:
        """Transport connected (Evt2): the A-ASSOCIATE-RQ goes out."""
        assert self.started is not None
        self.connect_time = now - self.started
        self.upper.connection_made(now)
        if self._chatty:
            self._tell(RequestSent(self.rq))
        self._wait(_ASSOCIATING, now)

    def receive_data(self, data: bytes, now: float) -> None:
        if self._phase == _OVER:
            return
        self._idle_from = now
        # (the read's time on self and a bound method, not a closure per
        # read: fewer objects made for every read)
        self._now = now
        self.upper.receive_data(data, now, self._on_pdu_event)
        then, self._then = self._then, _IDLE
        if self._phase == _IDLE:
            if then == _ECHOING:
                self.echo(now)
            elif then == _RELEASING:
                self.release(now)

    def connection_lost(self, now: float) -> None:
        """The peer closed (or the connection broke)."""
        if self._phase == _OVER:
            return
        for event in self.upper.connection_lost(now):
            self._on_event(event, now)
        if self._phase != _OVER:
            # Nothing the table reports (the association had ended, e.g. in
            # Sta13 after our A-ABORT was answered by the close).
            self._fail(ConnectionClosed(self.ac is not None, unannounced=True))

    def handle_timer(self, now: float) -> None:
        """Call at `next_deadline()`: a limit that has passed aborts the
        association (A-ABORT, Evt15) and ends the session with `TimedOut`;
        before then, nothing happens."""
        if self._phase == _IDLE or self._phase == _OVER:
            return
        phase_end = self._phase_end()
        # The nearest limit that has passed names the failure; on a tie the
        # phase's own limit wins over the deadline, both over the network.
        due: list[tuple[float, int, Phase, float | None]] = []
        if phase_end is not None:
            phase = _PHASE_LIMIT[self._phase]
            due.append((phase_end, 0, phase, self._phase_limit()))
        if self._ends is not None:
            due.append((self._ends, 1, "deadline", self.limits.deadline))
        network = self.limits.network
        if network is not None:
            due.append((self._idle_from + network, 2, "network", network))
        passed = [entry for entry in due if entry[0] <= now]
        if not passed:
            return
        _, _, phase, value = min(passed)
        self.upper.abort(now)
        self._fail(TimedOut(phase, value))

    # --- what the user asks ---------------------------------------------------------

    def echo(self, now: float) -> int:
        """Send a C-ECHO-RQ; returns its message ID. Once the association has
        ended (reported, or about to be: a later PDU of the read that
        brought `Accepted`), nothing is sent and the next event says how it
        ended."""
        if self._phase == _OVER and self._events:
            return self._message_id
        if self._phase != _IDLE or self.ac is None:
            raise RuntimeError("no established association to send a C-ECHO on")
        # PS3.7 9.3.1.2: unique among the association's outstanding requests.
        self._message_id = self._message_id % 0xFFFF + 1
        self._outstanding = self._message_id
        self.upper.send_message(self.context_id, encode_echo_rq(self._message_id))
        if self._chatty:
            self._tell(EchoSent(self._message_id))
        self._wait(_ECHOING, now)
        return self._message_id

    def release(self, now: float) -> None:
        """A-RELEASE request; `Released` (or a failure) follows. Once the
        association has ended, nothing is sent (see `echo`)."""
        if self._phase == _OVER:
            return
        if self._phase != _IDLE or self.ac is None:
            raise RuntimeError("no established association to release, or a request outstanding")
        self.upper.release()
        if self._chatty:
            self._tell(ReleaseSent())
        self._wait(_RELEASING, now)

    def abort(self, now: float) -> None:
        """A-ABORT: the user gives up (a cancellation, an exception in the
        `async with` block). Ends the session with nothing more reported;
        after the end, nothing to do."""
        if self._phase == _OVER:
            return
        # (in Sta1 and Sta13, where the table has no Evt15, the upper layer
        # documents abort() as a no-op: the association has already ended)
        self.upper.abort(now)
        self._phase = _OVER

    # --- the lifecycle ----------------------------------------------------------------

    def _wait(self, phase: int, now: float) -> None:
        self._phase = phase
        self._phase_started = now
        self._idle_from = now

    def _phase_limit(self) -> float | None:
        return self.limits.dimse if self._phase == _ECHOING else self.limits.acse

    def _phase_end(self) -> float | None:
        limit = self._phase_limit()
        return None if limit is None else self._phase_started + limit

    def _tell(self, event: SessionEvent) -> None:
        if self._events is None:
            self._events = [event]
        else:
            self._events.append(event)

    def _on_pdu_event(self, event: Event) -> None:
        self._on_event(event, self._now)

    def _on_event(self, event: Event, now: float) -> None:
        phase = self._phase
        if phase == _OVER:
            return  # (a PDU after the end: the table has answered it, if at all)
        if phase == _ASSOCIATING:
            if isinstance(event, AssociationAccepted):
                self._accepted(event.ac, now)
                return
        elif phase == _ECHOING:
            if isinstance(event, MessageReceived):
                self._answered(event, now)
                return
        elif phase == _RELEASING:
            if isinstance(event, (ReleaseConfirmed, MessageReceived)):
                # AR-3/AR-10: released; AR-6: a late message, nothing to do with it.
                if self.upper.should_close:
                    self._released(now)
                return
            if isinstance(event, ReleaseRequested) and event.collision:
                # A collision (AR-8): the requestor answers first (AR-9),
                # then waits for the peer's A-RELEASE-RP.
                self.upper.release_response(now)
                return
        elif isinstance(event, MessageReceived):  # _IDLE: nothing was asked
            self._violation("a DIMSE message with no request outstanding", now)
            return
        if isinstance(event, ReleaseRequested):
            # The peer asked to release: answer it (AR-4) rather than leave it
            # waiting. With nothing outstanding, that is a release; with a
            # request outstanding (or about to go out), the request failed.
            self.upper.release_response(now)
            if phase == _RELEASING or (phase == _IDLE and self._then != _ECHOING):
                if phase == _IDLE:
                    self._phase_started = now  # answered at once: the release took no time
                self._released(now)
            else:
                # (echoes=True and the C-ECHO-RQ not yet out: the exchange failed)
                self._fail(PeerReleased())
            return
        self._fail(self._failure_for(event))

    def _accepted(self, ac: AssociateAC, now: float) -> None:
        self.ac = ac
        for context_id, (abstract, transfer) in sorted(self.upper.contexts.items()):
            if abstract == uids.VERIFICATION:
                self.context_id, self.transfer_syntax = context_id, transfer
                break
        self.associate_time = now - self._phase_started
        self._phase = _IDLE
        if self._answers:
            self._tell(
                Accepted(ac, self.context_id, self.transfer_syntax, self.associate_time)
            )
        if not self.context_id:
            results = {pc.context_id: PC_RESULT_NAMES[pc.result] for pc in ac.presentation_contexts}
            self._release_then = NoContext(results)
            self._then = _RELEASING
        elif self.auto:
            self._then = _ECHOING

    def _answered(self, event: MessageReceived, now: float) -> None:
        status, problem = _check_echo_response(event, self._outstanding)
        if problem is not None:
            self._violation(problem, now)
            return
        self.status = status
        self.echo_time = now - self._phase_started
        self._phase = _IDLE
        if self._answers:
            self._tell(EchoAnswered(self._outstanding, status, self.echo_time))
        if self.auto:
            self._then = _RELEASING

    def _released(self, now: float) -> None:
        self.release_time = now - self._phase_started
        if self._release_then is not None:
            self._fail(self._release_then)
            return
        self._phase = _OVER
        self._tell(Released(self.release_time))

    def _violation(self, problem: str, now: float) -> None:
        """PS3.8 AA-8 for what we cannot accept: a service-provider A-ABORT
        (reason: invalid PDU parameter value) goes out."""
        self.upper.protocol_violation(PDUError(problem, 0), now)
        self._fail(ProtocolViolation(problem))

    def _failure_for(self, event: Event) -> Failure:
        """The failure an event that ends the association (or that the
        phase cannot take) means."""
        if isinstance(event, AssociationRejected):
            return Rejected(event.rj)
        if isinstance(event, Aborted):
            if event.error is not None or not (event.by_peer or event.connection_lost):
                # AA-8: our upper layer aborted, for an invalid PDU or for a
                # valid one the table does not allow now (PS3.8 9.2).
                problem = (
                    event.error.message
                    if event.error is not None
                    else "unexpected PDU for the state of the association"
                )
                return ProtocolViolation(problem)
            if event.connection_lost:
                return ConnectionClosed(self.ac is not None)
            return PeerAborted(event.source, event.reason)
        return ProtocolViolation(f"unexpected {type(event).__name__} from the peer")

    def _fail(self, failure: Failure) -> None:
        if self._release_then is not None and not isinstance(failure, TimedOut):
            # The release after a NoContext went wrong: the NoContext is
            # what the user needs to know.
            failure = self._release_then
        self._phase = _OVER
        self._tell(failure)



def _check_echo_response(event: MessageReceived, message_id: int) -> tuple[int, str | None]:
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


__all__ = ["RequestorSession"]
