"""The exporter's YAML config, read and checked into frozen values.

    modules:
      default:                    # used when /probe names no module
        calling_ae: PROMETHEUS    # our AE title
        called_ae: ANY-SCP        # the peer's (a target's AET@ overrides it)
        timeout: 5s               # seconds, or a Prometheus duration (5s, 1m30s, 500ms)
        transfer_syntaxes: [1.2.840.10008.1.2.1, 1.2.840.10008.1.2]
        tls:                      # DICOM over TLS (PS3.15 B.9)
          ca_file: ca.pem
          cert_file: client.pem
          key_file: client.key
          server_name: pacs.example   # the name its certificate must carry
          insecure_skip_verify: false

Every key is optional; an unknown key is an error (a misspelt key silently
ignored would probe with the wrong settings). A config without a `default`
module gets one with the library's defaults. Any problem is one
`ConfigError` naming the key (`modules.pacs.timeout: ...`); TLS files are
loaded here, so a missing or bad one stops the load, not a probe.

Imports the public API (`EchoOptions` to check the options the
way `verify()` will, `asyncecho.tls` for the contexts) and PyYAML.
"""

from __future__ import annotations

import math
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncecho.client import EchoOptions
from asyncecho.exporter import tls_watch

#: The timeout of a module that sets none (Prometheus' default scrape
#: timeout is 10 s; the scrape's own header lowers it, see `app`).
DEFAULT_TIMEOUT = 10.0
#: The longest timeout taken (a year), as the CLI's `seconds` type.
MAX_TIMEOUT = 365 * 24 * 3600.0

_MODULE_KEYS = frozenset({"calling_ae", "called_ae", "timeout", "transfer_syntaxes", "tls"})
_TLS_KEYS = frozenset({"ca_file", "cert_file", "key_file", "server_name", "insecure_skip_verify"})

# Prometheus' duration syntax (common/model.ParseDuration): units from the
# largest down, each at most once; "0" alone.
_DURATION = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_UNIT_SECONDS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


class ConfigError(ValueError):
    """The config cannot be used; the message names the key."""


@dataclass(frozen=True)
class Module:
    """How to probe: the keyword options for `asyncecho.verify()` (only
    those the config set; the library's defaults otherwise) and the time
    a probe may take."""

    name: str
    timeout: float = DEFAULT_TIMEOUT
    calling_ae: str | None = None
    called_ae: str | None = None
    transfer_syntaxes: tuple[str, ...] | None = None
    ssl: ssl.SSLContext | None = None
    server_name: str | None = None

    def options(self, called_ae: str | None, seconds: float) -> dict[str, Any]:
        """The keywords for `verify()`: every limit is the probe's time."""
        options: dict[str, Any] = {
            "connect_timeout": seconds,
            "acse_timeout": seconds,
            "dimse_timeout": seconds,
            "network_timeout": seconds,
            "deadline": seconds,
        }
        if self.calling_ae is not None:
            options["calling_ae"] = self.calling_ae
        called = called_ae if called_ae is not None else self.called_ae
        if called is not None:
            options["called_ae"] = called
        if self.transfer_syntaxes is not None:
            options["transfer_syntaxes"] = self.transfer_syntaxes
        if self.ssl is not None:
            options["ssl"] = self.ssl
            if self.server_name is not None:
                options["server_hostname"] = self.server_name
        return options


@dataclass(frozen=True)
class Config:
    modules: Mapping[str, Module] = field(default_factory=lambda: {"default": Module("default")})


def load(path: str | Path) -> Config:
    """The config in the YAML file at `path`."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text: {exc.reason}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"not valid YAML: {where}{problem}") from None
    return parse(data, base=Path(path).parent)


def parse(data: object, base: Path = Path()) -> Config:
    """The config from its YAML value; relative TLS paths are taken from `base`."""
    if data is None:
        return Config()
    top = _mapping(data, "the config", {"modules"})
    raw_modules = top.get("modules")
    if raw_modules is None:
        return Config()
    if not isinstance(raw_modules, Mapping):
        raise ConfigError(f"modules: expected a mapping of module names, got {_kind(raw_modules)}")
    modules: dict[str, Module] = {}
    for name, body in raw_modules.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"modules: a module name must be a non-empty string, not {name!r}")
        modules[name] = _module(name, body, base)
    modules.setdefault("default", Module("default"))
    return Config(modules)


def _module(name: str, body: object, base: Path) -> Module:
    where = f"modules.{name}"
    values = {} if body is None else _mapping(body, where, _MODULE_KEYS)
    timeout = seconds(values.get("timeout", DEFAULT_TIMEOUT), f"{where}.timeout")
    options: dict[str, Any] = {}
    for key in ("calling_ae", "called_ae"):
        if values.get(key) is not None:
            options[key] = values[key]
    syntaxes = values.get("transfer_syntaxes")
    if syntaxes is not None:
        if isinstance(syntaxes, str):
            raise ConfigError(f"{where}.transfer_syntaxes: expected a list of UIDs, got a string")
        options["transfer_syntaxes"] = syntaxes
    try:
        # The same checks verify() makes, now rather than at every probe.
        checked = EchoOptions(**options)
    except (TypeError, ValueError) as exc:
        text = str(exc)  # "called_ae: ..." or "called_ae must be ..."
        keyed = text.split(":", 1)[0] in options
        raise ConfigError(f"{where}.{text}" if keyed else f"{where}: {text}") from None
    context, server_name = None, None
    if values.get("tls") is not None:
        context, server_name = _tls(values["tls"], f"{where}.tls", base)
    return Module(
        name=name,
        timeout=timeout,
        calling_ae=checked.calling_ae if "calling_ae" in options else None,
        called_ae=checked.called_ae if "called_ae" in options else None,
        transfer_syntaxes=tuple(checked.transfer_syntaxes) if syntaxes is not None else None,
        ssl=context,
        server_name=server_name,
    )


def _tls(body: object, where: str, base: Path) -> tuple[ssl.SSLContext, str | None]:
    values = _mapping(body, where, _TLS_KEYS)
    files: dict[str, str | None] = {}
    for key in ("ca_file", "cert_file", "key_file"):
        value = values.get(key)
        if value is not None:
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{where}.{key}: expected a file name, got {_kind(value)}")
            path = base / Path(value).expanduser()
            try:
                path.read_bytes()
            except OSError as exc:
                raise ConfigError(f"{where}.{key}: cannot read {path}: {exc.strerror}") from None
            value = str(path)
        files[key] = value
    if files["key_file"] is not None and files["cert_file"] is None:
        raise ConfigError(f"{where}.key_file: given without cert_file")
    server_name = values.get("server_name")
    if server_name is not None and (not isinstance(server_name, str) or not server_name):
        raise ConfigError(f"{where}.server_name: expected a host name, got {_kind(server_name)}")
    skip = values.get("insecure_skip_verify", False)
    if not isinstance(skip, bool):
        raise ConfigError(f"{where}.insecure_skip_verify: expected true or false, got {skip!r}")
    from asyncecho import tls

    try:
        context = tls.client_context(ca_file=files["ca_file"], insecure_skip_verify=skip)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(f"{where}.ca_file: not a usable CA file: {exc}") from None
    if files["cert_file"] is not None:
        try:
            context.load_cert_chain(files["cert_file"], files["key_file"])
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ConfigError(
                f"{where}.cert_file: cannot load the certificate and its key: {exc}"
            ) from None
    return tls_watch.watch(context), server_name


def seconds(value: object, where: str) -> float:
    """A timeout: a number of seconds, or a Prometheus duration ("5s")."""
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        number = duration(value)
    if number is None or not math.isfinite(number):
        raise ConfigError(
            f"{where}: expected seconds (a number, or a duration such as 5s, 1m30s, 500ms), "
            f"got {value!r}"
        )
    if not 0 < number <= MAX_TIMEOUT:
        raise ConfigError(f"{where}: must be more than 0 and at most a year, got {value!r}")
    return number


def duration(text: str) -> float | None:
    """A Prometheus duration in seconds; None if `text` is not one."""
    match = _DURATION.match(text.strip())
    if match is None or not any(match.groups()):
        return None
    return float(
        sum(
            int(part) * unit
            for part, unit in zip(match.groups(), _UNIT_SECONDS, strict=True)
            if part
        )
    )


def _mapping(value: object, where: str, keys: frozenset[str] | set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {_kind(value)}")
    for key in value:
        if key not in keys:
            prefix = "" if where == "the config" else f"{where}."
            raise ConfigError(
                f"{prefix}{key}: unknown key (expected one of: {', '.join(sorted(keys))})"
            )
    return value


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, (str, int, float, bool)):
        return f"{type(value).__name__} {value!r}"
    return type(value).__name__
