"""The variable items of A-ASSOCIATE-RQ/AC PDUs (PS3.8 9.3.2, 9.3.3) and the
User Information sub-items (PS3.7 Annex D.3.3, PS3.8 Annex D).

Each item is a small immutable value with `encode_body()` and
`decode_body(reader)`; the 4-byte item header is handled once, in
`encode_item` / `decode_items`.

May import `protocol/errors` and `pdu_fields` only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import ClassVar

from asyncecho.protocol.errors import ABORT_UNRECOGNIZED_PDU_PARAMETER, PDUError
from asyncecho.protocol.pdu_fields import Reader, decode_uid, encode_uid, validate_uid

ITEM_HEADER = 4
ITEM_MAX_BODY = 0xFFFF


def encode_item(item_type: int, body: bytes) -> bytes:
    if len(body) > ITEM_MAX_BODY:
        raise ValueError(f"item 0x{item_type:02x} body is {len(body)} bytes, over 65535")
    return bytes((item_type, 0)) + len(body).to_bytes(2, "big") + body


def _u16_prefixed(data: bytes, what: str) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError(f"{what} is {len(data)} bytes, over 65535")
    return len(data).to_bytes(2, "big") + data


def _read_u16_prefixed(r: Reader, what: str) -> bytes:
    return r.take(r.u16(f"{what} length"), what)


def _read_uid(r: Reader, n: int, what: str) -> str:
    start = r.pos
    return decode_uid(r.take(n, what), start, what)


def _read_rest_uid(r: Reader, what: str) -> str:
    return _read_uid(r, r.remaining, what)


# --- Presentation-context level items ------------------------------------------


@dataclass(frozen=True, slots=True)
class ApplicationContext:
    ITEM_TYPE: ClassVar[int] = 0x10
    name: str

    def encode_body(self) -> bytes:
        return encode_uid(self.name)

    @classmethod
    def decode_body(cls, r: Reader) -> ApplicationContext:
        return cls(_read_rest_uid(r, "application context name"))


def _check_context_id(context_id: int) -> None:
    # PS3.8 9.3.2.2: presentation context IDs are odd integers 1-255.
    if not (1 <= context_id <= 255 and context_id % 2 == 1):
        raise ValueError(f"presentation context ID {context_id} is not odd in 1-255")


@dataclass(frozen=True, slots=True)
class PresentationContextRQ:
    ITEM_TYPE: ClassVar[int] = 0x20
    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_context_id(self.context_id)
        validate_uid(self.abstract_syntax)
        if not self.transfer_syntaxes:
            raise ValueError("a presentation context proposes at least one transfer syntax")
        for ts in self.transfer_syntaxes:
            validate_uid(ts)

    def encode_body(self) -> bytes:
        parts = [
            bytes((self.context_id, 0, 0, 0)),
            encode_item(0x30, encode_uid(self.abstract_syntax)),
        ]
        parts.extend(encode_item(0x40, encode_uid(ts)) for ts in self.transfer_syntaxes)
        return b"".join(parts)

    @classmethod
    def decode_body(cls, r: Reader) -> PresentationContextRQ:
        start = r.pos
        context_id = r.u8("presentation context ID")
        r.skip(3, "presentation context reserved fields")
        abstract: str | None = None
        transfer: list[str] = []
        for sub_type, sub in iter_items(r, "presentation context sub-item"):
            if sub_type == 0x30:
                if abstract is not None:
                    raise sub.fail(
                        "second abstract syntax sub-item", ABORT_UNRECOGNIZED_PDU_PARAMETER
                    )
                abstract = _read_rest_uid(sub, "abstract syntax name")
            elif sub_type == 0x40:
                transfer.append(_read_rest_uid(sub, "transfer syntax name"))
            else:
                raise sub.fail(
                    f"unknown presentation context sub-item 0x{sub_type:02x}",
                    ABORT_UNRECOGNIZED_PDU_PARAMETER,
                )
        if abstract is None:
            raise PDUError("presentation context has no abstract syntax", start)
        if not transfer:
            raise PDUError("presentation context has no transfer syntax", start)
        try:
            return cls(context_id, abstract, tuple(transfer))
        except ValueError as exc:
            raise PDUError(str(exc), start) from None


# PS3.8 Table 9-18: Result/Reason of a presentation context in an A-ASSOCIATE-AC.
PC_ACCEPTANCE = 0
PC_USER_REJECTION = 1
PC_NO_REASON = 2
PC_ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
PC_TRANSFER_SYNTAXES_NOT_SUPPORTED = 4

PC_RESULT_NAMES = {
    PC_ACCEPTANCE: "Accepted",
    PC_USER_REJECTION: "User Rejection",
    PC_NO_REASON: "Provider Rejection (no reason given)",
    PC_ABSTRACT_SYNTAX_NOT_SUPPORTED: "Abstract Syntax Not Supported",
    PC_TRANSFER_SYNTAXES_NOT_SUPPORTED: "Transfer Syntax(es) Not Supported",
}


@dataclass(frozen=True, slots=True)
class PresentationContextAC:
    ITEM_TYPE: ClassVar[int] = 0x21
    context_id: int
    result: int
    # PS3.8 9.3.3.2: "not significant" unless the result is acceptance; some
    # peers then send an empty or no transfer syntax sub-item.
    transfer_syntax: str | None

    def __post_init__(self) -> None:
        _check_context_id(self.context_id)
        if self.result not in PC_RESULT_NAMES:
            raise ValueError(f"presentation context result {self.result} is not 0-4")
        if self.result == PC_ACCEPTANCE and self.transfer_syntax is None:
            raise ValueError("an accepted presentation context names its transfer syntax")
        if self.transfer_syntax is not None:
            validate_uid(self.transfer_syntax)

    @property
    def accepted(self) -> bool:
        return self.result == PC_ACCEPTANCE

    @property
    def result_name(self) -> str:
        return PC_RESULT_NAMES[self.result]

    def encode_body(self) -> bytes:
        head = bytes((self.context_id, 0, self.result, 0))
        ts = b"" if self.transfer_syntax is None else encode_uid(self.transfer_syntax)
        return head + encode_item(0x40, ts)

    @classmethod
    def decode_body(cls, r: Reader) -> PresentationContextAC:
        start = r.pos
        context_id = r.u8("presentation context ID")
        r.skip(1, "presentation context reserved field")
        result = r.u8("presentation context result/reason")
        r.skip(1, "presentation context reserved field")
        transfer: str | None = None
        seen = False
        for sub_type, sub in iter_items(r, "presentation context sub-item"):
            if sub_type != 0x40 or seen:
                raise sub.fail(
                    f"unexpected presentation context sub-item 0x{sub_type:02x}",
                    ABORT_UNRECOGNIZED_PDU_PARAMETER,
                )
            seen = True
            if sub.remaining and result == PC_ACCEPTANCE:
                transfer = _read_rest_uid(sub, "transfer syntax name")
            elif sub.remaining:
                # Not significant when rejected: keep it only if it is valid.
                raw = sub.take(sub.remaining, "transfer syntax name")
                try:
                    transfer = decode_uid(raw, sub.pos, "transfer syntax name")
                except PDUError:
                    transfer = None
        if result == PC_ACCEPTANCE and transfer is None:
            raise PDUError("accepted presentation context has no transfer syntax", start)
        try:
            return cls(context_id, result, transfer)
        except ValueError as exc:
            raise PDUError(str(exc), start) from None


# --- User Information sub-items (PS3.7 D.3.3, PS3.8 D.1) ----------------------


@dataclass(frozen=True, slots=True)
class MaximumLength:
    ITEM_TYPE: ClassVar[int] = 0x51
    maximum_length: int  # 0 means no limit (PS3.8 D.1)

    def __post_init__(self) -> None:
        if not 0 <= self.maximum_length <= 0xFFFFFFFF:
            raise ValueError(f"maximum length {self.maximum_length} is not a 32-bit value")

    def encode_body(self) -> bytes:
        return self.maximum_length.to_bytes(4, "big")

    @classmethod
    def decode_body(cls, r: Reader) -> MaximumLength:
        if r.remaining != 4:
            raise r.fail(f"maximum length sub-item is {r.remaining} bytes, not 4")
        return cls(r.u32("maximum length"))


@dataclass(frozen=True, slots=True)
class ImplementationClassUID:
    ITEM_TYPE: ClassVar[int] = 0x52
    uid: str

    def __post_init__(self) -> None:
        validate_uid(self.uid)

    def encode_body(self) -> bytes:
        return encode_uid(self.uid)

    @classmethod
    def decode_body(cls, r: Reader) -> ImplementationClassUID:
        return cls(_read_rest_uid(r, "implementation class UID"))


@dataclass(frozen=True, slots=True)
class AsynchronousOperationsWindow:
    ITEM_TYPE: ClassVar[int] = 0x53
    max_operations_invoked: int
    max_operations_performed: int

    def __post_init__(self) -> None:
        for value in (self.max_operations_invoked, self.max_operations_performed):
            if not 0 <= value <= 0xFFFF:
                raise ValueError(f"asynchronous operations window value {value} is not 0-65535")

    def encode_body(self) -> bytes:
        return self.max_operations_invoked.to_bytes(
            2, "big"
        ) + self.max_operations_performed.to_bytes(2, "big")

    @classmethod
    def decode_body(cls, r: Reader) -> AsynchronousOperationsWindow:
        if r.remaining != 4:
            raise r.fail(f"asynchronous operations window sub-item is {r.remaining} bytes, not 4")
        return cls(r.u16("maximum operations invoked"), r.u16("maximum operations performed"))


def _role_flag(r: Reader, what: str) -> bool:
    start = r.pos
    value = r.u8(what)
    if value > 1:
        raise PDUError(f"{what} is {value}, not 0 or 1", start)
    return value == 1


@dataclass(frozen=True, slots=True)
class RoleSelection:
    ITEM_TYPE: ClassVar[int] = 0x54
    sop_class_uid: str
    scu_role: bool
    scp_role: bool

    def __post_init__(self) -> None:
        validate_uid(self.sop_class_uid)

    def encode_body(self) -> bytes:
        return _u16_prefixed(encode_uid(self.sop_class_uid), "SOP class UID") + bytes(
            (int(self.scu_role), int(self.scp_role))
        )

    @classmethod
    def decode_body(cls, r: Reader) -> RoleSelection:
        n = r.u16("SOP class UID length")
        uid = _read_uid(r, n, "SOP class UID")
        scu = _role_flag(r, "SCU role")
        scp = _role_flag(r, "SCP role")
        if r.remaining:
            raise r.fail(f"{r.remaining} bytes after the SCP/SCU role selection fields")
        return cls(uid, scu, scp)


@dataclass(frozen=True, slots=True)
class ImplementationVersionName:
    ITEM_TYPE: ClassVar[int] = 0x55
    name: str

    def __post_init__(self) -> None:
        # The same check as on receipt: 1-16 printable ASCII characters.
        if not 1 <= len(self.name) <= 16 or any(not " " <= c <= "~" for c in self.name):
            raise ValueError(
                f"implementation version name {self.name!r} is not 1-16 printable characters"
            )

    def encode_body(self) -> bytes:
        return self.name.encode("ascii")

    @classmethod
    def decode_body(cls, r: Reader) -> ImplementationVersionName:
        start = r.pos
        raw = r.take(r.remaining, "implementation version name")
        if not 1 <= len(raw) <= 16 or any(not 0x20 <= c <= 0x7E for c in raw):
            raise PDUError("implementation version name is not 1-16 printable characters", start)
        return cls(raw.decode("ascii"))


@dataclass(frozen=True, slots=True)
class SOPClassExtendedNegotiation:
    ITEM_TYPE: ClassVar[int] = 0x56
    sop_class_uid: str
    application_information: bytes

    def __post_init__(self) -> None:
        validate_uid(self.sop_class_uid)

    def encode_body(self) -> bytes:
        return (
            _u16_prefixed(encode_uid(self.sop_class_uid), "SOP class UID")
            + self.application_information
        )

    @classmethod
    def decode_body(cls, r: Reader) -> SOPClassExtendedNegotiation:
        uid = _read_uid(r, r.u16("SOP class UID length"), "SOP class UID")
        return cls(uid, r.take(r.remaining, "service class application information"))


@dataclass(frozen=True, slots=True)
class SOPClassCommonExtendedNegotiation:
    ITEM_TYPE: ClassVar[int] = 0x57
    sop_class_uid: str
    service_class_uid: str
    related_general_sop_classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for uid in (self.sop_class_uid, self.service_class_uid, *self.related_general_sop_classes):
            validate_uid(uid)

    def encode_body(self) -> bytes:
        related = b"".join(
            _u16_prefixed(encode_uid(uid), "related SOP class UID")
            for uid in self.related_general_sop_classes
        )
        return (
            _u16_prefixed(encode_uid(self.sop_class_uid), "SOP class UID")
            + _u16_prefixed(encode_uid(self.service_class_uid), "service class UID")
            + _u16_prefixed(related, "related general SOP class identification")
        )

    @classmethod
    def decode_body(cls, r: Reader) -> SOPClassCommonExtendedNegotiation:
        sop = _read_uid(r, r.u16("SOP class UID length"), "SOP class UID")
        service = _read_uid(r, r.u16("service class UID length"), "service class UID")
        related_reader = r.sub(
            r.u16("related general SOP class length"), "related general SOP classes"
        )
        related: list[str] = []
        while related_reader.remaining:
            n = related_reader.u16("related general SOP class UID length")
            related.append(_read_uid(related_reader, n, "related general SOP class UID"))
        if r.remaining:
            raise r.fail(f"{r.remaining} bytes after the common extended negotiation fields")
        return cls(sop, service, tuple(related))


# PS3.7 Table D.3-14: user identity types.
USER_IDENTITY_USERNAME = 1
USER_IDENTITY_USERNAME_PASSCODE = 2
USER_IDENTITY_KERBEROS = 3
USER_IDENTITY_SAML = 4
USER_IDENTITY_JWT = 5

USER_IDENTITY_TYPE_NAMES = {
    USER_IDENTITY_USERNAME: "Username",
    USER_IDENTITY_USERNAME_PASSCODE: "Username and passcode",
    USER_IDENTITY_KERBEROS: "Kerberos Service ticket",
    USER_IDENTITY_SAML: "SAML Assertion",
    USER_IDENTITY_JWT: "JSON Web Token",
}


@dataclass(frozen=True, slots=True)
class UserIdentityRQ:
    ITEM_TYPE: ClassVar[int] = 0x58
    identity_type: int
    positive_response_requested: bool
    primary_field: bytes
    secondary_field: bytes = field(default=b"", repr=False)  # the passcode: never shown

    def __post_init__(self) -> None:
        if self.identity_type not in USER_IDENTITY_TYPE_NAMES:
            raise ValueError(f"user identity type {self.identity_type} is not 1-5")
        if not self.primary_field:
            raise ValueError("user identity primary field is empty")
        if self.identity_type == USER_IDENTITY_USERNAME_PASSCODE and not self.secondary_field:
            raise ValueError("username and passcode identity needs a passcode")

    def encode_body(self) -> bytes:
        return (
            bytes((self.identity_type, int(self.positive_response_requested)))
            + _u16_prefixed(self.primary_field, "user identity primary field")
            + _u16_prefixed(self.secondary_field, "user identity secondary field")
        )

    @classmethod
    def decode_body(cls, r: Reader) -> UserIdentityRQ:
        start = r.pos
        identity_type = r.u8("user identity type")
        positive = _role_flag(r, "positive response requested")
        primary = _read_u16_prefixed(r, "user identity primary field")
        secondary = _read_u16_prefixed(r, "user identity secondary field")
        if r.remaining:
            raise r.fail(f"{r.remaining} bytes after the user identity fields")
        try:
            return cls(identity_type, positive, primary, secondary)
        except ValueError as exc:
            raise PDUError(str(exc), start) from None


@dataclass(frozen=True, slots=True)
class UserIdentityAC:
    ITEM_TYPE: ClassVar[int] = 0x59
    server_response: bytes

    def encode_body(self) -> bytes:
        return _u16_prefixed(self.server_response, "user identity server response")

    @classmethod
    def decode_body(cls, r: Reader) -> UserIdentityAC:
        response = _read_u16_prefixed(r, "user identity server response")
        if r.remaining:
            raise r.fail(f"{r.remaining} bytes after the user identity server response")
        return cls(response)


@dataclass(frozen=True, slots=True)
class UnknownUserItem:
    """A user information sub-item this codec does not know: kept verbatim."""

    item_type: int
    data: bytes

    def encode_body(self) -> bytes:
        return self.data


UserItem = (
    MaximumLength
    | ImplementationClassUID
    | AsynchronousOperationsWindow
    | RoleSelection
    | ImplementationVersionName
    | SOPClassExtendedNegotiation
    | SOPClassCommonExtendedNegotiation
    | UserIdentityRQ
    | UserIdentityAC
    | UnknownUserItem
)

_USER_ITEM_DECODERS: dict[int, Callable[[Reader], UserItem]] = {
    cls.ITEM_TYPE: cls.decode_body
    for cls in (
        MaximumLength,
        ImplementationClassUID,
        AsynchronousOperationsWindow,
        RoleSelection,
        ImplementationVersionName,
        SOPClassExtendedNegotiation,
        SOPClassCommonExtendedNegotiation,
        UserIdentityRQ,
        UserIdentityAC,
    )
}


def user_item_type(item: UserItem) -> int:
    return item.item_type if isinstance(item, UnknownUserItem) else item.ITEM_TYPE


def encode_user_information(items: Iterable[UserItem]) -> bytes:
    body = b"".join(encode_item(user_item_type(i), i.encode_body()) for i in items)
    return encode_item(0x50, body)


def decode_user_information(r: Reader) -> tuple[UserItem, ...]:
    items: list[UserItem] = []
    for sub_type, sub in iter_items(r, "user information sub-item"):
        decoder = _USER_ITEM_DECODERS.get(sub_type)
        if decoder is None:
            items.append(UnknownUserItem(sub_type, sub.take(sub.remaining, "user sub-item")))
            continue
        item = decoder(sub)
        if sub.remaining:
            raise sub.fail(f"{sub.remaining} unread bytes in sub-item 0x{sub_type:02x}")
        items.append(item)
    return tuple(items)


def iter_items(r: Reader, what: str) -> Iterable[tuple[int, Reader]]:
    """Split `r` into (item type, body reader) pairs; each length is checked
    against the bytes left in its parent before the item is read."""
    while r.remaining:
        item_type = r.u8(f"{what} type")
        r.skip(1, f"{what} reserved field")
        length = r.u16(f"{what} length")
        if length > r.remaining:
            raise r.fail(
                f"{what} 0x{item_type:02x} length {length} overruns its parent ({r.remaining} left)"
            )
        yield item_type, r.sub(length, what)
