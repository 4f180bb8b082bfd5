"""The checks of every public argument, in one place.

`echo()`, `verify()`, `associate()`, `serve()`, `sweep()`, `EchoOptions`,
`ServerOptions` and `Target` all check what they are given here, before any
I/O, so that a bad value gets the same `TypeError` / `ValueError` (naming
the argument) on every backend instead of whatever the event loop, the
socket module or the peer would make of it.

Cheap by design: an options object is checked once when it is made (the
shared default `EchoOptions` once per process), and the common case of each
check is one or two type tests.

May import the standard library and `protocol/` (AE-title rules) only: every
layer above uses it.
"""

from __future__ import annotations

import ipaddress
import math
import ssl as _ssl
from collections.abc import Iterable
from dataclasses import MISSING, fields
from typing import Any

from asyncecho.protocol.pdu_fields import uid_problem, validate_ae_title

# PS3.8 9.3.5 / D.1: Maximum Length Received bounds the variable field of a
# P-DATA-TF, which holds PDV items of a 4-byte length, a context ID, a
# message control header and at least one byte of fragment: below 7 the
# peer could send us nothing at all (0 means no limit). The field is 32 bits.
MIN_MAX_PDU = 7
MAX_MAX_PDU = 0xFFFFFFFF

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _kind(value: object) -> str:
    return type(value).__name__


def host(value: object, name: str = "host", *, empty_ok: bool = False) -> str:
    """A host name or address. `empty_ok`: "" (all interfaces) for a listener."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {_kind(value)}")
    if not empty_ok and not value.strip():
        raise ValueError(f"{name} must be a non-empty str, not {value!r}")
    if "\x00" in value:
        raise ValueError(f"{name} must not contain a NUL character: {value!r}")
    if len(value) > 63 or not value.isascii() or ".." in value or value.startswith("."):
        _resolvable(value, name)
    return value


def _resolvable(value: str, name: str) -> None:
    """getaddrinfo() encodes a name with IDNA, which refuses an empty label
    or one over 63 characters (RFC 1035 2.3.4), and a name over 253 cannot
    be resolved: a ValueError here rather than a UnicodeError in the connect.
    (Called only for a name that is long, not ASCII or has an empty label.)"""
    inner = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        ipaddress.ip_address(inner.split("%", 1)[0])
        return
    except ValueError:
        pass
    shown = repr(value) if len(value) <= 60 else f"{value[:60]!r}... ({len(value)} characters)"
    try:
        encoded = value.encode("idna")
    except UnicodeError as exc:
        why = str(exc.__cause__ or exc)  # the codec's own reason is the cause
        raise ValueError(f"{name} {shown} is not a valid host name: {why}") from None
    if len(encoded.rstrip(b".")) > 253:
        raise ValueError(f"{name} {shown} is not a valid host name: longer than 253 characters")


def port(value: object, name: str = "port", *, zero_ok: bool = False) -> int:
    """A TCP port: 1-65535 to connect to, 0-65535 (0: any free one) to listen on."""
    if type(value) is not int:  # (bool is an int subclass: never a port)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be int, not {_kind(value)}")
        value = int(value)
    low = 0 if zero_ok else 1
    if not low <= value <= 65535:
        raise ValueError(f"{name} must be {low}-65535, not {value}")
    return value


def seconds(value: object, name: str, *, none_ok: bool = True) -> float | None:
    """A time limit: a finite number of seconds > 0 (or None: no limit).
    Zero and negative limits are refused rather than taken as "at once",
    which one backend did and the other did not."""
    if type(value) is float and 0.0 < value < math.inf:  # the usual case
        return value
    if value is None:
        if none_ok:
            return None
        raise TypeError(f"{name} must be a number of seconds, not None")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {_kind(value)}")
    if not 0 < value < math.inf:  # (also refuses NaN)
        raise ValueError(f"{name} must be a finite number of seconds > 0, not {value!r}")
    return value


def integer(value: object, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {_kind(value)}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, not {value}")
    return int(value)


def rate(value: object, name: str = "rate") -> float | None:
    """Starts per second, or None for as fast as the slots allow."""
    return seconds(value, name)  # the same rules: finite and > 0


def max_pdu(value: object, name: str = "max_pdu") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {_kind(value)}")
    if value != 0 and not MIN_MAX_PDU <= value <= MAX_MAX_PDU:
        raise ValueError(
            f"{name} must be 0 (no limit) or {MIN_MAX_PDU}-{MAX_MAX_PDU} bytes, not {value}"
        )
    return int(value)


def flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {_kind(value)}")
    return value


def ae_title(value: object, name: str) -> str:
    """An AE title (PS3.5 AE: up to 16 characters of the default repertoire,
    not all spaces), stripped of the spaces that are not significant."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {_kind(value)}")
    try:
        return validate_ae_title(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def ae_titles(value: object, name: str) -> frozenset[str]:
    """A set of AE titles. A bare str would be taken as a set of characters:
    refused, as is anything that is not an iterable of str."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a collection of AE titles, not a bare {_kind(value)}")
    if not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a collection of AE titles, not {_kind(value)}")
    return frozenset(ae_title(item, f"{name} item") for item in value)


def uid_list(value: object, name: str) -> tuple[str, ...]:
    """A non-empty sequence of UIDs (PS3.5 9.1), e.g. transfer syntaxes."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a sequence of UID strings, not {_kind(value)}")
    items = tuple(value)
    if not items:
        raise ValueError(f"{name} must not be empty")
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"{name} must hold UID strings, not {_kind(item)}")
        problem = uid_problem(item)
        if problem:
            raise ValueError(f"{name}: {problem}")
    return items


def networks(value: object, name: str = "allowed_networks") -> tuple[Network, ...]:
    """CIDR blocks, as strings or `ipaddress` networks (host bits allowed)."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a collection of networks, not a bare {_kind(value)}")
    if not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a collection of networks, not {_kind(value)}")
    result: list[Network] = []
    for item in value:
        if isinstance(item, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            result.append(item)
            continue
        if not isinstance(item, str):
            raise TypeError(f"{name} must hold CIDR strings or networks, not {_kind(item)}")
        try:
            result.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    return tuple(result)


def ssl_context(value: object, name: str = "ssl") -> _ssl.SSLContext | None:
    if value is not None and not isinstance(value, _ssl.SSLContext):
        raise TypeError(f"{name} must be an ssl.SSLContext or None, not {_kind(value)}")
    return value


def optional_str(value: object, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str or None, not {_kind(value)}")
    if not value:
        raise ValueError(f"{name} must not be empty (None: the default)")
    return value


def instances(value: object, name: str, kind: Any, what: str) -> tuple[Any, ...]:
    """A sequence of `kind` (a class or a union of classes) objects, called
    `what` in messages; not a bare str."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a sequence of {what}, not {_kind(value)}")
    items = tuple(value)
    for item in items:
        if not isinstance(item, kind):
            raise TypeError(f"{name} must hold {what} objects, not {_kind(item)}")
    return items


def no_conflict(what: str, options: object, settings: dict[str, Any]) -> None:
    """Settings given both in an options object and as keywords: refused,
    rather than one of the two silently ignored."""
    if options is not None and settings:
        names = ", ".join(sorted(settings))
        raise TypeError(
            f"{what}: give either options= or the settings as keywords, not both "
            f"(also given: {names})"
        )


# --- how the public calls take their keywords -------------------------------


class Default:
    """The default of an option the call does not give.

    One distinct object per option, so that "not given" is never confused
    with "given the default's value" (a keyword given beside `options=`
    applies on top of it, whatever its value), and a call that gives none
    costs one tuple comparison, not an options object. Its repr is the
    value it stands for: what help() and inspect.signature() show."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)


def defaults_of(options_class: Any) -> dict[str, Any]:
    """{field: its `Default`} for an options dataclass: the keyword
    parameters of the public calls take their defaults from here, so the
    dataclass stays the one place where a default is written."""
    found: dict[str, Any] = {}
    for f in fields(options_class):
        if f.init:
            factory = f.default_factory
            found[f.name] = Default(f.default if factory is MISSING else factory())
    return found


def given(names: tuple[str, ...], values: tuple[object, ...]) -> dict[str, Any]:
    """{name: value} of the keywords a call gave (not left at their `Default`)."""
    return {
        name: value
        for name, value in zip(names, values, strict=True)
        if type(value) is not Default
    }
