"""One probe: a target parsed, one association through `asyncecho.verify()`,
and the metrics that answer it, that probe's alone (as blackbox_exporter
answers each probe from a registry of its own, so that nothing of one
target's probe shows in another's).

The names are blackbox_exporter's where it has one (`probe_success`,
`probe_duration_seconds`, `probe_tls_version_info`,
`probe_ssl_earliest_cert_expiry`), so its dashboards and alerts carry over;
the DICOM ones are `probe_dicom_*`.

The answer is written here in the Prometheus text format (0.0.4) rather
than through a prometheus_client registry: `generate_latest()` validates
and escapes every name of every sample on every call, ~150-250 us a probe
(as much as the rest of the exporter's own work), this ~20 us. The names
and help texts are fixed, so their lines are made once; each value goes
through prometheus_client's own float formatting; tests/test_exporter.py
checks the bytes against `generate_latest()` of the same metric families.

Imports the public API (`verify`, `EchoResult`), `tls_watch` and
prometheus_client.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client.utils import floatToGoString

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
    return result, exposition(result, duration, watch)


#: A value as prometheus_client writes it (Go's float formatting); typed here.
_number: Callable[[float], str] = floatToGoString

#: (name, help) of every metric a probe answers with, in the order written.
METRICS = {
    "probe_success": "Whether the C-ECHO succeeded",
    "probe_duration_seconds": "How long the probe took, in seconds",
    "probe_dicom_duration_seconds": (
        "Seconds spent in each phase of the association (the phases reached)"
    ),
    "probe_dicom_status": "The C-ECHO-RSP's status",
    "probe_dicom_info": "The probe's outcome and what the peer said of itself",
    "probe_tls_version_info": "The TLS version the connection used",
    "probe_ssl_earliest_cert_expiry": (
        "The earliest expiry of the peer's certificates, in unix seconds"
    ),
}
_HEADER = {name: f"# HELP {name} {text}\n# TYPE {name} gauge\n" for name, text in METRICS.items()}
#: The labels of probe_dicom_info, sorted (as prometheus_client writes them).
INFO_LABELS = (
    "implementation_class_uid",
    "implementation_version_name",
    "outcome",
    "peer_ae",
    "transfer_syntax",
)


def _escape(value: str) -> str:
    """A label value in the text format: backslash, newline and quote escaped."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _labels(pairs: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(pairs.items())) + "}"


def _metric(name: str, value: float, labels: str = "") -> str:
    return f"{_HEADER[name]}{name}{labels} {_number(value)}\n"


def exposition(
    result: EchoResult, duration: float, watch: tls_watch.HandshakeWatch | None
) -> bytes:
    """What one probe found, in the text format."""
    timings = result.timings
    tls_seconds = watch.seconds if watch is not None else None
    connect = timings.connect
    if connect is not None and tls_seconds is not None:
        connect = max(connect - tls_seconds, 0.0)  # timings.connect holds the handshake
    out = [
        _metric("probe_success", 1 if result.ok else 0),
        _metric("probe_duration_seconds", duration),
        _HEADER["probe_dicom_duration_seconds"],
    ]
    for phase, seconds in (
        ("connect", connect),
        ("tls", tls_seconds),
        ("associate", timings.associate),
        ("echo", timings.echo),
        ("release", timings.release),
    ):
        if seconds is not None:
            out.append(f'probe_dicom_duration_seconds{{phase="{phase}"}} {_number(seconds)}\n')
    if result.status is not None:
        out.append(_metric("probe_dicom_status", result.status))
    info = (
        result.peer_implementation_class_uid,
        result.peer_implementation_version_name,
        result.outcome,
        result.peer_ae,
        result.transfer_syntax,
    )
    labels = {name: text or "" for name, text in zip(INFO_LABELS, info, strict=True)}
    out.append(_metric("probe_dicom_info", 1, _labels(labels)))
    if result.tls_version is not None:
        version = {"version": _blackbox_tls_version(result.tls_version)}
        out.append(_metric("probe_tls_version_info", 1, _labels(version)))
    expiry = watch.earliest_expiry() if watch is not None else None
    if expiry is not None:
        out.append(_metric("probe_ssl_earliest_cert_expiry", expiry))
    return "".join(out).encode()


def overloaded(limit: int) -> bytes:
    """The answer to a probe over the bound (`limit` in flight): a failure,
    said at once, with the outcome `overloaded`."""
    info = dict.fromkeys(INFO_LABELS, "")
    info["outcome"] = OVERLOADED
    return "".join(
        (
            _metric("probe_success", 0),
            _metric("probe_duration_seconds", 0),
            _metric("probe_dicom_info", 1, _labels(info)),
        )
    ).encode()


def _blackbox_tls_version(version: str) -> str:
    """Python's "TLSv1.3" as blackbox_exporter writes it: "TLS 1.3"."""
    return f"TLS {version[4:]}" if version.startswith("TLSv") else version
