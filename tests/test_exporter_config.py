"""The exporter's YAML config (every error names its key) and the
`asyncecho exporter` command: a bad config stops start-up with one `E:`
line and exit 2, never a traceback; SIGHUP re-reads the config."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import certs as pki
import peers
from asyncecho.__main__ import main
from asyncecho.exporter import config
from certs import Certs

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "exporter" / "exporter.yml"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return pki.session_certs(tmp_path_factory)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5s", 5.0),
        ("500ms", 0.5),
        ("1m30s", 90.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
    ],
)
def test_prometheus_durations(text: str, seconds: float) -> None:
    assert config.seconds(text, "t") == seconds


def test_numbers_are_seconds() -> None:
    assert config.seconds(3, "t") == 3.0
    assert config.seconds(0.25, "t") == 0.25


def test_defaults() -> None:
    assert config.parse(None).modules["default"] == config.Module("default")
    parsed = config.parse({"modules": {"pacs": None}})
    assert set(parsed.modules) == {"pacs", "default"}
    assert parsed.modules["pacs"].timeout == config.DEFAULT_TIMEOUT
    assert parsed.modules["pacs"].options(None, 2.0) == {
        "connect_timeout": 2.0,
        "acse_timeout": 2.0,
        "dimse_timeout": 2.0,
        "network_timeout": 2.0,
        "deadline": 2.0,
    }


def test_module_options() -> None:
    module = config.parse(
        {
            "modules": {
                "m": {
                    "calling_ae": "PROM ",
                    "called_ae": "PACS",
                    "timeout": "3s",
                    "transfer_syntaxes": ["1.2.840.10008.1.2"],
                }
            }
        }
    ).modules["m"]
    options = module.options("OTHER", 3.0)
    assert options["calling_ae"] == "PROM"
    assert options["called_ae"] == "OTHER"  # the target's AET@ wins
    assert module.options(None, 3.0)["called_ae"] == "PACS"
    assert options["transfer_syntaxes"] == ("1.2.840.10008.1.2",)
    assert module.timeout == 3.0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1], "the config: expected a mapping, got list"),
        ({"module": {}}, "module: unknown key (expected one of: modules)"),
        ({"modules": []}, "modules: expected a mapping of module names, got list"),
        ({"modules": {"m": 5}}, "modules.m: expected a mapping, got int 5"),
        ({"modules": {"m": {"timout": 5}}}, "modules.m.timout: unknown key"),
        ({"modules": {"m": {"timeout": "soon"}}}, "modules.m.timeout: expected seconds"),
        ({"modules": {"m": {"timeout": "5"}}}, "modules.m.timeout: expected seconds"),
        ({"modules": {"m": {"timeout": 0}}}, "modules.m.timeout: must be more than 0"),
        ({"modules": {"m": {"timeout": True}}}, "modules.m.timeout: expected seconds"),
        ({"modules": {"m": {"called_ae": "A" * 17}}}, "modules.m.called_ae: "),
        ({"modules": {"m": {"calling_ae": 7}}}, "modules.m: calling_ae must be a str"),
        (
            {"modules": {"m": {"transfer_syntaxes": "1.2"}}},
            "modules.m.transfer_syntaxes: expected a list",
        ),
        ({"modules": {"m": {"transfer_syntaxes": ["1.2.x"]}}}, "modules.m.transfer_syntaxes: "),
        ({"modules": {"m": {"tls": {"ca": "x"}}}}, "modules.m.tls.ca: unknown key"),
        (
            {"modules": {"m": {"tls": {"ca_file": "/nonexistent/ca.pem"}}}},
            "modules.m.tls.ca_file: cannot read",
        ),
        (
            {"modules": {"m": {"tls": {"insecure_skip_verify": "yes"}}}},
            "modules.m.tls.insecure_skip_verify: expected true or false",
        ),
        (
            {"modules": {"m": {"tls": {"server_name": 5}}}},
            "modules.m.tls.server_name: expected a host name",
        ),
    ],
)
def test_every_error_names_its_key(data: object, message: str) -> None:
    with pytest.raises(config.ConfigError) as info:
        config.parse(data)
    assert str(info.value).startswith(message), str(info.value)


def test_tls_files(certs: Certs, tmp_path: Path) -> None:
    with pytest.raises(
        config.ConfigError, match=r"^modules\.m\.tls\.key_file: given without cert_file"
    ):
        config.parse({"modules": {"m": {"tls": {"key_file": str(certs.client.key)}}}})
    with pytest.raises(
        config.ConfigError, match=r"^modules\.m\.tls\.ca_file: not a usable CA file"
    ):
        config.parse({"modules": {"m": {"tls": {"ca_file": str(certs.client.key)}}}})
    wrong_key = {"cert_file": str(certs.client.cert), "key_file": str(certs.server.key)}
    with pytest.raises(config.ConfigError, match=r"^modules\.m\.tls\.cert_file: cannot load"):
        config.parse({"modules": {"m": {"tls": wrong_key}}})
    # relative paths are the config file's
    (tmp_path / "ca.pem").write_bytes(certs.ca.read_bytes())
    path = tmp_path / "exporter.yml"
    path.write_text("modules:\n  m:\n    tls:\n      ca_file: ca.pem\n      server_name: pacs\n")
    module = config.load(path).modules["m"]
    assert module.ssl is not None
    assert module.options(None, 1.0)["server_hostname"] == "pacs"


def test_yaml_errors_say_where(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("modules:\n  m:\n    timeout: 5s\n   called_ae: X\n")
    with pytest.raises(config.ConfigError, match=r"not valid YAML: line 4, column 4"):
        config.load(path)
    with pytest.raises(config.ConfigError, match="cannot read"):
        config.load(tmp_path / "missing.yml")


def test_the_example_config_loads_with_its_tls_files_in_place(certs: Certs, tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    tls.mkdir()
    (tls / "ca.pem").write_bytes(certs.ca.read_bytes())
    (tls / "client.pem").write_bytes(certs.client.cert.read_bytes())
    (tls / "client.key").write_bytes(certs.client.key.read_bytes())
    path = tmp_path / "exporter.yml"
    path.write_text(EXAMPLE.read_text())
    loaded = config.load(path)
    assert set(loaded.modules) == {"default", "tls", "implicit_only"}
    assert loaded.modules["tls"].ssl is not None


# --- the command -----------------------------------------------------------------------------


def test_a_bad_config_stops_start_up_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "exporter.yml"
    path.write_text("modules:\n  pacs:\n    timeout: forever\n")
    assert main(["exporter", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"E: bad config file {path}: modules.pacs.timeout: expected seconds")
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert main(["exporter", "--config", str(tmp_path / "missing.yml")]) == 2
    assert "E: bad config file" in capsys.readouterr().err


@pytest.mark.parametrize("listen", ["9704", "host:", "host:port", "[::1]:99999"])
def test_a_bad_listen_address_is_a_usage_error(
    listen: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["exporter", "--listen", listen]) == 2
    assert "--listen: expected HOST:PORT" in capsys.readouterr().err


def test_the_command_serves_and_sighup_rereads_the_config(tmp_path: Path) -> None:
    path = tmp_path / "exporter.yml"
    path.write_text("modules:\n  first: {}\n")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "asyncecho",
            "exporter",
            "--config",
            str(path),
            "--listen",
            "127.0.0.1:0",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        match = re.match(
            r"I: listening on (http://127\.0\.0\.1:\d+/) \(modules: first, default\)$", line
        )
        assert match, line
        base = match.group(1)
        target = f"target=127.0.0.1:{peers.closed_port()}"

        def status(module: str) -> int:
            try:
                with urllib.request.urlopen(
                    f"{base}probe?{target}&module={module}", timeout=10
                ) as r:
                    return int(r.status)
            except urllib.error.HTTPError as error:
                return error.code

        assert status("first") == 200
        path.write_text("modules:\n  second: {}\n")
        os.kill(process.pid, signal.SIGHUP)
        assert process.stderr.readline().startswith("I: config reloaded from")
        assert (status("first"), status("second")) == (400, 200)
        path.write_text("modules:\n  third: {timeout: 5x}\n")
        os.kill(process.pid, signal.SIGHUP)
        line = process.stderr.readline()
        assert line.startswith("W: config reload failed, the old config stays:"), line
        assert "modules.third.timeout" in line
        assert status("second") == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
        rest = process.stderr.read()
        assert rest == "I: stopping\n"
    finally:
        if process.poll() is None:
            peers.terminate(process)
        if process.stderr:
            process.stderr.close()


def test_cannot_listen_is_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["exporter", "--listen", f"127.0.0.1:{port}"]) == 1
    assert f"E: cannot listen on 127.0.0.1:{port}:" in capsys.readouterr().err
