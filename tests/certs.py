"""Test PKI made at run time with trustme: never a private key in the repo.

`session_certs(tmp_path_factory)` writes, once per test session, into a
temporary directory:

- `ca`: the CA everything trusts; `server` (ECDSA, for 127.0.0.1 and
  localhost), `server_rsa` (the same names, RSA: DCMTK's TLS 1.2 cipher
  suites are ECDHE-RSA/DHE-RSA only), `localhost_only` (no IP address: a
  client connecting to 127.0.0.1 sees a hostname mismatch), `client`, and
  `expired` (a server certificate that expired yesterday), all issued by it;
- `other_ca`, a second, unrelated CA, with its own `other_server` and
  `other_client`.

Keys are unencrypted PEM (DCMTK reads them without asking for a password).
"""

from __future__ import annotations

import datetime
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme


@dataclass(frozen=True)
class KeyPair:
    key: Path
    cert: Path

    @property
    def args(self) -> list[str]:
        """`KEY CERT`, in the order DCMTK's and our `+tls` take them."""
        return [str(self.key), str(self.cert)]


@dataclass(frozen=True)
class Certs:
    directory: Path
    ca: Path
    server: KeyPair
    server_rsa: KeyPair
    localhost_only: KeyPair
    client: KeyPair
    expired: KeyPair
    other_ca: Path
    other_server: KeyPair
    other_client: KeyPair


def _write(directory: Path, name: str, leaf: trustme.LeafCert) -> KeyPair:
    pair = KeyPair(directory / f"{name}.key", directory / f"{name}.pem")
    leaf.private_key_pem.write_to_path(str(pair.key))
    pair.key.chmod(0o600)
    # The whole chain (leaf first): what a server should present.
    pair.cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    return pair


def make_certs(directory: Path) -> Certs:
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="asyncecho test CA")
    other = trustme.CA(organization_name="someone else's CA")
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    other.cert_pem.write_to_path(str(directory / "other-ca.pem"))
    now = datetime.datetime.now(datetime.timezone.utc)
    return Certs(
        directory=directory,
        ca=directory / "ca.pem",
        server=_write(directory, "server", ca.issue_cert("127.0.0.1", "localhost")),
        server_rsa=_write(
            directory,
            "server-rsa",
            ca.issue_cert("127.0.0.1", "localhost", key_type=trustme.KeyType.RSA),
        ),
        localhost_only=_write(directory, "localhost-only", ca.issue_cert("localhost")),
        client=_write(directory, "client", ca.issue_cert("echoscu.test", common_name="ECHOSCU")),
        expired=_write(
            directory,
            "expired",
            ca.issue_cert(
                "127.0.0.1",
                "localhost",
                not_before=now - datetime.timedelta(days=30),
                not_after=now - datetime.timedelta(days=1),
            ),
        ),
        other_ca=directory / "other-ca.pem",
        other_server=_write(directory, "other-server", other.issue_cert("127.0.0.1", "localhost")),
        other_client=_write(
            directory, "other-client", other.issue_cert("intruder.test", common_name="INTRUDER")
        ),
    )


_made: dict[Path, Certs] = {}


def session_certs(factory: pytest.TempPathFactory) -> Certs:
    """One set per test session, however many modules ask for it."""
    base = factory.getbasetemp()
    if base not in _made:
        _made[base] = make_certs(factory.mktemp("pki"))
    return _made[base]


def server_ssl(
    certs: Certs,
    pair: KeyPair | None = None,
    *,
    require_client_cert: bool = True,
    maximum_version: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    """A server context from `asyncecho.tls.server_context` (mutual TLS by default)."""
    from asyncecho.tls import server_context

    pair = pair or certs.server
    context = server_context(
        cert_file=pair.cert,
        key_file=pair.key,
        ca_file=certs.ca,
        require_client_cert=require_client_cert,
    )
    if maximum_version is not None:
        context.maximum_version = maximum_version
    return context


def client_ssl(
    certs: Certs,
    pair: KeyPair | None = None,
    *,
    ca: Path | None = None,
    check_hostname: bool = True,
    insecure_skip_verify: bool = False,
    maximum_version: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    """A client context from `asyncecho.tls.client_context`, trusting `ca`
    (default: the test CA) and presenting `pair` if given."""
    from asyncecho.tls import client_context

    context = client_context(
        ca_file=ca or certs.ca,
        cert_file=pair.cert if pair else None,
        key_file=pair.key if pair else None,
        check_hostname=check_hostname,
        insecure_skip_verify=insecure_skip_verify,
    )
    if maximum_version is not None:
        context.maximum_version = maximum_version
    return context
