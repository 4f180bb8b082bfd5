"""The PDUs of one Verification association, built by hand once at import.

Hand-built (not from asyncecho's encoders) so the ceiling does not move when
asyncecho's codec changes; `tests/test_benchmarks.py` checks every one of
them against asyncecho's decoder.
"""

from __future__ import annotations

import struct

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
IMPLEMENTATION_CLASS_UID = "2.25.318502883291574101374913484034372486551"
IMPLEMENTATION_VERSION_NAME = "BENCH_RAW"
MAX_PDU = 16382

# PS3.8 9.3.1: PDU type, reserved byte, 4-byte big-endian length of the rest.
HEADER = 6
A_ASSOCIATE_RQ, A_ASSOCIATE_AC, A_ASSOCIATE_RJ = 0x01, 0x02, 0x03
P_DATA_TF, A_RELEASE_RQ, A_RELEASE_RP, A_ABORT = 0x04, 0x05, 0x06, 0x07

# (0000,0110) Message ID, US, length 2, as Implicit VR LE (PS3.7 6.3.1).
MESSAGE_ID_ELEMENT = b"\x00\x00\x10\x01\x02\x00\x00\x00"


def _pdu(pdu_type: int, body: bytes) -> bytes:
    return struct.pack(">BBI", pdu_type, 0, len(body)) + body


def _item(item_type: int, value: bytes) -> bytes:
    # PS3.8 9.3.2.x: item type, reserved byte, 2-byte big-endian length.
    return struct.pack(">BBH", item_type, 0, len(value)) + value


def _uid(uid: str) -> bytes:
    return uid.encode("ascii")


def _ae(title: str) -> bytes:
    return title.encode("ascii").ljust(16)


def _user_information() -> bytes:
    return _item(
        0x50,
        _item(0x51, struct.pack(">I", MAX_PDU))
        + _item(0x52, _uid(IMPLEMENTATION_CLASS_UID))
        + _item(0x55, IMPLEMENTATION_VERSION_NAME.encode("ascii")),
    )


def _associate(pdu_type: int, called: str, calling: str, context: bytes) -> bytes:
    # Protocol version 1, reserved, AE titles, 32 reserved bytes (PS3.8 9.3.2).
    head = struct.pack(">HH", 1, 0) + _ae(called) + _ae(calling) + bytes(32)
    return _pdu(
        pdu_type, head + _item(0x10, _uid(APPLICATION_CONTEXT)) + context + _user_information()
    )


def _element(group: int, element: int, value: bytes) -> bytes:
    return struct.pack("<HHI", group, element, len(value)) + value


def _command(elements: list[bytes]) -> bytes:
    body = b"".join(elements)
    return _element(0, 0x0000, struct.pack("<I", len(body))) + body


def _padded_uid(uid: str) -> bytes:
    raw = _uid(uid)
    return raw + b"\x00" if len(raw) % 2 else raw


def _pdata(command: bytes, context_id: int = 1) -> bytes:
    # One PDV: item length, context ID, message control header 0x03
    # (command, last fragment) (PS3.8 E.2).
    pdv = struct.pack(">IBB", len(command) + 2, context_id, 0x03) + command
    return _pdu(P_DATA_TF, pdv)


ASSOCIATE_RQ = _associate(
    A_ASSOCIATE_RQ,
    "ANY-SCP",
    "ECHOSCU",
    _item(
        0x20,
        bytes((1, 0, 0, 0)) + _item(0x30, _uid(VERIFICATION)) + _item(0x40, _uid(IMPLICIT_VR_LE)),
    ),
)

# Context 1 accepted (result 0) with Implicit VR Little Endian.
ASSOCIATE_AC = _associate(
    A_ASSOCIATE_AC,
    "ANY-SCP",
    "ECHOSCU",
    _item(0x21, bytes((1, 0, 0, 0)) + _item(0x40, _uid(IMPLICIT_VR_LE))),
)

ECHO_RQ_COMMAND = _command(
    [
        _element(0, 0x0002, _padded_uid(VERIFICATION)),
        _element(0, 0x0100, struct.pack("<H", 0x0030)),  # C-ECHO-RQ
        _element(0, 0x0110, struct.pack("<H", 1)),  # Message ID 1
        _element(0, 0x0800, struct.pack("<H", 0x0101)),  # no data set
    ]
)
ECHO_RQ = _pdata(ECHO_RQ_COMMAND)

ECHO_RSP_COMMAND = _command(
    [
        _element(0, 0x0002, _padded_uid(VERIFICATION)),
        _element(0, 0x0100, struct.pack("<H", 0x8030)),  # C-ECHO-RSP
        _element(0, 0x0120, struct.pack("<H", 1)),  # Message ID Being Responded To
        _element(0, 0x0800, struct.pack("<H", 0x0101)),
        _element(0, 0x0900, struct.pack("<H", 0x0000)),  # Status: Success
    ]
)
ECHO_RSP = _pdata(ECHO_RSP_COMMAND)

# Where the 2 bytes of Message ID Being Responded To sit in ECHO_RSP, so the
# SCP can answer with prefix + message ID + suffix.
_RSP_ID_AT = ECHO_RSP.index(b"\x00\x00\x20\x01\x02\x00\x00\x00") + 8
ECHO_RSP_PREFIX = ECHO_RSP[:_RSP_ID_AT]
ECHO_RSP_SUFFIX = ECHO_RSP[_RSP_ID_AT + 2 :]

RELEASE_RQ = _pdu(A_RELEASE_RQ, bytes(4))
RELEASE_RP = _pdu(A_RELEASE_RP, bytes(4))
# Source 0 (service user), reason 0 (PS3.8 9.3.8).
ABORT = _pdu(A_ABORT, bytes(4))
