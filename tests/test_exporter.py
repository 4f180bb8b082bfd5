"""`asyncecho.exporter` through its HTTP application on loopback: /probe
against real peers (DCMTK storescp, plain and over TLS), a refused port and
a silent listener; the 400s; the bound on probes in flight; /metrics,
/-/healthy and /-/reload. The exporter runs on asyncio (aiohttp), so these
tests do too.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

import certs as pki
import peers
from asyncecho.exceptions import ConnectionRefused
from asyncecho.exporter import config, probe, tls_watch
from asyncecho.exporter.app import TIMEOUT_OFFSET, Exporter
from asyncecho.results import EchoResult, Timings
from certs import Certs

Labels = frozenset[tuple[str, str]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return pki.session_certs(tmp_path_factory)


def samples(text: str) -> dict[str, dict[Labels, float]]:
    """{metric name: {labels: value}} of an exposition."""
    found: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return found


def value(found: dict[str, dict[Labels, float]], name: str, **labels: str) -> float:
    return found[name][frozenset(labels.items())]


def info(found: dict[str, dict[Labels, float]]) -> dict[str, str]:
    (labels,) = found["probe_dicom_info"]
    return dict(labels)


@dataclass
class Client:
    exporter: Exporter
    session: aiohttp.ClientSession
    base: str

    async def get(
        self, path: str, headers: dict[str, str] | None = None, **params: str
    ) -> tuple[int, str]:
        async with self.session.get(self.base + path, params=params, headers=headers) as response:
            return response.status, await response.text()

    async def probe(
        self, headers: dict[str, str] | None = None, **params: str
    ) -> dict[str, dict[Labels, float]]:
        status, text = await self.get("/probe", headers, **params)
        assert status == 200, text
        return samples(text)

    async def post(self, path: str) -> tuple[int, str]:
        async with self.session.post(self.base + path) as response:
            return response.status, await response.text()


@asynccontextmanager
async def serving(exporter: Exporter) -> AsyncIterator[Client]:
    server = TestServer(exporter.application(), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            yield Client(exporter, session, f"http://127.0.0.1:{server.port}")
    finally:
        await server.close()


MODULES = {
    "default": {"calling_ae": "PROMETHEUS", "timeout": "20s"},
    "patient": {"timeout": 600},  # only a scrape timeout can end a silent probe in time
}


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    async with serving(Exporter(config.parse({"modules": MODULES}))) as each:
        yield each


@pytest.fixture(scope="module")
def storescp() -> Iterator[peers.Peer]:
    with peers.storescp(nodelay=True) as peer:
        yield peer


# --- targets ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:104", probe.Target("127.0.0.1", 104)),
        ("PACS@pacs.example:11112", probe.Target("pacs.example", 11112, "PACS")),
        ("[::1]:104", probe.Target("::1", 104)),
        ("A@B@[::1]:104", probe.Target("::1", 104, "A@B")),
    ],
)
def test_targets(text: str, expected: probe.Target) -> None:
    assert probe.parse_target(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "target is missing"),
        ("pacs.example", "expected [AET@]HOST:PORT"),
        ("pacs.example:", "expected [AET@]HOST:PORT"),
        (":104", "expected [AET@]HOST:PORT"),
        ("pacs.example:http", "port must be 1-65535"),
        ("pacs.example:0", "port must be 1-65535"),
        ("pacs.example:65536", "port must be 1-65535"),
        ("@pacs.example:104", "AE title before @ is empty"),
        ("::1:104", "in brackets"),
        ("[pacs]:104", "no IPv6 address"),
    ],
)
def test_bad_targets(text: str, why: str) -> None:
    with pytest.raises(probe.BadTarget, match=why.replace("[", r"\[")):
        probe.parse_target(text)


def test_the_scrape_timeout_header_shortens_the_probe() -> None:
    exporter = Exporter(config.Config())
    assert exporter.probe_seconds(5.0, None) == 5.0
    assert exporter.probe_seconds(5.0, "10") == 5.0
    assert exporter.probe_seconds(5.0, "3") == 3.0 - TIMEOUT_OFFSET
    assert exporter.probe_seconds(5.0, "0.5") == 0.25  # never less than half of it
    for bad in ("soon", "0", "-1", "nan", "inf"):
        with pytest.raises(ValueError, match="X-Prometheus-Scrape-Timeout-Seconds"):
            exporter.probe_seconds(5.0, bad)


# --- probes -----------------------------------------------------------------------------------


@pytest.mark.peer
@pytest.mark.anyio
async def test_probe_success(client: Client, storescp: peers.Peer) -> None:
    found = await client.probe(target=f"127.0.0.1:{storescp.port}")
    assert value(found, "probe_success") == 1
    assert value(found, "probe_dicom_status") == 0
    assert value(found, "probe_duration_seconds") > 0
    phases = {dict(labels)["phase"] for labels in found["probe_dicom_duration_seconds"]}
    assert phases == {"connect", "associate", "echo", "release"}
    assert info(found) == {
        "outcome": "success",
        "peer_ae": "ANY-SCP",
        "implementation_class_uid": info(found)["implementation_class_uid"],
        "implementation_version_name": info(found)["implementation_version_name"],
        "transfer_syntax": "1.2.840.10008.1.2.1",
    }
    assert info(found)["implementation_class_uid"].startswith("1.2.276.0.7230010.3")
    assert info(found)["implementation_version_name"].startswith("OFFIS_DCMTK")
    assert "probe_tls_version_info" not in found
    assert "probe_ssl_earliest_cert_expiry" not in found
    _, own = await client.get("/metrics")
    assert (
        value(samples(own), "asyncecho_exporter_probes_total", module="default", outcome="success")
        == 1
    )


@pytest.mark.peer
@pytest.mark.anyio
async def test_the_targets_ae_title_overrides_the_modules(
    client: Client, storescp: peers.Peer
) -> None:
    # storescp answers with the called AE title it was sent
    found = await client.probe(target=f"NODE7@127.0.0.1:{storescp.port}")
    assert value(found, "probe_success") == 1
    assert info(found)["peer_ae"] == "NODE7"


@pytest.mark.anyio
async def test_probe_refused(client: Client) -> None:
    found = await client.probe(target=f"127.0.0.1:{peers.closed_port()}")
    assert value(found, "probe_success") == 0
    assert info(found)["outcome"] == "refused"
    assert "probe_dicom_status" not in found
    _, own = await client.get("/metrics")
    assert (
        value(samples(own), "asyncecho_exporter_probes_total", module="default", outcome="refused")
        == 1
    )


@pytest.mark.anyio
async def test_a_silent_node_fails_within_the_scrape_timeout(client: Client) -> None:
    # The module allows 600 s: only the header can make the probe answer
    # (the guard below is a hang guard, not a measurement).
    with peers.silent_listener() as port, anyio.fail_after(60):
        found = await client.probe(
            {"X-Prometheus-Scrape-Timeout-Seconds": "1.5"},
            target=f"127.0.0.1:{port}",
            module="patient",
        )
    assert value(found, "probe_success") == 0
    assert info(found)["outcome"].startswith("timeout")
    assert "connect" in {dict(labels)["phase"] for labels in found["probe_dicom_duration_seconds"]}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("params", "headers", "why"),
    [
        ({}, {}, "target is missing"),
        ({"target": "127.0.0.1"}, {}, "expected [AET@]HOST:PORT"),
        (
            {"target": "127.0.0.1:1", "module": "nope"},
            {},
            "unknown module 'nope' (the config has: default, patient)",
        ),
        ({"target": "ABCDEFGHIJKLMNOPQ@127.0.0.1:1"}, {}, "called_ae"),
        (
            {"target": "127.0.0.1:1"},
            {"X-Prometheus-Scrape-Timeout-Seconds": "x"},
            "must be a number",
        ),
    ],
)
async def test_bad_requests_are_400_with_the_reason(
    client: Client, params: dict[str, str], headers: dict[str, str], why: str
) -> None:
    status, text = await client.get("/probe", headers, **params)
    assert status == 400
    assert why in text


@pytest.mark.anyio
async def test_probes_over_the_bound_are_answered_at_once_as_overloaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    running = anyio.Event()
    real_run = probe.run

    async def run(*args: Any) -> Any:
        running.set()
        return await real_run(*args)

    monkeypatch.setattr(probe, "run", run)
    exporter = Exporter(config.parse({"modules": MODULES}), max_in_flight=1)
    first: list[dict[str, dict[Labels, float]]] = []
    async with serving(exporter) as client:
        with peers.silent_listener() as port, anyio.fail_after(60):

            async def hold(client: Client) -> None:
                headers = {"X-Prometheus-Scrape-Timeout-Seconds": "4"}
                first.append(await client.probe(headers, target=f"127.0.0.1:{port}"))

            async with anyio.create_task_group() as group:
                group.start_soon(hold, client)
                await running.wait()
                found = await client.probe(target=f"127.0.0.1:{port}")
                assert exporter.in_flight == 1  # the first was still running
                assert value(found, "probe_success") == 0
                assert info(found)["outcome"] == "overloaded"
        assert info(first[0])["outcome"].startswith("timeout")
        _, own = await client.get("/metrics")
        metrics = samples(own)
        assert (
            value(
                metrics, "asyncecho_exporter_probes_total", module="default", outcome="overloaded"
            )
            == 1
        )
        assert value(metrics, "asyncecho_exporter_probes_in_flight_limit") == 1
        assert value(metrics, "asyncecho_exporter_probes_in_flight") == 0


# --- TLS --------------------------------------------------------------------------------------


@pytest.mark.peer
@pytest.mark.anyio
async def test_probe_over_tls(certs: Certs, tmp_path: Path) -> None:
    modules = {
        "tls": {
            "tls": {
                "ca_file": str(certs.ca),
                "cert_file": str(certs.client.cert),
                "key_file": str(certs.client.key),
            }
        }
    }
    exporter = Exporter(config.parse({"modules": modules}))
    extra = ["+tls", *certs.server.args, "+cf", str(certs.ca), "--require-peer-cert"]
    with peers.storescp(nodelay=True, extra=extra) as peer:
        async with serving(exporter) as client:
            found = await client.probe(target=f"127.0.0.1:{peer.port}", module="tls")
            refused = await client.probe(target=f"127.0.0.1:{peer.port}")  # plain TCP to a TLS port
    assert value(found, "probe_success") == 1, info(found)
    phases = {dict(labels)["phase"] for labels in found["probe_dicom_duration_seconds"]}
    assert phases == {"connect", "tls", "associate", "echo", "release"}
    assert value(found, "probe_tls_version_info", version="TLS 1.3") == 1
    leaf = x509.load_pem_x509_certificate(certs.server.cert.read_bytes())
    ca = x509.load_pem_x509_certificate(certs.ca.read_bytes())
    earliest = min(cert.not_valid_after_utc for cert in (leaf, ca))  # the chain it presents
    expiry = value(found, "probe_ssl_earliest_cert_expiry")
    assert expiry in (earliest.timestamp(), leaf.not_valid_after_utc.timestamp())
    assert value(refused, "probe_success") == 0
    assert "probe_tls_version_info" not in refused


def test_certificate_expiry_read_from_der(certs: Certs) -> None:
    for pem in (certs.server.cert, certs.expired.cert, certs.ca):
        cert = x509.load_pem_x509_certificate(pem.read_bytes())
        der = cert.public_bytes(Encoding.DER)
        assert tls_watch.not_after(der) == cert.not_valid_after_utc.timestamp()
    assert tls_watch.not_after(b"") is None
    assert tls_watch.not_after(b"\x30\x03\x02\x01\x01") is None


def test_utc_time_before_2050_and_generalized_time_after() -> None:
    def cert(tag: int, text: bytes) -> bytes:
        def tlv(tag: int, body: bytes) -> bytes:
            return bytes([tag, len(body)]) + body

        validity = tlv(0x30, tlv(0x17, b"200101000000Z") + tlv(tag, text))
        tbs = tlv(0x30, tlv(0x02, b"\x01") + tlv(0x30, b"") + tlv(0x30, b"") + validity)
        return tlv(0x30, tbs)

    def at(year: int, month: int, day: int, h: int = 0, m: int = 0, s: int = 0) -> float:
        return datetime.datetime(
            year, month, day, h, m, s, tzinfo=datetime.timezone.utc
        ).timestamp()

    assert tls_watch.not_after(cert(0x17, b"491231235959Z")) == at(2049, 12, 31, 23, 59, 59)
    assert tls_watch.not_after(cert(0x17, b"500101000000Z")) == at(1950, 1, 1)
    assert tls_watch.not_after(cert(0x18, b"21060101000000Z")) == at(2106, 1, 1)
    assert tls_watch.not_after(cert(0x18, b"2106")) is None


# --- the exporter's own endpoints ------------------------------------------------------------


@pytest.mark.anyio
async def test_healthy_index_and_own_metrics(client: Client) -> None:
    assert await client.get("/-/healthy") == (200, "Healthy\n")
    status, index = await client.get("/")
    assert status == 200
    assert "modules: default, patient" in index
    status, own = await client.get("/metrics")
    metrics = samples(own)
    assert status == 200
    assert value(metrics, "asyncecho_exporter_config_last_reload_successful") == 1
    assert "process_cpu_seconds_total" in metrics
    assert "probe_success" not in metrics


@pytest.mark.anyio
async def test_reload_takes_a_good_config_and_keeps_the_old_for_a_bad_one(tmp_path: Path) -> None:
    path = tmp_path / "exporter.yml"
    path.write_text("modules:\n  first:\n    timeout: 5s\n")
    exporter = Exporter(config.load(path), config_path=path)
    async with serving(exporter) as client:
        target = f"127.0.0.1:{peers.closed_port()}"
        path.write_text("modules:\n  second:\n    timeout: 5s\n")
        assert await client.post("/-/reload") == (200, "OK\n")
        assert (await client.get("/probe", target=target, module="second"))[0] == 200
        assert (await client.get("/probe", target=target, module="first"))[0] == 400

        path.write_text("modules:\n  third:\n    timeout: soon\n")
        status, why = await client.post("/-/reload")
        assert status == 500
        assert "modules.third.timeout" in why
        assert (await client.get("/probe", target=target, module="second"))[0] == 200
        _, own = await client.get("/metrics")
        metrics = samples(own)
        assert value(metrics, "asyncecho_exporter_config_reloads_total", result="success") == 1
        assert value(metrics, "asyncecho_exporter_config_reloads_total", result="failure") == 1
        assert value(metrics, "asyncecho_exporter_config_last_reload_successful") == 0


# --- the exposition, checked against prometheus_client's ----------------------------------


def reference(result: EchoResult, duration: float, watch: tls_watch.HandshakeWatch | None) -> bytes:
    """The same answer through a prometheus_client registry of its own."""

    def gauge(name: str, value: float, **labels: str) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, probe.METRICS[name], labels=list(labels))
        family.add_metric(list(labels.values()), value)
        return family

    families = [
        gauge("probe_success", 1 if result.ok else 0),
        gauge("probe_duration_seconds", duration),
    ]
    phases = GaugeMetricFamily(
        "probe_dicom_duration_seconds",
        probe.METRICS["probe_dicom_duration_seconds"],
        labels=["phase"],
    )
    tls_seconds = watch.seconds if watch else None
    connect = result.timings.connect
    if connect is not None and tls_seconds is not None:
        connect -= tls_seconds
    for phase, seconds in (
        ("connect", connect),
        ("tls", tls_seconds),
        ("associate", result.timings.associate),
        ("echo", result.timings.echo),
        ("release", result.timings.release),
    ):
        if seconds is not None:
            phases.add_metric([phase], seconds)
    families.append(phases)
    if result.status is not None:
        families.append(gauge("probe_dicom_status", result.status))
    families.append(
        gauge(
            "probe_dicom_info",
            1,
            outcome=result.outcome,
            peer_ae=result.peer_ae or "",
            implementation_class_uid=result.peer_implementation_class_uid or "",
            implementation_version_name=result.peer_implementation_version_name or "",
            transfer_syntax=result.transfer_syntax or "",
        )
    )
    if result.tls_version:
        families.append(gauge("probe_tls_version_info", 1, version="TLS 1.3"))
    if watch is not None and watch.earliest_expiry() is not None:
        families.append(gauge("probe_ssl_earliest_cert_expiry", watch.earliest_expiry() or 0))

    class Families(Collector):
        def collect(self) -> Iterator[Metric]:
            yield from families

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Families())
    return generate_latest(registry)


def test_the_exposition_is_prometheus_clients(certs: Certs) -> None:
    success = EchoResult(
        "127.0.0.1",
        104,
        status=0,
        timings=Timings(0.0012, 0.0003, 0.0004, 0.0002, 0.0021),
        peer_ae="PACS",
        peer_implementation_class_uid="1.2.3.4",
        peer_implementation_version_name='odd "name"\\ \nhere',
        transfer_syntax="1.2.840.10008.1.2",
        tls_version="TLSv1.3",
    )
    watch = tls_watch.HandshakeWatch()
    watch.seconds = 0.0007
    watch.certificates = [
        x509.load_pem_x509_certificate(certs.server.cert.read_bytes()).public_bytes(Encoding.DER)
    ]
    refused = EchoResult("127.0.0.1", 104, error=ConnectionRefused("refused", host="h", port=1))
    rejected_status = EchoResult(
        "127.0.0.1", 104, status=0x0122, timings=Timings(1e-7, 123456789.5)
    )
    for result, seconds, tls in (
        (success, 0.0025, watch),
        (success, 1e-9, None),
        (refused, 0.5, None),
        (rejected_status, 2.0, None),
    ):
        assert probe.exposition(result, seconds, tls) == reference(result, seconds, tls)
    assert probe.overloaded(5) == samples_text_of_overloaded()


def samples_text_of_overloaded() -> bytes:
    families = [
        GaugeMetricFamily("probe_success", probe.METRICS["probe_success"], value=0),
        GaugeMetricFamily(
            "probe_duration_seconds", probe.METRICS["probe_duration_seconds"], value=0
        ),
    ]
    info = GaugeMetricFamily(
        "probe_dicom_info", probe.METRICS["probe_dicom_info"], labels=list(probe.INFO_LABELS)
    )
    info.add_metric(["", "", "overloaded", "", ""], 1)
    families.append(info)

    class Families(Collector):
        def collect(self) -> Iterator[Metric]:
            yield from families

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Families())
    return generate_latest(registry)
