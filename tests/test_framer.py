"""`PDUFramer`: header checks before any body byte is buffered, and framing
that is independent of how the byte stream is chunked."""

from __future__ import annotations

import itertools
import random

import pytest

from asyncecho.protocol.errors import ABORT_UNRECOGNIZED_PDU, PDUError
from asyncecho.protocol.framer import DEFAULT_MAX_ASSOCIATE_LENGTH, UNLIMITED_PDATA_CAP, PDUFramer
from asyncecho.protocol.pdu import (
    A_ABORT,
    A_ASSOCIATE_AC,
    A_ASSOCIATE_RJ,
    A_ASSOCIATE_RQ,
    A_RELEASE_RP,
    A_RELEASE_RQ,
    P_DATA_TF,
    PDU,
    PDV,
    PDataTF,
    ReleaseRQ,
)
from pdu_samples import OFFSET_CALLED_AE, raw_associate, raw_pdu, sample_pdus

SAMPLES = list(sample_pdus().values())
STREAM = b"".join(p.encode() for p in SAMPLES)
# Stream offsets at which a whole number of PDUs has been received.
BOUNDARIES = set(itertools.accumulate(len(p.encode()) for p in SAMPLES))


def header(pdu_type: int, length: int) -> bytes:
    return bytes((pdu_type, 0)) + length.to_bytes(4, "big")


def feed_chunks(framer: PDUFramer, data: bytes, sizes: list[int]) -> list[PDU]:
    out: list[PDU] = []
    pos = 0
    for size in sizes:
        out += framer.feed(data[pos : pos + size])
        pos += size
    out += framer.feed(data[pos:])
    return out


# --- header checks happen on the 6 header bytes alone ----------------------------------


@pytest.mark.parametrize("limit", [6, 100, 16384])
def test_pdata_over_max_refused_on_header_alone(limit: int) -> None:
    framer = PDUFramer(max_pdata_length=limit)
    with pytest.raises(
        PDUError, match=f"P-DATA-TF length {limit + 1} is over the maximum {limit}"
    ) as info:
        framer.feed(header(P_DATA_TF, limit + 1))  # no body byte at all
    assert info.value.offset == 2


@pytest.mark.parametrize("max_pdata", [0, 16384])
def test_pdata_length_ffffffff_refused_on_header_alone(max_pdata: int) -> None:
    framer = PDUFramer(max_pdata_length=max_pdata)
    with pytest.raises(PDUError, match="4294967295 is over the maximum"):
        framer.feed(header(P_DATA_TF, 0xFFFFFFFF))


def test_zero_max_pdata_means_cap() -> None:
    framer = PDUFramer(max_pdata_length=0)
    assert framer.max_pdata_length == UNLIMITED_PDATA_CAP
    assert framer.feed(header(P_DATA_TF, UNLIMITED_PDATA_CAP)) == []
    assert framer.partial
    with pytest.raises(PDUError, match="over the maximum"):
        PDUFramer().feed(header(P_DATA_TF, UNLIMITED_PDATA_CAP + 1))


def test_header_checked_when_its_sixth_byte_arrives() -> None:
    framer = PDUFramer(max_pdata_length=100)
    data = header(P_DATA_TF, 101)
    for byte in data[:5]:
        assert framer.feed(bytes((byte,))) == []
    with pytest.raises(PDUError, match="over the maximum"):
        framer.feed(data[5:])


def test_pdata_at_max_accepted() -> None:
    framer = PDUFramer(max_pdata_length=100)
    pdu = PDataTF((PDV(1, True, True, bytes(94)),))
    data = pdu.encode()
    assert len(data) == 106
    assert framer.feed(data[:6]) == []
    assert framer.partial
    assert framer.feed(data[6:]) == [pdu]
    assert not framer.partial


def test_associate_over_max_refused_on_header_alone() -> None:
    framer = PDUFramer(max_associate_length=1000)
    for pdu_type in (A_ASSOCIATE_RQ, A_ASSOCIATE_AC):
        with pytest.raises(PDUError, match="length 1001 is over the maximum 1000"):
            framer.feed(header(pdu_type, 1001))
        framer = PDUFramer(max_associate_length=1000)
    assert framer.feed(header(A_ASSOCIATE_RQ, 1000)) == []


def test_default_associate_maximum() -> None:
    with pytest.raises(PDUError, match="over the maximum"):
        PDUFramer().feed(header(A_ASSOCIATE_RQ, DEFAULT_MAX_ASSOCIATE_LENGTH + 1))
    with pytest.raises(PDUError, match="over the maximum"):
        PDUFramer().feed(header(A_ASSOCIATE_AC, 0xFFFFFFFF))


def test_max_pdata_does_not_limit_associate() -> None:
    framer = PDUFramer(max_pdata_length=50)
    data = raw_associate()
    assert len(data) > 56
    assert len(framer.feed(data)) == 1


@pytest.mark.parametrize("pdu_type", [0x00, 0x08, 0xFF])
def test_unknown_type_refused_on_header_alone(pdu_type: int) -> None:
    with pytest.raises(PDUError, match="unknown PDU type") as info:
        PDUFramer().feed(header(pdu_type, 4))
    assert info.value.abort_reason == ABORT_UNRECOGNIZED_PDU


@pytest.mark.parametrize("pdu_type", [A_ASSOCIATE_RJ, A_RELEASE_RQ, A_RELEASE_RP, A_ABORT])
@pytest.mark.parametrize("length", [0, 5, 0xFFFFFFFF])
def test_fixed_length_refused_on_header_alone(pdu_type: int, length: int) -> None:
    with pytest.raises(PDUError, match="not 4"):
        PDUFramer().feed(header(pdu_type, length))


@pytest.mark.parametrize(
    ("pdu_type", "length"), [(P_DATA_TF, 0), (P_DATA_TF, 5), (A_ASSOCIATE_RQ, 67)]
)
def test_too_short_refused_on_header_alone(pdu_type: int, length: int) -> None:
    with pytest.raises(PDUError, match="too short"):
        PDUFramer().feed(header(pdu_type, length))


def test_body_errors_are_raised_once_the_pdu_is_complete() -> None:
    data = raw_associate(called=b" " * 16)
    framer = PDUFramer()
    assert framer.feed(data[:-1]) == []
    with pytest.raises(PDUError, match="called AE title is all spaces") as info:
        framer.feed(data[-1:])
    assert info.value.offset == OFFSET_CALLED_AE  # offsets are relative to the PDU


def test_error_in_a_later_pdu_of_the_same_chunk() -> None:
    # PDUs decoded before the violation are returned; the error is kept and
    # raised by the next feed, so chunking never changes what the peer sent.
    framer = PDUFramer()
    assert framer.feed(ReleaseRQ().encode() + raw_pdu(0x42, bytes(4))) == [ReleaseRQ()]
    assert framer.error is not None
    assert framer.error.abort_reason == ABORT_UNRECOGNIZED_PDU
    with pytest.raises(PDUError, match="unknown PDU type"):
        framer.feed(b"")
    with pytest.raises(PDUError, match="unknown PDU type"):
        framer.feed(ReleaseRQ().encode())


def test_error_is_sticky() -> None:
    framer = PDUFramer(max_pdata_length=10)
    with pytest.raises(PDUError) as first:
        framer.feed(header(P_DATA_TF, 11))
    assert framer.error is first.value
    assert not framer.partial
    with pytest.raises(PDUError) as again:
        framer.feed(ReleaseRQ().encode())
    assert again.value is first.value


# --- framing is independent of chunking ------------------------------------------------


def test_whole_stream_at_once() -> None:
    framer = PDUFramer()
    assert framer.feed(STREAM) == SAMPLES
    assert not framer.partial


def test_one_byte_at_a_time() -> None:
    framer = PDUFramer()
    out: list[PDU] = []
    for i in range(len(STREAM)):
        out += framer.feed(STREAM[i : i + 1])
        assert framer.partial == (i + 1 not in BOUNDARIES)
    assert out == SAMPLES


@pytest.mark.parametrize("seed", range(25))
def test_random_chunkings(seed: int) -> None:
    rng = random.Random(seed)
    stream = STREAM * 3
    sizes = []
    total = 0
    while total < len(stream):
        size = rng.choice([0, 1, 2, 5, 6, 7, rng.randint(1, 400)])
        sizes.append(size)
        total += size
    assert feed_chunks(PDUFramer(), stream, sizes) == SAMPLES * 3


def test_chunks_split_exactly_at_headers() -> None:
    sizes: list[int] = []
    for pdu in SAMPLES:
        length = len(pdu.encode())
        sizes += [6, length - 6]
    assert feed_chunks(PDUFramer(), STREAM, sizes) == SAMPLES


def test_empty_feed() -> None:
    framer = PDUFramer()
    assert framer.feed(b"") == []
    assert not framer.partial


def test_partial_property() -> None:
    framer = PDUFramer()
    rq = ReleaseRQ().encode()
    assert not framer.partial
    assert framer.feed(rq[:1]) == []
    assert framer.partial
    assert framer.feed(rq[1:6]) == []
    assert framer.partial  # the header alone is still a partial PDU
    assert framer.feed(rq[6:]) == [ReleaseRQ()]
    assert not framer.partial
    assert framer.feed(rq + rq[:3]) == [ReleaseRQ()]
    assert framer.partial
    assert framer.feed(rq[3:]) == [ReleaseRQ()]
    assert not framer.partial


def test_single_takes_exactly_one_whole_pdu() -> None:
    """`single` is `feed`'s shortcut for the usual read, one whole PDU: it
    answers only when nothing is buffered and the chunk is exactly one
    PDU, and then gives what `feed` would have."""
    one = SAMPLES[0].encode()
    framer = PDUFramer()
    assert framer.single(one) == SAMPLES[0] == PDUFramer().feed(one)[0]
    assert framer.single(one + one) is None  # two PDUs: feed them
    assert framer.single(one[:-1]) is None  # part of one
    assert framer.single(one[:3]) is None  # not even a header
    assert framer.feed(one[:3]) == []
    assert framer.single(one) is None  # something is buffered
    assert framer.feed(one[3:]) == [SAMPLES[0]]


def test_single_checks_as_feed_does_and_the_error_sticks() -> None:
    framer = PDUFramer(max_pdata_length=100)
    too_long = header(P_DATA_TF, 200) + bytes(200)
    with pytest.raises(PDUError):
        framer.single(too_long)
    assert framer.error is not None
    assert framer.single(ReleaseRQ().encode()) is None
    with pytest.raises(PDUError):
        framer.feed(ReleaseRQ().encode())
