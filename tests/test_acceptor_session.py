"""The SCP's session alone (`AcceptorSession`), on a fake clock: no sockets,
no sleeping. Every SCP-side timeout (ARTIM before the A-ASSOCIATE-RQ, the
network idle limit while associated, a PDU trickled slower than the DIMSE
timeout, ARTIM after the end waiting for the close) fires exactly at its
deadline, never before; what goes out on the wire and the events are
checked. Then the identity check, and the state checks the session no
longer makes: that what they guarded cannot happen, since each event is
answered as its PDU is taken in."""

from __future__ import annotations

import pytest

from asyncecho.protocol.acceptor import (
    ENDED,
    IDENTITY_REJECT,
    PROVIDER_ABORT,
    AcceptorSession,
    AssociationEstablished,
    AssociationRefused,
    EchoAnswered,
    IdentityCheckNeeded,
    Stalled,
)
from asyncecho.protocol.dimse import encode_echo_rq, encode_echo_rsp, fragment
from asyncecho.protocol.events import Aborted, ReleaseRequested
from asyncecho.protocol.negotiation import AcceptorPolicy, build_ac, build_rq, busy_reject
from asyncecho.protocol.pdu import (
    PDV,
    Abort,
    AssociateRJ,
    AssociateRQ,
    PDataTF,
    ReleaseRP,
    ReleaseRQ,
    decode_pdu,
)
from asyncecho.protocol.pdu_items import UserIdentityAC, UserIdentityRQ

POLICY = AcceptorPolicy()
RQ_PDU = build_rq(calling_ae="SCU", called_ae="ANY-SCP")
RQ = RQ_PDU.encode()
AC = build_ac(RQ_PDU, POLICY).encode()
(_PDV,) = fragment(1, encode_echo_rq(7), True, 0)
ECHO_RQ = PDataTF((_PDV,)).encode()
ECHO_RSP = PDataTF((PDV(1, True, True, encode_echo_rsp(7, 0)),)).encode()
RELEASE_RQ = ReleaseRQ().encode()
RELEASE_RP = ReleaseRP().encode()
# AA-1 (our own abort: a stall, a shutdown): service-user source, reason 0.
USER_ABORT = b"\x07\x00\x00\x00\x00\x04\x00\x00\x00\x00"
PEER_ABORT = Abort(0, 0).encode()

ARTIM, NETWORK, DIMSE = 10.0, 5.0, 8.0
EPSILON = 1e-6


def session(**settings: object) -> AcceptorSession:
    """A session with the limits above, its connection made at t=100."""
    limits: dict[str, object] = {
        "artim_timeout": ARTIM,
        "network_timeout": NETWORK,
        "dimse_timeout": DIMSE,
    }
    limits.update(settings)
    s = AcceptorSession(POLICY, **limits)  # type: ignore[arg-type]
    s.connection_made(100.0)
    return s


def associated(at: float = 101.0, **settings: object) -> AcceptorSession:
    s = session(**settings)
    (established,) = s.receive_data(RQ, at)
    assert established == AssociationEstablished(RQ_PDU, build_ac(RQ_PDU, POLICY))
    assert s.data_to_send() == AC
    return s


def nothing_due(s: AcceptorSession, now: float) -> None:
    """At `now`, just before a deadline: the timer does nothing at all."""
    assert s.handle_timer(now) == []
    assert s.data_to_send() == b""
    assert not s.should_close


# --- every timer -------------------------------------------------------------------------


def test_artim_before_the_associate_rq() -> None:
    """PS3.8 9.1.4: ARTIM bounds the wait for the A-ASSOCIATE-RQ (Evt18 in
    Sta2: AA-2, close, nothing sent); the idle limit does not apply yet,
    however much shorter it is."""
    s = session()
    assert s.next_deadline() == 100.0 + ARTIM
    nothing_due(s, 100.0 + NETWORK + 1)  # (past the idle limit: not its time)
    nothing_due(s, 100.0 + ARTIM - EPSILON)
    assert s.handle_timer(100.0 + ARTIM) == [ENDED]
    assert s.should_close
    assert s.data_to_send() == b""


def test_artim_is_not_reset_by_a_partial_rq() -> None:
    s = session()
    assert s.receive_data(RQ[:10], 104.0) == []
    assert s.next_deadline() == 100.0 + ARTIM
    assert s.handle_timer(100.0 + ARTIM) == [ENDED]
    assert s.should_close


def test_network_idle_while_associated() -> None:
    """Nothing from the peer for `network_timeout`: an A-ABORT (AA-1),
    Stalled("idle"), the association over (Sta13) and ARTIM bounding the
    close from then on."""
    s = associated(at=101.0)
    assert s.next_deadline() == 101.0 + NETWORK
    assert s.receive_data(ECHO_RQ, 103.0) == [EchoAnswered(7, 0)]
    assert s.data_to_send() == ECHO_RSP
    assert s.next_deadline() == 103.0 + NETWORK  # every byte resets it
    s.touch(104.0)  # the peer took our data: alive, not idle
    assert s.next_deadline() == 104.0 + NETWORK
    nothing_due(s, 104.0 + NETWORK - EPSILON)
    assert s.handle_timer(104.0 + NETWORK) == [Stalled("idle"), ENDED]
    assert s.data_to_send() == USER_ABORT
    assert not s.should_close  # the driver closes once the A-ABORT is out
    assert s.next_deadline() == 104.0 + NETWORK + ARTIM
    assert s.handle_timer(104.0 + NETWORK + ARTIM) == []
    assert s.should_close


def test_a_pdu_trickled_slower_than_the_dimse_timeout() -> None:
    """One byte every 4 s keeps the idle limit (5 s) away, but the PDU began
    at its first byte: `dimse_timeout` (8 s) later, Stalled("slow-pdu")."""
    s = associated(at=101.0)
    t = 102.0
    for byte in ECHO_RQ[:3]:
        assert s.receive_data(bytes([byte]), t) == []
        assert s.partial_pdu
        t += 4.0
    # bytes at 102, 106, 110: idle due at 115, the slow PDU at 110.
    assert s.next_deadline() == 102.0 + DIMSE
    nothing_due(s, 102.0 + DIMSE - EPSILON)
    assert s.handle_timer(102.0 + DIMSE) == [Stalled("slow-pdu"), ENDED]
    assert s.data_to_send() == USER_ABORT
    assert s.next_deadline() == 102.0 + DIMSE + ARTIM


def test_a_pdu_completed_in_time_stops_the_slow_pdu_limit() -> None:
    s = associated(at=101.0)
    assert s.receive_data(ECHO_RQ[:4], 102.0) == []
    assert s.next_deadline() == min(102.0 + NETWORK, 102.0 + DIMSE)
    assert s.receive_data(ECHO_RQ[4:], 106.0) == [EchoAnswered(7, 0)]
    assert not s.partial_pdu
    assert s.next_deadline() == 106.0 + NETWORK  # no slow-PDU limit left


def test_slow_pdu_limit_nearer_than_idle() -> None:
    s = associated(at=101.0, network_timeout=30.0)
    s.receive_data(ECHO_RQ[:1], 102.0)
    s.receive_data(ECHO_RQ[1:2], 109.0)
    assert s.next_deadline() == 102.0 + DIMSE
    nothing_due(s, 110.0 - EPSILON)
    assert s.handle_timer(110.0) == [Stalled("slow-pdu"), ENDED]


def test_artim_after_the_release_waits_for_the_close() -> None:
    """After the A-RELEASE-RP (AR-4: Sta13) only the peer's close is
    awaited, for ARTIM: the idle limit no longer applies; ARTIM's expiry
    closes (AA-2) with nothing more sent."""
    s = associated(at=101.0)
    assert s.receive_data(RELEASE_RQ, 102.0) == [ReleaseRequested(), ENDED]
    assert s.data_to_send() == RELEASE_RP
    assert s.next_deadline() == 102.0 + ARTIM
    nothing_due(s, 102.0 + NETWORK + 1)
    nothing_due(s, 102.0 + ARTIM - EPSILON)
    assert s.handle_timer(102.0 + ARTIM) == []
    assert s.should_close
    assert s.data_to_send() == b""


def test_the_peer_closing_after_the_release_ends_quietly() -> None:
    s = associated()
    s.receive_data(RELEASE_RQ, 102.0)
    assert s.connection_lost(103.0) == []  # (AR-5; ended already)
    assert s.should_close


def test_the_peer_closing_while_associated_is_an_abort() -> None:
    s = associated()
    aborted, ended = s.connection_lost(102.0)
    assert isinstance(aborted, Aborted) and aborted.connection_lost
    assert ended is ENDED


def test_no_limits_no_deadline_while_associated() -> None:
    s = associated(network_timeout=None, dimse_timeout=None)
    assert s.next_deadline() is None
    assert s.handle_timer(1e9) == []


# --- the identity check ------------------------------------------------------------------

IDENTITY = UserIdentityRQ(1, True, b"alice")
RQ_WITH_IDENTITY = build_rq(calling_ae="SCU", called_ae="ANY-SCP", extra_user_items=(IDENTITY,))


def awaiting_identity() -> AcceptorSession:
    s = session(check_identity=True)
    happened = s.receive_data(RQ_WITH_IDENTITY.encode(), 101.0)
    assert happened == [IdentityCheckNeeded(RQ_WITH_IDENTITY, IDENTITY)]
    assert s.data_to_send() == b""  # nothing until decided
    return s


def test_identity_accepted_with_a_server_response() -> None:
    s = awaiting_identity()
    ac = build_ac(RQ_WITH_IDENTITY, POLICY, [UserIdentityAC(b"token")])
    assert s.decide(True, b"token", 102.0) == [AssociationEstablished(RQ_WITH_IDENTITY, ac)]
    assert s.data_to_send() == ac.encode()
    assert s.receive_data(ECHO_RQ, 103.0) == [EchoAnswered(7, 0)]


def test_identity_refused() -> None:
    s = awaiting_identity()
    assert s.decide(False, None, 102.0) == [
        AssociationRefused(RQ_WITH_IDENTITY, IDENTITY_REJECT),
        ENDED,
    ]
    assert s.data_to_send() == IDENTITY_REJECT.encode()
    assert s.next_deadline() == 102.0 + ARTIM  # AE-8: ARTIM bounds the close


def test_idle_while_the_identity_check_runs_then_its_answer_is_moot() -> None:
    """No ARTIM in Sta3 (the answer is ours to give), but the idle limit
    runs; once it has aborted, the check's late answer does nothing."""
    s = awaiting_identity()
    assert s.next_deadline() == 101.0 + NETWORK
    nothing_due(s, 101.0 + NETWORK - EPSILON)
    assert s.handle_timer(101.0 + NETWORK) == [Stalled("idle"), ENDED]
    assert s.data_to_send() == USER_ABORT
    assert s.decide(True, None, 107.0) == []
    assert s.data_to_send() == b""


def test_the_peer_aborts_while_the_identity_check_runs() -> None:
    s = awaiting_identity()
    aborted, ended = s.receive_data(PEER_ABORT, 102.0)
    assert isinstance(aborted, Aborted) and aborted.by_peer
    assert ended is ENDED
    assert s.should_close
    assert s.decide(True, None, 103.0) == []
    assert s.data_to_send() == b""


# --- what the removed state checks guarded cannot happen ---------------------------------


def test_rq_and_abort_in_one_read_answers_the_rq_first() -> None:
    """The RQ is answered as it is taken in (Sta3), before the A-ABORT
    behind it in the same read: so no "already ended" check is needed."""
    s = session()
    happened = s.receive_data(RQ + PEER_ABORT, 101.0)
    assert isinstance(happened[0], AssociationEstablished)
    assert isinstance(happened[1], Aborted) and happened[1].by_peer
    assert happened[2:] == [ENDED]
    assert s.data_to_send() == AC
    assert s.should_close


def test_rq_and_garbage_in_one_read_answers_then_aborts() -> None:
    s = session()
    happened = s.receive_data(RQ + b"\xff" * 10, 101.0)
    assert isinstance(happened[0], AssociationEstablished)
    assert isinstance(happened[1], Aborted) and not happened[1].by_peer
    assert s.data_to_send() == AC + Abort(2, 1).encode()


def test_echo_and_release_in_one_read_answer_in_order() -> None:
    """The C-ECHO-RQ is answered in Sta6, before the A-RELEASE-RQ behind it
    is taken in (never in Sta8): no "may still answer" check is needed."""
    s = associated()
    assert s.receive_data(ECHO_RQ + RELEASE_RQ, 102.0) == [
        EchoAnswered(7, 0),
        ReleaseRequested(),
        ENDED,
    ]
    assert s.data_to_send() == ECHO_RSP + RELEASE_RP


def test_release_and_abort_in_one_read_answer_the_release_first() -> None:
    """The A-RELEASE-RQ is answered (AR-4) as it is taken in, before the
    A-ABORT behind it (then AA-2 in Sta13: close): no "already aborted"
    check is needed before the release response."""
    s = associated()
    assert s.receive_data(RELEASE_RQ + PEER_ABORT, 102.0) == [ReleaseRequested(), ENDED]
    assert s.data_to_send() == RELEASE_RP
    assert s.should_close


def test_a_message_whose_pdu_goes_on_to_be_invalid_is_not_answered() -> None:
    """The one check kept: a P-DATA-TF carrying a whole C-ECHO-RQ and then
    a data set the command said would not come. The upper layer aborts
    (Evt19, AA-8) before handing the message over, so the session must not
    answer it (a P-DATA request in Sta13 would be a blank cell)."""
    s = associated()
    data_set = PDV(1, False, True, b"\x08\x00\x05\x00\x00\x00\x00\x00")
    happened = s.receive_data(PDataTF((_PDV, data_set)).encode(), 102.0)
    assert not any(isinstance(item, EchoAnswered) for item in happened)
    (aborted,) = (item for item in happened if isinstance(item, Aborted))
    assert aborted.error is not None
    assert happened[-1] is ENDED
    assert s.data_to_send() == Abort(2, 6).encode()


# --- the rest of the lifecycle -----------------------------------------------------------


def test_busy_refuses_transient_local_limit() -> None:
    s = session(busy=True)
    rj = busy_reject()
    assert s.receive_data(RQ, 101.0) == [AssociationRefused(RQ_PDU, rj), ENDED]
    assert s.data_to_send() == rj.encode()
    assert rj == AssociateRJ(2, 3, 2)


def test_ended_is_handed_out_once() -> None:
    s = associated()
    assert s.receive_data(RELEASE_RQ, 102.0)[-1] is ENDED
    s.data_to_send()
    assert s.abort(103.0) == []  # (a no-op in Sta13)
    assert s.data_to_send() == b""
    assert s.connection_lost(104.0) == []


@pytest.mark.parametrize(
    ("reads", "sent"),
    [([], b""), ([RQ], USER_ABORT)],
    ids=["before-the-rq", "associated"],
)
def test_abort_on_shutdown(reads: list[bytes], sent: bytes) -> None:
    """Before the RQ there is no association to abort: just close."""
    s = session()
    for data in reads:
        s.receive_data(data, 101.0)
    s.data_to_send()
    s.abort(102.0)
    assert s.data_to_send() == sent


def test_fail_sends_a_provider_abort_unless_the_association_is_over() -> None:
    assert session().fail() == PROVIDER_ABORT
    s = associated()
    assert s.fail() == PROVIDER_ABORT == Abort(2, 0).encode()
    s.receive_data(RELEASE_RQ, 102.0)
    assert s.fail() == b""


def test_policy_answers_equal_rqs_alike() -> None:
    """The policy's memo is keyed by the RQ's value, not by which object
    the decoder happened to return."""
    policy = AcceptorPolicy()
    first, again = decode_pdu(RQ), build_rq(calling_ae="SCU", called_ae="ANY-SCP")
    assert isinstance(first, AssociateRQ) and first == again
    assert policy.answer(first) is policy.answer(again)
