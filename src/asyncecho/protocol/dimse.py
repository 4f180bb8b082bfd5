"""DIMSE command sets for C-ECHO (PS3.7 9.3.5), and the reassembly of DIMSE
messages from P-DATA-TF fragments (PS3.8 Annex E).

Command sets are always Implicit VR Little Endian (PS3.7 6.3.1). The C-ECHO
request and response are encoded from precomputed bytes with the message IDs
and status patched in, because building a pydicom Dataset costs ~0.4 ms a
message; the tests check these bytes against pydicom's encoding.

May import the rest of `protocol/` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType

from asyncecho.protocol import uids
from asyncecho.protocol.errors import PDUError
from asyncecho.protocol.pdu import PDV

# PS3.7 Annex E: command field values.
C_ECHO_RQ = 0x0030
C_ECHO_RSP = 0x8030
NO_DATA_SET = 0x0101  # (0000,0800) Command Data Set Type: "null", no data set follows

TAG_GROUP_LENGTH = 0x0000_0000
TAG_AFFECTED_SOP_CLASS = 0x0000_0002
TAG_COMMAND_FIELD = 0x0000_0100
TAG_MESSAGE_ID = 0x0000_0110
TAG_MESSAGE_ID_RESPONDED = 0x0000_0120
TAG_DATA_SET_TYPE = 0x0000_0800
TAG_STATUS = 0x0000_0900

# PS3.7 Annex C and 9.1.5.1.4: statuses a C-ECHO can return, with their meaning.
STATUS_SUCCESS = 0x0000
STATUS_NAMES = {
    0x0000: "Success",
    0x0110: "Failed: Processing Failure",
    0x0122: "Refused: SOP Class Not Supported",
    0x0210: "Refused: Duplicate Invocation",
    0x0211: "Refused: Unrecognized Operation",
    0x0212: "Refused: Mistyped Argument",
    0xA700: "Refused: Out of Resources",
    0xC000: "Failed: Unable to Process",
}


def status_name(status: int) -> str:
    name = STATUS_NAMES.get(status)
    if name:
        return name
    if 0xC000 <= status <= 0xCFFF:
        return "Failed: Unable to Process"
    if 0xA000 <= status <= 0xAFFF:
        return "Failure"
    if 0xB000 <= status <= 0xBFFF or status == 0x0001:
        return "Warning"
    if status in (0xFF00, 0xFF01):
        return "Pending"
    if status == 0xFE00:
        return "Cancel"
    return "Unknown"


def _element(tag: int, value: bytes) -> bytes:
    return (
        (tag >> 16).to_bytes(2, "little")
        + (tag & 0xFFFF).to_bytes(2, "little")
        + len(value).to_bytes(4, "little")
        + value
    )


def _us(value: int) -> bytes:
    return value.to_bytes(2, "little")


def _ui(uid: str) -> bytes:
    raw = uid.encode("ascii")
    return raw + b"\x00" if len(raw) % 2 else raw  # PS3.5 6.2: UI pads with NUL


class _Template:
    """A command set with one 2-byte field to patch: (prefix, suffix)."""

    __slots__ = ("prefix", "suffix")

    def __init__(self, elements: list[bytes], patch_index: int) -> None:
        body_before = b"".join(elements[:patch_index])
        body_after = b"".join(elements[patch_index + 1 :])
        patched_len = len(elements[patch_index])
        group_length = len(body_before) + patched_len + len(body_after)
        head = _element(TAG_GROUP_LENGTH, group_length.to_bytes(4, "little"))
        # the patched element's header: its 8 bytes (tag + length) stay fixed.
        self.prefix = head + body_before + elements[patch_index][:8]
        self.suffix = body_after


def _echo_rq_template(sop_class: str) -> _Template:
    return _Template(
        [
            _element(TAG_AFFECTED_SOP_CLASS, _ui(sop_class)),
            _element(TAG_COMMAND_FIELD, _us(C_ECHO_RQ)),
            _element(TAG_MESSAGE_ID, _us(0)),
            _element(TAG_DATA_SET_TYPE, _us(NO_DATA_SET)),
        ],
        patch_index=2,
    )


_ECHO_RQ = _echo_rq_template(uids.VERIFICATION)


def encode_echo_rq(message_id: int) -> bytes:
    """The C-ECHO-RQ command set (PS3.7 Table 9.3-12)."""
    return _ECHO_RQ.prefix + message_id.to_bytes(2, "little") + _ECHO_RQ.suffix


_ECHO_RSP_SUCCESS = _Template(
    [
        _element(TAG_AFFECTED_SOP_CLASS, _ui(uids.VERIFICATION)),
        _element(TAG_COMMAND_FIELD, _us(C_ECHO_RSP)),
        _element(TAG_MESSAGE_ID_RESPONDED, _us(0)),
        _element(TAG_DATA_SET_TYPE, _us(NO_DATA_SET)),
        _element(TAG_STATUS, _us(STATUS_SUCCESS)),
    ],
    patch_index=2,
)


def encode_echo_rsp(
    message_id_being_responded_to: int,
    status: int = STATUS_SUCCESS,
    sop_class: str | None = uids.VERIFICATION,
    command_field: int = C_ECHO_RSP,
) -> bytes:
    """A response command set (PS3.7 Table 9.3-13), C-ECHO-RSP by default."""
    if status == STATUS_SUCCESS and sop_class == uids.VERIFICATION and command_field == C_ECHO_RSP:
        template = _ECHO_RSP_SUCCESS
        return (
            template.prefix + message_id_being_responded_to.to_bytes(2, "little") + template.suffix
        )
    elements = []
    if sop_class is not None:
        elements.append(_element(TAG_AFFECTED_SOP_CLASS, _ui(sop_class)))
    elements += [
        _element(TAG_COMMAND_FIELD, _us(command_field)),
        _element(TAG_MESSAGE_ID_RESPONDED, _us(message_id_being_responded_to)),
        _element(TAG_DATA_SET_TYPE, _us(NO_DATA_SET)),
        _element(TAG_STATUS, _us(status)),
    ]
    body = b"".join(elements)
    return _element(TAG_GROUP_LENGTH, len(body).to_bytes(4, "little")) + body


# --- decoding -------------------------------------------------------------------

_US_TAGS = frozenset(
    {TAG_COMMAND_FIELD, TAG_MESSAGE_ID, TAG_MESSAGE_ID_RESPONDED, TAG_DATA_SET_TYPE, TAG_STATUS}
)


@dataclass(frozen=True, slots=True)
class Command:
    """The fields of a command set that the Verification service uses."""

    command_field: int
    data_set_type: int
    message_id: int | None = None
    message_id_being_responded_to: int | None = None
    status: int | None = None
    affected_sop_class_uid: str | None = None
    elements: Mapping[int, bytes] = field(default_factory=dict, repr=False, compare=False)

    @property
    def has_data_set(self) -> bool:
        return self.data_set_type != NO_DATA_SET


def parse_command_elements(data: bytes) -> dict[int, bytes]:
    """Split an Implicit VR LE command set into {tag: value bytes}, strictly."""
    elements: dict[int, bytes] = {}
    pos = 0
    end = len(data)
    while pos < end:
        if end - pos < 8:
            raise PDUError(f"command set ends inside an element header ({end - pos} bytes)", pos)
        group = int.from_bytes(data[pos : pos + 2], "little")
        elem = int.from_bytes(data[pos + 2 : pos + 4], "little")
        length = int.from_bytes(data[pos + 4 : pos + 8], "little")
        if group != 0x0000:
            raise PDUError(f"element ({group:04X},{elem:04X}) is not in the command group", pos)
        if length > end - pos - 8:
            raise PDUError(
                f"element (0000,{elem:04X}) length {length} overruns the command set", pos + 4
            )
        tag = elem
        if tag in elements:
            raise PDUError(f"element (0000,{elem:04X}) appears twice", pos)
        elements[tag] = data[pos + 8 : pos + 8 + length]
        pos += 8 + length
    group_length = elements.get(TAG_GROUP_LENGTH)
    if group_length is not None:
        if len(group_length) != 4:
            raise PDUError("command group length is not 4 bytes", 0)
        expected = int.from_bytes(group_length, "little")
        if expected != end - 12:
            raise PDUError(f"command group length {expected} does not match {end - 12} bytes", 8)
    return elements


@lru_cache(maxsize=1024)
def decode_command(data: bytes) -> Command:
    """Decode a command set (cached by its bytes: an echo's command sets
    repeat from one association to the next; `Command` is immutable)."""
    return _decode_command(data)


def _decode_command(data: bytes) -> Command:
    elements = parse_command_elements(data)
    values: dict[int, int] = {}
    for tag in _US_TAGS:
        raw = elements.get(tag)
        if raw is None:
            continue
        if len(raw) != 2:
            raise PDUError(f"element (0000,{tag:04X}) is {len(raw)} bytes, not a US value", 0)
        values[tag] = int.from_bytes(raw, "little")
    if TAG_COMMAND_FIELD not in values:
        raise PDUError("command set has no Command Field (0000,0100)", 0)
    if TAG_DATA_SET_TYPE not in values:
        raise PDUError("command set has no Command Data Set Type (0000,0800)", 0)
    sop: str | None = None
    raw_sop = elements.get(TAG_AFFECTED_SOP_CLASS)
    if raw_sop is not None:
        try:
            sop = raw_sop.rstrip(b"\x00 ").decode("ascii")
        except UnicodeDecodeError:
            raise PDUError("Affected SOP Class UID is not ASCII", 0) from None
    return Command(
        command_field=values[TAG_COMMAND_FIELD],
        data_set_type=values[TAG_DATA_SET_TYPE],
        message_id=values.get(TAG_MESSAGE_ID),
        message_id_being_responded_to=values.get(TAG_MESSAGE_ID_RESPONDED),
        status=values.get(TAG_STATUS),
        affected_sop_class_uid=sop,
        elements=MappingProxyType(elements),  # shared through the cache: read-only
    )


def data_set_type_of(command: bytes) -> int:
    """Just (0000,0800) of a complete command set, for reassembly."""
    return decode_command(command).data_set_type


@dataclass(frozen=True, slots=True)
class Message:
    """A whole DIMSE message: its command set and, if any, its data set."""

    context_id: int
    command: bytes = field(repr=False)
    data_set: bytes | None = field(default=None, repr=False)


MAX_MESSAGE = 1 << 24  # bytes of a command or data set, by default


def whole_command(pdv: PDV, max_message: int = MAX_MESSAGE) -> Message | None:
    """The message, if `pdv` is a whole command set without a data set (the
    usual case, every C-ECHO): what `MessageAssembler.add` returns for it
    when idle, without an assembler. Else None: give it to an assembler."""
    if (
        pdv.is_command
        and pdv.is_last
        and len(pdv.data) <= max_message
        and data_set_type_of(pdv.data) == NO_DATA_SET
    ):
        return Message(pdv.context_id, pdv.data)
    return None


class MessageAssembler:
    """Joins PDV fragments into DIMSE messages (PS3.8 E.2, PS3.7 8.2)."""

    __slots__ = ("_command", "_context_id", "_data", "_expect_data", "max_message")

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self.max_message = max_message
        self._context_id: int | None = None
        self._command = bytearray()
        self._data: bytearray | None = None
        self._expect_data = False

    @property
    def idle(self) -> bool:
        return self._context_id is None

    def add(self, pdv: PDV) -> Message | None:
        if self._context_id is None:
            whole = whole_command(pdv, self.max_message)
            if whole is not None:
                return whole  # a whole command in one PDV: the usual case
            if not pdv.is_command:
                raise PDUError("data set fragment without a command set before it", 0)
            self._context_id = pdv.context_id
        elif pdv.context_id != self._context_id:
            raise PDUError(
                f"fragment for context {pdv.context_id} inside a message "
                f"on context {self._context_id}",
                0,
            )
        if pdv.is_command:
            if self._expect_data:
                raise PDUError("command fragment where a data set fragment was due", 0)
            self._command += pdv.data
            if len(self._command) > self.max_message:
                raise PDUError("command set is larger than the limit", 0)
            if not pdv.is_last:
                return None
            command = bytes(self._command)
            if data_set_type_of(command) == NO_DATA_SET:
                return self._finish(Message(self._context_id, command))
            self._expect_data = True
            self._data = bytearray()
            return None
        if not self._expect_data or self._data is None:
            raise PDUError("data set fragment for a command that has no data set", 0)
        self._data += pdv.data
        if len(self._data) > self.max_message:
            raise PDUError("data set is larger than the limit", 0)
        if not pdv.is_last:
            return None
        return self._finish(Message(self._context_id, bytes(self._command), bytes(self._data)))

    def _finish(self, message: Message) -> Message:
        self._context_id = None
        self._command = bytearray()
        self._data = None
        self._expect_data = False
        return message


def fragment(context_id: int, payload: bytes, is_command: bool, max_pdu: int) -> list[PDV]:
    """Split `payload` into PDVs so each P-DATA-TF PDU (one PDV each) fits the
    peer's Maximum Length `max_pdu` (0 = no limit)."""
    size = max(1, max_pdu - 6) if max_pdu else max(1, len(payload))
    if not payload:
        return [PDV(context_id, is_command, True, b"")]
    chunks = [payload[i : i + size] for i in range(0, len(payload), size)]
    return [
        PDV(context_id, is_command, i == len(chunks) - 1, chunk) for i, chunk in enumerate(chunks)
    ]
