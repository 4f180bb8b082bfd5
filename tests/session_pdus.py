"""The PDUs a requestor session's tests feed it and expect from it, as
bytes: the peer's answers (A-ASSOCIATE-AC/RJ, a C-ECHO-RSP in a P-DATA,
A-RELEASE-RQ/RP, A-ABORT) and what the session writes (the RQ, a C-ECHO-RQ,
the release PDUs, the two A-ABORTs). Not a test module.

The C-ECHO-RSP command set is built here element by element (PS3.7 6.3.1,
Implicit VR Little Endian), not with the codec's encoder, so that it can be
wrong in one field at a time.
"""

from __future__ import annotations

import dataclasses

from asyncecho.protocol import uids
from asyncecho.protocol.dimse import encode_echo_rq
from asyncecho.protocol.negotiation import AcceptorPolicy, build_ac, build_rq
from asyncecho.protocol.pdu import (
    PDV,
    Abort,
    AssociateRJ,
    PDataTF,
    ReleaseRP,
    ReleaseRQ,
)
from asyncecho.protocol.pdu_items import PC_ABSTRACT_SYNTAX_NOT_SUPPORTED, PresentationContextAC

RQ = build_rq(calling_ae="ECHOSCU", called_ae="ANY-SCP")
RQ_BYTES = RQ.encode()

AC_PDU = build_ac(RQ, AcceptorPolicy())
AC = AC_PDU.encode()
# The one context (ID 1, Verification) refused: nothing to echo on.
NO_CONTEXT_AC_PDU = dataclasses.replace(
    AC_PDU,
    presentation_contexts=(PresentationContextAC(1, PC_ABSTRACT_SYNTAX_NOT_SUPPORTED, None),),
)
NO_CONTEXT_AC = NO_CONTEXT_AC_PDU.encode()
# PS3.8 Table 9-21: rejected-permanent, by the service user, called AE title not recognised.
RJ_PDU = AssociateRJ(1, 1, 7)
RJ = RJ_PDU.encode()

RELEASE_RQ = ReleaseRQ().encode()
RELEASE_RP = ReleaseRP().encode()
# Our A-ABORT when we give up (a limit passed, the user aborted): AA-1,
# service-user source, reason 0 (PS3.8 9.3.8), spelt out byte by byte.
USER_ABORT = b"\x07\x00\x00\x00\x00\x04\x00\x00\x00\x00"
# Our A-ABORT for a response we cannot accept: AA-8, service-provider
# source, invalid PDU parameter value.
VIOLATION_ABORT = b"\x07\x00\x00\x00\x00\x04\x00\x00\x02\x06"
# ... and for a valid PDU at the wrong time: unexpected PDU.
UNEXPECTED_PDU_ABORT = b"\x07\x00\x00\x00\x00\x04\x00\x00\x02\x02"


def echo_rq(message_id: int, context_id: int = 1) -> bytes:
    """The P-DATA-TF carrying our C-ECHO-RQ `message_id`, as the session sends it."""
    return PDataTF((PDV(context_id, True, True, encode_echo_rq(message_id)),)).encode()


def _element(elem: int, value: bytes) -> bytes:
    """One command-group element (0000,elem)."""
    return b"\x00\x00" + elem.to_bytes(2, "little") + len(value).to_bytes(4, "little") + value


def _us(value: int) -> bytes:
    return value.to_bytes(2, "little")


def rsp_command(
    message_id: int,
    *,
    status: int | None = 0x0000,
    command_field: int = 0x8030,
    data_set_type: int = 0x0101,
) -> bytes:
    """A C-ECHO-RSP command set (PS3.7 Table 9.3-13); `status` None leaves it out."""
    elements = [
        _element(0x0002, uids.VERIFICATION.encode() + b"\x00"),
        _element(0x0100, _us(command_field)),
        _element(0x0120, _us(message_id)),
        _element(0x0800, _us(data_set_type)),
    ]
    if status is not None:
        elements.append(_element(0x0900, _us(status)))
    body = b"".join(elements)
    return _element(0x0000, len(body).to_bytes(4, "little")) + body


def echo_rsp(message_id: int, status: int | None = 0x0000, **fields: int) -> bytes:
    """The P-DATA-TF carrying a C-ECHO-RSP (context 1) to `message_id`."""
    command = rsp_command(message_id, status=status, **fields)
    return PDataTF((PDV(1, True, True, command),)).encode()


def echo_rsp_with_data_set(message_id: int) -> bytes:
    """A C-ECHO-RSP that announces a data set, and the data set after it."""
    command = rsp_command(message_id, data_set_type=0x0000)
    return PDataTF((PDV(1, True, True, command), PDV(1, False, True, b"\x08\x00\x05\x00"))).encode()


def abort(source: int, reason: int) -> bytes:
    return Abort(source, reason).encode()
