"""The seven PDUs of the DICOM upper layer (PS3.8 9.3) as immutable values,
with `encode()` and `decode_pdu()`.

`decode_pdu` takes one whole PDU (header included), as `PDUFramer` yields
them; every length is checked against the bytes present, and anything
malformed raises `PDUError` with its offset.

May import the rest of `protocol/` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from asyncecho.protocol import uids
from asyncecho.protocol.errors import (
    ABORT_UNRECOGNIZED_PDU,
    ABORT_UNRECOGNIZED_PDU_PARAMETER,
    PDUError,
)
from asyncecho.protocol.pdu_fields import Reader, decode_ae_title, encode_ae_title
from asyncecho.protocol.pdu_items import (
    ApplicationContext,
    ImplementationClassUID,
    ImplementationVersionName,
    MaximumLength,
    PresentationContextAC,
    PresentationContextRQ,
    UserItem,
    decode_user_information,
    encode_item,
    encode_user_information,
    iter_items,
)

PDU_HEADER = 6

A_ASSOCIATE_RQ = 0x01
A_ASSOCIATE_AC = 0x02
A_ASSOCIATE_RJ = 0x03
P_DATA_TF = 0x04
A_RELEASE_RQ = 0x05
A_RELEASE_RP = 0x06
A_ABORT = 0x07

PDU_NAMES = {
    A_ASSOCIATE_RQ: "A-ASSOCIATE-RQ",
    A_ASSOCIATE_AC: "A-ASSOCIATE-AC",
    A_ASSOCIATE_RJ: "A-ASSOCIATE-RJ",
    P_DATA_TF: "P-DATA-TF",
    A_RELEASE_RQ: "A-RELEASE-RQ",
    A_RELEASE_RP: "A-RELEASE-RP",
    A_ABORT: "A-ABORT",
}

# PS3.8 9.3.2: bit 0 set is version 1, the only one defined.
PROTOCOL_VERSION = 0x0001


def _header(pdu_type: int, body_length: int) -> bytes:
    return bytes((pdu_type, 0)) + body_length.to_bytes(4, "big")


def _with_header(pdu_type: int, body: bytes) -> bytes:
    return _header(pdu_type, len(body)) + body


# --- A-ASSOCIATE-RQ / -AC ---------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _AssociateBase:
    called_ae: str
    calling_ae: str
    user_items: tuple[UserItem, ...]
    application_context: str = uids.APPLICATION_CONTEXT
    protocol_version: int = PROTOCOL_VERSION

    def _user_item(self, cls: type) -> object | None:
        for item in self.user_items:
            if isinstance(item, cls):
                return item
        return None

    @property
    def max_length(self) -> int | None:
        """The Maximum Length sub-item (0 = unlimited), None if absent."""
        item = self._user_item(MaximumLength)
        return item.maximum_length if isinstance(item, MaximumLength) else None

    @property
    def implementation_class_uid(self) -> str | None:
        item = self._user_item(ImplementationClassUID)
        return item.uid if isinstance(item, ImplementationClassUID) else None

    @property
    def implementation_version_name(self) -> str | None:
        item = self._user_item(ImplementationVersionName)
        return item.name if isinstance(item, ImplementationVersionName) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class AssociateRQ(_AssociateBase):
    PDU_TYPE: ClassVar[int] = A_ASSOCIATE_RQ
    presentation_contexts: tuple[PresentationContextRQ, ...] = field(default=())

    def encode(self) -> bytes:
        return _encode_associate(self, self.presentation_contexts)


@dataclass(frozen=True, slots=True, kw_only=True)
class AssociateAC(_AssociateBase):
    PDU_TYPE: ClassVar[int] = A_ASSOCIATE_AC
    presentation_contexts: tuple[PresentationContextAC, ...] = field(default=())

    def encode(self) -> bytes:
        return _encode_associate(self, self.presentation_contexts)


def _encode_associate(
    pdu: AssociateRQ | AssociateAC,
    contexts: tuple[PresentationContextRQ, ...] | tuple[PresentationContextAC, ...],
) -> bytes:
    parts = [
        pdu.protocol_version.to_bytes(2, "big"),
        b"\x00\x00",
        encode_ae_title(pdu.called_ae),
        encode_ae_title(pdu.calling_ae),
        bytes(32),
        encode_item(
            ApplicationContext.ITEM_TYPE, ApplicationContext(pdu.application_context).encode_body()
        ),
    ]
    parts.extend(encode_item(pc.ITEM_TYPE, pc.encode_body()) for pc in contexts)
    parts.append(encode_user_information(pdu.user_items))
    return _with_header(pdu.PDU_TYPE, b"".join(parts))


def _decode_associate(r: Reader, pdu_type: int) -> AssociateRQ | AssociateAC:
    is_rq = pdu_type == A_ASSOCIATE_RQ
    version_at = r.pos
    # Kept as it is, not tested here: an acceptor answers a version without
    # bit 0 with an A-ASSOCIATE-RJ (PS3.8 Table 9-21), not an abort.
    version = r.u16("protocol version")
    r.skip(2, "reserved field")
    called = decode_ae_title(r, "called AE title", strict=is_rq)
    calling = decode_ae_title(r, "calling AE title", strict=is_rq)
    r.skip(32, "reserved field")
    app_context: str | None = None
    rq_contexts: list[PresentationContextRQ] = []
    ac_contexts: list[PresentationContextAC] = []
    user_items: tuple[UserItem, ...] | None = None
    context_type = 0x20 if is_rq else 0x21
    for item_type, item in iter_items(r, "item"):
        if item_type == ApplicationContext.ITEM_TYPE and app_context is None:
            app_context = ApplicationContext.decode_body(item).name
        elif item_type == context_type:
            if is_rq:
                rq_contexts.append(PresentationContextRQ.decode_body(item))
            else:
                ac_contexts.append(PresentationContextAC.decode_body(item))
        elif item_type == 0x50 and user_items is None:
            user_items = decode_user_information(item)
        else:
            raise item.fail(
                f"unexpected item 0x{item_type:02x} in {PDU_NAMES[pdu_type]}",
                ABORT_UNRECOGNIZED_PDU_PARAMETER,
            )
    if app_context is None:
        raise PDUError(f"{PDU_NAMES[pdu_type]} has no application context item", version_at)
    if user_items is None:
        raise PDUError(f"{PDU_NAMES[pdu_type]} has no user information item", version_at)
    ids = [pc.context_id for pc in (rq_contexts if is_rq else ac_contexts)]
    if len(set(ids)) != len(ids):
        raise PDUError("presentation context ID used twice", version_at)
    if is_rq:
        return AssociateRQ(
            called_ae=called,
            calling_ae=calling,
            user_items=user_items,
            application_context=app_context,
            protocol_version=version,
            presentation_contexts=tuple(rq_contexts),
        )
    return AssociateAC(
        called_ae=called,
        calling_ae=calling,
        user_items=user_items,
        application_context=app_context,
        protocol_version=version,
        presentation_contexts=tuple(ac_contexts),
    )


# --- A-ASSOCIATE-RJ (PS3.8 9.3.4, Table 9-21) -----------------------------------

RJ_PERMANENT = 1
RJ_TRANSIENT = 2
RJ_SOURCE_USER = 1
RJ_SOURCE_ACSE = 2
RJ_SOURCE_PRESENTATION = 3

RJ_RESULT_NAMES = {RJ_PERMANENT: "Rejected Permanent", RJ_TRANSIENT: "Rejected Transient"}
RJ_SOURCE_NAMES = {
    RJ_SOURCE_USER: "Service User",
    RJ_SOURCE_ACSE: "Service Provider (ACSE)",
    RJ_SOURCE_PRESENTATION: "Service Provider (Presentation)",
}
RJ_REASON_NAMES = {
    RJ_SOURCE_USER: {
        1: "No reason given",
        2: "Application context name not supported",
        3: "Calling AE title not recognised",
        7: "Called AE title not recognised",
    },
    RJ_SOURCE_ACSE: {1: "No reason given", 2: "Protocol version not supported"},
    RJ_SOURCE_PRESENTATION: {1: "Temporary congestion", 2: "Local limit exceeded"},
}


@dataclass(frozen=True, slots=True)
class AssociateRJ:
    PDU_TYPE: ClassVar[int] = A_ASSOCIATE_RJ
    result: int
    source: int
    reason: int

    @property
    def result_name(self) -> str:
        return RJ_RESULT_NAMES.get(self.result, f"Unknown result {self.result}")

    @property
    def source_name(self) -> str:
        return RJ_SOURCE_NAMES.get(self.source, f"Unknown source {self.source}")

    @property
    def reason_name(self) -> str:
        reasons = RJ_REASON_NAMES.get(self.source, {})
        return reasons.get(self.reason, f"Reserved ({self.reason})")

    def encode(self) -> bytes:
        return _with_header(self.PDU_TYPE, bytes((0, self.result, self.source, self.reason)))


def _decode_rj(r: Reader) -> AssociateRJ:
    r.skip(1, "reserved field")
    start = r.pos
    result, source, reason = r.u8("result"), r.u8("source"), r.u8("reason")
    if result not in RJ_RESULT_NAMES:
        raise PDUError(f"A-ASSOCIATE-RJ result {result} is not 1 or 2", start)
    if source not in RJ_SOURCE_NAMES:
        raise PDUError(f"A-ASSOCIATE-RJ source {source} is not 1-3", start + 1)
    return AssociateRJ(result, source, reason)


# --- P-DATA-TF (PS3.8 9.3.5, Annex E.2) -------------------------------------------

PDV_HEADER = 6  # item length (4), context ID (1), message control header (1)
MCH_COMMAND = 0x01
MCH_LAST = 0x02


@dataclass(frozen=True, slots=True)
class PDV:
    context_id: int
    is_command: bool
    is_last: bool
    data: bytes = field(repr=False)

    def encode(self) -> bytes:
        control = (MCH_COMMAND if self.is_command else 0) | (MCH_LAST if self.is_last else 0)
        return (
            (len(self.data) + 2).to_bytes(4, "big") + bytes((self.context_id, control)) + self.data
        )


@dataclass(frozen=True, slots=True)
class PDataTF:
    PDU_TYPE: ClassVar[int] = P_DATA_TF
    pdvs: tuple[PDV, ...]

    def encode(self) -> bytes:
        return _with_header(self.PDU_TYPE, b"".join(p.encode() for p in self.pdvs))


def _decode_pdata(r: Reader) -> PDataTF:
    if not r.remaining:
        raise r.fail("P-DATA-TF has no PDV item")
    pdvs = []
    while r.remaining:
        length = r.u32("PDV item length")
        if length < 2:
            raise r.fail(f"PDV item length {length} is less than 2")
        if length > r.remaining:
            raise r.fail(f"PDV item length {length} overruns the PDU ({r.remaining} left)")
        context_id = r.u8("presentation context ID")
        control = r.u8("message control header")
        if control & ~(MCH_COMMAND | MCH_LAST):
            # PS3.8 E.2: bits 2-7 "shall be set to 0" (and are not told to be
            # ignored on receipt, unlike reserved fields).
            raise PDUError(
                f"message control header 0x{control:02x} has reserved bits set", r.pos - 1
            )
        pdvs.append(
            PDV(
                context_id,
                bool(control & MCH_COMMAND),
                bool(control & MCH_LAST),
                r.take(length - 2, "PDV data"),
            )
        )
    return PDataTF(tuple(pdvs))


# --- A-RELEASE-RQ / -RP / A-ABORT -------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReleaseRQ:
    PDU_TYPE: ClassVar[int] = A_RELEASE_RQ

    def encode(self) -> bytes:
        return _with_header(self.PDU_TYPE, bytes(4))


@dataclass(frozen=True, slots=True)
class ReleaseRP:
    PDU_TYPE: ClassVar[int] = A_RELEASE_RP

    def encode(self) -> bytes:
        return _with_header(self.PDU_TYPE, bytes(4))


# PS3.8 Table 9-26.
ABORT_SOURCE_USER = 0
ABORT_SOURCE_PROVIDER = 2
ABORT_SOURCE_NAMES = {0: "Service User", 1: "Reserved", 2: "Service Provider"}
ABORT_REASON_NAMES = {
    0: "Reason not specified",
    1: "Unrecognized PDU",
    2: "Unexpected PDU",
    3: "Reserved",
    4: "Unrecognized PDU parameter",
    5: "Unexpected PDU parameter",
    6: "Invalid PDU parameter value",
}


@dataclass(frozen=True, slots=True)
class Abort:
    PDU_TYPE: ClassVar[int] = A_ABORT
    source: int = ABORT_SOURCE_USER
    reason: int = 0

    @property
    def source_name(self) -> str:
        return ABORT_SOURCE_NAMES.get(self.source, f"Unknown source {self.source}")

    @property
    def reason_name(self) -> str:
        if self.source != ABORT_SOURCE_PROVIDER:
            return "Not significant"
        return ABORT_REASON_NAMES.get(self.reason, f"Unknown reason {self.reason}")

    def encode(self) -> bytes:
        return _with_header(self.PDU_TYPE, bytes((0, 0, self.source, self.reason)))


def _decode_abort(r: Reader) -> Abort:
    r.skip(2, "reserved fields")
    start = r.pos
    source, reason = r.u8("abort source"), r.u8("abort reason")
    if source not in ABORT_SOURCE_NAMES:
        raise PDUError(f"A-ABORT source {source} is not 0-2", start)
    return Abort(source, reason)


PDU = AssociateRQ | AssociateAC | AssociateRJ | PDataTF | ReleaseRQ | ReleaseRP | Abort

# Fixed body lengths, checked from the header alone (PS3.8 9.3.4, 9.3.6-9.3.8).
FIXED_LENGTH = {A_ASSOCIATE_RJ: 4, A_RELEASE_RQ: 4, A_RELEASE_RP: 4, A_ABORT: 4}
# The fixed part of an A-ASSOCIATE-RQ/AC before its items.
ASSOCIATE_FIXED = 68


def check_header(pdu_type: int, length: int, max_pdata: int, max_associate: int) -> None:
    """Check a PDU header before any of its body is read or buffered."""
    if pdu_type not in PDU_NAMES:
        raise PDUError(f"unknown PDU type 0x{pdu_type:02x}", 0, ABORT_UNRECOGNIZED_PDU)
    name = PDU_NAMES[pdu_type]
    fixed = FIXED_LENGTH.get(pdu_type)
    if fixed is not None and length != fixed:
        raise PDUError(f"{name} length is {length}, not {fixed}", 2)
    if pdu_type == P_DATA_TF:
        if length < PDV_HEADER:
            raise PDUError(f"P-DATA-TF length {length} is too short for a PDV", 2)
        if max_pdata and length > max_pdata:
            raise PDUError(f"P-DATA-TF length {length} is over the maximum {max_pdata}", 2)
    elif pdu_type in (A_ASSOCIATE_RQ, A_ASSOCIATE_AC):
        if length < ASSOCIATE_FIXED:
            raise PDUError(f"{name} length {length} is too short (minimum {ASSOCIATE_FIXED})", 2)
        if length > max_associate:
            raise PDUError(f"{name} length {length} is over the maximum {max_associate}", 2)


# Decoded PDUs by their bytes. PDUs are immutable values and a peer sends
# byte-identical ones from one association to the next (its A-ASSOCIATE-AC,
# the C-ECHO-RSP to message ID 1, the A-RELEASE-RP), so a sweep or a busy SCP
# decodes each distinct one once. Bounded in entries and in the size of what
# is kept (at most 256 x 16 KiB), so a hostile peer can only churn it.
_CACHE: dict[bytes, PDU] = {}
_CACHE_ENTRIES = 256
_CACHE_MAX_PDU = 16384


def decode_pdu(data: bytes) -> PDU:
    """Decode one whole PDU, header included."""
    if len(data) > _CACHE_MAX_PDU:
        return _decode(data)
    pdu = _CACHE.get(data)
    if pdu is None:
        pdu = _decode(data)
        if len(_CACHE) >= _CACHE_ENTRIES:
            _CACHE.clear()
        _CACHE[data] = pdu
    return pdu


def _decode(data: bytes) -> PDU:
    r = Reader(data)
    pdu_type = r.u8("PDU type")
    r.skip(1, "reserved field")
    length = r.u32("PDU length")
    check_header(pdu_type, length, 0, 0xFFFFFFFF)
    if length != r.remaining:
        raise PDUError(f"PDU length {length} does not match the {r.remaining} bytes present", 2)
    pdu: PDU
    if pdu_type in (A_ASSOCIATE_RQ, A_ASSOCIATE_AC):
        pdu = _decode_associate(r, pdu_type)
    elif pdu_type == P_DATA_TF:
        pdu = _decode_pdata(r)
    elif pdu_type == A_ASSOCIATE_RJ:
        pdu = _decode_rj(r)
    elif pdu_type == A_RELEASE_RQ:
        r.skip(4, "reserved field")
        pdu = ReleaseRQ()
    elif pdu_type == A_RELEASE_RP:
        r.skip(4, "reserved field")
        pdu = ReleaseRP()
    else:
        pdu = _decode_abort(r)
    if r.remaining:
        raise r.fail(f"{r.remaining} bytes left after the {PDU_NAMES[pdu_type]}")
    return pdu
