"""Target files for `asyncecho sweep`.

Two forms, told apart by the first line that is not blank or a comment:

- one target per line, `[CALLED_AET@]host[:port]`; IPv6 as `[addr]:port`
  (or a bare address without a port); `#` starts a comment at the start of
  a line or after white space;
- CSV with a header naming the columns `host` (required), `port`,
  `called_aet`, `calling_aet` in any order; other columns are ignored, so a
  sweep's own CSV output is a valid target file.

A host may be a CIDR block (`127.0.0.0/28`, `[::1/128]:104`): it stands for
the block's hosts (for IPv4 without the network and broadcast addresses),
unless there are more than `max_cidr_hosts` of them.

Parsing yields a `TargetLine` (which may stand for many targets) or a
`BadLine` per line, lazily: the caller decides whether a bad line is skipped
or fatal, and a huge file is never held whole.

May import `sweeps/records` and `protocol/` (AE-title rules) only.
"""

from __future__ import annotations

import csv
import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeAlias

from asyncecho.protocol.pdu_fields import validate_ae_title
from asyncecho.sweeps.records import DEFAULT_PORT, Target

DEFAULT_MAX_CIDR_HOSTS = 4096

CSV_COLUMNS = ("host", "port", "called_aet", "calling_aet")

# RFC 1123 host names; `_` is tolerated because it is common in internal DNS.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_COMMENT = re.compile(r"(?:^|\s)#")

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class TargetLine:
    """A good line: one host, or a CIDR block of hosts."""

    number: int
    host: str | Network
    port: int
    called_ae: str | None = None
    calling_ae: str | None = None

    @property
    def count(self) -> int:
        """How many targets the line stands for, without expanding it."""
        return 1 if isinstance(self.host, str) else cidr_host_count(self.host)

    def targets(self) -> Iterator[Target]:
        hosts: Iterable[object] = (self.host,) if isinstance(self.host, str) else self.host.hosts()
        for host in hosts:
            yield Target(str(host), self.port, self.called_ae, self.calling_ae)


@dataclass(frozen=True, slots=True)
class BadLine:
    number: int
    text: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.number}: {self.reason}: {self.text.strip()!r}"


def cidr_host_count(network: Network) -> int:
    """The length of `network.hosts()`: IPv4 leaves out the network and
    broadcast addresses (RFC 3021: not for /31 and /32), IPv6 the
    Subnet-Router anycast address (RFC 4291 2.6.1: not for /127 and /128)."""
    spare = network.max_prefixlen - network.prefixlen
    if spare <= 1:
        return int(network.num_addresses)
    return int(network.num_addresses) - (2 if network.version == 4 else 1)


def is_block_host(address: ipaddress.IPv4Address | ipaddress.IPv6Address, network: Network) -> bool:
    """Whether `network.hosts()` yields `address`, without expanding it (the
    same exclusions as `cidr_host_count`)."""
    if address.version != network.version or address not in network:
        return False
    if network.max_prefixlen - network.prefixlen <= 1:
        return True
    if address == network.network_address:
        return False
    return network.version == 6 or address != network.broadcast_address


def _port(text: str, default: int) -> int:
    text = text.strip()
    if not text:
        return default
    if not text.isdigit():
        raise ValueError(f"invalid port {text!r}")
    value = int(text)
    if not 0 < value < 65536:
        raise ValueError(f"port {value} is not in 1-65535")
    return value


def _ae(text: str | None, default: str | None, what: str) -> str | None:
    if text is None or not text.strip():
        return default
    try:
        return validate_ae_title(text)
    except ValueError as exc:
        raise ValueError(f"invalid {what}: {exc}") from None


def parse_host(text: str, max_cidr_hosts: int) -> str | Network:
    """A host name, an IP address (normalised) or a CIDR block."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if not text:
        raise ValueError("missing host")
    if "/" in text:
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"invalid CIDR block {text!r}") from None
        count = cidr_host_count(network)
        if count > max_cidr_hosts:
            raise ValueError(
                f"CIDR block {network} has {count} hosts, more than the limit of "
                f"{max_cidr_hosts} (raise it with --max-cidr-hosts)"
            )
        return network
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if ":" in text:
        raise ValueError(f"invalid IPv6 address {text!r}")
    if all(part.isdigit() for part in text.rstrip(".").split(".")):
        raise ValueError(f"invalid IPv4 address {text!r}")
    if len(text) > 253 or not _HOSTNAME.fullmatch(text):
        raise ValueError(f"invalid host name {text!r}")
    return text


def parse_spec(
    text: str,
    *,
    number: int = 0,
    port: int = DEFAULT_PORT,
    called_ae: str | None = None,
    calling_ae: str | None = None,
    max_cidr_hosts: int = DEFAULT_MAX_CIDR_HOSTS,
) -> TargetLine:
    """One `[CALLED_AET@]host[:port]` (comment already removed); raises
    ValueError saying what is wrong."""
    text = text.strip()
    if "@" in text:
        title, text = text.rsplit("@", 1)
        called_ae = _ae(title, None, "called AE title")
        if called_ae is None:
            raise ValueError("empty called AE title before '@'")
    port_text = ""
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError("'[' without a closing ']'")
        host_text, rest = text[1:close], text[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"unexpected {rest!r} after ']'")
            port_text = rest[1:]
            if not port_text:
                raise ValueError("missing port after ':'")
    elif text.count(":") == 1:
        host_text, port_text = text.split(":")
        if not port_text:
            raise ValueError("missing port after ':'")
    else:
        host_text = text  # a host, or a bare IPv6 address (no port)
    if any(ch.isspace() for ch in host_text.strip()):
        raise ValueError("white space inside the host")
    host = parse_host(host_text, max_cidr_hosts)
    return TargetLine(number, host, _port(port_text, port), called_ae, calling_ae)


def _strip_comment(line: str) -> str:
    match = _COMMENT.search(line)
    return (line[: match.start()] if match else line).strip()


def _csv_header(line: str) -> list[str] | None:
    if "," not in line:
        return None
    return [cell.strip().lower() for cell in next(csv.reader([line]))]


class TargetParser:
    """Parses a target file fed one line at a time (so that a file and an
    async stream share it); it remembers the line number and whether the
    file is CSV. `port`, `called_ae` and `calling_ae` are the defaults for
    lines that do not set them."""

    def __init__(
        self,
        *,
        port: int = DEFAULT_PORT,
        called_ae: str | None = None,
        calling_ae: str | None = None,
        max_cidr_hosts: int = DEFAULT_MAX_CIDR_HOSTS,
    ) -> None:
        self.port = port
        self.called_ae = called_ae
        self.calling_ae = calling_ae
        self.max_cidr_hosts = max_cidr_hosts
        self.number = 0
        self._first = True
        self._columns: dict[str, int] | None = None

    def feed(self, raw: str) -> TargetLine | BadLine | None:
        """The next line (numbered from 1); None for a blank line, a
        comment or the CSV header."""
        self.number += 1
        number = self.number
        line = raw.strip()
        if not line or line.startswith("#"):
            return None
        if self._first:
            self._first = False
            header = _csv_header(line)
            if header is not None:
                if "host" not in header:
                    return BadLine(number, raw, "a CSV header needs a 'host' column")
                self._columns = {name: header.index(name) for name in CSV_COLUMNS if name in header}
                return None
        try:
            if self._columns is None:
                return parse_spec(
                    _strip_comment(line),
                    number=number,
                    port=self.port,
                    called_ae=self.called_ae,
                    calling_ae=self.calling_ae,
                    max_cidr_hosts=self.max_cidr_hosts,
                )
            return _csv_row(
                line,
                self._columns,
                number,
                self.port,
                self.called_ae,
                self.calling_ae,
                self.max_cidr_hosts,
            )
        except ValueError as exc:
            return BadLine(number, raw, str(exc))


def parse_lines(
    lines: Iterable[str],
    *,
    port: int = DEFAULT_PORT,
    called_ae: str | None = None,
    calling_ae: str | None = None,
    max_cidr_hosts: int = DEFAULT_MAX_CIDR_HOSTS,
) -> Iterator[TargetLine | BadLine]:
    """Parse a whole target file, lazily: a `TargetLine` or a `BadLine` for
    each line that is not blank or a comment."""
    parser = TargetParser(
        port=port, called_ae=called_ae, calling_ae=calling_ae, max_cidr_hosts=max_cidr_hosts
    )
    for raw in lines:
        entry = parser.feed(raw)
        if entry is not None:
            yield entry


def _csv_row(
    line: str,
    columns: dict[str, int],
    number: int,
    port: int,
    called_ae: str | None,
    calling_ae: str | None,
    max_cidr_hosts: int,
) -> TargetLine:
    try:
        cells = next(csv.reader([line], strict=True))
    except csv.Error as exc:
        raise ValueError(f"malformed CSV: {exc}") from None

    def cell(name: str) -> str | None:
        index = columns.get(name)
        return cells[index].strip() if index is not None and index < len(cells) else None

    host_text = cell("host")
    if not host_text:
        raise ValueError("empty host")
    if any(ch.isspace() for ch in host_text):
        raise ValueError("white space inside the host")
    return TargetLine(
        number,
        parse_host(host_text, max_cidr_hosts),
        _port(cell("port") or "", port),
        _ae(cell("called_aet"), called_ae, "called AE title"),
        _ae(cell("calling_aet"), calling_ae, "calling AE title"),
    )


def targets_of(entries: Iterable[TargetLine | BadLine]) -> Iterator[Target]:
    """The targets of the good lines, expanded lazily; bad lines dropped."""
    for entry in entries:
        if isinstance(entry, TargetLine):
            yield from entry.targets()
