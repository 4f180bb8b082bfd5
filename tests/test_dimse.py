"""DIMSE C-ECHO command sets checked against pydicom's (and pynetdicom's)
encoding, strict command set parsing, message reassembly and fragmentation,
and the UID constants against pydicom's UID dictionary."""

from __future__ import annotations

import re

import pytest
from pydicom import Dataset
from pydicom._uid_dict import UID_dictionary
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import UID

from asyncecho.protocol import dimse, uids
from asyncecho.protocol.dimse import (
    C_ECHO_RQ,
    C_ECHO_RSP,
    NO_DATA_SET,
    Command,
    Message,
    MessageAssembler,
    decode_command,
    encode_echo_rq,
    encode_echo_rsp,
    fragment,
    parse_command_elements,
    status_name,
)
from asyncecho.protocol.errors import PDUError
from asyncecho.protocol.pdu import PDV, PDataTF
from asyncecho.protocol.pdu_items import ImplementationVersionName


def pydicom_command(ds: Dataset) -> bytes:
    """`ds` written Implicit VR Little Endian, with its Command Group Length set."""

    def write(dataset: Dataset) -> bytes:
        fp = DicomBytesIO()
        fp.is_little_endian = True
        fp.is_implicit_VR = True
        write_dataset(fp, dataset)
        return fp.getvalue()

    if "CommandGroupLength" in ds:
        del ds.CommandGroupLength
    ds.CommandGroupLength = len(write(ds))
    return write(ds)


def echo_rq_dataset(message_id: int) -> Dataset:
    ds = Dataset()
    ds.AffectedSOPClassUID = uids.VERIFICATION
    ds.CommandField = C_ECHO_RQ
    ds.MessageID = message_id
    ds.CommandDataSetType = NO_DATA_SET
    return ds


def echo_rsp_dataset(
    message_id: int, status: int, sop_class: str | None = uids.VERIFICATION
) -> Dataset:
    ds = Dataset()
    if sop_class is not None:
        ds.AffectedSOPClassUID = sop_class
    ds.CommandField = C_ECHO_RSP
    ds.MessageIDBeingRespondedTo = message_id
    ds.CommandDataSetType = NO_DATA_SET
    ds.Status = status
    return ds


MESSAGE_IDS = [0, 1, 2, 7, 0x00FF, 0x0100, 0x1234, 0x8000, 0xFFFF]
STATUSES = [0x0000, 0x0001, 0x0122, 0x0210, 0x0211, 0x0212, 0xA700, 0xC000, 0xC123, 0xFFFF]


# --- encoding matches pydicom ---------------------------------------------------------


@pytest.mark.parametrize("message_id", MESSAGE_IDS)
def test_echo_rq_matches_pydicom(message_id: int) -> None:
    assert encode_echo_rq(message_id) == pydicom_command(echo_rq_dataset(message_id))


@pytest.mark.parametrize("message_id", MESSAGE_IDS)
@pytest.mark.parametrize("status", STATUSES)
def test_echo_rsp_matches_pydicom(message_id: int, status: int) -> None:
    assert encode_echo_rsp(message_id, status) == pydicom_command(
        echo_rsp_dataset(message_id, status)
    )


def test_echo_rsp_without_sop_class_matches_pydicom() -> None:
    expected = pydicom_command(echo_rsp_dataset(9, 0x0211, sop_class=None))
    assert encode_echo_rsp(9, 0x0211, sop_class=None) == expected


def test_response_with_other_command_field_and_odd_uid() -> None:
    # An odd-length UID is NUL padded (PS3.5 6.2 UI); C-STORE-RSP is 0x8001.
    ds = echo_rsp_dataset(3, 0x0000, sop_class="1.2.3")
    ds.CommandField = 0x8001
    assert encode_echo_rsp(3, 0, sop_class="1.2.3", command_field=0x8001) == pydicom_command(ds)
    assert b"1.2.3\x00" in encode_echo_rsp(3, 0, sop_class="1.2.3")


def test_echo_rq_matches_pynetdicom_p_data() -> None:
    from pynetdicom.dimse_messages import C_ECHO_RQ as PynetdicomEchoRQ
    from pynetdicom.dimse_primitives import C_ECHO
    from pynetdicom.pdu import P_DATA_TF

    for max_pdu in (0, 16384, 20, 7):
        primitive = C_ECHO()
        primitive.MessageID = 7
        primitive.AffectedSOPClassUID = uids.VERIFICATION
        message = PynetdicomEchoRQ()
        message.primitive_to_message(primitive)
        theirs = []
        for p_data in message.encode_msg(1, max_pdu):
            pdu = P_DATA_TF()
            pdu.from_primitive(p_data)
            theirs.append(pdu.encode())
        ours = [PDataTF((pdv,)).encode() for pdv in fragment(1, encode_echo_rq(7), True, max_pdu)]
        assert ours == theirs, max_pdu


def test_echo_rq_layout() -> None:
    data = encode_echo_rq(0x0102)
    # (0000,0000) UL 4 bytes: the group length counts the bytes after it.
    assert data[:8] == bytes.fromhex("0000 0000 04000000")
    assert int.from_bytes(data[8:12], "little") == len(data) - 12
    # (0000,0110) Message ID, little endian.
    assert bytes.fromhex("0000 1001 02000000 0201") in data


# --- decoding ---------------------------------------------------------------------------


@pytest.mark.parametrize("message_id", [0, 1, 0xFFFF])
def test_decode_pydicom_echo_rq(message_id: int) -> None:
    command = decode_command(pydicom_command(echo_rq_dataset(message_id)))
    assert command == Command(
        command_field=C_ECHO_RQ,
        data_set_type=NO_DATA_SET,
        message_id=message_id,
        affected_sop_class_uid=uids.VERIFICATION,
    )
    assert not command.has_data_set


@pytest.mark.parametrize("status", STATUSES)
def test_decode_pydicom_echo_rsp(status: int) -> None:
    command = decode_command(pydicom_command(echo_rsp_dataset(42, status)))
    assert command.command_field == C_ECHO_RSP
    assert command.message_id_being_responded_to == 42
    assert command.message_id is None
    assert command.status == status
    assert command.affected_sop_class_uid == uids.VERIFICATION


def test_decode_pydicom_command_with_extra_elements() -> None:
    ds = echo_rsp_dataset(5, 0xC000)
    ds.ErrorComment = "not today"  # (0000,0902) LO
    ds.ErrorID = 17  # (0000,0903) US
    data = pydicom_command(ds)
    command = decode_command(data)
    assert command.status == 0xC000
    assert command.elements[0x0902] == b"not today "  # padded to even length
    assert command.elements[0x0903] == b"\x11\x00"


def test_decode_command_with_data_set() -> None:
    ds = echo_rq_dataset(1)
    ds.CommandDataSetType = 0x0000
    command = decode_command(pydicom_command(ds))
    assert command.has_data_set


def test_decode_command_without_group_length() -> None:
    data = pydicom_command(echo_rq_dataset(3))[12:]
    assert decode_command(data).message_id == 3


@pytest.mark.parametrize("message_id", MESSAGE_IDS)
def test_own_encoding_round_trips(message_id: int) -> None:
    assert decode_command(encode_echo_rq(message_id)).message_id == message_id
    rsp = decode_command(encode_echo_rsp(message_id, 0x0122))
    assert (rsp.message_id_being_responded_to, rsp.status) == (message_id, 0x0122)


def element(group: int, elem: int, value: bytes, length: int | None = None) -> bytes:
    n = len(value) if length is None else length
    return (
        group.to_bytes(2, "little") + elem.to_bytes(2, "little") + n.to_bytes(4, "little") + value
    )


def with_group_length(body: bytes) -> bytes:
    return element(0, 0, len(body).to_bytes(4, "little")) + body


GOOD_BODY = element(0, 0x0100, b"\x30\x00") + element(0, 0x0800, b"\x01\x01")


@pytest.mark.parametrize(
    ("data", "match", "offset"),
    [
        (
            with_group_length(GOOD_BODY + element(0, 0x0900, b"\x00\x00", length=10)),
            "length 10 overruns the command set",
            12 + 20 + 4,
        ),
        (
            with_group_length(GOOD_BODY + element(0, 0x0900, b"", length=0xFFFFFFFF)),
            "overruns the command set",
            12 + 20 + 4,
        ),
        (
            with_group_length(GOOD_BODY + b"\x00\x00\x00\x09\x02"),
            "ends inside an element header",
            32,
        ),
        (
            with_group_length(GOOD_BODY + element(8, 0x0016, b"1.2\x00")),
            r"\(0008,0016\) is not in the command group",
            32,
        ),
        (with_group_length(GOOD_BODY + element(0, 0x0100, b"\x30\x00")), "appears twice", 32),
        (
            element(0, 0, (len(GOOD_BODY) + 2).to_bytes(4, "little")) + GOOD_BODY,
            "group length 22 does not match 20",
            8,
        ),
        (
            element(0, 0, (len(GOOD_BODY) - 1).to_bytes(4, "little")) + GOOD_BODY,
            "does not match",
            8,
        ),
        (element(0, 0, b"\x14\x00") + GOOD_BODY, "group length is not 4 bytes", 0),
        (with_group_length(element(0, 0x0800, b"\x01\x01")), r"no Command Field \(0000,0100\)", 0),
        (
            with_group_length(element(0, 0x0100, b"\x30\x00")),
            r"no Command Data Set Type \(0000,0800\)",
            0,
        ),
        (
            with_group_length(element(0, 0x0100, b"\x30") + element(0, 0x0800, b"\x01\x01")),
            "1 bytes, not a US",
            0,
        ),
        (with_group_length(GOOD_BODY + element(0, 0x0002, b"1.\xff\x00")), "not ASCII", 0),
        (b"", "no Command Field", 0),
    ],
)
def test_malformed_command_sets(data: bytes, match: str, offset: int) -> None:
    with pytest.raises(PDUError, match=match) as info:
        decode_command(data)
    assert info.value.offset == offset


def test_parse_command_elements_strips_nothing() -> None:
    elements = parse_command_elements(with_group_length(GOOD_BODY))
    assert elements == {0: (20).to_bytes(4, "little"), 0x0100: b"\x30\x00", 0x0800: b"\x01\x01"}


# --- reassembly ---------------------------------------------------------------------


def test_reassemble_command_from_one_byte_pdvs() -> None:
    command = encode_echo_rq(77)
    assembler = MessageAssembler()
    results = [assembler.add(pdv) for pdv in fragment(3, command, True, 7)]
    assert len(results) == len(command)
    assert results[:-1] == [None] * (len(command) - 1)
    assert results[-1] == Message(3, command)
    assert results[-1].command == command
    assert results[-1].data_set is None
    assert assembler.idle
    assert decode_command(results[-1].command).message_id == 77


def test_reassemble_command_and_data_set() -> None:
    ds = echo_rq_dataset(1)
    ds.CommandDataSetType = 0x0000
    command = pydicom_command(ds)
    data_set = b"\x08\x00\x16\x00" + bytes(40)
    assembler = MessageAssembler()
    for pdv in fragment(5, command, True, 16):
        assert assembler.add(pdv) is None
    assert not assembler.idle
    pdvs = fragment(5, data_set, False, 16)
    for pdv in pdvs[:-1]:
        assert assembler.add(pdv) is None
    message = assembler.add(pdvs[-1])
    assert message == Message(5, command, data_set)
    assert message is not None
    assert message.data_set == data_set
    assert assembler.idle


def test_two_messages_in_a_row() -> None:
    assembler = MessageAssembler()
    for message_id in (1, 2, 3):
        message = assembler.add(PDV(1, True, True, encode_echo_rq(message_id)))
        assert message is not None
        assert decode_command(message.command).message_id == message_id


def test_data_set_when_none_is_expected() -> None:
    assembler = MessageAssembler()
    assert assembler.add(PDV(1, True, True, encode_echo_rq(1))) is not None
    with pytest.raises(PDUError, match="data set fragment without a command set"):
        assembler.add(PDV(1, False, True, b"\x00\x00"))


def test_data_set_interleaved_in_a_command() -> None:
    assembler = MessageAssembler()
    command = encode_echo_rq(1)
    assert assembler.add(PDV(1, True, False, command[:10])) is None
    with pytest.raises(PDUError, match="data set fragment for a command that has no data set"):
        assembler.add(PDV(1, False, True, b"\x00\x00"))


def test_command_fragment_where_data_set_due() -> None:
    ds = echo_rq_dataset(1)
    ds.CommandDataSetType = 0x0000
    assembler = MessageAssembler()
    assert assembler.add(PDV(1, True, True, pydicom_command(ds))) is None
    with pytest.raises(PDUError, match="command fragment where a data set fragment was due"):
        assembler.add(PDV(1, True, True, encode_echo_rq(2)))


def test_context_change_inside_a_message() -> None:
    assembler = MessageAssembler()
    assert assembler.add(PDV(1, True, False, b"\x00")) is None
    with pytest.raises(PDUError, match="fragment for context 3 inside a message on context 1"):
        assembler.add(PDV(3, True, True, b"\x00"))


def test_message_size_limit() -> None:
    assembler = MessageAssembler(max_message=16)
    assert assembler.add(PDV(1, True, False, bytes(16))) is None
    with pytest.raises(PDUError, match="command set is larger than the limit"):
        assembler.add(PDV(1, True, False, b"\x00"))


def test_malformed_command_in_last_fragment() -> None:
    assembler = MessageAssembler()
    with pytest.raises(PDUError):
        assembler.add(PDV(1, True, True, b"\x00\x00\x00"))


# --- fragmentation --------------------------------------------------------------------


@pytest.mark.parametrize("max_pdu", [7, 8, 16, 50, 74, 75, 76, 1000, 16384])
@pytest.mark.parametrize("size", [1, 2, 69, 70, 71, 500])
def test_fragment_respects_max_pdu(max_pdu: int, size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    pdvs = fragment(9, payload, False, max_pdu)
    for pdv in pdvs:
        pdu_length = len(PDataTF((pdv,)).encode()) - 6
        assert pdu_length <= max_pdu
        assert pdv.context_id == 9
        assert not pdv.is_command
    assert b"".join(p.data for p in pdvs) == payload
    assert [p.is_last for p in pdvs] == [False] * (len(pdvs) - 1) + [True]
    # as few fragments as the limit allows
    assert len(pdvs) == -(-size // (max_pdu - 6))


def test_fragment_unlimited_and_empty() -> None:
    payload = bytes(100_000)
    assert fragment(1, payload, True, 0) == [PDV(1, True, True, payload)]
    assert fragment(1, b"", True, 16384) == [PDV(1, True, True, b"")]
    assert fragment(1, b"", False, 0) == [PDV(1, False, True, b"")]


# --- statuses and UIDs ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "name"),
    [
        (0x0000, "Success"),
        (0x0122, "Refused: SOP Class Not Supported"),
        (0x0210, "Refused: Duplicate Invocation"),
        (0x0211, "Refused: Unrecognized Operation"),
        (0x0212, "Refused: Mistyped Argument"),
        (0xA700, "Refused: Out of Resources"),
        (0xC000, "Failed: Unable to Process"),
        (0xC123, "Failed: Unable to Process"),
        (0xA801, "Failure"),
        (0xB000, "Warning"),
        (0x0001, "Warning"),
        (0xFF00, "Pending"),
        (0xFF01, "Pending"),
        (0xFE00, "Cancel"),
        (0x1234, "Unknown"),
    ],
)
def test_status_name(status: int, name: str) -> None:
    assert status_name(status) == name


def test_status_names_table_complete() -> None:
    for status, name in dimse.STATUS_NAMES.items():
        assert status_name(status) == name


UID_CONSTANTS = {
    name: value
    for name, value in vars(uids).items()
    if name.isupper() and isinstance(value, str) and re.fullmatch(r"[0-9.]+", value)
}


def test_uid_constants_found() -> None:
    assert {
        "APPLICATION_CONTEXT",
        "VERIFICATION",
        "IMPLICIT_VR_LE",
        "IMPLEMENTATION_CLASS_UID",
    } <= set(UID_CONSTANTS)


@pytest.mark.parametrize("name", sorted(set(UID_CONSTANTS) - {"IMPLEMENTATION_CLASS_UID"}))
def test_uid_constant_against_pydicom(name: str) -> None:
    uid = UID_CONSTANTS[name]
    assert uid in UID_dictionary, f"{name} = {uid} is not a standard UID"
    pydicom_name = UID_dictionary[uid][0]
    assert uids.uid_name(uid) == pydicom_name
    assert uids.known_uid_name(uid) == pydicom_name  # the fallback table agrees
    assert UID(uid).is_valid


def test_constant_kinds() -> None:
    assert UID(uids.APPLICATION_CONTEXT).type == "Application Context Name"
    assert UID(uids.VERIFICATION).type == "SOP Class"
    assert uids.DEFAULT_TRANSFER_SYNTAXES[:2] == (uids.EXPLICIT_VR_LE, uids.IMPLICIT_VR_LE)
    for ts in uids.DEFAULT_TRANSFER_SYNTAXES:
        assert UID(ts).is_transfer_syntax, ts


def test_implementation_class_uid() -> None:
    uid = uids.IMPLEMENTATION_CLASS_UID
    assert UID(uid).is_valid
    assert len(uid) <= 64
    # PS3.5 B.2: "2.25." followed by a UUID as a decimal integer, no leading zero.
    root, _, number = uid.partition("2.25.")
    assert root == ""
    assert number.isdigit()
    assert not number.startswith("0")
    assert int(number) < 2**128
    assert uids.uid_name(uid) == uid  # not in the dictionary: the UID itself


def test_implementation_version_name() -> None:
    ImplementationVersionName(uids.IMPLEMENTATION_VERSION_NAME)  # 1-16 ASCII characters
    assert uids.IMPLEMENTATION_VERSION_NAME.startswith("ASYNCECHO_")
