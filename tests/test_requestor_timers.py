"""The SCU's session alone (`RequestorSession`) on a fake clock: every
user-facing limit, through the session only, no sockets, no sleeping.

ACSE while the A-ASSOCIATE and the A-RELEASE answers are awaited, DIMSE
while the C-ECHO-RSP is, network silence from the last byte heard (a
partial PDU counts as heard), the overall deadline across phases, and which
of connect and deadline bounds the driver's connect: each is due exactly at
`next_deadline()`; the timer does nothing a moment before it, and at it (or
later) the session writes an A-ABORT and ends with `TimedOut`. On a tie the
phase's own limit names the failure, then the deadline, then the network.
"""

from __future__ import annotations

import pytest

from asyncecho.protocol.pdu import Abort
from asyncecho.protocol.requestor import RequestorSession
from asyncecho.protocol.requestor_events import (
    Accepted,
    EchoAnswered,
    EchoSent,
    Phase,
    Released,
    RequestSent,
    TimedOut,
)
from requestor_steps import (
    NEVER,
    START,
    WAITS,
    associated,
    connected,
    ends,
    limits,
    taken,
    times_out,
    waits,
)
from session_pdus import (
    AC,
    RQ,
    RQ_BYTES,
    USER_ABORT,
    echo_rq,
)


def test_our_abort_is_a_user_abort_with_no_reason() -> None:
    assert Abort(0, 0).encode() == USER_ABORT


# --- each limit, exactly at its time ---------------------------------------------------


@waits
@pytest.mark.parametrize("late", [0.0, 5.0])
def test_the_phase_limit_ends_the_wait(wait: str, late: float) -> None:
    make, began, phase, _ = WAITS[wait]
    limit = 7.0 if phase == "acse" else 11.0
    times_out(make(limits(acse=7.0, dimse=11.0)), began + limit, phase, limit, late=late)


@waits
def test_silence_ends_the_wait_on_the_network_limit(wait: str) -> None:
    make, began, _, _ = WAITS[wait]
    times_out(make(limits(acse=30.0, dimse=30.0, network=2.5)), began + 2.5, "network", 2.5)


@waits
def test_a_trickle_resets_the_network_limit_not_the_phase_s(wait: str) -> None:
    make, began, phase, answer = WAITS[wait]
    s = make(limits(acse=6.0, dimse=6.0, network=2.0))
    # A byte every 1.5 s: each one, even a partial PDU's, is heard.
    for i, heard in enumerate((began + 1.5, began + 3.0, began + 4.5)):
        s.receive_data(answer[i : i + 1], heard)
        assert s.partial_pdu
        assert s.next_deadline() == min(heard + 2.0, began + 6.0)
        s.handle_timer(heard + 1.25)  # past 2 s of silence counted from the wait's start
        assert s.data_to_send() == b"" and s.next_event() is None
    # ... until the phase's limit, from the wait's start.
    times_out(s, began + 6.0, phase, 6.0)


@waits
def test_the_answer_trickled_in_time_is_taken(wait: str) -> None:
    make, began, _, answer = WAITS[wait]
    s = make(limits(acse=6.0, dimse=6.0, network=2.0))
    s.receive_data(answer[:3], began + 1.5)
    s.receive_data(answer[3:], began + 3.0)
    assert not s.partial_pdu
    (event,) = taken(s)
    assert isinstance(event, (Accepted, EchoAnswered, Released))


def test_trickled_silence_after_a_partial_pdu_ends_on_the_network_limit() -> None:
    s = connected(limits(acse=30.0, network=2.0))
    s.receive_data(AC[:1], 102.5)
    times_out(s, 104.5, "network", 2.0)


@waits
def test_the_deadline_counts_from_the_start_across_phases(wait: str) -> None:
    make, _, _, _ = WAITS[wait]
    times_out(
        make(limits(acse=30.0, dimse=30.0, network=30.0, deadline=6.0)), 106.0, "deadline", 6.0
    )


def test_the_deadline_counts_the_connect_too() -> None:
    s = RequestorSession(RQ, limits(acse=30.0, deadline=6.0))
    s.start(START)
    s.connection_made(105.5)
    assert s.data_to_send() == RQ_BYTES
    assert taken(s) == [RequestSent(RQ)]
    times_out(s, 106.0, "deadline", 6.0)


# Limits due at the same instant, 7 s into the wait (the others at 30 s):
# which one names the failure.
TIES: dict[str, tuple[float, float, float, str]] = {
    # phase's, deadline's, network's -> the winner
    "phase-and-deadline": (7.0, 7.0, 30.0, "phase"),
    "phase-and-network": (7.0, 30.0, 7.0, "phase"),
    "all-three": (7.0, 7.0, 7.0, "phase"),
    "deadline-and-network": (30.0, 7.0, 7.0, "deadline"),
}


@waits
@pytest.mark.parametrize("tie", TIES)
def test_on_a_tie_the_phase_wins_then_the_deadline(wait: str, tie: str) -> None:
    make, began, phase, _ = WAITS[wait]
    phase_limit, deadline_in, network, winner = TIES[tie]
    # The deadline counts from START: set so it falls `deadline_in` into the wait.
    lim = limits(
        acse=phase_limit,
        dimse=phase_limit,
        network=network,
        deadline=began - START + deadline_in,
    )
    if winner == "phase":
        times_out(make(lim), began + 7.0, phase, phase_limit)
    else:
        times_out(make(lim), began + 7.0, "deadline", lim.deadline)


@waits
def test_no_limits_no_timer(wait: str) -> None:
    make, _, _, _ = WAITS[wait]
    s = make(limits())
    assert s.next_deadline() is None
    s.handle_timer(NEVER)
    assert s.data_to_send() == b"" and s.next_event() is None and not s.should_close


@waits
def test_with_no_phase_limit_the_network_limit_still_holds(wait: str) -> None:
    make, began, _, _ = WAITS[wait]
    times_out(make(limits(network=4.0)), began + 4.0, "network", 4.0)


def test_an_idle_association_needs_no_timer_but_the_deadline_bounds_the_next_wait() -> None:
    s = associated(limits(acse=30.0, dimse=30.0, network=30.0, deadline=10.0))
    assert s.next_deadline() is None
    s.handle_timer(NEVER)
    assert s.data_to_send() == b"" and s.next_event() is None and not s.should_close
    # Asked after the deadline: the wait is over as soon as it begins.
    s.echo(120.0)
    assert s.data_to_send() == echo_rq(1)
    assert taken(s) == [EchoSent(1)]
    assert s.next_deadline() == 110.0
    s.handle_timer(120.0)
    ends(s, TimedOut("deadline", 10.0), USER_ABORT)


# --- the connect: the driver's to bound, with the session's limit ------------------------

CONNECT_LIMITS = [
    # connect, deadline -> the connect's limit, and the limit it is
    (3.0, None, 3.0, "connect"),
    (2.0, 8.0, 2.0, "connect"),
    (3.0, 2.0, 2.0, "deadline"),
    (3.0, 3.0, 3.0, "connect"),
    (None, 2.0, 2.0, "deadline"),
    (None, None, None, "connect"),
]


@pytest.mark.parametrize(("connect", "deadline", "limit", "phase"), CONNECT_LIMITS)
def test_the_connect_is_bounded_by_the_nearer_of_connect_and_deadline(
    connect: float | None, deadline: float | None, limit: float | None, phase: Phase
) -> None:
    s = RequestorSession(RQ, limits(connect=connect, acse=30.0, deadline=deadline))
    s.start(START)
    assert s.data_to_send() == b""
    assert s.next_deadline() is None  # (the connect's timer is the driver's)
    assert s.connect_limit() == (limit, phase)
    failure = s.connect_timed_out()
    assert failure == TimedOut(phase, connect if phase == "connect" else deadline)
    # Nothing to abort before the connection: nothing written, no event.
    assert s.data_to_send() == b""
    assert s.should_close and s.next_deadline() is None and s.next_event() is None
