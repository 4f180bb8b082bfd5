"""Shared sample PDUs and hand-rolled byte builders for the codec tests.

Not a test module. The `raw_*` builders assemble bytes directly from PS3.8
9.3 (they never call the codec under test), so the tests can both check our
encoder against them and feed deliberately malformed variants to the decoder.
"""

from __future__ import annotations

import pytest

from asyncecho.protocol import uids
from asyncecho.protocol.errors import PDUError
from asyncecho.protocol.pdu import (
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
)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
STORAGE_SERVICE_CLASS = "1.2.840.10008.4.2"

# The short names used in capture file names: "associate-rq", "p-data-tf", "abort".
PDU_FILE_NAMES = {t: name.lower().removeprefix("a-") for t, name in PDU_NAMES.items()}

# Offsets inside an A-ASSOCIATE-RQ/AC (PS3.8 Table 9-11): the first item
# starts right after the 6-byte header and the 68-byte fixed part.
OFFSET_CALLED_AE = 10
OFFSET_CALLING_AE = 26
OFFSET_FIRST_ITEM = 74


# --- raw byte builders (independent of the codec) ------------------------------


def raw_pdu(pdu_type: int, body: bytes, reserved: int = 0) -> bytes:
    """PDU header (type, reserved, 4-byte big-endian length) + body."""
    return bytes((pdu_type, reserved)) + len(body).to_bytes(4, "big") + body


def raw_item(item_type: int, body: bytes, reserved: int = 0) -> bytes:
    """Item header (type, reserved, 2-byte big-endian length) + body."""
    return bytes((item_type, reserved)) + len(body).to_bytes(2, "big") + body


def raw_ae(title: bytes) -> bytes:
    return title.ljust(16, b" ")


def raw_u16_prefixed(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def raw_app_context(name: bytes = uids.APPLICATION_CONTEXT.encode()) -> bytes:
    return raw_item(0x10, name)


def raw_pc_rq(
    context_id: int = 1,
    abstract: bytes = uids.VERIFICATION.encode(),
    transfer: tuple[bytes, ...] = (uids.IMPLICIT_VR_LE.encode(),),
    reserved: bytes = b"\x00\x00\x00",
) -> bytes:
    body = bytes((context_id,)) + reserved + raw_item(0x30, abstract)
    body += b"".join(raw_item(0x40, ts) for ts in transfer)
    return raw_item(0x20, body)


def raw_pc_ac(
    context_id: int = 1,
    result: int = 0,
    transfer: bytes | None = uids.IMPLICIT_VR_LE.encode(),
) -> bytes:
    body = bytes((context_id, 0, result, 0))
    if transfer is not None:
        body += raw_item(0x40, transfer)
    return raw_item(0x21, body)


def raw_user_info(*sub_items: bytes) -> bytes:
    if not sub_items:
        sub_items = (raw_item(0x51, (16384).to_bytes(4, "big")),)
    return raw_item(0x50, b"".join(sub_items))


def raw_associate(
    pdu_type: int = 0x01,
    items: bytes | None = None,
    called: bytes = raw_ae(b"ANY-SCP"),
    calling: bytes = raw_ae(b"ECHOSCU"),
    version: int = 1,
) -> bytes:
    """An A-ASSOCIATE-RQ (or -AC with pdu_type=2) with the given item bytes."""
    if items is None:
        pc = raw_pc_rq() if pdu_type == 0x01 else raw_pc_ac()
        items = raw_app_context() + pc + raw_user_info()
    body = version.to_bytes(2, "big") + b"\x00\x00" + called + calling + bytes(32) + items
    return raw_pdu(pdu_type, body)


def raw_pdv(context_id: int, control: int, data: bytes) -> bytes:
    return (len(data) + 2).to_bytes(4, "big") + bytes((context_id, control)) + data


# --- sample values ---------------------------------------------------------------


def every_user_item() -> tuple[UserItem, ...]:
    """One of each user information sub-item type (0x51-0x59) plus an unknown one."""
    return (
        MaximumLength(16384),
        ImplementationClassUID(uids.IMPLEMENTATION_CLASS_UID),
        AsynchronousOperationsWindow(5, 3),
        RoleSelection(CT_IMAGE_STORAGE, scu_role=True, scp_role=False),
        ImplementationVersionName("ASYNCECHO_010"),
        SOPClassExtendedNegotiation(CT_IMAGE_STORAGE, b"\x02\x00\x00\x00\x01\x00"),
        SOPClassCommonExtendedNegotiation(
            ENHANCED_CT_STORAGE, STORAGE_SERVICE_CLASS, (CT_IMAGE_STORAGE, "1.2.3")
        ),
        UserIdentityRQ(2, True, b"user", b"secret"),
        UserIdentityAC(b"server-response"),
        UnknownUserItem(0x5A, b"\x01\x02\x03"),
    )


def sample_rq() -> AssociateRQ:
    return AssociateRQ(
        called_ae="ANY-SCP",
        calling_ae="ECHOSCU",
        presentation_contexts=(
            PresentationContextRQ(1, uids.VERIFICATION, uids.DEFAULT_TRANSFER_SYNTAXES),
            PresentationContextRQ(3, CT_IMAGE_STORAGE, (uids.IMPLICIT_VR_LE,)),
            PresentationContextRQ(255, ENHANCED_CT_STORAGE, (uids.EXPLICIT_VR_LE,)),
        ),
        user_items=every_user_item(),
    )


def sample_ac() -> AssociateAC:
    return AssociateAC(
        called_ae="ANY-SCP",
        calling_ae="ECHOSCU",
        presentation_contexts=(
            PresentationContextAC(1, 0, uids.EXPLICIT_VR_LE),
            PresentationContextAC(3, 3, None),
            PresentationContextAC(5, 4, uids.IMPLICIT_VR_LE),
            PresentationContextAC(7, 1, None),
            PresentationContextAC(9, 2, None),
        ),
        user_items=(
            MaximumLength(0),
            ImplementationClassUID("1.2.276.0.7230010.3.0.3.6.7"),
            ImplementationVersionName("OFFIS_DCMTK_367"),
            UserIdentityAC(b""),
        ),
    )


def sample_pdata() -> PDataTF:
    """Several PDVs covering all four message control header combinations."""
    return PDataTF(
        (
            PDV(1, True, False, b"\x00" * 10),
            PDV(1, True, True, b"cmd"),
            PDV(3, False, False, b""),
            PDV(3, False, True, bytes(range(256))),
        )
    )


def sample_pdus() -> dict[str, PDU]:
    return {
        "associate-rq": sample_rq(),
        "associate-ac": sample_ac(),
        "associate-rj": AssociateRJ(2, 3, 1),
        "p-data-tf": sample_pdata(),
        "release-rq": ReleaseRQ(),
        "release-rp": ReleaseRP(),
        "abort": Abort(2, 6),
    }


# --- assertion helper ----------------------------------------------------------------


def expect_pdu_error(
    data: bytes,
    match: str,
    offset: int | range | None = None,
    reason: int | None = None,
) -> PDUError:
    """Decode `data`, which must fail with a PDUError (never another exception)
    whose message matches `match` and whose offset is `offset` (or in it)."""
    with pytest.raises(PDUError, match=match) as info:
        decode_pdu(data)
    err = info.value
    assert isinstance(err.offset, int)
    assert 0 <= err.offset <= len(data), err.offset
    if isinstance(offset, range):
        assert err.offset in offset, (err.offset, offset)
    elif offset is not None:
        assert err.offset == offset, (err.offset, offset)
    if reason is not None:
        assert err.abort_reason == reason, (err.abort_reason, reason)
    assert f"(at byte {err.offset})" in str(err)
    return err
