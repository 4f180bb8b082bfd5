"""Property-based tests and fuzzing of the PDU codec, the framer and the DIMSE
command set parser (hypothesis).

(a) Generated PDUs of every type, with every item and user sub-item type,
    round-trip: decode(encode(pdu)) == pdu and encode(decode(data)) == data.
(b) Random bytes and mutated valid PDUs (bit flips, truncations, insertions,
    deletions, corrupted length fields) fed to `decode_pdu`, and to
    `PDUFramer.feed` in arbitrary chunkings, raise nothing but `PDUError`.

Every test runs twice:

* a short variant (`max_examples=200`, no deadline) that always runs, so CI
  stays fast;
* a long variant, marked `@pytest.mark.fuzz`, with a much larger
  `max_examples`. It is skipped unless the environment variable
  `ASYNCECHO_FUZZ=1` is set::

      ASYNCECHO_FUZZ=1 python -m pytest -m fuzz tests/test_fuzz.py

  (`ASYNCECHO_FUZZ_EXAMPLES=N` overrides the long variant's example count.)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncecho.protocol.dimse import (
    MessageAssembler,
    decode_command,
    encode_echo_rq,
    encode_echo_rsp,
)
from asyncecho.protocol.errors import PDUError
from asyncecho.protocol.framer import PDUFramer
from asyncecho.protocol.pdu import (
    PDU,
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
from pdu_samples import sample_pdus

LONG_RUN = os.environ.get("ASYNCECHO_FUZZ") == "1"
LONG_EXAMPLES = int(os.environ.get("ASYNCECHO_FUZZ_EXAMPLES", "20000"))

SHORT = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LONG = settings(
    max_examples=LONG_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

F = TypeVar("F", bound=Callable[..., None])


def long_variant(test: F) -> F:
    """Mark `test` as the long fuzz variant: `fuzz` marker, skipped without ASYNCECHO_FUZZ=1."""
    skip = pytest.mark.skipif(not LONG_RUN, reason="long fuzz run: set ASYNCECHO_FUZZ=1")
    marked: F = pytest.mark.fuzz(skip(LONG(test)))
    return marked


# --- strategies -----------------------------------------------------------------------

_component = st.integers(0, 10**12).map(str)
uid_st: st.SearchStrategy[str] = (
    st.tuples(st.sampled_from("012"), st.lists(_component, min_size=1, max_size=12))
    .map(lambda t: ".".join((t[0], *t[1])))
    .filter(lambda u: len(u) <= 64)
)

# AE titles as they decode: 1-16 characters of the AE repertoire (no backslash,
# no control characters), no leading or trailing spaces.
_ae_chars = "".join(chr(c) for c in range(0x20, 0x7F) if c != 0x5C)
ae_st = st.text(_ae_chars, min_size=1, max_size=16).map(lambda s: s.strip(" ")).filter(bool)
u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
small_bytes = st.binary(max_size=40)
context_ids = st.integers(0, 127).map(lambda n: 2 * n + 1)

user_item_st: st.SearchStrategy[UserItem] = st.one_of(
    st.builds(MaximumLength, u32),
    st.builds(ImplementationClassUID, uid_st),
    st.builds(AsynchronousOperationsWindow, u16, u16),
    st.builds(RoleSelection, uid_st, st.booleans(), st.booleans()),
    st.builds(
        ImplementationVersionName,
        st.text("".join(chr(c) for c in range(0x20, 0x7F)), min_size=1, max_size=16),
    ),
    st.builds(SOPClassExtendedNegotiation, uid_st, small_bytes),
    st.builds(
        SOPClassCommonExtendedNegotiation,
        uid_st,
        uid_st,
        st.lists(uid_st, max_size=3).map(tuple),
    ),
    st.builds(
        UserIdentityRQ,
        st.integers(1, 5),
        st.booleans(),
        st.binary(min_size=1, max_size=40),
        st.binary(min_size=1, max_size=40),
    ),
    st.builds(UserIdentityRQ, st.sampled_from([1, 3, 4, 5]), st.booleans(), st.binary(min_size=1)),
    st.builds(UserIdentityAC, small_bytes),
    st.builds(
        UnknownUserItem,
        st.integers(0, 0xFF).filter(lambda t: not 0x51 <= t <= 0x59),
        small_bytes,
    ),
)
user_items_st = st.lists(user_item_st, max_size=8).map(tuple)


@st.composite
def pc_rq_st(draw: st.DrawFn, context_id: int) -> PresentationContextRQ:
    return PresentationContextRQ(
        context_id, draw(uid_st), tuple(draw(st.lists(uid_st, min_size=1, max_size=4)))
    )


@st.composite
def pc_ac_st(draw: st.DrawFn, context_id: int) -> PresentationContextAC:
    result = draw(st.integers(0, 4))
    transfer = draw(uid_st) if result == 0 else draw(st.none() | uid_st)
    return PresentationContextAC(context_id, result, transfer)


@st.composite
def associate_rq_st(draw: st.DrawFn) -> AssociateRQ:
    ids = draw(st.lists(context_ids, max_size=5, unique=True))
    return AssociateRQ(
        called_ae=draw(ae_st),
        calling_ae=draw(ae_st),
        user_items=draw(user_items_st),
        application_context=draw(uid_st),
        protocol_version=draw(u16),
        presentation_contexts=tuple(draw(pc_rq_st(i)) for i in ids),
    )


@st.composite
def associate_ac_st(draw: st.DrawFn) -> AssociateAC:
    ids = draw(st.lists(context_ids, max_size=5, unique=True))
    return AssociateAC(
        called_ae=draw(ae_st),
        calling_ae=draw(ae_st),
        user_items=draw(user_items_st),
        application_context=draw(uid_st),
        protocol_version=draw(u16),
        presentation_contexts=tuple(draw(pc_ac_st(i)) for i in ids),
    )


pdv_st = st.builds(PDV, u8, st.booleans(), st.booleans(), st.binary(max_size=64))

pdata_st = st.builds(PDataTF, st.lists(pdv_st, min_size=1, max_size=6).map(tuple))
pdu_st: st.SearchStrategy[PDU] = st.one_of(
    associate_rq_st(),
    associate_ac_st(),
    st.builds(AssociateRJ, st.integers(1, 2), st.integers(1, 3), u8),
    pdata_st,
    st.just(ReleaseRQ()),
    st.just(ReleaseRP()),
    st.builds(Abort, st.integers(0, 2), u8),
)

# --- mutations ------------------------------------------------------------------------


def length_fields(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of the length fields of a well-formed PDU: the PDU
    length, item and sub-item lengths, and PDV item lengths."""
    fields = [(2, 4)]

    def items(start: int, end: int, nested: dict[int, int]) -> None:
        pos = start
        while pos + 4 <= end:
            item_type = data[pos]
            length = int.from_bytes(data[pos + 2 : pos + 4], "big")
            fields.append((pos + 2, 2))
            if item_type in nested:
                items(pos + 4 + nested[item_type], pos + 4 + length, {})
            pos += 4 + length

    if data[0] in (1, 2):
        items(74, len(data), {0x20: 4, 0x21: 4, 0x50: 0})
    elif data[0] == 4:
        pos = 6
        while pos + 4 <= len(data):
            fields.append((pos, 4))
            pos += 4 + int.from_bytes(data[pos : pos + 4], "big")
    return fields


@st.composite
def mutated_st(draw: st.DrawFn) -> bytes:
    """A valid PDU's bytes with one to three mutations applied (the PDU length
    then usually corrected to match)."""
    data = bytearray(
        draw(st.one_of(associate_rq_st(), associate_ac_st(), pdata_st, pdu_st)).encode()
    )
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(
            st.sampled_from(["flip", "truncate", "insert", "delete", "byte", "length", "length"])
        )
        if not data:
            data += draw(st.binary(min_size=1, max_size=8))
            continue
        pos = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        elif kind == "byte":
            data[pos] = draw(u8)
        elif len(data) >= 6 and data[0] in range(1, 8):
            try:
                fields = length_fields(bytes(data))
            except IndexError:  # already mangled by an earlier mutation
                fields = [(2, 4)]
            offset, size = draw(st.sampled_from(fields))
            old = int.from_bytes(data[offset : offset + size], "big")
            top = (1 << (8 * size)) - 1
            new = draw(
                st.sampled_from([0, 1, 2, 3, 5, max(old - 1, 0), min(old + 1, top), top])
                | st.integers(0, top)
            )
            data[offset : offset + size] = new.to_bytes(size, "big")
    if len(data) >= 6 and draw(st.integers(0, 9)) < 8:
        # Mostly keep the PDU length consistent, so the decoder gets past the
        # header to the item that was damaged.
        data[2:6] = (len(data) - 6).to_bytes(4, "big")
    return bytes(data)


# A valid header (known type, correct length) with a random body: reaches deeper.
random_body_st = st.builds(
    lambda t, body: bytes((t, 0)) + len(body).to_bytes(4, "big") + body,
    st.integers(1, 7),
    st.binary(max_size=300),
)
garbage_st = st.one_of(st.binary(max_size=300), random_body_st, mutated_st())


# --- checks ---------------------------------------------------------------------------


def check_round_trip(pdu: PDU) -> None:
    data = pdu.encode()
    decoded = decode_pdu(data)
    assert decoded == pdu
    assert decoded.encode() == data


def check_decode_only_pdu_error(data: bytes) -> None:
    try:
        pdu = decode_pdu(data)
    except PDUError as exc:
        assert 0 <= exc.offset <= len(data)
        return
    # Whatever decodes re-encodes to something that decodes the same, except an
    # A-ASSOCIATE-AC whose AE fields (not tested on receipt) are not valid titles.
    if isinstance(pdu, AssociateAC) and not (pdu.called_ae and pdu.calling_ae):
        return
    assert decode_pdu(pdu.encode()) == pdu


def frame(data: bytes, chunk_sizes: list[int]) -> tuple[list[PDU], str | None]:
    """Feed `data` in chunks: the PDUs out, and the error that ended the stream."""
    framer = PDUFramer(max_pdata_length=4096)
    out: list[PDU] = []
    pos = 0
    try:
        for size in [*chunk_sizes, len(data)]:
            out += framer.feed(data[pos : pos + size])
            pos += size
    except PDUError as exc:
        return out, str(exc)
    return out, None if framer.error is None else str(framer.error)


def check_framer_only_pdu_error(data: bytes, chunk_sizes: list[int]) -> None:
    # Only PDUError escapes, and the chunking changes neither the PDUs nor the error.
    assert frame(data, chunk_sizes) == frame(data, [])


def check_framer_chunking(pdus: list[PDU], chunk_sizes: list[int]) -> None:
    stream = b"".join(p.encode() for p in pdus)
    framer = PDUFramer()
    out: list[PDU] = []
    pos = 0
    for size in [*chunk_sizes, len(stream)]:
        out += framer.feed(stream[pos : pos + size])
        pos += size
    assert out == pdus
    assert not framer.partial


def check_dimse_only_pdu_error(data: bytes) -> None:
    try:
        decode_command(data)
    except PDUError:
        pass
    assembler = MessageAssembler(max_message=1 << 12)
    try:
        for i in range(0, len(data), 7):
            assembler.add(PDV(1, data[i] % 2 == 0, i + 7 >= len(data), data[i : i + 7]))
    except PDUError:
        pass


@st.composite
def mutated_command_st(draw: st.DrawFn) -> bytes:
    """A C-ECHO command set with a few bytes overwritten, or truncated."""
    data = bytearray(
        draw(st.one_of(st.builds(encode_echo_rq, u16), st.builds(encode_echo_rsp, u16, u16)))
    )
    if draw(st.booleans()):
        return bytes(data[: draw(st.integers(0, len(data)))])
    for _ in range(draw(st.integers(1, 3))):
        pos = draw(st.integers(0, len(data) - 1))
        data[pos : pos + 1] = draw(st.binary(min_size=0, max_size=4))
    return bytes(data)


chunks_st = st.lists(st.integers(0, 80), max_size=30)
command_st = st.one_of(st.binary(max_size=200), mutated_command_st())
stream_garbage_st = st.one_of(garbage_st, st.lists(garbage_st, max_size=3).map(b"".join))


# --- (a) round trips ------------------------------------------------------------------


@SHORT
@given(pdu=pdu_st)
def test_pdu_round_trip(pdu: PDU) -> None:
    check_round_trip(pdu)


@long_variant
@given(pdu=pdu_st)
def test_pdu_round_trip_long(pdu: PDU) -> None:
    check_round_trip(pdu)


@SHORT
@given(pdus=st.lists(pdu_st, min_size=1, max_size=4), chunk_sizes=chunks_st)
def test_framer_chunking(pdus: list[PDU], chunk_sizes: list[int]) -> None:
    check_framer_chunking(pdus, chunk_sizes)


@long_variant
@given(pdus=st.lists(pdu_st, min_size=1, max_size=4), chunk_sizes=chunks_st)
def test_framer_chunking_long(pdus: list[PDU], chunk_sizes: list[int]) -> None:
    check_framer_chunking(pdus, chunk_sizes)


# --- (b) garbage in, only PDUError out --------------------------------------------------


@SHORT
@given(data=garbage_st)
def test_decode_garbage(data: bytes) -> None:
    check_decode_only_pdu_error(data)


@long_variant
@given(data=garbage_st)
def test_decode_garbage_long(data: bytes) -> None:
    check_decode_only_pdu_error(data)


@SHORT
@given(data=stream_garbage_st, chunk_sizes=chunks_st)
def test_framer_garbage(data: bytes, chunk_sizes: list[int]) -> None:
    check_framer_only_pdu_error(data, chunk_sizes)


@long_variant
@given(data=stream_garbage_st, chunk_sizes=chunks_st)
def test_framer_garbage_long(data: bytes, chunk_sizes: list[int]) -> None:
    check_framer_only_pdu_error(data, chunk_sizes)


@SHORT
@given(data=command_st)
def test_dimse_garbage(data: bytes) -> None:
    check_dimse_only_pdu_error(data)


@long_variant
@given(data=command_st)
def test_dimse_garbage_long(data: bytes) -> None:
    check_dimse_only_pdu_error(data)


def test_length_field_walker() -> None:
    """The length-field walker finds every length field of the samples."""
    samples = sample_pdus()
    rq = samples["associate-rq"].encode()
    fields = length_fields(rq)
    # PDU length, application context, 3 presentation contexts with their
    # abstract and transfer syntax sub-items, user information + 10 sub-items.
    assert len(fields) == 1 + 1 + (1 + 1 + 4) + (1 + 1 + 1) + (1 + 1 + 1) + (1 + 10)
    for offset, size in fields:
        assert offset + size <= len(rq)
    pdata = samples["p-data-tf"].encode()
    assert length_fields(pdata) == [(2, 4), (6, 4), (22, 4), (31, 4), (37, 4)]
