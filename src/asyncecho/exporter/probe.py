"""One probe: a target parsed, one association through `asyncecho.verify()`,
and the metrics that answer it, in a registry of their own (as
blackbox_exporter makes one per probe, so that nothing of one target's
probe shows in another's).

The names are blackbox_exporter's where it has one (`probe_success`,
`probe_duration_seconds`, `probe_tls_version_info`,
`probe_ssl_earliest_cert_expiry`), so its dashboards and alerts carry over;
the DICOM ones are `probe_dicom_*`.

Imports the public API (`verify`, `EchoResult`), `tls_watch` and
prometheus_client.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from asyncecho.client import verify
from asyncecho.exporter import tls_watch
from asyncecho.exporter.config import Module
from asyncecho.results import EchoResult

#: The outcome of a probe the exporter turned away (too many in flight).
OVERLOADED = "overloaded"


class BadTarget(ValueError):
    """A `target` that is not `[AET@]HOST:PORT`."""


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int
    #: the AE title before `@`, which overrides the module's called AE
    called_ae: str | None = None


def parse_target(text: str) -> Target:
    """`[AET@]HOST:PORT`; an IPv6 address in brackets (`[::1]:104`)."""
    if not text:
        raise BadTarget("target is missing: /probe?target=[AET@]HOST:PORT")
    aet, at, address = text.rpartition("@")
    if at and not aet:
        raise BadTarget(f"target {text!r}: the AE title before @ is empty")
    host, colon, port_text = address.rpartition(":")
    if not colon or not host or not port_text:
        raise BadTarget(f"target {text!r}: expected [AET@]HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise BadTarget(f"target {text!r}: {host!r} in brackets is no IPv6 address") from None
    elif ":" in host:
        raise BadTarget(f"target {text!r}: write an IPv6 address in brackets, [{host}]:PORT")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise BadTarget(f"target {text!r}: the port must be 1-65535, not {port_text!r}")
    return Target(host, int(port_text), aet or None)


async def run(module: Module, target: Target, seconds: float) -> tuple[EchoResult, bytes]:
    """Probe `target` within `seconds`: the result and the exposition.
    Raises TypeError/ValueError (before any I/O) for what `verify()` refuses,
    e.g. an AE title too long."""
    options = module.options(target.called_ae, seconds)
    watch = token = None
    if module.ssl is not None:
        watch = tls_watch.HandshakeWatch()
        token = tls_watch.current.set(watch)
    started = time.perf_counter()
    try:
        result = await verify(target.host, target.port, **options)
    finally:
        if token is not None:
            tls_watch.current.reset(token)
    duration = time.perf_counter() - started
    return result, exposition(ProbeMetrics(result, duration, watch))


def overloaded(limit: int) -> bytes:
    """The answer to a probe over the bound: a failure, said at once."""
    return exposition(Refusal(limit))


def exposition(collector: Collector) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=value)


def _info(name: str, text: str, labels: dict[str, str]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, text, labels=list(labels))
    family.add_metric(list(labels.values()), 1)
    return family


class ProbeMetrics(Collector):
    """What one probe found, as metric families."""

    def __init__(
        self, result: EchoResult, duration: float, watch: tls_watch.HandshakeWatch | None
    ) -> None:
        self.result = result
        self.duration = duration
        self.watch = watch

    def collect(self) -> Iterator[GaugeMetricFamily]:
        result, watch = self.result, self.watch
        yield _gauge("probe_success", "Whether the C-ECHO succeeded", 1 if result.ok else 0)
        yield _gauge("probe_duration_seconds", "How long the probe took, in seconds", self.duration)
        phases = GaugeMetricFamily(
            "probe_dicom_duration_seconds",
            "Seconds spent in each phase of the association (the phases reached)",
            labels=["phase"],
        )
        timings = result.timings
        tls_seconds = watch.seconds if watch is not None else None
        connect = timings.connect
        if connect is not None and tls_seconds is not None:
            connect = max(connect - tls_seconds, 0.0)  # timings.connect holds the handshake
        for phase, seconds in (
            ("connect", connect),
            ("tls", tls_seconds),
            ("associate", timings.associate),
            ("echo", timings.echo),
            ("release", timings.release),
        ):
            if seconds is not None:
                phases.add_metric([phase], seconds)
        yield phases
        if result.status is not None:
            yield _gauge("probe_dicom_status", "The C-ECHO-RSP's status", result.status)
        yield _info(
            "probe_dicom_info",
            "The probe's outcome and what the peer said of itself",
            {
                "outcome": result.outcome,
                "peer_ae": result.peer_ae or "",
                "implementation_class_uid": result.peer_implementation_class_uid or "",
                "implementation_version_name": result.peer_implementation_version_name or "",
                "transfer_syntax": result.transfer_syntax or "",
            },
        )
        if result.tls_version is not None:
            yield _info(
                "probe_tls_version_info",
                "The TLS version the connection used",
                {"version": _blackbox_tls_version(result.tls_version)},
            )
        expiry = watch.earliest_expiry() if watch is not None else None
        if expiry is not None:
            yield _gauge(
                "probe_ssl_earliest_cert_expiry",
                "The earliest expiry of the peer's certificates, in unix seconds",
                expiry,
            )


class Refusal(Collector):
    """A probe not run: the exporter had its limit of probes in flight."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield _gauge("probe_success", "Whether the C-ECHO succeeded", 0)
        yield _gauge("probe_duration_seconds", "How long the probe took, in seconds", 0)
        yield _info(
            "probe_dicom_info",
            f"The probe's outcome: {OVERLOADED} (the exporter had {self.limit} probes in flight)",
            {
                "outcome": OVERLOADED,
                "peer_ae": "",
                "implementation_class_uid": "",
                "implementation_version_name": "",
                "transfer_syntax": "",
            },
        )


def _blackbox_tls_version(version: str) -> str:
    """Python's "TLSv1.3" as blackbox_exporter writes it: "TLS 1.3"."""
    return f"TLS {version[4:]}" if version.startswith("TLSv") else version
