"""PDU-level codec tests: round trips, encodings derived by hand from PS3.8
9.3, and the strictness of `decode_pdu` on malformed PDUs."""

from __future__ import annotations

import pytest

from asyncecho.protocol import uids
from asyncecho.protocol.errors import (
    ABORT_INVALID_PDU_PARAMETER_VALUE,
    ABORT_UNRECOGNIZED_PDU,
    ABORT_UNRECOGNIZED_PDU_PARAMETER,
    PDUError,
)
from asyncecho.protocol.pdu import (
    A_ABORT,
    A_ASSOCIATE_AC,
    A_ASSOCIATE_RJ,
    A_ASSOCIATE_RQ,
    A_RELEASE_RP,
    A_RELEASE_RQ,
    P_DATA_TF,
    PDU,
    PDU_NAMES,
    PDV,
    Abort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    PDataTF,
    ReleaseRP,
    ReleaseRQ,
    decode_pdu,
)
from asyncecho.protocol.pdu_items import (
    ImplementationClassUID,
    ImplementationVersionName,
    MaximumLength,
    PresentationContextAC,
    PresentationContextRQ,
)
from pdu_samples import (
    OFFSET_CALLED_AE,
    OFFSET_CALLING_AE,
    OFFSET_FIRST_ITEM,
    PDU_FILE_NAMES,
    expect_pdu_error,
    raw_ae,
    raw_app_context,
    raw_associate,
    raw_item,
    raw_pc_ac,
    raw_pc_rq,
    raw_pdu,
    raw_pdv,
    raw_user_info,
    sample_pdus,
)

SAMPLES = sample_pdus()

# --- round trips -------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_encode_decode_round_trip(name: str) -> None:
    pdu = SAMPLES[name]
    data = pdu.encode()
    assert data[0] == pdu.PDU_TYPE
    assert PDU_FILE_NAMES[data[0]] == name
    assert int.from_bytes(data[2:6], "big") == len(data) - 6
    decoded = decode_pdu(data)
    assert decoded == pdu
    assert type(decoded) is type(pdu)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_decode_encode_same_bytes(name: str) -> None:
    data = SAMPLES[name].encode()
    assert decode_pdu(data).encode() == data


def minimal_rq() -> AssociateRQ:
    return AssociateRQ(
        called_ae="ANY-SCP",
        calling_ae="ECHOSCU",
        presentation_contexts=(
            PresentationContextRQ(1, uids.VERIFICATION, (uids.IMPLICIT_VR_LE,)),
        ),
        user_items=(MaximumLength(16384),),
    )


def minimal_ac() -> AssociateAC:
    return AssociateAC(
        called_ae="ANY-SCP",
        calling_ae="ECHOSCU",
        presentation_contexts=(PresentationContextAC(1, 0, uids.IMPLICIT_VR_LE),),
        user_items=(MaximumLength(16384),),
    )


# --- encodings derived by hand from PS3.8 9.3 --------------------------------------


def test_minimal_associate_rq_matches_hand_encoding() -> None:
    expected = bytes.fromhex(
        "01 00 0000009b"  # type 1, reserved, length 155 = 68 + 25 + 50 + 12
        "0001 0000"  # protocol version 1, reserved
        + b"ANY-SCP         ".hex()  # called AE, space padded to 16
        + b"ECHOSCU         ".hex()  # calling AE
        + "00" * 32  # reserved
        + "10 00 0015"
        + b"1.2.840.10008.3.1.1.1".hex()  # application context item
        + "20 00 002e 01 000000"  # presentation context 1
        + "30 00 0011"
        + b"1.2.840.10008.1.1".hex()  # abstract syntax
        + "40 00 0011"
        + b"1.2.840.10008.1.2".hex()  # transfer syntax
        + "50 00 0008 51 00 0004 00004000"  # user info: maximum length 16384
    )
    assert len(expected) == 6 + 155
    assert minimal_rq().encode() == expected
    assert raw_associate() == expected
    assert decode_pdu(expected) == minimal_rq()


def test_minimal_associate_ac_matches_hand_encoding() -> None:
    expected = raw_associate(A_ASSOCIATE_AC)
    # the presentation context item of an AC: ID, reserved, result, reserved, TS sub-item
    assert bytes.fromhex("21 00 0019 01 00 00 00 40 00 0011") in expected
    assert minimal_ac().encode() == expected
    assert decode_pdu(expected) == minimal_ac()


def test_release_rq_bytes() -> None:
    assert ReleaseRQ().encode() == bytes.fromhex("05 00 00000004 00000000")
    assert decode_pdu(bytes.fromhex("05 00 00000004 00000000")) == ReleaseRQ()


def test_release_rp_bytes() -> None:
    assert ReleaseRP().encode() == bytes.fromhex("06 00 00000004 00000000")
    assert decode_pdu(bytes.fromhex("06 00 00000004 00000000")) == ReleaseRP()


def test_abort_source_and_reason_positions() -> None:
    # PS3.8 Table 9-26: bytes 7-8 reserved, byte 9 source, byte 10 reason/diag.
    assert Abort(2, 6).encode() == bytes.fromhex("07 00 00000004 00 00 02 06")
    assert Abort().encode() == bytes.fromhex("07 00 00000004 00 00 00 00")
    decoded = decode_pdu(bytes.fromhex("07 00 00000004 00 00 02 04"))
    assert decoded == Abort(source=2, reason=4)


def test_associate_rj_positions() -> None:
    # PS3.8 Table 9-21: byte 7 reserved, 8 result, 9 source, 10 reason/diag.
    assert AssociateRJ(1, 2, 3).encode() == bytes.fromhex("03 00 00000004 00 01 02 03")
    assert decode_pdu(bytes.fromhex("03 00 00000004 00 02 03 02")) == AssociateRJ(2, 3, 2)


@pytest.mark.parametrize(
    ("is_command", "is_last", "control"),
    [(False, False, 0x00), (True, False, 0x01), (False, True, 0x02), (True, True, 0x03)],
)
def test_pdv_message_control_header(is_command: bool, is_last: bool, control: int) -> None:
    # PS3.8 E.2: bit 0 = command, bit 1 = last fragment.
    pdu = PDataTF((PDV(7, is_command, is_last, b"xyz"),))
    expected = bytes.fromhex("04 00 00000009 00000005 07") + bytes((control,)) + b"xyz"
    assert pdu.encode() == expected
    assert decode_pdu(expected) == pdu


def test_pdata_several_pdvs_hand_encoding() -> None:
    body = (
        raw_pdv(1, 0x01, b"ab")
        + raw_pdv(1, 0x03, b"")
        + raw_pdv(3, 0x00, b"c")
        + raw_pdv(3, 0x02, b"d")
    )
    data = raw_pdu(P_DATA_TF, body)
    expected = PDataTF(
        (
            PDV(1, True, False, b"ab"),
            PDV(1, True, True, b""),
            PDV(3, False, False, b"c"),
            PDV(3, False, True, b"d"),
        )
    )
    assert decode_pdu(data) == expected
    assert expected.encode() == data


@pytest.mark.parametrize(
    ("title", "field"),
    [
        ("A", b"A" + b" " * 15),
        ("ECHOSCU", b"ECHOSCU         "),
        ("SIXTEEN_CHARS_AE", b"SIXTEEN_CHARS_AE"),
        ("  PADDED  ", b"PADDED          "),  # leading/trailing spaces are not significant
        ("MY AE", b"MY AE           "),  # inner spaces are kept
    ],
)
def test_ae_title_space_padding(title: str, field: bytes) -> None:
    rq = AssociateRQ(called_ae=title, calling_ae="X", user_items=())
    data = rq.encode()
    assert data[OFFSET_CALLED_AE : OFFSET_CALLED_AE + 16] == field
    assert data[OFFSET_CALLING_AE : OFFSET_CALLING_AE + 16] == b"X" + b" " * 15
    assert decode_pdu(data).called_ae == title.strip()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "title", ["", "   ", "SEVENTEEN_CHARS_X", "BACK\\SLASH", "NEW\nLINE", "CAFÉ"]
)
def test_encoder_refuses_bad_ae_titles(title: str) -> None:
    with pytest.raises(ValueError, match="AE title"):
        AssociateRQ(called_ae=title, calling_ae="X", user_items=()).encode()


def test_ae_title_nul_padding_and_leading_spaces_tolerated() -> None:
    data = raw_associate(
        called=b"ANY-SCP\x00\x00\x00\x00\x00\x00\x00\x00\x00", calling=b"  ECHOSCU       "
    )
    pdu = decode_pdu(data)
    assert isinstance(pdu, AssociateRQ)
    assert (pdu.called_ae, pdu.calling_ae) == ("ANY-SCP", "ECHOSCU")


def test_ac_ae_titles_are_not_tested() -> None:
    # PS3.8 9.3.3.2: the AC's AE fields "shall not be tested" on receipt.
    pdu = decode_pdu(raw_associate(A_ASSOCIATE_AC, called=b" " * 16, calling=raw_ae(b"CAF\xc9\\X")))
    assert isinstance(pdu, AssociateAC)
    assert pdu.called_ae == ""
    assert pdu.calling_ae == "CAF??X"


def test_ac_ae_titles_nul_padding_stripped() -> None:
    # Found by this test: the AC's display-only decoding showed NUL padding as "?".
    pdu = decode_pdu(
        raw_associate(A_ASSOCIATE_AC, called=b"ANY-SCP" + bytes(9), calling=b" ECHOSCU" + bytes(8))
    )
    assert isinstance(pdu, AssociateAC)
    assert (pdu.called_ae, pdu.calling_ae) == ("ANY-SCP", "ECHOSCU")
    pdu = decode_pdu(raw_associate(A_ASSOCIATE_AC, called=bytes(16), calling=b"A\x00B" + bytes(13)))
    assert isinstance(pdu, AssociateAC)
    assert (pdu.called_ae, pdu.calling_ae) == ("", "A?B")


def test_reserved_fields_are_not_tested() -> None:
    # PS3.8 9.3: reserved fields are "not tested to this value when received";
    # DCMTK sends 0xFF in the third reserved byte of an RQ presentation context.
    items = (
        raw_item(0x10, uids.APPLICATION_CONTEXT.encode(), reserved=0xAA)
        + raw_pc_rq(reserved=b"\x00\xff\x00")
        + raw_user_info()
    )
    data = bytearray(raw_associate(items=items))
    data[1] = 0x55  # PDU header reserved byte
    data[8:10] = b"\xff\xff"  # reserved after the protocol version
    data[42:74] = b"\x11" * 32  # 32 reserved bytes
    assert decode_pdu(bytes(data)) == minimal_rq()
    assert decode_pdu(raw_pdu(A_RELEASE_RQ, b"\xff" * 4, reserved=9)) == ReleaseRQ()
    assert decode_pdu(bytes.fromhex("07 00 00000004 ff ff 00 00")) == Abort()
    assert decode_pdu(bytes.fromhex("03 00 00000004 ff 01 01 01")) == AssociateRJ(1, 1, 1)


def test_protocol_version_is_kept_not_checked() -> None:
    # An acceptor answers an unsupported version with an A-ASSOCIATE-RJ, not an abort.
    pdu = decode_pdu(raw_associate(version=2))
    assert isinstance(pdu, AssociateRQ)
    assert pdu.protocol_version == 2
    assert pdu.encode()[6:8] == b"\x00\x02"


def test_associate_convenience_properties() -> None:
    rq = SAMPLES["associate-rq"]
    assert isinstance(rq, AssociateRQ)
    assert rq.max_length == 16384
    assert rq.implementation_class_uid == uids.IMPLEMENTATION_CLASS_UID
    assert rq.implementation_version_name == "ASYNCECHO_010"
    bare = AssociateRQ(called_ae="A", calling_ae="B", user_items=())
    assert bare.max_length is None
    assert bare.implementation_class_uid is None
    assert bare.implementation_version_name is None
    ac = AssociateAC(
        called_ae="A",
        calling_ae="B",
        user_items=(
            ImplementationVersionName("V"),
            ImplementationClassUID("1.2"),
            MaximumLength(0),
        ),
    )
    assert (ac.max_length, ac.implementation_class_uid, ac.implementation_version_name) == (
        0,
        "1.2",
        "V",
    )


def test_rj_and_abort_names() -> None:
    rj = AssociateRJ(1, 1, 7)
    assert (rj.result_name, rj.source_name, rj.reason_name) == (
        "Rejected Permanent",
        "Service User",
        "Called AE title not recognised",
    )
    assert AssociateRJ(2, 3, 1).reason_name == "Temporary congestion"
    assert AssociateRJ(2, 2, 2).reason_name == "Protocol version not supported"
    assert AssociateRJ(1, 1, 5).reason_name == "Reserved (5)"
    assert Abort(2, 1).reason_name == "Unrecognized PDU"
    assert Abort(2, 6).source_name == "Service Provider"
    assert Abort(0, 6).reason_name == "Not significant"
    assert Abort(2, 9).reason_name == "Unknown reason 9"


def test_empty_associate_items_allowed() -> None:
    # No presentation context and no user sub-item: still well formed.
    rq = AssociateRQ(called_ae="A", calling_ae="B", user_items=())
    assert decode_pdu(rq.encode()) == rq


# --- strictness: headers and lengths -----------------------------------------------


@pytest.mark.parametrize("size", range(6))
def test_truncated_header(size: int) -> None:
    data = ReleaseRQ().encode()[:size]
    expect_pdu_error(data, "needs", offset=range(0, 3))


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_truncation_of_every_pdu(name: str) -> None:
    data = SAMPLES[name].encode()
    for size in range(len(data)):
        with pytest.raises(PDUError) as info:
            decode_pdu(data[:size])
        assert 0 <= info.value.offset <= size


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_trailing_bytes_after_pdu(name: str) -> None:
    data = SAMPLES[name].encode()
    expect_pdu_error(data + b"\x00", "does not match", offset=2)


@pytest.mark.parametrize("delta", [-3, -1, 1, 1000])
def test_length_field_mismatch(delta: int) -> None:
    data = bytearray(SAMPLES["associate-rq"].encode())
    data[2:6] = (len(data) - 6 + delta).to_bytes(4, "big")
    err = expect_pdu_error(bytes(data), "does not match", offset=2)
    assert str(len(data) - 6 + delta) in err.message


@pytest.mark.parametrize("pdu_type", [0x00, 0x08, 0x10, 0x7F, 0xFF])
def test_unknown_pdu_type(pdu_type: int) -> None:
    err = expect_pdu_error(raw_pdu(pdu_type, bytes(4)), "unknown PDU type", offset=0)
    assert err.abort_reason == ABORT_UNRECOGNIZED_PDU == 1


@pytest.mark.parametrize("pdu_type", [A_RELEASE_RQ, A_RELEASE_RP, A_ABORT, A_ASSOCIATE_RJ])
@pytest.mark.parametrize("length", [0, 3, 5, 100])
def test_fixed_length_pdus(pdu_type: int, length: int) -> None:
    expect_pdu_error(raw_pdu(pdu_type, bytes(length)), f"length is {length}, not 4", offset=2)


@pytest.mark.parametrize("length", [0, 1, 5])
def test_pdata_too_short(length: int) -> None:
    expect_pdu_error(raw_pdu(P_DATA_TF, bytes(length)), "too short", offset=2)


@pytest.mark.parametrize("length", [0, 20, 67])
def test_associate_too_short(length: int) -> None:
    expect_pdu_error(raw_pdu(A_ASSOCIATE_RQ, bytes(length)), "too short", offset=2)
    expect_pdu_error(raw_pdu(A_ASSOCIATE_AC, bytes(length)), "too short", offset=2)


# --- strictness: P-DATA-TF ----------------------------------------------------------


@pytest.mark.parametrize("pdv_length", [0, 1])
def test_pdv_length_below_two(pdv_length: int) -> None:
    body = pdv_length.to_bytes(4, "big") + b"\x01\x03"
    expect_pdu_error(
        raw_pdu(P_DATA_TF, body),
        f"PDV item length {pdv_length} is less than 2",
        offset=range(6, 11),
    )


def test_pdv_length_overruns_pdu() -> None:
    body = (100).to_bytes(4, "big") + b"\x01\x03abcd"
    expect_pdu_error(raw_pdu(P_DATA_TF, body), "overruns the PDU", offset=range(6, 11))


def test_second_pdv_overruns_pdu() -> None:
    body = raw_pdv(1, 3, b"ok") + (9).to_bytes(4, "big") + b"\x01\x03abc"
    expect_pdu_error(raw_pdu(P_DATA_TF, body), "overruns the PDU", offset=range(14, 19))


def test_pdv_truncated_after_first() -> None:
    body = raw_pdv(1, 3, b"ok") + b"\x00\x00"  # half a PDV length field
    expect_pdu_error(raw_pdu(P_DATA_TF, body), "PDV item length: needs 4 bytes", offset=14)


@pytest.mark.parametrize("bit", range(2, 8))
def test_reserved_message_control_bits(bit: int) -> None:
    body = raw_pdv(1, 0x03 | (1 << bit), b"abc")
    err = expect_pdu_error(raw_pdu(P_DATA_TF, body), "reserved bits", offset=11)
    assert err.abort_reason == ABORT_INVALID_PDU_PARAMETER_VALUE


# --- strictness: A-ASSOCIATE-RQ/AC fixed fields --------------------------------------


@pytest.mark.parametrize(
    ("called", "calling", "match", "offset"),
    [
        (b" " * 16, raw_ae(b"ECHOSCU"), "called AE title is all spaces", OFFSET_CALLED_AE),
        (raw_ae(b"ANY"), b" " * 16, "calling AE title is all spaces", OFFSET_CALLING_AE),
        (b"\x00" * 16, raw_ae(b"ECHOSCU"), "called AE title is all spaces", OFFSET_CALLED_AE),
        (raw_ae(b"CAF\xc9"), raw_ae(b"ECHOSCU"), "called AE title has invalid byte 0xc9", 13),
        (raw_ae(b"ANY"), raw_ae(b"A\\B"), "calling AE title has invalid byte 0x5c", 27),
        (raw_ae(b"A\tB"), raw_ae(b"ECHOSCU"), "invalid byte 0x09", 11),
        (raw_ae(b"A\x00B"), raw_ae(b"ECHOSCU"), "invalid byte 0x00", 11),
        (raw_ae(b"\x7fDEL"), raw_ae(b"ECHOSCU"), "invalid byte 0x7f", 10),
    ],
)
def test_rq_ae_title_strictness(called: bytes, calling: bytes, match: str, offset: int) -> None:
    expect_pdu_error(raw_associate(called=called, calling=calling), match, offset=offset)


def test_rj_bad_result_and_source() -> None:
    expect_pdu_error(bytes.fromhex("03 00 00000004 00 03 01 01"), "result 3", offset=7)
    expect_pdu_error(bytes.fromhex("03 00 00000004 00 01 00 01"), "source 0", offset=8)
    expect_pdu_error(bytes.fromhex("03 00 00000004 00 01 04 01"), "source 4", offset=8)


def test_abort_bad_source() -> None:
    expect_pdu_error(bytes.fromhex("07 00 00000004 00 00 03 00"), "source 3", offset=8)


# --- strictness: A-ASSOCIATE-RQ/AC items ---------------------------------------------


def test_missing_application_context() -> None:
    items = raw_pc_rq() + raw_user_info()
    expect_pdu_error(raw_associate(items=items), "no application context item", offset=6)


def test_missing_user_information() -> None:
    items = raw_app_context() + raw_pc_rq()
    expect_pdu_error(raw_associate(items=items), "no user information item", offset=6)
    items = raw_app_context() + raw_pc_ac()
    expect_pdu_error(
        raw_associate(A_ASSOCIATE_AC, items=items), "no user information item", offset=6
    )


@pytest.mark.parametrize("item_type", [0x00, 0x11, 0x30, 0x40, 0x51, 0x99, 0xFF])
def test_unknown_item_type(item_type: int) -> None:
    items = raw_app_context() + raw_item(item_type, b"abc") + raw_pc_rq() + raw_user_info()
    start = OFFSET_FIRST_ITEM + len(raw_app_context())
    err = expect_pdu_error(
        raw_associate(items=items),
        f"unexpected item 0x{item_type:02x}",
        offset=range(start, start + 8),
    )
    assert err.abort_reason == ABORT_UNRECOGNIZED_PDU_PARAMETER == 4


def test_wrong_context_item_type_for_pdu() -> None:
    items = raw_app_context() + raw_pc_ac() + raw_user_info()
    expect_pdu_error(raw_associate(items=items), "unexpected item 0x21", reason=4)
    items = raw_app_context() + raw_pc_rq() + raw_user_info()
    expect_pdu_error(raw_associate(A_ASSOCIATE_AC, items=items), "unexpected item 0x20", reason=4)


def test_duplicate_application_context_or_user_information() -> None:
    items = raw_app_context() + raw_app_context() + raw_pc_rq() + raw_user_info()
    expect_pdu_error(raw_associate(items=items), "unexpected item 0x10", reason=4)
    items = raw_app_context() + raw_pc_rq() + raw_user_info() + raw_user_info()
    expect_pdu_error(raw_associate(items=items), "unexpected item 0x50", reason=4)


def test_item_length_overruns_pdu() -> None:
    items = raw_app_context() + raw_pc_rq() + raw_user_info()
    broken = bytearray(raw_associate(items=items))
    broken[OFFSET_FIRST_ITEM + 2 : OFFSET_FIRST_ITEM + 4] = b"\xff\xff"
    expect_pdu_error(
        bytes(broken), "length 65535 overruns its parent", offset=OFFSET_FIRST_ITEM + 4
    )


@pytest.mark.parametrize("tail", [b"\x50", b"\x50\x00", b"\x50\x00\x00"])
def test_truncated_item_header(tail: bytes) -> None:
    items = raw_app_context() + raw_pc_rq() + raw_user_info() + tail
    expect_pdu_error(raw_associate(items=items), "needs", offset=range(OFFSET_FIRST_ITEM, 300))


def test_sub_item_length_overruns_presentation_context() -> None:
    body = b"\x01\x00\x00\x00" + raw_item(0x30, uids.VERIFICATION.encode())
    body += b"\x40\x00\x00\x40" + uids.IMPLICIT_VR_LE.encode()  # claims 64 bytes, has 17
    items = raw_app_context() + raw_item(0x20, body) + raw_user_info()
    expect_pdu_error(
        raw_associate(items=items), "overruns its parent", reason=ABORT_INVALID_PDU_PARAMETER_VALUE
    )


def test_user_sub_item_length_overruns_user_information() -> None:
    sub = b"\x52\x00\x00\x30" + b"1.2.3"
    items = raw_app_context() + raw_pc_rq() + raw_item(0x50, sub)
    expect_pdu_error(
        raw_associate(items=items), "user information sub-item 0x52 length 48 overruns"
    )


def test_presentation_context_without_transfer_syntax() -> None:
    items = raw_app_context() + raw_pc_rq(transfer=()) + raw_user_info()
    expect_pdu_error(
        raw_associate(items=items), "no transfer syntax", offset=OFFSET_FIRST_ITEM + 25 + 4
    )


def test_presentation_context_without_abstract_syntax() -> None:
    body = b"\x01\x00\x00\x00" + raw_item(0x40, uids.IMPLICIT_VR_LE.encode())
    items = raw_app_context() + raw_item(0x20, body) + raw_user_info()
    expect_pdu_error(raw_associate(items=items), "no abstract syntax")


def test_presentation_context_two_abstract_syntaxes() -> None:
    body = b"\x01\x00\x00\x00" + raw_item(0x30, b"1.2") + raw_item(0x30, b"1.3")
    body += raw_item(0x40, uids.IMPLICIT_VR_LE.encode())
    items = raw_app_context() + raw_item(0x20, body) + raw_user_info()
    expect_pdu_error(raw_associate(items=items), "second abstract syntax", reason=4)


def test_presentation_context_unknown_sub_item() -> None:
    body = b"\x01\x00\x00\x00" + raw_item(0x30, b"1.2") + raw_item(0x41, b"1.2.3")
    items = raw_app_context() + raw_item(0x20, body) + raw_user_info()
    expect_pdu_error(
        raw_associate(items=items), "unknown presentation context sub-item 0x41", reason=4
    )


@pytest.mark.parametrize("context_id", [0, 2, 254])
def test_presentation_context_id_must_be_odd(context_id: int) -> None:
    items = raw_app_context() + raw_pc_rq(context_id=context_id) + raw_user_info()
    expect_pdu_error(raw_associate(items=items), f"presentation context ID {context_id} is not odd")
    items = raw_app_context() + raw_pc_ac(context_id=context_id) + raw_user_info()
    expect_pdu_error(raw_associate(A_ASSOCIATE_AC, items=items), f"ID {context_id} is not odd")


def test_duplicate_context_ids() -> None:
    items = raw_app_context() + raw_pc_rq(3) + raw_pc_rq(1) + raw_pc_rq(3) + raw_user_info()
    expect_pdu_error(raw_associate(items=items), "presentation context ID used twice", offset=6)
    items = raw_app_context() + raw_pc_ac(5) + raw_pc_ac(5) + raw_user_info()
    expect_pdu_error(raw_associate(A_ASSOCIATE_AC, items=items), "used twice", offset=6)


BAD_UIDS = [
    (b"", "UID is empty"),
    (b"1." + b"2" * 63, "65 characters, more than 64"),
    (b"1.2.840.10008.1.2a", "character other than 0-9"),
    (b"1.2.abc", "character other than 0-9"),
    (b"1..2", "empty component"),
    (b".1.2", "empty component"),
    (b"1.2.", "empty component"),
    (b"1.2.840 ", "character other than 0-9"),
    (b"1.2\x00\x00", "character other than 0-9"),  # one trailing NUL is tolerated, not two
    (b"1.\xd9\xa3", "not ASCII"),
    (b"1.\xff", "not ASCII"),
]


@pytest.mark.parametrize(("uid", "match"), BAD_UIDS)
def test_bad_uid_in_application_context(uid: bytes, match: str) -> None:
    items = raw_app_context(uid) + raw_pc_rq() + raw_user_info()
    expect_pdu_error(
        raw_associate(items=items),
        "application context name.*" + match,
        offset=OFFSET_FIRST_ITEM + 4,
    )


@pytest.mark.parametrize(("uid", "match"), BAD_UIDS)
def test_bad_uid_in_abstract_syntax(uid: bytes, match: str) -> None:
    items = raw_app_context() + raw_pc_rq(abstract=uid) + raw_user_info()
    start = OFFSET_FIRST_ITEM + 25 + 4 + 4 + 4
    expect_pdu_error(raw_associate(items=items), "abstract syntax name.*" + match, offset=start)


@pytest.mark.parametrize(("uid", "match"), BAD_UIDS)
def test_bad_uid_in_transfer_syntax(uid: bytes, match: str) -> None:
    transfer = (uids.IMPLICIT_VR_LE.encode(), uid)
    items = raw_app_context() + raw_pc_rq(transfer=transfer) + raw_user_info()
    start = OFFSET_FIRST_ITEM + 25 + 4 + 4 + 21 + 21 + 4
    expect_pdu_error(raw_associate(items=items), "transfer syntax name.*" + match, offset=start)


def test_uid_of_64_characters_and_one_trailing_nul_accepted() -> None:
    uid = "1." + "2" * 62
    items = raw_app_context(uids.APPLICATION_CONTEXT.encode() + b"\x00")
    items += raw_pc_rq(abstract=uid.encode()) + raw_user_info()
    pdu = decode_pdu(raw_associate(items=items))
    assert isinstance(pdu, AssociateRQ)
    assert pdu.application_context == uids.APPLICATION_CONTEXT
    assert pdu.presentation_contexts[0].abstract_syntax == uid


def test_ac_accepted_context_needs_transfer_syntax() -> None:
    items = raw_app_context() + raw_pc_ac(result=0, transfer=b"") + raw_user_info()
    expect_pdu_error(
        raw_associate(A_ASSOCIATE_AC, items=items), "accepted presentation context has no transfer"
    )
    items = raw_app_context() + raw_pc_ac(result=0, transfer=None) + raw_user_info()
    expect_pdu_error(
        raw_associate(A_ASSOCIATE_AC, items=items), "accepted presentation context has no transfer"
    )


@pytest.mark.parametrize("result", [5, 0xFF])
def test_ac_bad_result(result: int) -> None:
    items = raw_app_context() + raw_pc_ac(result=result) + raw_user_info()
    expect_pdu_error(raw_associate(A_ASSOCIATE_AC, items=items), f"result {result} is not 0-4")


def test_ac_rejected_context_transfer_syntax_not_significant() -> None:
    # PS3.8 9.3.3.2: not significant unless accepted; invalid or absent is kept as None.
    for transfer in (None, b"", b"garbage!", uids.IMPLICIT_VR_LE.encode()):
        items = raw_app_context() + raw_pc_ac(result=3, transfer=transfer) + raw_user_info()
        pdu = decode_pdu(raw_associate(A_ASSOCIATE_AC, items=items))
        assert isinstance(pdu, AssociateAC)
        expected = uids.IMPLICIT_VR_LE if transfer == uids.IMPLICIT_VR_LE.encode() else None
        assert pdu.presentation_contexts == (PresentationContextAC(1, 3, expected),)
        assert not pdu.presentation_contexts[0].accepted
        assert pdu.presentation_contexts[0].result_name == "Abstract Syntax Not Supported"


def test_ac_two_transfer_syntaxes() -> None:
    body = b"\x01\x00\x00\x00" + raw_item(0x40, b"1.2") + raw_item(0x40, b"1.3")
    items = raw_app_context() + raw_item(0x21, body) + raw_user_info()
    expect_pdu_error(
        raw_associate(A_ASSOCIATE_AC, items=items), "unexpected presentation context sub-item 0x40"
    )


def test_errors_are_value_errors_with_attributes() -> None:
    err = expect_pdu_error(raw_pdu(0x09, bytes(4)), "unknown PDU type")
    assert isinstance(err, ValueError)
    assert err.message == "unknown PDU type 0x09"
    assert str(err) == "unknown PDU type 0x09 (at byte 0)"


def test_all_sample_types_covered() -> None:
    kinds: set[type[PDU]] = {type(p) for p in SAMPLES.values()}
    assert kinds == {AssociateRQ, AssociateAC, AssociateRJ, PDataTF, ReleaseRQ, ReleaseRP, Abort}
    assert {p.PDU_TYPE for p in SAMPLES.values()} == set(PDU_NAMES)
