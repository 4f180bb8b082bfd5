"""The exporter's HTTP application (aiohttp):

- `GET /probe?target=[AET@]HOST:PORT&module=NAME`: one probe, answered in
  the Prometheus text format (`probe`); a missing or bad target, an unknown
  module or a bad scrape-timeout header is HTTP 400 with the reason;
- `GET /metrics`: the exporter's own metrics;
- `GET /-/healthy`; `POST /-/reload` (as SIGHUP in the CLI): read the config
  again, keeping the old one, and saying why, if the new one is bad.

A probe takes the smaller of its module's timeout and the scrape timeout
Prometheus sends (`X-Prometheus-Scrape-Timeout-Seconds`) less
`TIMEOUT_OFFSET`, so that a silent node fails its probe rather than the
scrape. At most `max_in_flight` probes run at once; one more is answered
at once with `probe_success 0` and the outcome `overloaded`, rather than
queued.

aiohttp, not an ASGI server: asyncio-native with one dependency tree (no
separate server and framework), a C HTTP parser, and its own test client;
it has been maintained under the aio-libs organisation since 2013.

May import aiohttp, prometheus_client and the rest of `asyncecho.exporter`
(which is built on the public API).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from asyncecho.exporter import config as config_file
from asyncecho.exporter import probe
from asyncecho.exporter.config import Config, ConfigError

#: Seconds kept back from Prometheus' scrape timeout for the answer to
#: travel (blackbox_exporter's default --timeout-offset).
TIMEOUT_OFFSET = 0.5
#: Probes in flight at most, by default.
DEFAULT_MAX_IN_FLIGHT = 1000

Log = Callable[[str, str], None]  # (level: "info" | "warning" | "error", text)


def _no_log(level: str, text: str) -> None:
    pass


class Exporter:
    """The config in force, the exporter's own metrics, and the handlers."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: str | Path | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        log: Log = _no_log,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        self.config = config
        self.config_path = config_path
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.log = log
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        prefix = "asyncecho_exporter_"
        self.probes = Counter(
            prefix + "probes",
            "Probes answered, by module and outcome",
            ["module", "outcome"],
            registry=registry,
        )
        self.in_flight_gauge = Gauge(
            prefix + "probes_in_flight", "Probes running now", registry=registry
        )
        self.in_flight_gauge.set_function(lambda: self.in_flight)
        Gauge(
            prefix + "probes_in_flight_limit",
            "Probes that may run at once (more are answered as overloaded)",
            registry=registry,
        ).set(max_in_flight)
        self.reloads = Counter(
            prefix + "config_reloads",
            "Config reloads, by result",
            ["result"],
            registry=registry,
        )
        self.last_reload_ok = Gauge(
            prefix + "config_last_reload_successful",
            "Whether the last config reload succeeded",
            registry=registry,
        )
        self.last_reload_ok.set(1)
        self.last_reload_time = Gauge(
            prefix + "config_last_reload_success_timestamp_seconds",
            "When the config was last loaded, in unix seconds",
            registry=registry,
        )
        self.last_reload_time.set_to_current_time()

    def reload(self) -> str | None:
        """Read the config file again: None if it is now in force, else why not
        (the old config stays)."""
        if self.config_path is None:
            return None  # nothing to read: the built-in default module
        try:
            new = config_file.load(self.config_path)
        except ConfigError as exc:
            self.reloads.labels("failure").inc()
            self.last_reload_ok.set(0)
            why = f"{self.config_path}: {exc}"
            self.log("warning", f"config reload failed, the old config stays: {why}")
            return why
        self.config = new
        self.reloads.labels("success").inc()
        self.last_reload_ok.set(1)
        self.last_reload_time.set_to_current_time()
        self.log(
            "info", f"config reloaded from {self.config_path}: modules {', '.join(new.modules)}"
        )
        return None

    def probe_seconds(self, module_timeout: float, header: str | None) -> float:
        """The probe's time: the module's, or less if the scrape's is shorter."""
        if header is None:
            return module_timeout
        try:
            scrape = float(header)
        except ValueError:
            scrape = math.nan
        if not math.isfinite(scrape) or scrape <= 0:
            raise ValueError(
                f"X-Prometheus-Scrape-Timeout-Seconds must be a number of seconds > 0, not {header!r}"
            )
        return min(module_timeout, max(scrape - TIMEOUT_OFFSET, scrape / 2))

    # --- handlers -----------------------------------------------------------------------

    async def handle_probe(self, request: web.Request) -> web.Response:
        query = request.query
        name = query.get("module", "default")
        module = self.config.modules.get(name)
        if module is None:
            known = ", ".join(sorted(self.config.modules))
            return _bad_request(f"unknown module {name!r} (the config has: {known})")
        try:
            target = probe.parse_target(query.get("target", ""))
            seconds = self.probe_seconds(
                module.timeout, request.headers.get("X-Prometheus-Scrape-Timeout-Seconds")
            )
        except ValueError as exc:
            return _bad_request(str(exc))
        if self.in_flight >= self.max_in_flight:
            self.probes.labels(name, probe.OVERLOADED).inc()
            return _metrics(probe.overloaded(self.max_in_flight))
        self.in_flight += 1
        try:
            result, body = await probe.run(module, target, seconds)
        except (TypeError, ValueError) as exc:  # what verify() refuses before any I/O
            return _bad_request(f"target {query.get('target')!r}: {exc}")
        finally:
            self.in_flight -= 1
        self.probes.labels(name, result.outcome).inc()
        return _metrics(body)

    async def handle_metrics(self, request: web.Request) -> web.Response:
        return _metrics(generate_latest(self.registry))

    async def handle_healthy(self, request: web.Request) -> web.Response:
        return web.Response(text="Healthy\n")

    async def handle_reload(self, request: web.Request) -> web.Response:
        why = self.reload()
        if why is not None:
            return web.Response(status=500, text=f"failed to reload config: {why}\n")
        return web.Response(text="OK\n")

    async def handle_index(self, request: web.Request) -> web.Response:
        modules = ", ".join(sorted(self.config.modules))
        return web.Response(
            text="asyncecho exporter: DICOM C-ECHO probes for Prometheus\n\n"
            "  /probe?target=[AET@]HOST:PORT&module=NAME   one probe\n"
            "  /metrics                                    the exporter's own metrics\n"
            "  /-/healthy, POST /-/reload\n\n"
            f"modules: {modules}\n"
        )

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self.handle_index)
        app.router.add_get("/probe", self.handle_probe)
        app.router.add_get("/metrics", self.handle_metrics)
        app.router.add_get("/-/healthy", self.handle_healthy)
        app.router.add_post("/-/reload", self.handle_reload)
        return app


def _bad_request(reason: str) -> web.Response:
    return web.Response(status=400, text=reason + "\n")


def _metrics(body: bytes) -> web.Response:
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
