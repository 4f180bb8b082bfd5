"""A real Prometheus scrapes `asyncecho exporter` with the blackbox
multi-target relabelling, and its HTTP query API reads the results back.

Everything comes from `examples/exporter/`: the exporter's config (its TLS
files put where it names them), Prometheus' scrape config (the targets, the
exporter's address and a 1 s interval put in) and the alerting rule. The
targets: DCMTK storescp, Orthanc with its own and a wrong called AE title, a
refused port, a silent listener, and storescp over TLS (mutual). Prometheus
(Debian's `prometheus`) runs as a plain process with its own data directory
in a temp dir; without it the test skips, under ASYNCECHO_REQUIRE_PEERS it
fails.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

import certs as pki
import peers
from certs import Certs

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "exporter"
PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
#: How long to wait for Prometheus to have what it should (a hang guard).
PATIENCE = 25.0

T = TypeVar("T")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return pki.session_certs(tmp_path_factory)


def require_prometheus() -> None:
    for path in (PROMETHEUS, PROMTOOL):
        if not Path(path).is_file():
            message = (
                f"Prometheus is not installed ({path}); install it (apt-get install -y prometheus)"
            )
            if peers.peers_required():
                pytest.fail(message)
            pytest.skip(message)


@contextlib.contextmanager
def exporter(config: Path) -> Iterator[str]:
    """`asyncecho exporter` as a process on a free loopback port: its address."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "asyncecho",
            "exporter",
            "--config",
            str(config),
            "--listen",
            "127.0.0.1:0",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        match = re.match(r"I: listening on http://(127\.0\.0\.1:\d+)/", line)
        assert match, line + process.stderr.read()
        yield match.group(1)
    finally:
        peers.terminate(process)
        rest = process.stderr.read() if process.stderr else ""
        if process.stderr:
            process.stderr.close()
        assert "Traceback" not in rest, rest


@contextlib.contextmanager
def prometheus(config: Path, data: Path) -> Iterator[str]:
    port = peers.free_port()
    log_path = data.parent / "prometheus.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        eventually("/-/ready answering 200", lambda: _ready(base, process, log_path))
        yield base
    finally:
        peers.terminate(process)
        log.close()


def _ready(base: str, process: subprocess.Popen[bytes], log: Path) -> bool | None:
    if process.poll() is not None:
        pytest.fail(f"Prometheus exited with {process.returncode}: {log.read_text()[-2000:]}")
    try:
        with urllib.request.urlopen(f"{base}/-/ready", timeout=5) as response:
            return True if response.status == 200 else None
    except OSError:  # (URLError, HTTPError 503 while it starts)
        return None


def api(base: str, path: str, **params: str) -> Any:
    url = f"{base}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]


def eventually(what: str, read: Callable[[], T | None]) -> T:
    """`read()` once it is not None (Prometheus scrapes and evaluates on its
    own clock); fails with `what` after PATIENCE seconds."""
    end = time.monotonic() + PATIENCE
    while True:
        found = read()
        if found is not None:
            return found
        if time.monotonic() > end:
            pytest.fail(f"Prometheus never had {what}")
        time.sleep(0.2)


def by_instance(base: str, query: str) -> dict[str, dict[str, Any]]:
    """{instance: {"labels": ..., "value": float}} for an instant query."""
    rows = api(base, "query", query=query)["result"]
    return {
        row["metric"]["instance"]: {"labels": row["metric"], "value": float(row["value"][1])}
        for row in rows
    }


def prometheus_config(exporter_address: str, targets: dict[str, list[str]], tmp: Path) -> Path:
    """The example scrape config with our targets, our exporter and a 1 s
    interval; the example's rule file beside it."""
    config = yaml.safe_load((EXAMPLES / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    for job in config["scrape_configs"]:
        if job.get("metrics_path") == "/probe":
            job["static_configs"] = [{"targets": targets[job["job_name"]]}]
            for rule in job["relabel_configs"]:
                if rule.get("target_label") == "__address__":
                    rule["replacement"] = exporter_address
        else:
            job["static_configs"] = [{"targets": [exporter_address]}]
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    shutil.copy(EXAMPLES / "dicom-alerts.yml", tmp / "dicom-alerts.yml")
    checked = subprocess.run(
        [PROMTOOL, "check", "config", str(path)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return path


def exporter_config(certs: Certs, tmp: Path) -> Path:
    """The example config verbatim, with the TLS files where it names them."""
    tls = tmp / "tls"
    tls.mkdir()
    shutil.copy(certs.ca, tls / "ca.pem")
    shutil.copy(certs.client.cert, tls / "client.pem")
    shutil.copy(certs.client.key, tls / "client.key")
    path = tmp / "exporter.yml"
    shutil.copy(EXAMPLES / "exporter.yml", path)
    return path


@pytest.mark.peer
def test_prometheus_scrapes_the_exporter(certs: Certs, tmp_path: Path) -> None:
    require_prometheus()
    rules = subprocess.run(
        [PROMTOOL, "check", "rules", str(EXAMPLES / "dicom-alerts.yml")],
        capture_output=True,
        text=True,
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr
    tls_extra = ["+tls", *certs.server.args, "+cf", str(certs.ca), "--require-peer-cert"]
    with (
        peers.storescp(nodelay=True) as storescp,
        peers.storescp(nodelay=True, extra=tls_extra) as tls_storescp,
        peers.orthanc("ORTHANC", check_called_aet=True) as orthanc,
        peers.silent_listener() as silent,
        exporter(exporter_config(certs, tmp_path)) as address,
    ):
        expected = {
            f"127.0.0.1:{storescp.port}": "success",
            f"ORTHANC@127.0.0.1:{orthanc.port}": "success",
            f"WRONG@127.0.0.1:{orthanc.port}": "rejected",
            f"127.0.0.1:{peers.closed_port()}": "refused",
            f"127.0.0.1:{silent}": "timeout",
        }
        tls_target = f"127.0.0.1:{tls_storescp.port}"
        targets = {"dicom": list(expected), "dicom_tls": [tls_target]}
        expected[tls_target] = "success"
        config = prometheus_config(address, targets, tmp_path)
        with prometheus(config, tmp_path / "data") as base:

            def all_probed() -> dict[str, dict[str, Any]] | None:
                found = by_instance(base, "probe_success")
                return found if set(found) == set(expected) else None

            success = eventually("probe_success for every target", all_probed)
            info = by_instance(base, "probe_dicom_info")
            up = by_instance(base, 'up{job=~"dicom.*"}')
            tls_version = by_instance(base, "probe_tls_version_info")
            expiry = by_instance(base, "probe_ssl_earliest_cert_expiry")
            phases = api(
                base, "query", query=f'probe_dicom_duration_seconds{{instance="{tls_target}"}}'
            )["result"]

            def own_outcomes() -> set[str] | None:
                query = "sum by (outcome) (asyncecho_exporter_probes_total)"
                rows = api(base, "query", query=query)["result"]
                found = {row["metric"]["outcome"] for row in rows}
                timeout = any(outcome.startswith("timeout") for outcome in found)
                return found if timeout and {"success", "rejected", "refused"} <= found else None

            outcomes = eventually("the exporter's own metrics", own_outcomes)

            def pending_alerts() -> set[str] | None:
                alerts = api(base, "alerts")["alerts"]
                names = {
                    a["labels"]["instance"]
                    for a in alerts
                    if a["labels"]["alertname"] == "DicomEchoFailing" and a["state"] == "pending"
                }
                return names if len(names) == 3 else None

            pending = eventually("the failing targets' alerts pending", pending_alerts)
            rule_groups = api(base, "rules")["groups"]

    for instance, outcome in expected.items():
        assert success[instance]["value"] == (1.0 if outcome == "success" else 0.0), instance
        assert info[instance]["labels"]["outcome"].startswith(outcome), (instance, info[instance])
        # the scrape itself never failed, not even for the silent node
        assert up[instance]["value"] == 1.0, instance
    assert success[tls_target]["labels"]["job"] == "dicom_tls"
    assert info[f"ORTHANC@127.0.0.1:{orthanc.port}"]["labels"]["peer_ae"] == "ORTHANC"
    assert info[f"127.0.0.1:{storescp.port}"]["labels"]["implementation_version_name"].startswith(
        "OFFIS_DCMTK"
    )
    assert set(tls_version) == {tls_target}
    assert tls_version[tls_target]["labels"]["version"] == "TLS 1.3"
    assert expiry[tls_target]["value"] > time.time()
    assert {row["metric"]["phase"] for row in phases} == {
        "connect",
        "tls",
        "associate",
        "echo",
        "release",
    }
    assert "overloaded" not in outcomes
    assert pending == {i for i, outcome in expected.items() if outcome != "success"}
    (rule,) = [r for group in rule_groups for r in group["rules"]]
    assert (rule["name"], rule["query"], rule["duration"], rule["health"]) == (
        "DicomEchoFailing",
        "probe_success == 0",
        300,
        "ok",
    )
