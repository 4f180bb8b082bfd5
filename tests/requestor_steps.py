"""Steps that bring a `RequestorSession` to each of its waits on a fake
clock (`now` is a number), and the checks the session tests share: the
events taken one at a time, the end, a limit due exactly at its time. Not a
test module; the PDUs are session_pdus'.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from asyncecho.protocol.requestor import RequestorSession
from asyncecho.protocol.requestor_events import (
    Accepted,
    EchoSent,
    Failure,
    Limits,
    Phase,
    Released,
    ReleaseSent,
    RequestSent,
    SessionEvent,
    TimedOut,
)
from session_pdus import (
    AC,
    AC_PDU,
    RELEASE_RP,
    RELEASE_RQ,
    RQ,
    RQ_BYTES,
    USER_ABORT,
    echo_rq,
    echo_rsp,
)

START = 100.0  # start(): the A-ASSOCIATE request, before the connect
CONNECTED = 101.0  # connection_made(): the A-ASSOCIATE-RQ goes out
ACCEPTED = 102.0  # the A-ASSOCIATE-AC comes in
ASKED = 104.0  # echo() or release() (manual mode)
NEVER = 1e12


def limits(**given: float | None) -> Limits:
    """No limit at all but those `given`."""
    values: dict[str, float | None] = dict.fromkeys(
        ("connect", "acse", "dimse", "network", "deadline")
    )
    values.update(given)
    return Limits(**values)


def taken(s: RequestorSession) -> list[SessionEvent]:
    """Every event the session has to report, oldest first."""
    events: list[SessionEvent] = []
    while (event := s.next_event()) is not None:
        events.append(event)
    return events


def connected(lim: Limits, *, echoes: bool = False) -> RequestorSession:
    """A session awaiting the A-ASSOCIATE answer since CONNECTED."""
    s = RequestorSession(RQ, lim, echoes=echoes)
    s.start(START)
    s.connection_made(CONNECTED)
    assert s.data_to_send() == RQ_BYTES
    assert taken(s) == [RequestSent(RQ)]
    return s


def associated(lim: Limits) -> RequestorSession:
    """Manual mode, accepted at ACCEPTED, nothing asked yet."""
    s = connected(lim)
    s.receive_data(AC, ACCEPTED)
    assert taken(s) == [Accepted(AC_PDU, 1, AC_PDU.presentation_contexts[0].transfer_syntax, 1.0)]
    assert s.data_to_send() == b""
    return s


def echoing(lim: Limits) -> RequestorSession:
    """Awaiting the C-ECHO-RSP to message 1, sent at ASKED."""
    s = associated(lim)
    assert s.echo(ASKED) == 1
    assert s.data_to_send() == echo_rq(1)
    assert taken(s) == [EchoSent(1)]
    return s


def releasing(lim: Limits) -> RequestorSession:
    """Awaiting the A-RELEASE-RP, the A-RELEASE-RQ sent at ASKED."""
    s = associated(lim)
    s.release(ASKED)
    assert s.data_to_send() == RELEASE_RQ
    assert taken(s) == [ReleaseSent()]
    return s


# Each wait for an answer: how to reach it, when it began, its limit's name,
# and the PDU that answers it.
Wait = tuple[Callable[[Limits], RequestorSession], float, Phase, bytes]
WAITS: dict[str, Wait] = {
    "associate": (connected, CONNECTED, "acse", AC),
    "echo": (echoing, ASKED, "dimse", echo_rsp(1)),
    "release": (releasing, ASKED, "acse", RELEASE_RP),
}
waits = pytest.mark.parametrize("wait", WAITS)


def ends(s: RequestorSession, terminal: Failure | Released, sent: bytes = b"") -> None:
    """`s` wrote `sent` and ended with `terminal`, its last event."""
    assert s.data_to_send() == sent
    assert s.should_close
    assert s.next_deadline() is None
    assert not s.finished
    assert taken(s) == [terminal]
    assert s.finished


def times_out(
    s: RequestorSession, at: float, phase: Phase, value: float | None, *, late: float = 0.0
) -> None:
    """`s` needs the clock at `at` and not before; then (`late` after it)
    it aborts and ends with TimedOut(phase, value)."""
    assert s.next_deadline() == at
    s.handle_timer(math.nextafter(at, -math.inf))
    assert s.data_to_send() == b""
    assert s.next_event() is None
    assert not s.should_close
    assert s.next_deadline() == at
    s.handle_timer(at + late)
    ends(s, TimedOut(phase, value), USER_ABORT)
