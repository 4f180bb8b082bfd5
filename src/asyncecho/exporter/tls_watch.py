"""What a probe's TLS handshake says that `EchoResult` does not: how long
the handshake took, and when the peer's certificates expire.

`EchoResult.timings.connect` holds the TCP connect and the TLS handshake
together, and no part of the public API hands out the peer's certificate.
Both are seen here through the standard library's own hook: an
`ssl.SSLContext`'s `sslobject_class` (the class its `wrap_bio()` makes, which
asyncio's, uvloop's and anyio's TLS all use). `watch(context)` sets it to
`WatchedSSLObject`, which times `do_handshake()` from its first call to its
success and keeps the peer's certificates, into the `HandshakeWatch` that the
probing task put in `current` (a context variable: the transports' callbacks
run in a copy of that task's context, which holds the same object).

Imports only the standard library.
"""

from __future__ import annotations

import ssl
import time
from calendar import timegm
from contextvars import ContextVar


class HandshakeWatch:
    """One probe's handshake: `seconds` once it succeeded, and the
    certificates the peer sent (DER, leaf first; the leaf only before
    Python 3.13, which added `get_unverified_chain()`)."""

    __slots__ = ("certificates", "seconds", "started")

    def __init__(self) -> None:
        self.started: float | None = None
        self.seconds: float | None = None
        self.certificates: list[bytes] = []

    def earliest_expiry(self) -> float | None:
        """The earliest notAfter of the peer's certificates, in unix seconds."""
        times = [t for t in map(not_after, self.certificates) if t is not None]
        return min(times) if times else None


#: The probing task's watch (None: no probe is watching).
current: ContextVar[HandshakeWatch | None] = ContextVar("asyncecho_exporter_tls", default=None)


class WatchedSSLObject(ssl.SSLObject):
    """An `ssl.SSLObject` that reports its handshake to `current`."""

    def do_handshake(self) -> None:
        watch = current.get()
        if watch is not None and watch.started is None:
            watch.started = time.perf_counter()
        super().do_handshake()  # raises SSLWantReadError until it is done
        if watch is not None and watch.started is not None:
            watch.seconds = time.perf_counter() - watch.started
            watch.certificates = _peer_chain(self)


def watch(context: ssl.SSLContext) -> ssl.SSLContext:
    """`context`, whose connections now report to `current`."""
    context.sslobject_class = WatchedSSLObject
    return context


def _peer_chain(sslobj: ssl.SSLObject) -> list[bytes]:
    chain = getattr(sslobj, "get_unverified_chain", None)  # Python 3.13+
    if chain is not None:
        try:
            found = [bytes(cert) for cert in chain() or ()]
        except (ssl.SSLError, ValueError):
            found = []
        if found:
            return found
    leaf = sslobj.getpeercert(binary_form=True)
    return [leaf] if leaf else []


# --- the notAfter of a DER certificate (RFC 5280 4.1) -------------------------------------
#
# Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
#   serialNumber INTEGER, signature SEQUENCE, issuer SEQUENCE,
#   validity SEQUENCE { notBefore Time, notAfter Time }, ... }, ... }
# A dozen lines of DER rather than a dependency on a full X.509 library.

_SEQUENCE = 0x30
_VERSION = 0xA0
_UTC_TIME = 0x17
_GENERALIZED_TIME = 0x18


def _element(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of the contents, end of the contents) of the DER element at `pos`."""
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4:
            raise ValueError("unsupported DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    end = pos + length
    if end > len(data):
        raise ValueError("truncated DER")
    return tag, pos, end


def not_after(der: bytes) -> float | None:
    """A certificate's notAfter in unix seconds; None if it cannot be read."""
    try:
        tag, pos, _ = _element(der, 0)  # Certificate
        tag, pos, tbs_end = _element(der, pos)  # tbsCertificate
        if tag != _SEQUENCE:
            return None
        tag, start, end = _element(der, pos)
        if tag == _VERSION:
            tag, start, end = _element(der, end)  # serialNumber
        for _ in range(3):  # serialNumber, signature, issuer -> validity
            tag, start, end = _element(der, end)
        if tag != _SEQUENCE or end > tbs_end:
            return None
        _, _, before_end = _element(der, start)  # notBefore
        tag, start, end = _element(der, before_end)  # notAfter
        text = der[start:end].decode("ascii")
    except (IndexError, ValueError):
        return None
    if tag == _UTC_TIME and len(text) == 13:  # YYMMDDHHMMSSZ; RFC 5280: 50-99 are 19xx
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != _GENERALIZED_TIME or len(text) != 15:
        return None
    try:
        fields = time.strptime(text, "%Y%m%d%H%M%SZ")
    except ValueError:
        return None
    return float(timegm(fields))
