"""Decode real third-party PDUs recorded by `tests/fixtures/capture_pdus.py`.

Files are `tests/fixtures/captures/<conversation>/<NN>-<rq|ac>-<pdutype>.bin`
with a `MANIFEST.json` describing each conversation. For every file: the PDU
decodes, its type matches the file name, and re-encoding gives the same bytes
where our encoder is canonical; where it is not (non-zero reserved bytes,
which PS3.8 says are not tested on receipt), only reserved bytes may differ,
and otherwise the decoded values must survive a re-encode.

These tests fail (never skip) when the captures are missing: regenerate them
with `python tests/fixtures/capture_pdus.py`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from asyncecho.protocol import uids
from asyncecho.protocol.dimse import (
    C_ECHO_RQ,
    C_ECHO_RSP,
    STATUS_SUCCESS,
    Command,
    MessageAssembler,
    decode_command,
)
from asyncecho.protocol.framer import PDUFramer
from asyncecho.protocol.pdu import (
    PDU,
    Abort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    PDataTF,
    decode_pdu,
)
from asyncecho.protocol.pdu_items import PC_ABSTRACT_SYNTAX_NOT_SUPPORTED, MaximumLength
from pdu_samples import PDU_FILE_NAMES

CAPTURES = Path(__file__).resolve().parent / "fixtures" / "captures"
MANIFEST_PATH = CAPTURES / "MANIFEST.json"
FILE_NAME = re.compile(r"(?P<index>\d{2})-(?P<direction>rq|ac)-(?P<type>[a-z-]+)\.bin")
REGENERATE = "run `python tests/fixtures/capture_pdus.py` to record them"

DCMTK_ROOT = "1.2.276.0.7230010.3"
PYNETDICOM_ROOT = "1.2.826.0.1.3680043.9.3811"


def _load_manifest() -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads(MANIFEST_PATH.read_text())
    except (OSError, ValueError):
        return {}
    return manifest


MANIFEST = _load_manifest()
CONVERSATIONS: dict[str, Any] = MANIFEST.get("conversations", {})
FILES = sorted(CAPTURES.glob("*/*.bin"))

# Parametrizing over an empty list would skip; a sentinel makes the tests fail.
_MISSING = "no-captures"
FILE_PARAMS = [str(p.relative_to(CAPTURES)) for p in FILES] or [_MISSING]
CONVERSATION_PARAMS = sorted(CONVERSATIONS) or [_MISSING]


def capture(name: str) -> Path:
    if name == _MISSING:
        pytest.fail(f"no captured PDUs in {CAPTURES}: {REGENERATE}")
    return CAPTURES / name


def conversation(name: str) -> dict[str, Any]:
    if name == _MISSING:
        pytest.fail(f"no {MANIFEST_PATH}: {REGENERATE}")
    entry: dict[str, Any] = CONVERSATIONS[name]
    return entry


def conversation_pdus(name: str) -> list[tuple[str, PDU]]:
    """(direction, PDU) for each file of the conversation, in order."""
    entry = conversation(name)
    return [
        (f["direction"], decode_pdu((CAPTURES / f["file"]).read_bytes())) for f in entry["files"]
    ]


def sender_software(name: str, direction: str) -> str:
    party = conversation(name)["requestor" if direction == "rq" else "acceptor"]
    return str(party["software"]) if party else ""


def reserved_offsets(data: bytes) -> set[int]:
    """Offsets of the reserved bytes of a well-formed PDU (PS3.8 9.3), which
    are "not tested to this value when received"."""
    offsets = {1}
    pdu_type = data[0]
    if pdu_type in (1, 2):
        offsets |= {8, 9, *range(42, 74)}
        pos = 74
        while pos + 4 <= len(data):
            item_type, length = data[pos], int.from_bytes(data[pos + 2 : pos + 4], "big")
            offsets.add(pos + 1)
            body = pos + 4
            if item_type in (0x20, 0x21):
                offsets |= (
                    {body + 1, body + 3} if item_type == 0x21 else {body + 1, body + 2, body + 3}
                )
                sub_start = body + 4
            elif item_type == 0x50:
                sub_start = body
            else:
                sub_start = body + length
            sub = sub_start
            while sub + 4 <= body + length:
                offsets.add(sub + 1)
                sub += 4 + int.from_bytes(data[sub + 2 : sub + 4], "big")
            pos = body + length
    elif pdu_type == 3:
        offsets.add(6)
    elif pdu_type in (5, 6):
        offsets |= {6, 7, 8, 9}
    elif pdu_type == 7:
        offsets |= {6, 7}
    return offsets


# --- the captures are there --------------------------------------------------------------


def test_captures_present() -> None:
    assert CAPTURES.is_dir(), f"{CAPTURES} does not exist: {REGENERATE}"
    assert MANIFEST_PATH.is_file(), f"{MANIFEST_PATH} does not exist: {REGENERATE}"
    assert FILES, f"{CAPTURES} has no .bin files: {REGENERATE}"
    assert CONVERSATIONS, f"{MANIFEST_PATH} lists no conversations"
    listed = {f["file"] for c in CONVERSATIONS.values() for f in c["files"]}
    on_disk = {str(p.relative_to(CAPTURES)) for p in FILES}
    assert listed == on_disk


def test_peers_covered() -> None:
    software = " ".join(
        party["software"]
        for c in CONVERSATIONS.values()
        for party in (c["requestor"], c["acceptor"])
        if party
    )
    for peer in ("DCMTK", "pynetdicom", "Orthanc"):
        assert peer in software, f"no conversation with {peer}"


# --- every file ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", FILE_PARAMS)
def test_decode_and_reencode(name: str) -> None:
    path = capture(name)
    match = FILE_NAME.fullmatch(path.name)
    assert match, f"unexpected capture file name {path.name}"
    data = path.read_bytes()
    assert int.from_bytes(data[2:6], "big") == len(data) - 6
    assert PDU_FILE_NAMES.get(data[0]) == match["type"], "PDU type does not match the file name"

    pdu = decode_pdu(data)
    assert PDU_FILE_NAMES[pdu.PDU_TYPE] == match["type"]
    encoded = pdu.encode()
    assert decode_pdu(encoded) == pdu
    if encoded == data:
        return
    if len(encoded) == len(data):
        # Only reserved bytes may differ: we send them as 00H, peers may not.
        differing = {i for i, (a, b) in enumerate(zip(data, encoded, strict=True)) if a != b}
        assert differing <= reserved_offsets(data), sorted(differing - reserved_offsets(data))
        assert all(encoded[i] == 0 for i in differing)
    else:
        # Padding our encoder drops (e.g. a UID's trailing NUL): never longer.
        assert len(encoded) < len(data)


@pytest.mark.parametrize("name", FILE_PARAMS)
def test_framer_splits_each_file_in_any_chunking(name: str) -> None:
    data = capture(name).read_bytes()
    expected = [decode_pdu(data)]
    assert PDUFramer().feed(data) == expected
    framer = PDUFramer()
    out: list[PDU] = []
    for i in range(len(data)):
        out += framer.feed(data[i : i + 1])
    assert out == expected


# --- whole conversations ------------------------------------------------------------------


@pytest.mark.parametrize("name", CONVERSATION_PARAMS)
def test_conversation_matches_manifest(name: str) -> None:
    entry = conversation(name)
    assert entry["status"] == "ok", entry["error"]
    sequence = []
    for number, f in enumerate(entry["files"], start=1):
        match = FILE_NAME.fullmatch(Path(f["file"]).name)
        assert match
        assert int(match["index"]) == number
        assert match["direction"] == f["direction"]
        data = (CAPTURES / f["file"]).read_bytes()
        assert f"0x{data[0]:02x}" == f["pdu_type"]
        assert len(data) - 6 == f["pdu_length"]
        sequence.append(f"{f['direction']}:{match['type']}")
    assert sequence == entry["expected_sequence"]


@pytest.mark.parametrize("name", CONVERSATION_PARAMS)
def test_conversation_through_framer_as_the_proxy_read_it(name: str) -> None:
    entry = conversation(name)
    for direction in ("rq", "ac"):
        files = [f for f in entry["files"] if f["direction"] == direction]
        stream = b"".join((CAPTURES / f["file"]).read_bytes() for f in files)
        sizes = [n for f in files for n in f["proxy_reads"]]
        framer = PDUFramer()
        out: list[PDU] = []
        pos = 0
        for size in [*sizes, len(stream)]:
            out += framer.feed(stream[pos : pos + size])
            pos += size
        assert out == [decode_pdu((CAPTURES / f["file"]).read_bytes()) for f in files]
        assert not framer.partial


@pytest.mark.parametrize("name", CONVERSATION_PARAMS)
def test_implementation_identity(name: str) -> None:
    for direction, pdu in conversation_pdus(name):
        if not isinstance(pdu, (AssociateRQ, AssociateAC)):
            continue
        software = sender_software(name, direction)
        uid = pdu.implementation_class_uid
        assert uid is not None, f"{software} sent no implementation class UID"
        version = pdu.implementation_version_name or ""
        # Orthanc's DICOM network layer is DCMTK's, and so is its identity.
        if "DCMTK" in software or "Orthanc" in software:
            assert uid.startswith(DCMTK_ROOT + "."), uid
            assert version.startswith("OFFIS_DCMTK"), version
        elif "pynetdicom" in software:
            assert uid.startswith(PYNETDICOM_ROOT + "."), uid
            assert version.startswith("PYNETDICOM"), version
        else:
            pytest.fail(f"unknown peer software {software!r}")


@pytest.mark.parametrize("name", CONVERSATION_PARAMS)
def test_association_negotiation(name: str) -> None:
    pdus = conversation_pdus(name)
    rq = pdus[0][1]
    assert isinstance(rq, AssociateRQ)
    assert rq.application_context == uids.APPLICATION_CONTEXT
    assert rq.protocol_version == 1
    assert any(pc.abstract_syntax == uids.VERIFICATION for pc in rq.presentation_contexts)
    assert any(isinstance(i, MaximumLength) for i in rq.user_items)
    reply = pdus[1][1]
    if isinstance(reply, AssociateAC):
        assert reply.application_context == uids.APPLICATION_CONTEXT
        assert reply.called_ae == rq.called_ae
        assert reply.calling_ae == rq.calling_ae
        assert sorted(pc.context_id for pc in reply.presentation_contexts) == sorted(
            pc.context_id for pc in rq.presentation_contexts
        )
        if name.startswith("no_context"):
            assert not any(pc.accepted for pc in reply.presentation_contexts)
            assert {pc.result for pc in reply.presentation_contexts} == {
                PC_ABSTRACT_SYNTAX_NOT_SUPPORTED
            }
        else:
            verification = {
                pc.context_id
                for pc in rq.presentation_contexts
                if pc.abstract_syntax == uids.VERIFICATION
            }
            accepted = [
                pc
                for pc in reply.presentation_contexts
                if pc.context_id in verification and pc.accepted
            ]
            assert accepted, "Verification was not accepted"
    else:
        assert isinstance(reply, AssociateRJ)
        if name.endswith("bad_called_ae"):
            # Rejected permanent, by the service user, called AE title not recognised.
            assert (reply.result, reply.source, reply.reason) == (1, 1, 7)
            assert reply.reason_name == "Called AE title not recognised"


@pytest.mark.parametrize("name", CONVERSATION_PARAMS)
def test_c_echo_messages(name: str) -> None:
    """The P-DATA-TF PDUs carry a C-ECHO-RQ and a successful C-ECHO-RSP to it."""
    commands: dict[str, list[Command]] = {"rq": [], "ac": []}
    assemblers = {"rq": MessageAssembler(), "ac": MessageAssembler()}
    for direction, pdu in conversation_pdus(name):
        if not isinstance(pdu, PDataTF):
            continue
        for pdv in pdu.pdvs:
            message = assemblers[direction].add(pdv)
            if message is not None:
                assert message.data_set is None
                commands[direction].append(decode_command(message.command))
    assert all(a.idle for a in assemblers.values())
    if "ac:p-data-tf" not in conversation(name)["expected_sequence"]:
        assert commands == {"rq": [], "ac": []}
        return
    [request], [response] = commands["rq"], commands["ac"]
    assert request.command_field == C_ECHO_RQ
    assert request.affected_sop_class_uid == uids.VERIFICATION
    assert request.message_id is not None
    assert response.command_field == C_ECHO_RSP
    assert response.message_id_being_responded_to == request.message_id
    assert response.status == STATUS_SUCCESS


@pytest.mark.parametrize("name", CONVERSATION_PARAMS)
def test_release_or_abort(name: str) -> None:
    pdus = conversation_pdus(name)
    kinds = [type(p).__name__ for _, p in pdus]
    if name.startswith("abort"):
        direction, last = pdus[-1]
        assert isinstance(last, Abort)
        assert direction == "rq"
        assert last.source_name == "Service User"
    elif "rq:release-rq" in conversation(name)["expected_sequence"]:
        assert kinds[-2:] == ["ReleaseRQ", "ReleaseRP"]
        assert [d for d, _ in pdus[-2:]] == ["rq", "ac"]


def test_reserved_offsets_walker() -> None:
    """Our own encodings have 00H in every byte the walker calls reserved."""
    from pdu_samples import sample_pdus

    for pdu in sample_pdus().values():
        data = pdu.encode()
        if isinstance(pdu, PDataTF):
            continue
        offsets = reserved_offsets(data)
        assert all(data[i] == 0 for i in offsets), type(pdu).__name__
    rq = sample_pdus()["associate-rq"].encode()
    # header 1, fixed part 2 + 32, application context 1, 3 presentation
    # contexts with 3 reserved bytes and 5 + 2 + 2 sub-items, user info 1 + 10
    assert len(reserved_offsets(rq)) == 1 + 2 + 32 + 1 + 3 * (1 + 3) + (5 + 2 + 2) + 1 + 10
