"""Item and user sub-item codec tests: round trips of every item type (0x10,
0x20/0x21 with 0x30/0x40, 0x50 with 0x51-0x59 and unknown types), byte
layouts from PS3.8 9.3.2-9.3.3 / PS3.7 D.3.3, constructor validation, and the
strictness of each sub-item decoder."""

from __future__ import annotations

import pytest

from asyncecho.protocol import uids
from asyncecho.protocol.errors import PDUError
from asyncecho.protocol.pdu import AssociateAC, AssociateRQ, decode_pdu
from asyncecho.protocol.pdu_fields import Reader
from asyncecho.protocol.pdu_items import (
    ApplicationContext,
    AsynchronousOperationsWindow,
    ImplementationClassUID,
    ImplementationVersionName,
    MaximumLength,
    PresentationContextAC,
    PresentationContextRQ,
    RoleSelection,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UnknownUserItem,
    UserIdentityAC,
    UserIdentityRQ,
    UserItem,
    decode_user_information,
    encode_item,
    encode_user_information,
    user_item_type,
)
from pdu_samples import (
    CT_IMAGE_STORAGE,
    OFFSET_FIRST_ITEM,
    every_user_item,
    expect_pdu_error,
    raw_app_context,
    raw_associate,
    raw_item,
    raw_pc_rq,
    raw_u16_prefixed,
    raw_user_info,
)

CT = CT_IMAGE_STORAGE.encode()

# --- hand-derived encodings ---------------------------------------------------------

USER_ITEM_BYTES: list[tuple[UserItem, bytes]] = [
    (MaximumLength(16384), bytes.fromhex("51 00 0004 00004000")),
    (MaximumLength(0), bytes.fromhex("51 00 0004 00000000")),
    (MaximumLength(0xFFFFFFFF), bytes.fromhex("51 00 0004 ffffffff")),
    (ImplementationClassUID("1.2.3.4"), bytes.fromhex("52 00 0007") + b"1.2.3.4"),
    (AsynchronousOperationsWindow(5, 3), bytes.fromhex("53 00 0004 0005 0003")),
    (AsynchronousOperationsWindow(0, 0xFFFF), bytes.fromhex("53 00 0004 0000 ffff")),
    (
        RoleSelection(CT_IMAGE_STORAGE, scu_role=True, scp_role=False),
        bytes.fromhex("54 00 001d 0019") + CT + b"\x01\x00",
    ),
    (
        RoleSelection("1.2", scu_role=False, scp_role=True),
        bytes.fromhex("54 00 0007 0003") + b"1.2\x00\x01",
    ),
    (
        ImplementationVersionName("OFFIS_DCMTK_367"),
        bytes.fromhex("55 00 000f") + b"OFFIS_DCMTK_367",
    ),
    (
        SOPClassExtendedNegotiation(CT_IMAGE_STORAGE, b"\x02\x00"),
        bytes.fromhex("56 00 001d 0019") + CT + b"\x02\x00",
    ),
    (SOPClassExtendedNegotiation("1.2", b""), bytes.fromhex("56 00 0005 0003") + b"1.2"),
    (
        SOPClassCommonExtendedNegotiation("1.2", "1.3", ("1.4", "1.55")),
        bytes.fromhex("57 00 0017 0003")
        + b"1.2"
        + bytes.fromhex("0003")
        + b"1.3"
        + bytes.fromhex("000b 0003")
        + b"1.4"
        + bytes.fromhex("0004")
        + b"1.55",
    ),
    (
        SOPClassCommonExtendedNegotiation("1.2", "1.3"),
        bytes.fromhex("57 00 000c 0003") + b"1.2" + bytes.fromhex("0003") + b"1.3" + b"\x00\x00",
    ),
    (
        UserIdentityRQ(2, True, b"user", b"secret"),
        bytes.fromhex("58 00 0010 02 01 0004") + b"user" + bytes.fromhex("0006") + b"secret",
    ),
    (
        UserIdentityRQ(1, False, b"bob"),
        bytes.fromhex("58 00 0009 01 00 0003") + b"bob" + b"\x00\x00",
    ),
    (UserIdentityAC(b"token"), bytes.fromhex("59 00 0007 0005") + b"token"),
    (UserIdentityAC(b""), bytes.fromhex("59 00 0002 0000")),
    (UnknownUserItem(0x5A, b"\x01\x02\x03"), bytes.fromhex("5a 00 0003 010203")),
    (UnknownUserItem(0xFF, b""), bytes.fromhex("ff 00 0000")),
    (UnknownUserItem(0x00, b"x"), bytes.fromhex("00 00 0001 78")),
]


@pytest.mark.parametrize(("item", "expected"), USER_ITEM_BYTES, ids=lambda v: type(v).__name__)
def test_user_item_hand_encoding(item: UserItem, expected: bytes) -> None:
    assert encode_item(user_item_type(item), item.encode_body()) == expected
    decoded = decode_user_information(Reader(expected))
    assert decoded == (item,)
    assert type(decoded[0]) is type(item)


@pytest.mark.parametrize(("item", "expected"), USER_ITEM_BYTES, ids=lambda v: type(v).__name__)
def test_user_item_round_trip_in_a_pdu(item: UserItem, expected: bytes) -> None:
    for pdu in (
        AssociateRQ(called_ae="A", calling_ae="B", user_items=(MaximumLength(1), item)),
        AssociateAC(called_ae="A", calling_ae="B", user_items=(item, MaximumLength(1))),
    ):
        data = pdu.encode()
        assert expected in data
        assert decode_pdu(data) == pdu
        assert decode_pdu(data).encode() == data


def test_every_user_item_type_covered() -> None:
    types = {user_item_type(i) for i in every_user_item()}
    assert set(range(0x51, 0x5A)) <= types
    assert any(isinstance(i, UnknownUserItem) for i in every_user_item())


def test_user_information_item_layout() -> None:
    items = (MaximumLength(16384), ImplementationClassUID("1.2"))
    expected = bytes.fromhex("50 00 000f 51 00 0004 00004000 52 00 0003") + b"1.2"
    assert encode_user_information(items) == expected
    assert decode_user_information(Reader(expected[4:])) == items
    assert encode_user_information(()) == bytes.fromhex("50 00 0000")


def test_user_items_keep_order_and_duplicates() -> None:
    items: tuple[UserItem, ...] = (
        UnknownUserItem(0x60, b"a"),
        MaximumLength(1),
        UnknownUserItem(0x60, b"b"),
        MaximumLength(2),
    )
    body = encode_user_information(items)[4:]
    assert decode_user_information(Reader(body)) == items


def test_unknown_user_item_kept_raw() -> None:
    sub = raw_item(0x5F, b"\xde\xad\xbe\xef", reserved=0x33)
    data = raw_associate(items=raw_app_context() + raw_pc_rq() + raw_user_info(sub))
    pdu = decode_pdu(data)
    assert isinstance(pdu, AssociateRQ)
    assert pdu.user_items == (UnknownUserItem(0x5F, b"\xde\xad\xbe\xef"),)
    assert user_item_type(pdu.user_items[0]) == 0x5F


def test_application_context_item() -> None:
    item = ApplicationContext(uids.APPLICATION_CONTEXT)
    expected = bytes.fromhex("10 00 0015") + b"1.2.840.10008.3.1.1.1"
    assert encode_item(0x10, item.encode_body()) == expected
    assert ApplicationContext.decode_body(Reader(expected, 4)) == item
    assert raw_app_context() == expected


def test_presentation_context_rq_item() -> None:
    pc = PresentationContextRQ(3, "1.2", ("1.3", "1.44"))
    body = bytes.fromhex("03 000000 3000 0003") + b"1.2" + bytes.fromhex("4000 0003") + b"1.3"
    body += bytes.fromhex("4000 0004") + b"1.44"
    assert pc.encode_body() == body
    assert PresentationContextRQ.decode_body(Reader(body)) == pc
    assert raw_pc_rq(3, b"1.2", (b"1.3", b"1.44")) == encode_item(0x20, body)


@pytest.mark.parametrize(
    ("pc", "body"),
    [
        (PresentationContextAC(1, 0, "1.2"), bytes.fromhex("01 00 00 00 4000 0003") + b"1.2"),
        (PresentationContextAC(5, 3, None), bytes.fromhex("05 00 03 00 4000 0000")),
        (PresentationContextAC(7, 4, "1.2"), bytes.fromhex("07 00 04 00 4000 0003") + b"1.2"),
        (PresentationContextAC(9, 1, None), bytes.fromhex("09 00 01 00 4000 0000")),
        (PresentationContextAC(11, 2, None), bytes.fromhex("0b 00 02 00 4000 0000")),
    ],
)
def test_presentation_context_ac_item(pc: PresentationContextAC, body: bytes) -> None:
    assert pc.encode_body() == body
    assert PresentationContextAC.decode_body(Reader(body)) == pc


def test_presentation_context_ac_names() -> None:
    assert PresentationContextAC(1, 0, "1.2").accepted
    assert PresentationContextAC(1, 0, "1.2").result_name == "Accepted"
    assert PresentationContextAC(1, 4, None).result_name == "Transfer Syntax(es) Not Supported"


def test_user_identity_passcode_not_in_repr() -> None:
    item = UserIdentityRQ(2, True, b"alice", b"hunter2")
    assert "hunter2" not in repr(item)
    assert "alice" in repr(item)


def test_encode_item_body_too_long() -> None:
    with pytest.raises(ValueError, match="over 65535"):
        encode_item(0x5A, bytes(0x10000))
    with pytest.raises(ValueError, match="over 65535"):
        UserIdentityAC(bytes(0x10000)).encode_body()
    assert len(encode_item(0x5A, bytes(0xFFFF))) == 0xFFFF + 4


# --- constructor validation (local misuse raises ValueError) ------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda: PresentationContextRQ(0, "1.2", ("1.2",)),
        lambda: PresentationContextRQ(2, "1.2", ("1.2",)),
        lambda: PresentationContextRQ(257, "1.2", ("1.2",)),
        lambda: PresentationContextRQ(1, "1.2", ()),
        lambda: PresentationContextRQ(1, "1.a", ("1.2",)),
        lambda: PresentationContextRQ(1, "1.2", ("1.2", "")),
        lambda: PresentationContextAC(1, 0, None),
        lambda: PresentationContextAC(1, 5, "1.2"),
        lambda: PresentationContextAC(4, 0, "1.2"),
        lambda: PresentationContextAC(1, 0, "1..2"),
        lambda: MaximumLength(-1),
        lambda: MaximumLength(1 << 32),
        lambda: ImplementationClassUID("1." + "2" * 63),
        lambda: RoleSelection("x", True, True),
        lambda: ImplementationVersionName(""),
        lambda: ImplementationVersionName("X" * 17),
        lambda: ImplementationVersionName("CAFÉ"),
        lambda: ImplementationVersionName("TAB\t"),  # what the decoder refuses too
        lambda: ImplementationVersionName("NUL\x00"),
        lambda: SOPClassExtendedNegotiation("", b""),
        lambda: SOPClassCommonExtendedNegotiation("1.2", "1.3", ("1.2.",)),
        lambda: UserIdentityRQ(0, False, b"x"),
        lambda: UserIdentityRQ(6, False, b"x"),
        lambda: UserIdentityRQ(1, False, b""),
        lambda: UserIdentityRQ(2, False, b"user"),
    ],
)
def test_constructor_validation(build: object) -> None:
    assert callable(build)
    with pytest.raises(ValueError):
        build()


# --- strictness of the sub-item decoders --------------------------------------------

# Where the first user sub-item starts in `rq_with_user_items()`.
SUB_START = OFFSET_FIRST_ITEM + len(raw_app_context()) + len(raw_pc_rq()) + 4


def rq_with_user_items(*subs: bytes) -> bytes:
    return raw_associate(items=raw_app_context() + raw_pc_rq() + raw_user_info(*subs))


def sub_item_error(sub: bytes, match: str) -> PDUError:
    """The sub-item `sub` must be refused, with an offset inside it."""
    return expect_pdu_error(
        rq_with_user_items(sub), match, offset=range(SUB_START, SUB_START + len(sub) + 1)
    )


@pytest.mark.parametrize("size", [0, 2, 3, 5, 8])
def test_maximum_length_wrong_size(size: int) -> None:
    sub_item_error(raw_item(0x51, bytes(size)), f"maximum length sub-item is {size} bytes, not 4")


@pytest.mark.parametrize("size", [0, 3, 5])
def test_async_ops_window_wrong_size(size: int) -> None:
    sub_item_error(raw_item(0x53, bytes(size)), f"window sub-item is {size} bytes, not 4")


@pytest.mark.parametrize("uid", [b"", b"1.2.x", b"1..2", b"\xff"])
def test_implementation_class_uid_invalid(uid: bytes) -> None:
    sub_item_error(raw_item(0x52, uid), "implementation class UID")


@pytest.mark.parametrize("name", [b"", b"X" * 17, b"BAD\x00", b"CAF\xc9", b"TAB\t"])
def test_implementation_version_name_invalid(name: bytes) -> None:
    sub_item_error(raw_item(0x55, name), "implementation version name is not 1-16 printable")


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (raw_u16_prefixed(CT) + b"\x02\x00", "SCU role is 2"),
        (raw_u16_prefixed(CT) + b"\x01\x07", "SCP role is 7"),
        (raw_u16_prefixed(CT) + b"\x01", "SCP role: needs 1 bytes"),
        (raw_u16_prefixed(CT), "SCU role: needs 1 bytes"),
        (raw_u16_prefixed(CT) + b"\x01\x01\x00", "1 bytes after the SCP/SCU role"),
        (b"\x00\x40" + CT + b"\x01\x01", "SOP class UID: needs 64 bytes"),
        (b"\x00", "SOP class UID length: needs 2 bytes"),
        (raw_u16_prefixed(b"1.2.a") + b"\x01\x01", "SOP class UID: UID"),
    ],
)
def test_role_selection_malformed(body: bytes, match: str) -> None:
    sub_item_error(raw_item(0x54, body), match)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"\x00\x40" + CT, "SOP class UID: needs 64 bytes"),
        (raw_u16_prefixed(b""), "SOP class UID: UID is empty"),
        (b"", "SOP class UID length: needs 2 bytes"),
    ],
)
def test_sop_class_extended_negotiation_malformed(body: bytes, match: str) -> None:
    sub_item_error(raw_item(0x56, body), match)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (
            raw_u16_prefixed(b"1.2") + raw_u16_prefixed(b"1.3"),
            "related general SOP class length: needs 2",
        ),
        (
            raw_u16_prefixed(b"1.2") + raw_u16_prefixed(b"1.3") + b"\x00\x09abc",
            "related general SOP classes",
        ),
        (
            raw_u16_prefixed(b"1.2") + raw_u16_prefixed(b"1.3") + raw_u16_prefixed(b"\x00\x09abc"),
            "related general SOP class UID: needs 9",
        ),
        (
            raw_u16_prefixed(b"1.2")
            + raw_u16_prefixed(b"1.3")
            + raw_u16_prefixed(raw_u16_prefixed(b"1.x")),
            "related general SOP class UID: UID",
        ),
        (
            raw_u16_prefixed(b"1.2") + raw_u16_prefixed(b"1.3") + b"\x00\x00\x00",
            "1 bytes after the common",
        ),
        (raw_u16_prefixed(b"1.2") + b"\x00\x05" + b"1.3", "service class UID: needs 5"),
    ],
)
def test_common_extended_negotiation_malformed(body: bytes, match: str) -> None:
    sub_item_error(raw_item(0x57, body), match)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (
            b"\x00\x00" + raw_u16_prefixed(b"x") + raw_u16_prefixed(b""),
            "user identity type 0 is not 1-5",
        ),
        (
            b"\x06\x00" + raw_u16_prefixed(b"x") + raw_u16_prefixed(b""),
            "user identity type 6 is not 1-5",
        ),
        (
            b"\x01\x02" + raw_u16_prefixed(b"x") + raw_u16_prefixed(b""),
            "positive response requested is 2",
        ),
        (b"\x01\x00" + raw_u16_prefixed(b"") + raw_u16_prefixed(b""), "primary field is empty"),
        (b"\x02\x00" + raw_u16_prefixed(b"u") + raw_u16_prefixed(b""), "needs a passcode"),
        (b"\x01\x00" + b"\x00\x05ab", "user identity primary field: needs 5"),
        (b"\x01\x00" + raw_u16_prefixed(b"x"), "secondary field length: needs 2"),
        (
            b"\x01\x00" + raw_u16_prefixed(b"x") + raw_u16_prefixed(b"") + b"\x00",
            "1 bytes after the user",
        ),
        (b"\x01", "positive response requested: needs 1"),
    ],
)
def test_user_identity_rq_malformed(body: bytes, match: str) -> None:
    sub_item_error(raw_item(0x58, body), match)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"", "server response length: needs 2"),
        (b"\x00\x05abc", "server response: needs 5"),
        (raw_u16_prefixed(b"abc") + b"\x00", "1 bytes after the user identity server response"),
    ],
)
def test_user_identity_ac_malformed(body: bytes, match: str) -> None:
    sub_item_error(raw_item(0x59, body), match)


def test_user_sub_item_errors_point_into_the_sub_item() -> None:
    good = raw_item(0x51, (16384).to_bytes(4, "big"))
    bad = raw_item(0x54, raw_u16_prefixed(CT) + b"\x01\x05")
    err = expect_pdu_error(rq_with_user_items(good, bad), "SCP role is 5")
    # the SCP role byte is the last byte of the second sub-item
    assert err.offset == SUB_START + len(good) + len(bad) - 1


def test_uid_with_one_trailing_nul_in_user_items() -> None:
    sub = raw_item(0x52, b"1.2.276.0.7230010.3.0.3.6.7\x00")
    pdu = decode_pdu(rq_with_user_items(sub))
    assert isinstance(pdu, AssociateRQ)
    assert pdu.implementation_class_uid == "1.2.276.0.7230010.3.0.3.6.7"
