"""Incremental PDU framing: feed byte chunks of any size, get whole PDUs out.

The 6-byte header is checked (type, fixed lengths, the configured maxima)
the moment it is complete, before any of the body is buffered, so a hostile
length such as 0xFFFFFFFF costs nothing.

May import the rest of `protocol/` only.
"""

from __future__ import annotations

from asyncecho.protocol.errors import PDUError
from asyncecho.protocol.pdu import PDU, PDU_HEADER, check_header, decode_pdu

# An A-ASSOCIATE-RQ/AC carries at most 128 presentation contexts and a user
# information item of at most 64 KiB per field; 1 MiB is far above any real one.
DEFAULT_MAX_ASSOCIATE_LENGTH = 1 << 20
# Used when the local maximum PDU length is 0 ("unlimited", PS3.8 D.1).
UNLIMITED_PDATA_CAP = 1 << 26


def single_pdu(data: bytes, max_pdata_length: int, max_associate_length: int) -> PDU | None:
    """The PDU, if `data` is exactly one whole PDU; else None. Raises
    PDUError for an invalid one. What `PDUFramer.single` does for a framer
    with nothing buffered: a connection whose reads are all whole PDUs (the
    usual case) never needs a framer object at all."""
    size = len(data)
    if size < PDU_HEADER:
        return None
    length = int.from_bytes(data[2:PDU_HEADER], "big")
    if PDU_HEADER + length != size:
        return None
    check_header(data[0], length, max_pdata_length, max_associate_length)
    return decode_pdu(data)


class PDUFramer:
    """Splits a byte stream into decoded PDUs.

    `max_pdata_length` is the largest P-DATA-TF length accepted (our advertised
    Maximum Length; 0 means the cap above). Any violation raises `PDUError`;
    after that the framer must not be fed again.
    """

    __slots__ = ("_buffer", "_expected", "error", "max_associate_length", "max_pdata_length")

    def __init__(
        self,
        max_pdata_length: int = 0,
        max_associate_length: int = DEFAULT_MAX_ASSOCIATE_LENGTH,
    ) -> None:
        self.max_pdata_length = max_pdata_length or UNLIMITED_PDATA_CAP
        self.max_associate_length = max_associate_length
        self._buffer = bytearray()
        self._expected = 0  # total bytes of the PDU being received, 0 = header not yet read
        # The violation that ended the stream. PDUs decoded before it in the
        # same chunk are still returned, so that chunking never changes what
        # the peer is seen to have sent; `feed` raises it from then on.
        self.error: PDUError | None = None

    @property
    def partial(self) -> bool:
        """True while part of a PDU has been received and the rest not yet."""
        return bool(self._buffer)

    def single(self, data: bytes) -> PDU | None:
        """The PDU, if `data` is exactly one whole PDU and nothing is
        buffered (the usual read, taken without `feed`'s lists); else None:
        then `feed` it. Raises PDUError as `feed` would."""
        if self._buffer or self.error is not None:
            return None
        try:
            return single_pdu(data, self.max_pdata_length, self.max_associate_length)
        except PDUError as error:
            self.error = error
            raise

    def feed(self, data: bytes) -> list[PDU]:
        """Whole PDUs completed by `data`. Raises PDUError if the stream is
        invalid before any PDU in this chunk; if valid PDUs came first they
        are returned and `error` is set."""
        if self.error is not None:
            raise self.error
        pdus: list[PDU] = []
        try:
            if self._buffer:
                self._buffer += data
                self._split(pdus)
            else:
                self._split_chunk(data, pdus)
        except PDUError as error:
            self.error = error
            self._buffer.clear()
            if not pdus:
                raise
        return pdus

    def _split_chunk(self, data: bytes, pdus: list[PDU]) -> None:
        """`_split` for a chunk that starts a PDU (nothing buffered): the
        usual case, whole PDUs decoded straight from the chunk, without
        copying them through the buffer; only a partial tail is kept."""
        start, size = 0, len(data)
        while size - start >= PDU_HEADER:
            length = int.from_bytes(data[start + 2 : start + PDU_HEADER], "big")
            check_header(data[start], length, self.max_pdata_length, self.max_associate_length)
            end = start + PDU_HEADER + length
            if end > size:
                self._expected = end - start  # its header is checked: keep the rest
                break
            pdus.append(decode_pdu(data if end - start == size else data[start:end]))
            start = end
        if start < size:
            self._buffer += memoryview(data)[start:]

    def _split(self, pdus: list[PDU]) -> None:
        buffer = self._buffer
        while True:
            if not self._expected:
                if len(buffer) < PDU_HEADER:
                    return
                length = int.from_bytes(buffer[2:6], "big")
                check_header(buffer[0], length, self.max_pdata_length, self.max_associate_length)
                self._expected = PDU_HEADER + length
            if len(buffer) < self._expected:
                return
            whole = bytes(buffer[: self._expected])
            del buffer[: self._expected]
            self._expected = 0
            pdus.append(decode_pdu(whole))
