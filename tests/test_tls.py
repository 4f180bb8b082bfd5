"""DICOM over TLS (PS3.15 Annex B): the library, real peers, and the CLI.

1. Library: mutual TLS against `serve()`, TLS 1.2 and 1.3, hostname
   checking by name and by IP (and its opt-out), unknown CA, expired
   certificate, a missing or foreign client certificate, plain TCP against
   a TLS port and TLS against a plain port, `insecure_skip_verify`, the
   handshake inside `connect_timeout`, and `verify()`'s "tls" outcome.
2. Real peers: DCMTK storescp (`+tls`, `-rc`/`-vc`/`-ic`) and echoscu,
   pynetdicom's AE with an `ssl_context` (SCP) and `tls_args` (SCU).
3. CLI: `asyncecho echoscu` / `echoscp` / `sweep` with DCMTK-style options.

What a refused client certificate looks like depends on the TLS version:
with TLS 1.2 the server decides inside the handshake, so the client gets
`TLSHandshakeFailed`. With TLS 1.3 the client's handshake is over before the
server has looked at its certificate; the refusal reaches it on its first
read. `serve()` (both transports) then just closes, without a TLS alert
(neither asyncio's nor anyio's TLS layer flushes the alert of a failed
server handshake), so the client sees `AssociationAborted` with a hint
about the client certificate. DCMTK and pynetdicom send the alert, but it
races with the TCP reset caused by the A-ASSOCIATE-RQ they never read:
either `TLSHandshakeFailed` (alert read first) or `AssociationAborted`.

The certificates are made at run time (`certs.py`, trustme). Every async
test runs under asyncio and trio.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

import certs as pki
import peers
from asyncecho import (
    AssociationAborted,
    ConnectionFailed,
    ConnectTimeout,
    EchoError,
    EchoOptions,
    EchoTimeout,
    Target,
    TLSHandshakeFailed,
    associate,
    echo,
    serve,
    sweep,
    uids,
    verify,
)
from asyncecho.tls import client_context, describe_ssl_error, server_context
from certs import Certs, KeyPair

LOCALHOST = "127.0.0.1"
#: every wait bounded, so that a hang fails in seconds
OPTIONS = EchoOptions(connect_timeout=5.0, acse_timeout=5.0, dimse_timeout=5.0, network_timeout=5.0)
#: a timeout under test must fire within this much of its nominal value
SLACK = 1.0
TLS_VERSIONS = {"TLSv1.2", "TLSv1.3"}
TLS12 = ssl.TLSVersion.TLSv1_2
RUN_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return pki.session_certs(tmp_path_factory)


def no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text, text


# --- 1. the library against serve() ---------------------------------------------------------


@pytest.mark.anyio
async def test_mutual_tls(certs: Certs) -> None:
    async with serve(ssl=pki.server_ssl(certs)) as server:
        result = await echo(
            LOCALHOST, server.port, options=OPTIONS, ssl=pki.client_ssl(certs, certs.client)
        )
        assert server.accepted_total == 1
    assert result.ok
    assert result.tls_version in TLS_VERSIONS
    assert result.timings.connect is not None  # the handshake counts as connecting


@pytest.mark.anyio
async def test_several_echoes_on_one_tls_association(certs: Certs) -> None:
    async with (
        serve(ssl=pki.server_ssl(certs)) as server,
        associate(
            LOCALHOST, server.port, options=OPTIONS, ssl=pki.client_ssl(certs, certs.client)
        ) as assoc,
    ):
        assert [await assoc.echo() for _ in range(3)] == [0, 0, 0]
    assert server.echoes_total == 3


@pytest.mark.anyio
@pytest.mark.parametrize("forced_by", ["client", "server"])
async def test_tls_1_2(certs: Certs, forced_by: str) -> None:
    server_ctx = pki.server_ssl(certs, maximum_version=TLS12 if forced_by == "server" else None)
    client_ctx = pki.client_ssl(
        certs, certs.client, maximum_version=TLS12 if forced_by == "client" else None
    )
    async with serve(ssl=server_ctx) as server:
        result = await echo(LOCALHOST, server.port, options=OPTIONS, ssl=client_ctx)
    assert result.ok
    assert result.tls_version == "TLSv1.2"


@pytest.mark.anyio
async def test_tls_1_3_only(certs: Certs) -> None:
    context = client_context(
        ca_file=certs.ca,
        cert_file=certs.client.cert,
        key_file=certs.client.key,
        minimum_version=ssl.TLSVersion.TLSv1_3,
    )
    async with serve(ssl=pki.server_ssl(certs)) as server:
        result = await echo(LOCALHOST, server.port, options=OPTIONS, ssl=context)
    assert result.ok
    assert result.tls_version == "TLSv1.3"


@pytest.mark.anyio
async def test_no_protocol_version_in_common(certs: Certs) -> None:
    context = client_context(ca_file=certs.ca, minimum_version=ssl.TLSVersion.TLSv1_3)
    server_ctx = pki.server_ssl(certs, require_client_cert=False, maximum_version=TLS12)
    async with serve(ssl=server_ctx) as server:
        with pytest.raises(TLSHandshakeFailed) as info:
            await echo(LOCALHOST, server.port, options=OPTIONS, ssl=context)
    # The server gives up without an alert: the client only sees it hang up.
    assert "TLS handshake" in str(info.value)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("host", "server_hostname"),
    [
        pytest.param("localhost", None, id="host-by-name"),
        pytest.param(LOCALHOST, "localhost", id="ip-with-server-hostname"),
        pytest.param(LOCALHOST, None, id="ip-address-san"),
    ],
)
async def test_hostname_check_passes(certs: Certs, host: str, server_hostname: str | None) -> None:
    """The server certificate names 127.0.0.1 and localhost: both match."""
    async with serve(ssl=pki.server_ssl(certs)) as server:
        result = await echo(
            host,
            server.port,
            options=OPTIONS,
            ssl=pki.client_ssl(certs, certs.client),
            server_hostname=server_hostname,
        )
    assert result.ok, result.error
    assert result.host == host


MISMATCHES = [
    pytest.param("localhost_only", None, id="ip-not-in-certificate"),
    pytest.param("server", "pacs.example.org", id="wrong-name"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("server_pair", "server_hostname"), MISMATCHES)
async def test_hostname_mismatch(
    certs: Certs, server_pair: str, server_hostname: str | None
) -> None:
    pair: KeyPair = getattr(certs, server_pair)
    async with serve(ssl=pki.server_ssl(certs, pair, require_client_cert=False)) as server:
        with pytest.raises(TLSHandshakeFailed) as info:
            await echo(
                LOCALHOST,
                server.port,
                options=OPTIONS,
                ssl=pki.client_ssl(certs),
                server_hostname=server_hostname,
            )
        error = info.value
        # "Hostname mismatch" / "IP address mismatch, certificate is not valid for …"
        assert "mismatch" in str(error) and "not valid for" in str(error)
        assert isinstance(error.os_error, ssl.SSLCertVerificationError)
        assert error.host == LOCALHOST and error.port == server.port

        # The opt-out still verifies the chain, not the name.
        result = await echo(
            LOCALHOST,
            server.port,
            options=OPTIONS,
            ssl=pki.client_ssl(certs, check_hostname=False),
            server_hostname=server_hostname,
        )
        assert result.ok


@pytest.mark.anyio
@pytest.mark.parametrize("which", ["server-from-other-ca", "client-trusts-other-ca"])
async def test_unknown_ca(certs: Certs, which: str) -> None:
    server_pair = certs.other_server if which == "server-from-other-ca" else certs.server
    trusted = certs.other_ca if which == "client-trusts-other-ca" else certs.ca
    async with serve(ssl=pki.server_ssl(certs, server_pair, require_client_cert=False)) as server:
        start = time.monotonic()
        with pytest.raises(TLSHandshakeFailed) as info:
            await echo(
                LOCALHOST, server.port, options=OPTIONS, ssl=pki.client_ssl(certs, ca=trusted)
            )
        assert time.monotonic() - start < SLACK
        # The SCP is still there for a client that trusts it.
        good_ca = certs.other_ca if server_pair is certs.other_server else certs.ca
        assert (
            await echo(
                LOCALHOST, server.port, options=OPTIONS, ssl=pki.client_ssl(certs, ca=good_ca)
            )
        ).ok
    error = info.value
    assert isinstance(error.os_error, ssl.SSLCertVerificationError)
    assert "certificate" in error.reason
    assert error.outcome == "tls"
    # The place of the TLS failure in the hierarchy:
    assert isinstance(error, ConnectionFailed)
    assert isinstance(error, OSError)
    assert isinstance(error, EchoError)
    assert not isinstance(error, EchoTimeout)
    assert str(error).startswith(f"TLS handshake with {LOCALHOST}:")


@pytest.mark.anyio
async def test_expired_server_certificate(certs: Certs) -> None:
    async with serve(ssl=pki.server_ssl(certs, certs.expired, require_client_cert=False)) as server:
        with pytest.raises(TLSHandshakeFailed) as info:
            await echo(LOCALHOST, server.port, options=OPTIONS, ssl=pki.client_ssl(certs))
    assert "expired" in str(info.value)
    assert "expired" in info.value.reason


@pytest.mark.anyio
@pytest.mark.parametrize("client_pair", ["none", "other_client"])
async def test_client_certificate_refused_tls13(certs: Certs, client_pair: str) -> None:
    """TLS 1.3: the refusal arrives after the client's handshake; serve()
    closes without an alert, so the client sees `AssociationAborted` (with a
    hint), never a bare SSL error."""
    pair: KeyPair | None = None if client_pair == "none" else getattr(certs, client_pair)
    async with serve(ssl=pki.server_ssl(certs)) as server:
        with pytest.raises(EchoError) as info:
            await echo(LOCALHOST, server.port, options=OPTIONS, ssl=pki.client_ssl(certs, pair))
        assert server.accepted_total == 0
        # Still serving the right clients.
        assert (
            await echo(
                LOCALHOST, server.port, options=OPTIONS, ssl=pki.client_ssl(certs, certs.client)
            )
        ).ok
    assert type(info.value) is AssociationAborted
    assert "client certificate" in str(info.value)


@pytest.mark.anyio
@pytest.mark.parametrize("client_pair", ["none", "other_client"])
async def test_client_certificate_refused_tls12(certs: Certs, client_pair: str) -> None:
    """TLS 1.2: the server refuses inside the handshake: `TLSHandshakeFailed`."""
    pair: KeyPair | None = None if client_pair == "none" else getattr(certs, client_pair)
    async with serve(ssl=pki.server_ssl(certs)) as server:
        with pytest.raises(TLSHandshakeFailed) as info:
            await echo(
                LOCALHOST,
                server.port,
                options=OPTIONS,
                ssl=pki.client_ssl(certs, pair, maximum_version=TLS12),
            )
    assert "client certificate" in str(info.value)
    assert info.value.outcome == "tls"


@pytest.mark.anyio
async def test_plain_tcp_client_to_tls_port(certs: Certs) -> None:
    async with serve(ssl=pki.server_ssl(certs), acse_timeout=2.0) as server:
        start = time.monotonic()
        with pytest.raises(AssociationAborted) as info:
            await echo(LOCALHOST, server.port, options=OPTIONS, acse_timeout=2.0)
        elapsed = time.monotonic() - start
    # The SCP's TLS layer rejects the A-ASSOCIATE-RQ as a bad record and closes.
    assert elapsed < 2.0 + SLACK
    assert "closed the connection" in str(info.value)


@pytest.mark.anyio
async def test_tls_client_to_plain_port(certs: Certs) -> None:
    async with serve() as server:
        with pytest.raises(TLSHandshakeFailed) as info:
            await echo(LOCALHOST, server.port, options=OPTIONS, ssl=pki.client_ssl(certs))
        # The plain SCP is unharmed.
        assert (await echo(LOCALHOST, server.port, options=OPTIONS)).ok
    assert "does not speak TLS" in str(info.value)


@pytest.mark.anyio
async def test_insecure_skip_verify(certs: Certs) -> None:
    """Unknown CA *and* a name that does not match: accepted all the same."""
    context = client_context(insecure_skip_verify=True)
    assert context.verify_mode is ssl.CERT_NONE and not context.check_hostname
    server_ctx = pki.server_ssl(certs, certs.other_server, require_client_cert=False)
    async with serve(ssl=server_ctx) as server:
        result = await echo(
            LOCALHOST, server.port, options=OPTIONS, ssl=context, server_hostname="nobody.example"
        )
    assert result.ok and result.tls_version in TLS_VERSIONS


@pytest.mark.anyio
async def test_handshake_is_inside_connect_timeout(certs: Certs) -> None:
    """A listener that accepts (backlog) but never answers the ClientHello."""
    timeout = 0.3
    with peers.silent_listener() as port:
        start = time.monotonic()
        with pytest.raises(ConnectTimeout) as info:
            await echo(
                LOCALHOST, port, options=OPTIONS, connect_timeout=timeout, ssl=pki.client_ssl(certs)
            )
        elapsed = time.monotonic() - start
        result = await verify(
            LOCALHOST, port, options=OPTIONS, connect_timeout=timeout, ssl=pki.client_ssl(certs)
        )
    assert timeout - 0.05 <= elapsed < timeout + SLACK
    assert info.value.timeout == timeout
    assert result.outcome == "timeout-connect"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "case", ["unknown-ca", "hostname-mismatch", "expired", "plain-port", "tls12-no-client-cert"]
)
async def test_verify_reports_tls_outcome(certs: Certs, case: str) -> None:
    server_ctx: ssl.SSLContext | None
    client_ctx = pki.client_ssl(certs)
    server_hostname = None
    if case == "unknown-ca":
        server_ctx = pki.server_ssl(certs, certs.other_server, require_client_cert=False)
    elif case == "hostname-mismatch":
        server_ctx = pki.server_ssl(certs, require_client_cert=False)
        server_hostname = "pacs.example.org"
    elif case == "expired":
        server_ctx = pki.server_ssl(certs, certs.expired, require_client_cert=False)
    elif case == "plain-port":
        server_ctx = None
    else:
        server_ctx = pki.server_ssl(certs)
        client_ctx = pki.client_ssl(certs, maximum_version=TLS12)
    async with serve(ssl=server_ctx) as server:
        result = await verify(
            LOCALHOST, server.port, options=OPTIONS, ssl=client_ctx, server_hostname=server_hostname
        )
    assert not result
    assert result.outcome == "tls"
    assert isinstance(result.error, TLSHandshakeFailed)
    assert result.tls_version is None
    assert result.timings.connect is None


@pytest.mark.anyio
async def test_sweep_over_tls(certs: Certs) -> None:
    server_ctx = pki.server_ssl(certs, require_client_cert=False)
    async with serve(ssl=server_ctx) as good, serve(ssl=server_ctx) as also_good:
        targets = [Target(LOCALHOST, good.port), Target(LOCALHOST, also_good.port)]
        async with sweep(targets, deadline=5.0, ssl=pki.client_ssl(certs)) as records:
            outcomes = [record.outcome async for record in records]
        assert outcomes == ["success", "success"]
        async with sweep(
            targets, deadline=5.0, ssl=pki.client_ssl(certs, ca=certs.other_ca)
        ) as records:
            failed = [record async for record in records]
    assert [record.outcome for record in failed] == ["tls", "tls"]
    assert all("TLS" in record.detail for record in failed)


# --- the helpers themselves ----------------------------------------------------------------


def test_server_context_needs_a_ca_for_client_certificates(certs: Certs) -> None:
    with pytest.raises(ValueError, match="ca_file"):
        server_context(
            cert_file=certs.server.cert, key_file=certs.server.key, require_client_cert=True
        )
    optional = server_context(
        cert_file=certs.server.cert, key_file=certs.server.key, ca_file=certs.ca
    )
    assert optional.verify_mode is ssl.CERT_OPTIONAL
    assert optional.minimum_version is ssl.TLSVersion.TLSv1_2


def test_client_context_defaults(certs: Certs) -> None:
    context = client_context(ca_file=certs.ca)
    assert context.check_hostname and context.verify_mode is ssl.CERT_REQUIRED
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert not client_context(ca_file=certs.ca, check_hostname=False).check_hostname


def test_describe_ssl_error_without_an_openssl_reason() -> None:
    """An SSLError made in Python has no `reason`: still described."""
    assert describe_ssl_error(ssl.SSLError(1, "odd")) != ""
    assert "during the TLS handshake" in describe_ssl_error(ssl.SSLEOFError(8, "eof"))
    failed = TLSHandshakeFailed("TLS handshake failed", os_error=ssl.SSLError(1, "odd"))
    assert failed.reason


# --- 2. real peers ---------------------------------------------------------------------------


@contextlib.contextmanager
def storescp_tls(certs: Certs, server: KeyPair, *mode: str) -> Iterator[peers.Peer]:
    """DCMTK storescp over TLS; it requires a client certificate unless `mode`
    says otherwise (-vc / -ic)."""
    with peers.storescp(extra=["+tls", *server.args, "+cf", str(certs.ca), *mode]) as peer:
        yield peer


#: (storescp peer authentication options, our client certificate, accepted?)
STORESCP_CASES = [
    pytest.param((), "client", True, id="default-with-cert"),
    pytest.param(("--require-peer-cert",), "client", True, id="require-with-cert"),
    pytest.param((), None, False, id="default-no-cert"),
    pytest.param(("-rc",), None, False, id="require-no-cert"),
    pytest.param((), "other_client", False, id="default-foreign-cert"),
    pytest.param(("--verify-peer-cert",), None, True, id="verify-no-cert"),
    pytest.param(("-vc",), "other_client", False, id="verify-foreign-cert"),
    pytest.param(("--ignore-peer-cert",), "other_client", True, id="ignore-foreign-cert"),
]


@pytest.mark.peer
@pytest.mark.anyio
@pytest.mark.parametrize(("mode", "client_pair", "accepted"), STORESCP_CASES)
async def test_dcmtk_storescp(
    certs: Certs, mode: tuple[str, ...], client_pair: str | None, accepted: bool
) -> None:
    pair: KeyPair | None = getattr(certs, client_pair) if client_pair else None
    with storescp_tls(certs, certs.server, *mode) as peer:
        result = await verify(
            LOCALHOST, peer.port, options=OPTIONS, ssl=pki.client_ssl(certs, pair)
        )
    if accepted:
        assert result.ok, result.error
        assert result.tls_version == "TLSv1.3"
        assert result.peer_implementation_class_uid is not None
        assert result.peer_implementation_class_uid.startswith("1.2.276.0.7230010.3")
    else:
        # TLS 1.3: DCMTK's alert races the reset (see the module docstring).
        assert isinstance(result.error, (TLSHandshakeFailed, AssociationAborted)), result.error
        assert "certificate" in str(result.error)


@pytest.mark.peer
@pytest.mark.anyio
async def test_dcmtk_storescp_tls12_without_client_certificate(certs: Certs) -> None:
    """Forced to TLS 1.2 (DCMTK's TLS 1.2 suites need an RSA server key), the
    refusal is a handshake alert: `TLSHandshakeFailed`, every time."""
    with storescp_tls(certs, certs.server_rsa, "--require-peer-cert") as peer:
        with pytest.raises(TLSHandshakeFailed) as info:
            await echo(
                LOCALHOST,
                peer.port,
                options=OPTIONS,
                ssl=pki.client_ssl(certs, maximum_version=TLS12),
            )
        assert "refused the handshake" in str(info.value)
        result = await echo(
            LOCALHOST,
            peer.port,
            options=OPTIONS,
            ssl=pki.client_ssl(certs, certs.client, maximum_version=TLS12),
        )
    assert result.ok and result.tls_version == "TLSv1.2"


@pytest.mark.peer
@pytest.mark.anyio
async def test_dcmtk_storescp_with_a_certificate_we_do_not_trust(certs: Certs) -> None:
    with (
        storescp_tls(certs, certs.other_server, "-ic") as peer,
        pytest.raises(TLSHandshakeFailed) as info,
    ):
        await echo(LOCALHOST, peer.port, options=OPTIONS, ssl=pki.client_ssl(certs))
    assert isinstance(info.value.os_error, ssl.SSLCertVerificationError)


async def dcmtk_echoscu(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    def run() -> subprocess.CompletedProcess[str]:
        return peers.run_dcmtk_echoscu(port, "-to", "5", "-ta", "5", "-td", "5", *args)

    return await anyio.to_thread.run_sync(run)


@pytest.mark.peer
@pytest.mark.anyio
async def test_dcmtk_echoscu_to_serve(certs: Certs) -> None:
    peers.require_executable(peers.DCMTK_ECHOSCU, "DCMTK echoscu")
    good = ["+tls", *certs.client.args, "+cf", str(certs.ca)]
    async with serve(ssl=pki.server_ssl(certs), acse_timeout=5.0) as server:
        ok = await dcmtk_echoscu(server.port, *good)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        foreign = await dcmtk_echoscu(
            server.port, "+tls", *certs.other_client.args, "+cf", str(certs.ca)
        )
        assert foreign.returncode != 0
        anonymous = await dcmtk_echoscu(server.port, "+tla", "+cf", str(certs.ca))
        assert anonymous.returncode != 0
        # echoscu does not trust our certificate: it refuses us.
        distrust = await dcmtk_echoscu(
            server.port, "+tls", *certs.client.args, "+cf", str(certs.other_ca)
        )
        assert distrust.returncode != 0
        # ...and the SCP is still serving.
        again = await dcmtk_echoscu(server.port, "-v", *good)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "Received Echo Response (Success)" in again.stdout + again.stderr
        assert server.accepted_total == 2


_PYNETDICOM_TLS_SCP = """
import ssl, sys
from pynetdicom import AE
from pynetdicom.sop_class import Verification
port, key, cert, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca)
context.verify_mode = ssl.CERT_REQUIRED
context.load_cert_chain(cert, key)
ae = AE(ae_title="PYNETDICOM")
ae.add_supported_context(Verification)
ae.start_server(("127.0.0.1", port), block=True, ssl_context=context)
"""


@contextlib.contextmanager
def pynetdicom_tls_scp(certs: Certs) -> Iterator[int]:
    peers.require_pynetdicom()
    port = peers.free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _PYNETDICOM_TLS_SCP,
            str(port),
            *certs.server.args,
            str(certs.ca),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        peers.wait_listening(port, process)
        yield port
    finally:
        peers.terminate(process)
        if process.stdout:
            process.stdout.close()


@pytest.mark.peer
@pytest.mark.anyio
async def test_pynetdicom_scp_with_ssl_context(certs: Certs) -> None:
    with pynetdicom_tls_scp(certs) as port:
        result = await verify(
            LOCALHOST, port, options=OPTIONS, ssl=pki.client_ssl(certs, certs.client)
        )
        assert result.ok, result.error
        assert result.tls_version == "TLSv1.3"
        assert result.peer_implementation_class_uid is not None
        assert result.peer_implementation_class_uid.startswith("1.2.826.0.1.3680043.9.3811")
        refused = await verify(LOCALHOST, port, options=OPTIONS, ssl=pki.client_ssl(certs))
    assert isinstance(refused.error, (TLSHandshakeFailed, AssociationAborted)), refused.error


def pynetdicom_echo_over_tls(port: int, certs: Certs, pair: KeyPair | None) -> int | None:
    """pynetdicom as SCU with `tls_args`: the C-ECHO status, None if no association."""
    from pynetdicom import AE

    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(certs.ca))
    if pair is not None:
        context.load_cert_chain(str(pair.cert), str(pair.key))
    ae = AE(ae_title="PYNETSCU")
    ae.add_requested_context(uids.VERIFICATION)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 5
    assoc = ae.associate(LOCALHOST, port, tls_args=(context, LOCALHOST))
    try:
        if not assoc.is_established:
            return None
        status = assoc.send_c_echo()
        return int(status.Status) if "Status" in status else None
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()


@pytest.mark.peer
@pytest.mark.anyio
async def test_pynetdicom_scu_with_tls_args(certs: Certs) -> None:
    peers.require_pynetdicom()
    async with serve(ssl=pki.server_ssl(certs), acse_timeout=5.0) as server:
        status = await anyio.to_thread.run_sync(
            pynetdicom_echo_over_tls, server.port, certs, certs.client
        )
        assert status == 0x0000
        refused = await anyio.to_thread.run_sync(
            pynetdicom_echo_over_tls, server.port, certs, certs.other_client
        )
        assert refused is None
        assert server.accepted_total == 1


# --- 3. the CLI ------------------------------------------------------------------------------


CliScp = peers.CliScp


def cli_echoscp(*args: str) -> contextlib.AbstractContextManager[peers.CliScp]:
    return peers.asyncecho_echoscp(*args)


def asyncecho_cli(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "asyncecho", *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    no_traceback(result.stdout, result.stderr)
    return result


def echoscu(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return asyncecho_cli("echoscu", LOCALHOST, str(port), "-tn", "5", "-ta", "5", *args)


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    lines = result.stderr.splitlines()
    assert lines, "no error lines"
    assert all(line.startswith("E: ") for line in lines), result.stderr
    return lines


@pytest.fixture(scope="module")
def mutual_scp(certs: Certs) -> Iterator[CliScp]:
    with cli_echoscp(
        "+tls", *certs.server.args, "+cf", str(certs.ca), "--require-peer-cert", "-v"
    ) as scp:
        yield scp


@pytest.fixture(scope="module")
def tls_scp(certs: Certs) -> Iterator[CliScp]:
    """TLS, no client certificate needed."""
    with cli_echoscp("+tls", *certs.server.args) as scp:
        yield scp


@pytest.mark.peer
def test_cli_mutual_tls(certs: Certs, mutual_scp: CliScp) -> None:
    result = echoscu(mutual_scp.port, "+tls", *certs.client.args, "+cf", str(certs.ca))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    result = echoscu(
        mutual_scp.port,
        "--tls",
        "--cert",
        str(certs.client.cert),
        "--key",
        str(certs.client.key),
        "--ca-file",
        str(certs.ca),
        "-v",
    )
    assert result.returncode == 0, result.stderr
    assert "I: Association Accepted" in result.stderr


@pytest.mark.peer
def test_cli_no_client_certificate(certs: Certs, mutual_scp: CliScp) -> None:
    result = echoscu(mutual_scp.port, "--tls", "+cf", str(certs.ca))
    assert result.returncode == 1
    lines = error_lines(result)
    assert "client certificate" in result.stderr, lines


@pytest.mark.peer
def test_cli_wrong_ca(certs: Certs, tls_scp: CliScp) -> None:
    result = echoscu(tls_scp.port, "--tls", "+cf", str(certs.other_ca))
    assert result.returncode == 1
    lines = error_lines(result)
    assert any("TLS" in line for line in lines), lines
    assert "TLS handshake" in result.stderr


@pytest.mark.peer
def test_cli_tls_to_a_plain_port(certs: Certs) -> None:
    with cli_echoscp() as plain:
        result = echoscu(plain.port, "--tls", "+cf", str(certs.ca))
    assert result.returncode == 1
    assert "does not speak TLS" in "\n".join(error_lines(result))


@pytest.mark.peer
def test_cli_ignore_peer_cert_warns(certs: Certs, tls_scp: CliScp) -> None:
    result = echoscu(tls_scp.port, "--tls", "-ic")
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("W: "), result.stderr
    assert "--ignore-peer-cert" in result.stderr
    quiet = echoscu(tls_scp.port, "--tls", "-ic", "-q")
    assert quiet.returncode == 0 and quiet.stderr == ""


@pytest.mark.peer
def test_cli_no_hostname_check(certs: Certs) -> None:
    with cli_echoscp("+tls", *certs.localhost_only.args) as scp:
        checked = echoscu(scp.port, "--tls", "+cf", str(certs.ca))
        unchecked = echoscu(scp.port, "--tls", "+cf", str(certs.ca), "--no-hostname-check")
    assert checked.returncode == 1
    assert "mismatch" in "\n".join(error_lines(checked))
    assert unchecked.returncode == 0, unchecked.stderr


@pytest.mark.peer
def test_cli_tls_usage_errors(certs: Certs) -> None:
    missing = asyncecho_cli(
        "echoscu", LOCALHOST, "104", "+tls", str(certs.directory / "nope.key"), "nope.pem"
    )
    assert missing.returncode == 2
    assert "cannot load the TLS files" in missing.stderr
    hostname_only = asyncecho_cli("echoscu", LOCALHOST, "104", "--no-hostname-check")
    assert hostname_only.returncode == 2
    scp_ca_only = asyncecho_cli("echoscp", "104", "+cf", str(certs.ca))
    assert scp_ca_only.returncode == 2


def sweep_records(result: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


@pytest.mark.peer
def test_cli_sweep_over_tls(
    certs: Certs, tls_scp: CliScp, mutual_scp: CliScp, tmp_path: Path
) -> None:
    plain_targets = tmp_path / "targets.txt"
    plain_targets.write_text(
        f"# two SCPs that need no client certificate\n{LOCALHOST}:{tls_scp.port}\n"
        f"ANY-SCP@{LOCALHOST}:{tls_scp.port}\n"
    )
    all_targets = tmp_path / "all.txt"
    all_targets.write_text(f"{LOCALHOST}:{tls_scp.port}\n{LOCALHOST}:{mutual_scp.port}\n")
    sweep_cli = ("sweep", "-q", "--deadline", "5")

    good = asyncecho_cli(*sweep_cli, str(plain_targets), "--tls", "+cf", str(certs.ca))
    assert good.returncode == 0, good.stderr
    assert [r["outcome"] for r in sweep_records(good)] == ["success", "success"]

    mutual = asyncecho_cli(
        *sweep_cli, str(all_targets), "+tls", *certs.client.args, "+cf", str(certs.ca)
    )
    assert mutual.returncode == 0, mutual.stderr
    assert [r["outcome"] for r in sweep_records(mutual)] == ["success", "success"]

    wrong = asyncecho_cli(*sweep_cli, str(all_targets), "--tls", "+cf", str(certs.other_ca))
    assert wrong.returncode == 1
    records = sweep_records(wrong)
    assert [r["outcome"] for r in records] == ["tls", "tls"]
    assert all("TLS" in str(r["detail"]) for r in records)
