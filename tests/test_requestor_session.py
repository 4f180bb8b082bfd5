"""The SCU's session alone (`RequestorSession`) on a fake clock: its
lifecycle, automatic (`echoes=True`: associate, one C-ECHO, release) and
manual (`echo()` and `release()` as the user asks), and each way it can
fail. Every event comes out once, in order, through `next_event()`; the
terminal one is the last, and after it nothing is written or reported.
The limits are test_requestor_timers'.
"""

from __future__ import annotations

import pytest

from asyncecho.protocol.pdu_items import PC_ABSTRACT_SYNTAX_NOT_SUPPORTED, PC_RESULT_NAMES
from asyncecho.protocol.requestor import RequestorSession
from asyncecho.protocol.requestor_events import (
    Accepted,
    ConnectionClosed,
    EchoAnswered,
    EchoSent,
    Limits,
    NoContext,
    PeerAborted,
    PeerReleased,
    ProtocolViolation,
    Rejected,
    Released,
    ReleaseSent,
    RequestSent,
)
from requestor_steps import (
    ACCEPTED,
    ASKED,
    NEVER,
    START,
    WAITS,
    associated,
    connected,
    echoing,
    ends,
    limits,
    releasing,
    taken,
    times_out,
)
from session_pdus import (
    AC,
    AC_PDU,
    NO_CONTEXT_AC,
    NO_CONTEXT_AC_PDU,
    RELEASE_RP,
    RELEASE_RQ,
    RJ,
    RJ_PDU,
    RQ,
    RQ_BYTES,
    UNEXPECTED_PDU_ABORT,
    USER_ABORT,
    VIOLATION_ABORT,
    abort,
    echo_rq,
    echo_rsp,
    echo_rsp_with_data_set,
)

# --- the lifecycle ------------------------------------------------------------------------------


def auto_echoing() -> RequestorSession:
    """`echoes=True`, accepted at ACCEPTED: its C-ECHO-RQ 1 has gone out."""
    s = connected(Limits(), echoes=True)
    s.receive_data(AC, ACCEPTED)
    assert s.data_to_send() == echo_rq(1)
    accepted, sent = taken(s)
    assert isinstance(accepted, Accepted) and sent == EchoSent(1)
    return s


def test_echoes_runs_associate_echo_release_by_itself() -> None:
    s = RequestorSession(RQ, Limits(), echoes=True)  # every limit 30 s, no deadline
    s.start(START)
    assert s.data_to_send() == b"" and s.next_event() is None
    s.connection_made(100.5)
    assert s.data_to_send() == RQ_BYTES
    assert taken(s) == [RequestSent(RQ)]
    assert s.next_deadline() == 130.5
    s.receive_data(AC, 101.25)
    transfer_syntax = AC_PDU.presentation_contexts[0].transfer_syntax
    assert taken(s) == [Accepted(AC_PDU, 1, transfer_syntax, 0.75), EchoSent(1)]
    assert s.data_to_send() == echo_rq(1)
    assert s.next_deadline() == 131.25
    s.receive_data(echo_rsp(1), 102.0)
    assert taken(s) == [EchoAnswered(1, 0x0000, 0.75), ReleaseSent()]
    assert s.data_to_send() == RELEASE_RQ
    assert s.next_deadline() == 132.0
    s.receive_data(RELEASE_RP, 103.5)
    ends(s, Released(1.5))
    assert (s.connect_time, s.associate_time, s.echo_time, s.release_time) == (0.5, 0.75, 0.75, 1.5)
    assert (s.ac, s.context_id, s.transfer_syntax) == (AC_PDU, 1, transfer_syntax)
    assert (s.status, s.message_id) == (0x0000, 1)
    assert s.elapsed(103.5) == 3.5


def test_echoes_releases_after_a_failure_status_too() -> None:
    s = auto_echoing()
    s.receive_data(echo_rsp(1, status=0xC000), 103.0)
    assert taken(s) == [EchoAnswered(1, 0xC000, 1.0), ReleaseSent()]
    assert s.data_to_send() == RELEASE_RQ
    assert s.status == 0xC000


def test_manual_echoes_then_release() -> None:
    s = associated(Limits())
    for message_id in (1, 2, 3):
        asked = 100.0 + 4 * message_id
        assert s.echo(asked) == message_id
        assert s.data_to_send() == echo_rq(message_id)
        assert taken(s) == [EchoSent(message_id)]
        assert s.next_deadline() == asked + 30.0
        s.receive_data(echo_rsp(message_id), asked + 0.5)
        assert taken(s) == [EchoAnswered(message_id, 0x0000, 0.5)]
        assert s.next_deadline() is None
    assert s.message_id == 3
    s.release(120.0)
    assert s.data_to_send() == RELEASE_RQ
    assert taken(s) == [ReleaseSent()]
    s.receive_data(RELEASE_RP, 120.25)
    ends(s, Released(0.25))


def test_manual_calls_out_of_turn_raise_and_change_nothing() -> None:
    s = connected(Limits())
    with pytest.raises(RuntimeError):
        s.echo(101.5)  # not associated yet
    with pytest.raises(RuntimeError):
        s.release(101.5)
    s.receive_data(AC, ACCEPTED)
    taken(s)
    s.echo(ASKED)
    assert s.data_to_send() == echo_rq(1)
    assert taken(s) == [EchoSent(1)]
    with pytest.raises(RuntimeError):
        s.echo(105.0)  # one outstanding
    with pytest.raises(RuntimeError):
        s.release(105.0)
    assert s.data_to_send() == b"" and s.next_event() is None
    assert s.next_deadline() == ASKED + 30.0


def test_after_the_end_echo_raises_once_the_end_is_taken_and_release_does_nothing() -> None:
    s = echoing(Limits())
    s.receive_data(abort(0, 0), 105.0)
    # Not yet taken: the call returns and the next event says how it ended.
    assert s.echo(105.5) == 1
    s.release(105.5)
    assert s.data_to_send() == b""
    assert taken(s) == [PeerAborted(0, 0)]
    with pytest.raises(RuntimeError):
        s.echo(106.0)
    s.release(106.0)
    assert s.data_to_send() == b"" and s.next_event() is None


# --- how it fails: each terminal, once ------------------------------------------------------------


def test_rejected() -> None:
    s = connected(Limits())
    s.receive_data(RJ, ACCEPTED)
    ends(s, Rejected(RJ_PDU))
    assert s.ac is None


@pytest.mark.parametrize("wait", [*WAITS, "idle"])
@pytest.mark.parametrize(("source", "reason"), [(0, 0), (2, 4)])
def test_the_peer_s_abort(wait: str, source: int, reason: int) -> None:
    s = associated(Limits()) if wait == "idle" else WAITS[wait][0](Limits())
    s.receive_data(abort(source, reason), 105.0)
    ends(s, PeerAborted(source, reason))


@pytest.mark.parametrize("wait", [*WAITS, "idle"])
def test_the_connection_lost(wait: str) -> None:
    s = associated(Limits()) if wait == "idle" else WAITS[wait][0](Limits())
    s.connection_lost(105.0)
    ends(s, ConnectionClosed(accepted=wait != "associate"))


BAD_RESPONSES = {
    "wrong-message-id": (echo_rsp(2), "C-ECHO-RSP answers message ID 2, not 1"),
    "no-status": (echo_rsp(1, status=None), "C-ECHO-RSP has no Status (0000,0900)"),
    "a-data-set": (echo_rsp_with_data_set(1), "C-ECHO-RSP carries a data set"),
    "not-an-echo-rsp": (
        echo_rsp(1, command_field=0x8001),
        "expected a C-ECHO-RSP, got command field 0x8001",
    ),
}


@pytest.mark.parametrize("bad", BAD_RESPONSES)
def test_a_response_we_cannot_accept_is_aborted(bad: str) -> None:
    data, problem = BAD_RESPONSES[bad]
    s = auto_echoing()
    s.receive_data(data, 103.0)
    # AA-8: a service-provider A-ABORT, invalid PDU parameter value; no release.
    ends(s, ProtocolViolation(problem), VIOLATION_ABORT)
    assert s.status is None


def test_a_message_with_nothing_outstanding_is_aborted() -> None:
    s = associated(Limits())
    s.receive_data(echo_rsp(1), 103.0)
    ends(s, ProtocolViolation("a DIMSE message with no request outstanding"), VIOLATION_ABORT)


def test_a_pdu_at_the_wrong_time_is_aborted() -> None:
    s = echoing(Limits())
    s.receive_data(AC, 105.0)
    problem = "unexpected PDU for the state of the association"
    ends(s, ProtocolViolation(problem), UNEXPECTED_PDU_ABORT)


def test_an_unknown_pdu_is_aborted() -> None:
    s = connected(Limits())
    s.receive_data(b"\xff\x00\x00\x00\x00\x04GARB", ACCEPTED)
    ends(s, ProtocolViolation("unknown PDU type 0xff"), abort(2, 1))


NO_CONTEXT = NoContext({1: PC_RESULT_NAMES[PC_ABSTRACT_SYNTAX_NOT_SUPPORTED]})


def no_context(echoes: bool) -> RequestorSession:
    """Accepted with no Verification context: the session releases by itself."""
    s = connected(limits(acse=7.0), echoes=echoes)
    s.receive_data(NO_CONTEXT_AC, ACCEPTED)
    assert taken(s) == [Accepted(NO_CONTEXT_AC_PDU, 0, None, 1.0), ReleaseSent()]
    assert s.data_to_send() == RELEASE_RQ
    return s


@pytest.mark.parametrize("echoes", [True, False])
def test_no_context_is_released_then_reported(echoes: bool) -> None:
    s = no_context(echoes)
    with pytest.raises(RuntimeError):
        s.echo(ACCEPTED)  # (nothing to echo on, and the release is outstanding)
    s.receive_data(RELEASE_RP, 103.0)
    ends(s, NO_CONTEXT)
    assert s.release_time == 1.0


@pytest.mark.parametrize("how", ["peer-abort", "connection-lost"])
def test_no_context_is_reported_when_its_release_fails(how: str) -> None:
    s = no_context(echoes=True)
    if how == "peer-abort":
        s.receive_data(abort(2, 0), 103.0)
    else:
        s.connection_lost(103.0)
    ends(s, NO_CONTEXT)


def test_no_context_whose_release_times_out_ends_in_the_timeout() -> None:
    # What the code does (and what echo() did before the session: an
    # AcseTimeout), though NoContext's docstring reads as if NoContext were
    # reported "(or aborted if that failed)".
    times_out(no_context(echoes=True), ACCEPTED + 7.0, "acse", 7.0)


def test_the_peer_releasing_with_our_echo_outstanding() -> None:
    s = echoing(Limits())
    s.receive_data(RELEASE_RQ, 105.0)
    ends(s, PeerReleased(), RELEASE_RP)  # answered (AR-4), then failed


def test_the_peer_releasing_an_idle_association() -> None:
    s = associated(Limits())
    s.receive_data(RELEASE_RQ, 105.0)
    assert s.data_to_send() == RELEASE_RP
    (released,) = taken(s)
    assert isinstance(released, Released)
    assert s.should_close and s.finished


def test_the_response_and_the_peer_s_release_in_one_read() -> None:
    s = auto_echoing()
    s.receive_data(echo_rsp(1) + RELEASE_RQ, 103.0)
    # Answered; no A-RELEASE-RQ of ours, which the peer would have to refuse.
    assert s.data_to_send() == RELEASE_RP
    (answered, released) = taken(s)
    assert answered == EchoAnswered(1, 0x0000, 1.0)
    assert isinstance(released, Released)
    assert s.should_close and s.finished and s.status == 0x0000


def test_a_release_answered_at_once_takes_no_time() -> None:
    s = auto_echoing()
    s.receive_data(echo_rsp(1) + RELEASE_RQ, 103.0)
    assert taken(s) == [EchoAnswered(1, 0x0000, 1.0), Released(0.0)]
    assert s.release_time == 0.0


def test_the_accept_and_the_peer_s_abort_in_one_read() -> None:
    s = connected(Limits(), echoes=True)
    s.receive_data(AC + abort(0, 0), ACCEPTED)
    assert s.data_to_send() == b""  # no C-ECHO-RQ
    accepted, aborted = taken(s)
    assert isinstance(accepted, Accepted)
    assert aborted == PeerAborted(0, 0)
    assert s.should_close and s.finished


def test_the_accept_and_the_peer_s_release_in_one_read_fail_the_echo() -> None:
    s = connected(Limits(), echoes=True)
    s.receive_data(AC + RELEASE_RQ, ACCEPTED)
    assert s.data_to_send() == RELEASE_RP  # answered, and no C-ECHO-RQ
    accepted, ended = taken(s)
    assert isinstance(accepted, Accepted)
    assert ended == PeerReleased()


def test_a_release_collision() -> None:
    s = releasing(limits(acse=7.0))
    s.receive_data(RELEASE_RQ, 105.0)
    # AR-8, then the requestor answers first (AR-9) and awaits the peer's RP.
    assert s.data_to_send() == RELEASE_RP
    assert s.next_event() is None
    assert not s.should_close
    assert s.next_deadline() == ASKED + 7.0
    s.receive_data(RELEASE_RP, 106.0)
    ends(s, Released(2.0))


def test_a_release_collision_whose_answer_never_comes() -> None:
    s = releasing(limits(acse=7.0))
    s.receive_data(RELEASE_RQ, 105.0)
    assert s.data_to_send() == RELEASE_RP
    times_out(s, ASKED + 7.0, "acse", 7.0)


# --- the end is the end ---------------------------------------------------------------------------


def _timed_out() -> RequestorSession:
    s = echoing(limits(dimse=5.0))
    s.handle_timer(ASKED + 5.0)
    return s


def _released() -> RequestorSession:
    s = releasing(Limits())
    s.receive_data(RELEASE_RP, 105.0)
    return s


def _rejected() -> RequestorSession:
    s = connected(Limits())
    s.receive_data(RJ, ACCEPTED)
    return s


def _peer_aborted() -> RequestorSession:
    s = echoing(Limits())
    s.receive_data(abort(0, 0), 105.0)
    return s


def _violation() -> RequestorSession:
    s = echoing(Limits())
    s.receive_data(echo_rsp(9), 105.0)
    return s


def _closed() -> RequestorSession:
    s = echoing(Limits())
    s.connection_lost(105.0)
    return s


def _user_aborted() -> RequestorSession:
    s = echoing(Limits())
    s.abort(105.0)
    return s


ENDED = {
    f.__name__.strip("_"): f
    for f in (_timed_out, _released, _rejected, _peer_aborted, _violation, _closed, _user_aborted)
}


@pytest.mark.parametrize("end", ENDED)
def test_nothing_comes_after_the_end(end: str) -> None:
    s = ENDED[end]()
    s.data_to_send()
    events = taken(s)
    assert len(events) <= 1  # the terminal event (none for the user's own abort)
    assert s.finished and s.should_close
    s.receive_data(echo_rsp(1) + RELEASE_RQ + abort(2, 0), 200.0)
    s.handle_timer(NEVER)
    s.connection_lost(201.0)
    s.release(202.0)
    s.abort(203.0)
    assert s.data_to_send() == b""
    assert s.next_event() is None
    assert s.next_deadline() is None
    with pytest.raises(RuntimeError):
        s.echo(204.0)


@pytest.mark.parametrize("wait", [*WAITS, "idle"])
def test_the_user_s_abort(wait: str) -> None:
    s = associated(Limits()) if wait == "idle" else WAITS[wait][0](Limits())
    s.abort(105.0)
    assert s.data_to_send() == USER_ABORT
    assert s.next_event() is None  # nothing more reported
    assert s.should_close and s.finished and s.next_deadline() is None


def test_the_user_s_abort_before_the_connection_writes_nothing() -> None:
    s = RequestorSession(RQ, Limits())
    s.start(START)
    s.abort(100.5)
    assert s.data_to_send() == b""
    assert s.should_close and s.finished and s.next_event() is None
