"""Behaviour of the sans-I/O `UpperLayer` beyond single table cells: two of
them wired together, release collisions, fragmentation and reassembly,
negotiation checks, ARTIM, and what happens after an invalid PDU."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from asyncecho.protocol import events as ev
from asyncecho.protocol.dimse import (
    C_ECHO_RQ,
    C_ECHO_RSP,
    STATUS_SUCCESS,
    decode_command,
    encode_echo_rq,
    encode_echo_rsp,
)
from asyncecho.protocol.errors import LocalProtocolError, PDUError
from asyncecho.protocol.negotiation import AcceptorPolicy, build_ac, build_rq
from asyncecho.protocol.pdu import (
    ABORT_SOURCE_PROVIDER,
    ABORT_SOURCE_USER,
    PDU,
    PDV,
    RJ_PERMANENT,
    RJ_SOURCE_ACSE,
    Abort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    PDataTF,
    ReleaseRP,
    ReleaseRQ,
    decode_pdu,
)
from asyncecho.protocol.pdu_items import PC_ACCEPTANCE, PresentationContextAC, PresentationContextRQ
from asyncecho.protocol.state_machine import State
from asyncecho.protocol.uids import EXPLICIT_VR_BE, IMPLICIT_VR_LE, VERIFICATION
from asyncecho.protocol.upper_layer import UpperLayer

ARTIM = 5.0
REASON_UNRECOGNIZED_PDU = 1
REASON_UNEXPECTED_PDU = 2
REASON_INVALID_PARAMETER_VALUE = 6
UNKNOWN_PDU = b"\x09\x00\x00\x00\x00\x04" + bytes(4)

RQ = build_rq(calling_ae="ECHOSCU", called_ae="ANY-SCP")
AC = build_ac(RQ, AcceptorPolicy())


def split_pdus(data: bytes) -> list[PDU]:
    pdus: list[PDU] = []
    while data:
        end = 6 + int.from_bytes(data[2:6], "big")
        pdus.append(decode_pdu(data[:end]))
        data = data[end:]
    return pdus


def state(ul: UpperLayer) -> State:
    """`ul.state`, read afresh (mypy would keep narrowing the property across calls)."""
    return ul.state


def sent(ul: UpperLayer) -> list[PDU]:
    return split_pdus(ul.data_to_send())


def requestor(rq: AssociateRQ = RQ, *, max_pdu: int = 16382) -> UpperLayer:
    """A requestor in Sta5, its A-ASSOCIATE-RQ drained."""
    ul = UpperLayer(requestor=True, artim_timeout=ARTIM, max_pdu=max_pdu)
    ul.request(rq)
    ul.connection_made(0.0)
    assert sent(ul) == [rq]
    assert state(ul) is State.STA5
    return ul


def acceptor(*, max_pdu: int = 16382) -> UpperLayer:
    """An acceptor in Sta2."""
    ul = UpperLayer(requestor=False, artim_timeout=ARTIM, max_pdu=max_pdu)
    ul.connection_made(0.0)
    assert state(ul) is State.STA2
    return ul


def established(
    rq: AssociateRQ = RQ, policy: AcceptorPolicy | None = None, *, max_pdu: int = 16382
) -> tuple[UpperLayer, UpperLayer]:
    """(requestor, acceptor), wired together, both in Sta6."""
    req, acc = requestor(rq, max_pdu=max_pdu), acceptor(max_pdu=max_pdu)
    assert acc.receive_data(rq.encode(), 1.0) == [ev.AssociationRequested(rq)]
    acc.accept(build_ac(rq, policy or AcceptorPolicy()), 1.0)
    events = req.receive_data(acc.data_to_send(), 1.0)
    assert len(events) == 1 and isinstance(events[0], ev.AssociationAccepted)
    assert state(req) is State.STA6 and state(acc) is State.STA6
    return req, acc


def one_abort(events: list[ev.Event]) -> ev.Aborted:
    assert len(events) == 1
    aborted = events[0]
    assert isinstance(aborted, ev.Aborted)
    return aborted


def assert_provider_abort(
    ul: UpperLayer, events: list[ev.Event], reason: int, now: float
) -> PDUError:
    """AA-8: A-ABORT (service provider, `reason`) sent, A-P-ABORT indication, Sta13, ARTIM."""
    assert sent(ul) == [Abort(ABORT_SOURCE_PROVIDER, reason)]
    aborted = one_abort(events)
    assert (aborted.source, aborted.reason, aborted.by_peer) == (
        ABORT_SOURCE_PROVIDER,
        reason,
        False,
    )
    assert isinstance(aborted.error, PDUError)
    assert state(ul) is State.STA13
    assert ul.next_deadline() == now + ARTIM
    assert not ul.should_close
    return aborted.error


def command_with_data_set(message_id: int) -> bytes:
    """A C-ECHO-RQ command set whose Command Data Set Type says a data set follows."""
    command = encode_echo_rq(message_id)
    no_data_set = b"\x00\x00\x00\x08\x02\x00\x00\x00\x01\x01"  # (0000,0800) US 0101H
    assert command.count(no_data_set) == 1
    return command.replace(no_data_set, b"\x00\x00\x00\x08\x02\x00\x00\x00\x02\x00")


# --- the whole conversation ------------------------------------------------------------


def test_happy_path_association_echo_release() -> None:
    req = UpperLayer(requestor=True, artim_timeout=ARTIM)
    acc = UpperLayer(requestor=False, artim_timeout=ARTIM)
    req.request(RQ)
    assert state(req) is State.STA4 and req.data_to_send() == b""
    req.connection_made(0.0)
    acc.connection_made(0.0)
    assert acc.next_deadline() == ARTIM  # AE-5: waiting for the A-ASSOCIATE-RQ
    assert req.next_deadline() is None

    # A-ASSOCIATE-RQ -> indication; accept -> A-ASSOCIATE-AC -> confirmation
    assert acc.receive_data(req.data_to_send(), 1.0) == [ev.AssociationRequested(RQ)]
    assert state(acc) is State.STA3 and acc.next_deadline() is None
    ac = build_ac(acc.rq or RQ, AcceptorPolicy())
    acc.accept(ac, 1.0)
    assert state(acc) is State.STA6
    assert req.receive_data(acc.data_to_send(), 1.0) == [ev.AssociationAccepted(ac)]
    assert state(req) is State.STA6
    assert req.contexts == acc.contexts == {1: (VERIFICATION, IMPLICIT_VR_LE)}  # SCP preference
    assert req.peer_max_pdu == acc.peer_max_pdu == 16382

    # C-ECHO
    req.send_message(1, encode_echo_rq(42))
    (received,) = acc.receive_data(req.data_to_send(), 2.0)
    assert isinstance(received, ev.MessageReceived)
    command = decode_command(received.message.command)
    assert (command.command_field, command.message_id) == (C_ECHO_RQ, 42)
    assert not command.has_data_set and received.message.data_set is None
    acc.send_message(1, encode_echo_rsp(42))
    (received,) = req.receive_data(acc.data_to_send(), 2.0)
    assert isinstance(received, ev.MessageReceived)
    command = decode_command(received.message.command)
    assert command.command_field == C_ECHO_RSP
    assert (command.message_id_being_responded_to, command.status) == (42, STATUS_SUCCESS)

    # A-RELEASE
    req.release()
    assert state(req) is State.STA7
    assert acc.receive_data(req.data_to_send(), 3.0) == [ev.ReleaseRequested(collision=False)]
    assert state(acc) is State.STA8
    acc.release_response(3.0)
    assert state(acc) is State.STA13 and acc.next_deadline() == 3.0 + ARTIM
    assert not acc.should_close  # the requestor closes; ARTIM bounds the wait
    assert req.receive_data(acc.data_to_send(), 4.0) == [ev.ReleaseConfirmed()]
    assert state(req) is State.STA1 and req.should_close
    assert acc.connection_lost(4.0) == []  # AR-5
    assert state(acc) is State.STA1 and acc.should_close and acc.next_deadline() is None


def test_acceptor_may_send_data_while_awaiting_its_release_response() -> None:
    req, acc = established()
    req.release()
    acc.receive_data(req.data_to_send(), 1.0)
    acc.send_message(1, encode_echo_rsp(1))  # AR-7, Sta8
    assert state(acc) is State.STA8
    (received,) = req.receive_data(acc.data_to_send(), 1.0)  # AR-6, Sta7
    assert isinstance(received, ev.MessageReceived) and state(req) is State.STA7


@pytest.mark.parametrize("first", ["requestor-first", "acceptor-first"])
def test_release_collision(first: str) -> None:
    req, acc = established()
    req.release()
    acc.release()
    rq_to_acc, rq_to_req = req.data_to_send(), acc.data_to_send()
    assert split_pdus(rq_to_acc) == split_pdus(rq_to_req) == [ReleaseRQ()]
    # The crossing A-RELEASE-RQs arrive in either order; AR-8 splits by role.
    pairs = [(req, rq_to_req), (acc, rq_to_acc)]
    for ul, data in pairs if first == "requestor-first" else pairs[::-1]:
        assert ul.receive_data(data, 1.0) == [ev.ReleaseRequested(collision=True)]
    assert state(req) is State.STA9 and state(acc) is State.STA10

    # PS3.8 7.2: the requestor answers first.
    with pytest.raises(LocalProtocolError):
        acc.release_response(1.0)  # Evt14 is blank in Sta10
    req.release_response(2.0)  # AR-9
    assert state(req) is State.STA11
    assert acc.receive_data(req.data_to_send(), 2.0) == [ev.ReleaseConfirmed()]  # AR-10
    assert state(acc) is State.STA12
    acc.release_response(3.0)  # AR-4
    assert state(acc) is State.STA13 and acc.next_deadline() == 3.0 + ARTIM
    assert req.receive_data(acc.data_to_send(), 3.0) == [ev.ReleaseConfirmed()]  # AR-3
    assert state(req) is State.STA1 and req.should_close and req.next_deadline() is None
    assert acc.connection_lost(3.5) == []  # AR-5
    assert state(acc) is State.STA1 and acc.should_close


def test_release_collision_acceptor_artim_closes_if_requestor_never_does() -> None:
    req, acc = established()
    req.release()
    acc.release()
    acc.receive_data(req.data_to_send(), 1.0)
    req.receive_data(acc.data_to_send(), 1.0)
    req.release_response(1.0)
    acc.receive_data(req.data_to_send(), 1.0)
    acc.release_response(2.0)
    assert acc.handle_timer(2.0 + ARTIM) == []  # AA-2
    assert state(acc) is State.STA1 and acc.should_close


# --- fragmentation and reassembly --------------------------------------------------------


def _fragmentation_cases() -> Iterator[object]:
    for direction in ("requestor-to-acceptor", "acceptor-to-requestor"):
        for peer_max in (12, 13, 100, 0):
            for with_data in (False, True):
                kind = "command+dataset" if with_data else "command"
                yield pytest.param(
                    direction, peer_max, with_data, id=f"{direction}-max{peer_max}-{kind}"
                )


@pytest.mark.parametrize(("direction", "peer_max", "with_data"), list(_fragmentation_cases()))
def test_fragmentation_and_byte_by_byte_reassembly(
    direction: str, peer_max: int, with_data: bool
) -> None:
    # Both sides advertise `peer_max` and enforce it on what they receive.
    rq = build_rq(calling_ae="ECHOSCU", called_ae="ANY-SCP", max_pdu=peer_max)
    req, acc = established(rq, AcceptorPolicy(max_pdu=peer_max), max_pdu=peer_max)
    assert req.peer_max_pdu == acc.peer_max_pdu == peer_max
    sender, receiver = (req, acc) if direction == "requestor-to-acceptor" else (acc, req)

    command = command_with_data_set(9) if with_data else encode_echo_rq(9)
    data_set = bytes(range(256)) * 3 if with_data else None
    sender.send_message(1, command, data_set)
    wire = sender.data_to_send()

    pdus = split_pdus(wire)
    pdvs: list[PDV] = []
    for pdu in pdus:
        assert isinstance(pdu, PDataTF) and len(pdu.pdvs) == 1
        if peer_max:
            # PS3.8 D.1: the Maximum Length bounds the P-DATA-TF PDU length field.
            assert sum(6 + len(p.data) for p in pdu.pdvs) <= peer_max
        pdvs.extend(pdu.pdvs)
    commands = [p for p in pdvs if p.is_command]
    data = [p for p in pdvs if not p.is_command]
    assert pdvs == commands + data  # the command set comes first
    assert b"".join(p.data for p in commands) == command
    assert [p.is_last for p in commands] == [False] * (len(commands) - 1) + [True]
    if data_set is None:
        assert data == []
    else:
        assert b"".join(p.data for p in data) == data_set
        assert [p.is_last for p in data] == [False] * (len(data) - 1) + [True]
    if peer_max == 12:
        assert len(commands) == -(-len(command) // 6)  # 6 data bytes a PDV

    events: list[ev.Event] = []
    for i in range(len(wire)):
        events += receiver.receive_data(wire[i : i + 1], 1.0)
        if i < len(wire) - 1:
            assert events == []
    assert not receiver.partial_pdu
    assert len(events) == 1
    received = events[0]
    assert isinstance(received, ev.MessageReceived)
    assert received.message.context_id == 1
    assert received.message.command == command
    assert received.message.data_set == data_set
    assert state(receiver) is State.STA6 and state(sender) is State.STA6


def test_partial_pdu_flag() -> None:
    req, acc = established()
    req.send_message(1, encode_echo_rq(1))
    wire = req.data_to_send()
    assert acc.receive_data(wire[:3], 1.0) == [] and acc.partial_pdu
    assert acc.receive_data(wire[3:10], 1.0) == [] and acc.partial_pdu
    assert len(acc.receive_data(wire[10:], 1.0)) == 1 and not acc.partial_pdu


def test_several_pdus_in_one_chunk() -> None:
    req, acc = established()
    req.send_message(1, encode_echo_rq(1))
    req.send_message(1, encode_echo_rq(2))
    req.release()
    events = acc.receive_data(req.data_to_send(), 1.0)
    assert [type(e) for e in events] == [
        ev.MessageReceived,
        ev.MessageReceived,
        ev.ReleaseRequested,
    ]
    assert state(acc) is State.STA8


def test_p_data_over_our_maximum_length_aborts() -> None:
    # The acceptor enforces max_pdu=32 although it told the requestor "unlimited".
    req = requestor()
    acc = UpperLayer(requestor=False, artim_timeout=ARTIM, max_pdu=32)
    acc.connection_made(0.0)
    acc.receive_data(RQ.encode(), 0.0)
    acc.accept(build_ac(RQ, AcceptorPolicy(max_pdu=0)), 0.0)
    req.receive_data(acc.data_to_send(), 0.0)
    assert req.peer_max_pdu == 0
    req.send_message(1, encode_echo_rq(1))
    events = acc.receive_data(req.data_to_send(), 1.0)
    error = assert_provider_abort(acc, events, REASON_INVALID_PARAMETER_VALUE, 1.0)
    assert "over the maximum 32" in str(error)


def test_send_message_on_unaccepted_context_is_refused() -> None:
    req, _ = established()
    with pytest.raises(LocalProtocolError):
        req.send_message(3, encode_echo_rq(1))
    assert state(req) is State.STA6 and req.data_to_send() == b""


# --- what the peer may not send ----------------------------------------------------------


TWO_CONTEXTS = AssociateRQ(
    called_ae="ANY-SCP",
    calling_ae="ECHOSCU",
    presentation_contexts=(
        PresentationContextRQ(1, VERIFICATION, (IMPLICIT_VR_LE,)),
        PresentationContextRQ(3, "1.2.840.10008.5.1.4.1.1.7", (IMPLICIT_VR_LE,)),  # not supported
    ),
    user_items=RQ.user_items,
)


@pytest.mark.parametrize("state", ["Sta6", "Sta7"])
@pytest.mark.parametrize("context_id", [3, 5], ids=["proposed-but-rejected", "never-proposed"])
@pytest.mark.parametrize("receiver", ["acceptor", "requestor"])
def test_pdv_for_unaccepted_context_aborts(receiver: str, context_id: int, state: str) -> None:
    req, acc = established(TWO_CONTEXTS)
    assert set(req.contexts) == set(acc.contexts) == {1}
    ul = acc if receiver == "acceptor" else req
    if state == "Sta7":
        ul.release()
        ul.data_to_send()
    bad = PDataTF((PDV(context_id, True, True, encode_echo_rq(1)),))
    events = ul.receive_data(bad.encode(), 2.0)
    error = assert_provider_abort(ul, events, REASON_INVALID_PARAMETER_VALUE, 2.0)
    assert f"presentation context {context_id}" in str(error)


def _bad_acs() -> Iterator[object]:
    def ac(*contexts: PresentationContextAC, app: str = AC.application_context) -> AssociateAC:
        return AssociateAC(
            called_ae=AC.called_ae,
            calling_ae=AC.calling_ae,
            application_context=app,
            presentation_contexts=contexts,
            user_items=AC.user_items,
        )

    yield pytest.param(
        ac(PresentationContextAC(3, PC_ACCEPTANCE, IMPLICIT_VR_LE)), id="context-id-never-proposed"
    )
    yield pytest.param(
        ac(
            PresentationContextAC(1, PC_ACCEPTANCE, IMPLICIT_VR_LE),
            PresentationContextAC(5, PC_ACCEPTANCE, IMPLICIT_VR_LE),
        ),
        id="extra-context-id-never-proposed",
    )
    yield pytest.param(
        ac(PresentationContextAC(1, PC_ACCEPTANCE, "1.2.840.10008.1.2.4.50")),
        id="transfer-syntax-never-proposed",
    )
    yield pytest.param(
        ac(PresentationContextAC(1, PC_ACCEPTANCE, IMPLICIT_VR_LE), app="1.2.3.4"),
        id="other-application-context",
    )


@pytest.mark.parametrize("bad_ac", list(_bad_acs()))
def test_ac_that_does_not_answer_the_rq_aborts(bad_ac: AssociateAC) -> None:
    rq = build_rq(
        calling_ae="ECHOSCU",
        called_ae="ANY-SCP",
        transfer_syntaxes=(IMPLICIT_VR_LE, EXPLICIT_VR_BE),
    )
    req = requestor(rq)
    events = req.receive_data(bad_ac.encode(), 1.0)
    assert_provider_abort(req, events, REASON_INVALID_PARAMETER_VALUE, 1.0)
    assert req.contexts == {}


def test_ac_rejecting_every_context_is_still_an_association() -> None:
    # PS3.8 leaves it to the user: the association exists with no usable context.
    req = requestor()
    ac = build_ac(RQ, AcceptorPolicy(supported={}))
    assert req.receive_data(ac.encode(), 1.0) == [ev.AssociationAccepted(ac)]
    assert state(req) is State.STA6 and req.contexts == {}


def test_rq_with_unsupported_protocol_version_is_rejected() -> None:
    acc = acceptor()
    v2 = AssociateRQ(
        called_ae=RQ.called_ae,
        calling_ae=RQ.calling_ae,
        presentation_contexts=RQ.presentation_contexts,
        user_items=RQ.user_items,
        protocol_version=0x0002,  # bit 0 clear
    )
    assert acc.receive_data(v2.encode(), 2.0) == []  # AE-6, no indication to the user
    assert sent(acc) == [
        AssociateRJ(RJ_PERMANENT, RJ_SOURCE_ACSE, 2)
    ]  # protocol version not supported
    assert state(acc) is State.STA13
    assert acc.next_deadline() == 2.0 + ARTIM
    assert not acc.should_close
    # The requestor sees the reject and closes (AE-4), or ARTIM does it for us.
    assert acc.connection_lost(3.0) == []  # AR-5
    assert state(acc) is State.STA1 and acc.should_close and acc.next_deadline() is None


def test_rq_with_version_bit_0_and_others_is_accepted() -> None:
    acc = acceptor()
    rq = AssociateRQ(
        called_ae=RQ.called_ae,
        calling_ae=RQ.calling_ae,
        presentation_contexts=RQ.presentation_contexts,
        user_items=RQ.user_items,
        protocol_version=0x0003,  # PS3.8 9.3.2: test only bit 0
    )
    assert acc.receive_data(rq.encode(), 1.0) == [ev.AssociationRequested(rq)]
    assert state(acc) is State.STA3


def test_user_reject() -> None:
    req, acc = requestor(), acceptor()
    acc.receive_data(RQ.encode(), 1.0)
    rj = AssociateRJ(RJ_PERMANENT, 1, 7)
    acc.reject(rj, 1.0)  # AE-8
    assert state(acc) is State.STA13 and acc.next_deadline() == 1.0 + ARTIM
    assert req.receive_data(acc.data_to_send(), 1.0) == [ev.AssociationRejected(rj)]  # AE-4
    assert state(req) is State.STA1 and req.should_close


@pytest.mark.parametrize("same_pdu", [True, False], ids=["same-pdu", "next-pdu"])
def test_data_set_pdv_when_command_has_no_data_set_aborts(same_pdu: bool) -> None:
    _req, acc = established()
    command = PDV(1, True, True, encode_echo_rq(1))  # Command Data Set Type 0101H: none
    data = PDV(1, False, True, b"\x08\x00\x05\x00\x00\x00\x00\x00")
    if same_pdu:
        wire = PDataTF((command, data)).encode()
    else:
        wire = PDataTF((command,)).encode() + PDataTF((data,)).encode()
    events = acc.receive_data(wire, 1.0)
    if same_pdu:
        # The P-DATA is an invalid PDU: none of it is taken in, the whole
        # command set before the bad PDV included.
        assert_provider_abort(acc, events, REASON_INVALID_PARAMETER_VALUE, 1.0)
    else:
        # The command set's own PDU was valid: it is delivered, then the abort.
        assert isinstance(events[0], ev.MessageReceived)
        assert_provider_abort(acc, events[1:], REASON_INVALID_PARAMETER_VALUE, 1.0)


def test_data_set_pdv_without_command_aborts() -> None:
    _req, acc = established()
    events = acc.receive_data(PDataTF((PDV(1, False, True, b"\x00\x00"),)).encode(), 1.0)
    assert_provider_abort(acc, events, REASON_INVALID_PARAMETER_VALUE, 1.0)


def test_command_pdv_where_data_set_was_due_aborts() -> None:
    _req, acc = established()
    wire = PDataTF(
        (PDV(1, True, True, command_with_data_set(1)), PDV(1, True, True, encode_echo_rq(2)))
    ).encode()
    events = acc.receive_data(wire, 1.0)
    assert_provider_abort(acc, events, REASON_INVALID_PARAMETER_VALUE, 1.0)


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        pytest.param(UNKNOWN_PDU, REASON_UNRECOGNIZED_PDU, id="unknown-type-0x09"),
        pytest.param(
            b"\x05\x00\x00\x00\x00\x05" + bytes(5),
            REASON_INVALID_PARAMETER_VALUE,
            id="release-rq-length-5",
        ),
        pytest.param(
            b"\x07\x00\x00\x00\x00\x04\x00\x00\x03\x00",
            REASON_INVALID_PARAMETER_VALUE,
            id="abort-source-3",
        ),
        pytest.param(
            b"\x04\x00\x00\x00\x00\x08" + b"\x00\x00\x00\x09\x01\x03\x00\x00",
            REASON_INVALID_PARAMETER_VALUE,
            id="pdv-overruns-pdu",
        ),
        pytest.param(
            b"\x04\x00\x00\x00\x00\x06" + b"\x00\x00\x00\x02\x01\x07",
            REASON_INVALID_PARAMETER_VALUE,
            id="reserved-control-bits",
        ),
    ],
)
def test_invalid_pdu_in_sta6_aborts(wire: bytes, reason: int) -> None:
    _req, acc = established()
    events = acc.receive_data(wire, 1.0)
    assert_provider_abort(acc, events, reason, 1.0)


def test_bytes_after_an_invalid_pdu_are_ignored() -> None:
    _req, acc = established()
    # The rest of this chunk, and every later chunk, cannot be framed any more.
    events = acc.receive_data(UNKNOWN_PDU + ReleaseRQ().encode(), 1.0)
    assert_provider_abort(acc, events, REASON_UNRECOGNIZED_PDU, 1.0)
    for data in (Abort(ABORT_SOURCE_USER, 0).encode(), ReleaseRP().encode(), RQ.encode(), b"\x01"):
        assert acc.receive_data(data, 2.0) == []
        assert acc.data_to_send() == b""
        assert state(acc) is State.STA13 and not acc.should_close
    assert acc.handle_timer(1.0 + ARTIM) == []  # ARTIM still closes
    assert state(acc) is State.STA1 and acc.should_close


def test_invalid_header_fed_byte_by_byte_breaks_the_stream_once() -> None:
    _req, acc = established()
    events: list[ev.Event] = []
    for byte in UNKNOWN_PDU + ReleaseRQ().encode():
        events += acc.receive_data(bytes((byte,)), 1.0)
    assert_provider_abort(acc, events, REASON_UNRECOGNIZED_PDU, 1.0)


def test_invalid_pdu_in_sta13_sends_abort_and_keeps_artim() -> None:
    req, acc = established()
    req.release()
    acc.receive_data(req.data_to_send(), 1.0)
    acc.release_response(1.0)
    acc.data_to_send()
    assert acc.receive_data(UNKNOWN_PDU, 2.0) == []  # AA-7
    assert sent(acc) == [Abort(ABORT_SOURCE_PROVIDER, REASON_UNRECOGNIZED_PDU)]
    assert state(acc) is State.STA13 and acc.next_deadline() == 1.0 + ARTIM
    assert acc.receive_data(Abort().encode(), 3.0) == []  # stream broken: ignored


@pytest.mark.parametrize("source", [ABORT_SOURCE_USER, ABORT_SOURCE_PROVIDER])
def test_peer_abort_is_passed_on(source: int) -> None:
    req, _acc = established()
    (aborted,) = req.receive_data(Abort(source, 4).encode(), 1.0)  # AA-3
    assert isinstance(aborted, ev.Aborted)
    assert (aborted.source, aborted.reason) == (source, 4)
    assert aborted.error is None and not aborted.connection_lost
    if source == ABORT_SOURCE_USER:
        assert aborted.by_peer
    assert state(req) is State.STA1 and req.should_close and req.data_to_send() == b""


def test_local_abort_then_peer_closes() -> None:
    req, _acc = established()
    req.abort(1.0)  # AA-1
    assert sent(req) == [Abort(ABORT_SOURCE_USER, 0)]
    assert state(req) is State.STA13 and req.next_deadline() == 1.0 + ARTIM
    req.abort(1.5)  # nothing left to abort
    assert req.data_to_send() == b"" and req.next_deadline() == 1.0 + ARTIM
    assert req.connection_lost(2.0) == []  # AR-5
    assert state(req) is State.STA1 and req.should_close


def test_transport_lost_under_association() -> None:
    _req, acc = established()
    aborted = one_abort(acc.connection_lost(1.0))  # AA-4
    assert (
        aborted.connection_lost and not aborted.by_peer and aborted.source == ABORT_SOURCE_PROVIDER
    )
    assert state(acc) is State.STA1 and acc.should_close
    assert acc.connection_lost(1.0) == []  # Sta1: nothing more


# --- ARTIM --------------------------------------------------------------------------


def test_artim_expiry_in_sta2_closes() -> None:
    acc = UpperLayer(requestor=False, artim_timeout=ARTIM)
    acc.connection_made(10.0)
    assert acc.next_deadline() == 10.0 + ARTIM
    assert acc.handle_timer(10.0 + ARTIM - 0.01) == []  # not yet
    assert state(acc) is State.STA2 and not acc.should_close
    assert acc.handle_timer(10.0 + ARTIM) == []  # AA-2
    assert state(acc) is State.STA1 and acc.should_close
    assert acc.next_deadline() is None and acc.data_to_send() == b""


def test_artim_stopped_by_the_rq() -> None:
    acc = acceptor()
    acc.receive_data(RQ.encode(), 1.0)
    assert acc.next_deadline() is None
    assert acc.handle_timer(1000.0) == [] and state(acc) is State.STA3


@pytest.mark.parametrize("how", ["release-response", "provider-abort", "user-abort", "user-reject"])
def test_artim_expiry_in_sta13_closes(how: str) -> None:
    acc = acceptor()
    acc.receive_data(RQ.encode(), 1.0)
    if how == "user-reject":
        acc.reject(AssociateRJ(RJ_PERMANENT, 1, 1), 2.0)
    else:
        acc.accept(AC, 1.0)
        if how == "release-response":
            acc.receive_data(ReleaseRQ().encode(), 1.5)
            acc.release_response(2.0)
        elif how == "provider-abort":
            acc.receive_data(AC.encode(), 2.0)
        else:
            acc.abort(2.0)
    assert state(acc) is State.STA13
    assert acc.next_deadline() == 2.0 + ARTIM
    assert acc.handle_timer(2.0 + ARTIM - 0.01) == [] and state(acc) is State.STA13
    assert acc.handle_timer(2.0 + ARTIM + 1) == []  # AA-2
    assert state(acc) is State.STA1 and acc.should_close and acc.next_deadline() is None


def test_artim_not_restarted_by_pdus_ignored_in_sta13() -> None:
    _req, acc = established()
    acc.abort(2.0)
    for pdu in (ReleaseRQ(), ReleaseRP(), AC, PDataTF((PDV(1, True, True, b""),))):  # AA-6
        assert acc.receive_data(pdu.encode(), 3.0) == []
        assert acc.next_deadline() == 2.0 + ARTIM
    acc.data_to_send()
    assert acc.receive_data(RQ.encode(), 3.0) == []  # AA-7
    assert sent(acc) == [Abort(ABORT_SOURCE_PROVIDER, REASON_UNEXPECTED_PDU)]
    assert acc.next_deadline() == 2.0 + ARTIM


# --- primitives that the state machine refuses --------------------------------------------


def test_refused_request_leaves_the_pending_rq_alone() -> None:
    req = requestor()
    other = build_rq(calling_ae="OTHER", called_ae="ANY-SCP", transfer_syntaxes=(EXPLICIT_VR_BE,))
    with pytest.raises(LocalProtocolError):
        req.request(other)  # Evt1 is blank in Sta5
    assert req.rq == RQ
    # The AC still answers the RQ that was sent.
    assert req.receive_data(AC.encode(), 1.0) == [ev.AssociationAccepted(AC)]


def test_refused_accept_or_reject_changes_nothing() -> None:
    _req, acc = established()
    ac_before, rj_before = acc.ac, acc.rj
    with pytest.raises(LocalProtocolError):
        acc.accept(build_ac(RQ, AcceptorPolicy(supported={})), 1.0)
    with pytest.raises(LocalProtocolError):
        acc.reject(AssociateRJ(RJ_PERMANENT, 1, 1), 1.0)
    assert (acc.ac, acc.rj, acc.state) == (ac_before, rj_before, State.STA6)
    assert acc.data_to_send() == b""


def test_acceptor_cannot_request() -> None:
    acc = UpperLayer(requestor=False)
    with pytest.raises(LocalProtocolError):
        acc.request(RQ)
    assert state(acc) is State.STA1
    acc.connection_made(0.0)  # still usable as an acceptor
    assert state(acc) is State.STA2


# --- after the association --------------------------------------------------------------


def test_bytes_after_the_association_closed_are_ignored() -> None:
    req, acc = established()
    req.release()
    acc.receive_data(req.data_to_send(), 1.0)
    acc.release_response(1.0)
    # The A-RELEASE-RP and a stray PDU arrive in two reads before the socket closes.
    wire = acc.data_to_send() + Abort().encode()
    assert req.receive_data(wire[:10], 2.0) == [ev.ReleaseConfirmed()]
    assert state(req) is State.STA1 and req.should_close
    assert req.receive_data(wire[10:], 2.0) == []
    assert state(req) is State.STA1 and req.data_to_send() == b""


def test_fresh_upper_layer_has_no_transport_to_read() -> None:
    with pytest.raises(LocalProtocolError):
        UpperLayer(requestor=False).receive_data(b"", 0.0)


def test_result_does_not_depend_on_chunking() -> None:
    wire = PDataTF((PDV(1, True, True, encode_echo_rq(1)),)).encode() + UNKNOWN_PDU

    def run(chunks: list[bytes]) -> list[type]:
        _, acc = established()
        events: list[ev.Event] = []
        for chunk in chunks:
            events += acc.receive_data(chunk, 1.0)
        return [type(e) for e in events]

    split = len(wire) - len(UNKNOWN_PDU)
    assert run([wire[:split], wire[split:]]) == [ev.MessageReceived, ev.Aborted]
    assert run([wire]) == [ev.MessageReceived, ev.Aborted]


def test_answered_contexts_are_worked_out_once_per_pair_and_read_only() -> None:
    """The AC check and its accepted contexts, remembered per (RQ, AC) pair
    of objects; an invalid AC is checked (and refused) every time."""
    from dataclasses import replace

    from asyncecho.protocol.negotiation import accepted_contexts, answered_contexts

    first = answered_contexts(RQ, AC)
    assert answered_contexts(RQ, AC) is first
    assert dict(first) == accepted_contexts(RQ, AC)
    with pytest.raises(TypeError):
        first[99] = ("x", "y")  # type: ignore[index]
    # An equal but distinct AC object is worked out again (identity, not equality).
    assert answered_contexts(RQ, replace(AC)) == first
    bad = replace(AC, application_context="1.2.3")
    for _ in range(2):
        with pytest.raises(PDUError):
            answered_contexts(RQ, bad)


def test_our_contexts_are_shared_by_every_association_answered_alike() -> None:
    """An SCP answering the same RQ object with the same AC object (its
    policy caches both) gives every association one read-only mapping."""
    from asyncecho.protocol.negotiation import accepted_contexts, our_contexts

    first = our_contexts(RQ, AC)
    assert our_contexts(RQ, AC) is first
    assert dict(first) == accepted_contexts(RQ, AC)
    with pytest.raises(TypeError):
        first[99] = ("x", "y")  # type: ignore[index]
    acceptors = [UpperLayer(requestor=False) for _ in range(2)]
    for acceptor in acceptors:
        acceptor.connection_made(0.0)
        acceptor.receive_data(RQ.encode(), 0.0)
        acceptor.accept(AC, 0.0)
    assert acceptors[0].contexts is acceptors[1].contexts


# --- the table is the only way the state changes ------------------------------------------


def test_the_state_changes_only_through_the_primitives() -> None:
    """The association has a state machine rather than being one: neither
    the bare table lookup (which would move the state without carrying out
    the action: no PDU sent, no ARTIM) nor a state assignment is open to
    the user of an UpperLayer."""
    req, _acc = established()
    assert not hasattr(req, "fire")
    with pytest.raises(AttributeError):
        req.state = State.STA7  # type: ignore[misc]
    assert state(req) is State.STA6
    req.release()  # AR-1
    assert sent(req) == [ReleaseRQ()] and state(req) is State.STA7


@pytest.mark.parametrize("deliver", ["returned", "on_event"])
@pytest.mark.parametrize("start", ["Sta6", "Sta7"])
def test_invalid_p_data_content_is_evt19_and_none_of_it_is_taken_in(
    start: str, deliver: str
) -> None:
    """DT-2 (Sta6) and AR-6 (Sta7) take in a P-DATA whose first PDV is a
    whole message and whose second breaks PS3.8 Annex E (a data set the
    command said would not come): the PDU is an invalid PDU, Evt19 from
    the state the P-DATA action left (AA-8): one A-ABORT, the A-P-ABORT
    indication, Sta13 and ARTIM from that moment; the message its first
    PDV completed is not handed over."""
    req, _acc = established()
    if start == "Sta7":
        req.release()  # AR-1: Sta7, where P-DATA is still taken in (AR-6)
        req.data_to_send()
    command = PDV(1, True, True, encode_echo_rsp(1, STATUS_SUCCESS))
    data_set = PDV(1, False, True, b"\x08\x00\x05\x00\x00\x00\x00\x00")
    wire = PDataTF((command, data_set)).encode()
    handed: list[ev.Event] = []
    if deliver == "on_event":
        assert req.receive_data(wire, 3.0, handed.append) == []
    else:
        handed = req.receive_data(wire, 3.0)
    assert not any(isinstance(event, ev.MessageReceived) for event in handed)
    assert_provider_abort(req, handed, REASON_INVALID_PARAMETER_VALUE, 3.0)


def test_protocol_violation_after_the_end_is_a_no_op() -> None:
    """The user finds a message invalid once the association has already
    been aborted (Sta13: a later PDU of the same read was invalid): there is
    nothing left to abort, so no second A-ABORT, and ARTIM runs on from the
    first."""
    _req, acc = established()
    events = acc.receive_data(PDataTF((PDV(1, False, True, b"\x00\x00"),)).encode(), 1.0)
    assert [type(e) for e in events] == [ev.Aborted]
    assert len(sent(acc)) == 1 and state(acc) is State.STA13
    assert acc.protocol_violation(PDUError("undecodable command set", 0), 2.0) == []
    assert acc.data_to_send() == b"" and state(acc) is State.STA13
    assert acc.next_deadline() == 1.0 + ARTIM


@pytest.mark.parametrize("role", ["requestor", "acceptor"])
def test_abort_with_no_association_is_a_documented_no_op(role: str) -> None:
    """abort() where the table leaves Evt15 blank: a no-op in Sta1 (never
    connected, or closed) and Sta13 (already ended), an error in Sta2 (the
    acceptor before any A-ASSOCIATE-RQ: its caller closes instead)."""
    ul = UpperLayer(requestor=role == "requestor", artim_timeout=ARTIM)
    ul.abort(1.0)  # Sta1
    assert state(ul) is State.STA1 and ul.data_to_send() == b"" and not ul.should_close
    if role == "acceptor":
        ul.connection_made(1.0)
        with pytest.raises(LocalProtocolError):
            ul.abort(2.0)
        assert state(ul) is State.STA2 and ul.next_deadline() == 1.0 + ARTIM
        ul.receive_data(UNKNOWN_PDU, 3.0)  # AA-1: Sta13
    else:
        ul.request(RQ)
        ul.connection_made(1.0)
        ul.receive_data(AssociateRJ(RJ_PERMANENT, RJ_SOURCE_ACSE, 1).encode(), 2.0)  # AE-4
        assert state(ul) is State.STA1 and ul.should_close
        ul.abort(3.0)
        assert state(ul) is State.STA1
        return
    ul.data_to_send()
    ul.abort(4.0)  # Sta13
    assert state(ul) is State.STA13 and ul.data_to_send() == b""
    assert ul.next_deadline() == 3.0 + ARTIM
