"""Field-level codecs shared by every PDU and item: a bounds-checked reader,
AE titles and UIDs.

Every read checks the bytes present first, so a malformed PDU can only ever
raise `PDUError`, never IndexError, struct.error or UnicodeDecodeError.

May import `protocol/errors` only.
"""

from __future__ import annotations

from functools import lru_cache

from asyncecho.protocol.errors import PDUError

_U16 = 2
_U32 = 4


class Reader:
    """Reads big-endian fields from `buf[pos:end]`; offsets are PDU-relative."""

    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes, pos: int = 0, end: int | None = None) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf) if end is None else end

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def fail(self, message: str, reason: int | None = None) -> PDUError:
        if reason is None:
            return PDUError(message, self.pos)
        return PDUError(message, self.pos, reason)

    def _need(self, n: int, what: str) -> None:
        if n > self.end - self.pos:
            raise self.fail(f"{what}: needs {n} bytes, {self.end - self.pos} left")

    def u8(self, what: str) -> int:
        self._need(1, what)
        value = self.buf[self.pos]
        self.pos += 1
        return value

    def u16(self, what: str) -> int:
        self._need(_U16, what)
        value = int.from_bytes(self.buf[self.pos : self.pos + _U16], "big")
        self.pos += _U16
        return value

    def u32(self, what: str) -> int:
        self._need(_U32, what)
        value = int.from_bytes(self.buf[self.pos : self.pos + _U32], "big")
        self.pos += _U32
        return value

    def take(self, n: int, what: str) -> bytes:
        self._need(n, what)
        value = self.buf[self.pos : self.pos + n]
        self.pos += n
        return bytes(value)

    def skip(self, n: int, what: str) -> None:
        # PS3.8 9.3: reserved fields "shall be sent with a value 00H but not
        # tested to this value when received", so they are skipped unread.
        self._need(n, what)
        self.pos += n

    def sub(self, n: int, what: str) -> Reader:
        """A reader over the next `n` bytes; this one moves past them."""
        self._need(n, what)
        child = Reader(self.buf, self.pos, self.pos + n)
        self.pos += n
        return child


# --- AE titles (PS3.8 9.3.2, PS3.5 6.2 "AE" value representation) -----------

AE_LENGTH = 16


def _ae_char_ok(code: int) -> bool:
    # ISO 646 G0 printable characters; PS3.5 Table 6.2-1 excludes backslash.
    return 0x20 <= code <= 0x7E and code != 0x5C


def validate_ae_title(title: str) -> str:
    """Return `title` stripped, or raise ValueError saying what is wrong."""
    if not isinstance(title, str):
        raise TypeError(f"AE title must be str, not {type(title).__name__}")
    stripped = title.strip(" ")
    if not stripped:
        raise ValueError("AE title must not be empty or all spaces")
    if len(stripped) > AE_LENGTH:
        raise ValueError(f"AE title {stripped!r} is longer than 16 characters")
    bad = [c for c in stripped if not _ae_char_ok(ord(c))]
    if bad:
        raise ValueError(f"AE title {stripped!r} has invalid character {bad[0]!r}")
    return stripped


def encode_ae_title(title: str) -> bytes:
    return validate_ae_title(title).encode("ascii").ljust(AE_LENGTH, b" ")


def decode_ae_title(reader: Reader, what: str, *, strict: bool) -> str:
    """Decode a 16-byte AE field; leading and trailing spaces are not significant.

    `strict=False` is for the A-ASSOCIATE-AC, whose AE fields PS3.8 9.3.3.2
    says shall not be tested on receipt: they are decoded for display only.
    """
    start = reader.pos
    raw = reader.take(AE_LENGTH, what)
    # Some implementations pad with NUL; PS3.8 says spaces, tolerate both.
    text = raw.rstrip(b"\x00 ").lstrip(b" ")
    if not strict:
        return "".join(chr(c) if _ae_char_ok(c) else "?" for c in text)
    if not text:
        raise PDUError(f"{what} is all spaces (no AE title)", start)
    for i, code in enumerate(text):
        if not _ae_char_ok(code):
            raise PDUError(f"{what} has invalid byte 0x{code:02x}", start + i)
    return text.decode("ascii")


# --- UIDs (PS3.5 9.1) ---------------------------------------------------------

UID_MAX = 64


@lru_cache(maxsize=4096)
def uid_problem(uid: str) -> str | None:
    """Why `uid` is not a valid UID, or None when it is (cached: the same
    few UIDs come in every association)."""
    if not uid:
        return "UID is empty"
    if len(uid) > UID_MAX:
        return f"UID is {len(uid)} characters, more than 64"
    for part in uid.split("."):
        if not part:
            return f"UID {uid!r} has an empty component"
        if not part.isascii() or not part.isdigit():
            return f"UID {uid!r} has a character other than 0-9 and '.'"
    return None


def validate_uid(uid: str) -> str:
    problem = uid_problem(uid)
    if problem:
        raise ValueError(problem)
    return uid


def decode_uid(raw: bytes, offset: int, what: str) -> str:
    # PS3.8 Annex F: UIDs in items are not padded, but a trailing NUL (the
    # PS3.5 padding for even length) is common from real peers: tolerate one.
    if raw.endswith(b"\x00"):
        raw = raw[:-1]
    try:
        uid = raw.decode("ascii")
    except UnicodeDecodeError:
        raise PDUError(f"{what} is not ASCII", offset) from None
    problem = uid_problem(uid)
    if problem:
        raise PDUError(f"{what}: {problem}", offset)
    return uid


def encode_uid(uid: str) -> bytes:
    return validate_uid(uid).encode("ascii")
