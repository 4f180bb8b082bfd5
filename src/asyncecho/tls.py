"""TLS for DICOM (PS3.15 Annex B secure transport connection profiles):
`ssl.SSLContext` builders for the client and the SCP.

The contexts are plain `ssl.SSLContext`s, so anything the standard library
can do (a custom CA store, ciphers, certificates in memory) can be passed to
`echo(ssl=…)` / `serve(ssl=…)` directly; these helpers cover the usual case
from files. TLS 1.2 is the floor (BCP 195, as PS3.15 B.9 asks).

May import the standard library only (`ssl`, `os`).
"""

from __future__ import annotations

import ssl
from os import PathLike

StrPath = str | PathLike[str]


def client_context(
    *,
    ca_file: StrPath | None = None,
    cert_file: StrPath | None = None,
    key_file: StrPath | None = None,
    check_hostname: bool = True,
    insecure_skip_verify: bool = False,
    minimum_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
) -> ssl.SSLContext:
    """A client context: verifies the SCP against `ca_file` (or the system
    store), checks its name (SNI and hostname on by default), and presents
    `cert_file`/`key_file` when the SCP asks for a client certificate.

    `insecure_skip_verify=True` accepts any certificate from anyone: for a
    lab only, never for a real PACS.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=_path(ca_file))
    context.minimum_version = minimum_version
    if cert_file is not None:
        context.load_cert_chain(_path(cert_file), _path(key_file))  # type: ignore[arg-type]
    if insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.check_hostname = check_hostname
    return context


def server_context(
    *,
    cert_file: StrPath,
    key_file: StrPath | None = None,
    ca_file: StrPath | None = None,
    require_client_cert: bool = False,
    minimum_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
) -> ssl.SSLContext:
    """An SCP context presenting `cert_file`; with `require_client_cert`
    (mutual TLS) a client must present a certificate issued by `ca_file`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=_path(ca_file))
    context.minimum_version = minimum_version
    context.load_cert_chain(_path(cert_file), _path(key_file))  # type: ignore[arg-type]
    if require_client_cert:
        if ca_file is None:
            raise ValueError(
                "require_client_cert needs ca_file: the CA that issues client certificates"
            )
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.verify_mode = ssl.CERT_OPTIONAL if ca_file is not None else ssl.CERT_NONE
    return context


def _path(value: StrPath | None) -> str | None:
    return None if value is None else str(value)


def describe_ssl_error(exc: BaseException) -> str:
    """A short human reason for a TLS failure (unknown CA, hostname
    mismatch, expired certificate, client certificate required …)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return exc.verify_message or str(exc)
    if isinstance(exc, ssl.SSLEOFError):
        # (also what the transports raise when the peer hangs up mid-handshake)
        return (
            "the peer closed the connection during the TLS handshake "
            "(it may require a client certificate, or not trust ours)"
        )
    if isinstance(exc, ssl.SSLError):
        # An SSLError made in Python (not by OpenSSL) has no `reason`.
        raw = getattr(exc, "reason", None)
        reason = (raw or "").upper()
        known = {
            "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the peer requires a client certificate",
            "SSLV3_ALERT_CERTIFICATE_REQUIRED": "the peer requires a client certificate",
            "TLSV1_ALERT_UNKNOWN_CA": "the peer does not trust our certificate (unknown CA)",
            "SSLV3_ALERT_BAD_CERTIFICATE": "the peer rejected our certificate",
            "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the peer says our certificate has expired",
            "WRONG_VERSION_NUMBER": "the peer does not speak TLS on this port",
            "SSLV3_ALERT_HANDSHAKE_FAILURE": "the peer refused the handshake "
            "(it may require a client certificate, or share no cipher with us)",
            "TLSV1_ALERT_PROTOCOL_VERSION": "no TLS protocol version in common",
            "UNSUPPORTED_PROTOCOL": "no TLS protocol version in common",
            "RECORD_LAYER_FAILURE": "the peer does not speak TLS on this port",
        }
        for key, text in known.items():
            if key in reason:
                return f"{text} ({raw})"
        return str(raw or exc) or _ENDED_IN_HANDSHAKE
    # (a reset, or a closed stream, often without any text of its own: as
    # when a client refuses our certificate and hangs up)
    return str(exc) or f"{type(exc).__name__}: {_ENDED_IN_HANDSHAKE}"


_ENDED_IN_HANDSHAKE = (
    "the connection ended during the TLS handshake (the peer may not trust our certificate)"
)
