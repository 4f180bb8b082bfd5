"""The CLI's argument types (argparse `type=` callables) and their limits,
shared by every command: each refuses a bad value with a message argparse
prints as a usage error (exit 2), never a traceback.

May import the standard library, `asyncecho` itself (lazily) and
`protocol/`; the other commands import it, never each other's privates.
"""

from __future__ import annotations

import argparse

#: The longest limit an option takes (a year): beyond it, a timer's deadline
#: stops being a number the event loop can schedule.
MAX_SECONDS = 365 * 24 * 3600.0

#: PS3.8 D.1: Maximum Length Received is a 32-bit unsigned field.
MAX_PDU_LENGTH = 0xFFFFFFFF


def seconds(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"seconds must be a finite number: {text!r}")
    if value < 0:
        raise argparse.ArgumentTypeError(f"seconds must not be negative: {text!r}")
    if value > MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"seconds must be at most {MAX_SECONDS:g}: {text!r}")
    return value


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port: {text!r}") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"port must be 1-65535: {text!r}")
    return value


def non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def pdu_length(text: str) -> int:
    value = non_negative(text)
    if value > MAX_PDU_LENGTH:
        raise argparse.ArgumentTypeError(
            f"must be at most {MAX_PDU_LENGTH} (a 32-bit length, PS3.8 D.1): {text!r}"
        )
    return value


def host(text: str) -> str:
    """A host the resolver can be asked about (see `arguments.host`); an
    address in brackets is taken without them."""
    import ipaddress

    from asyncecho import arguments

    inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return str(ipaddress.ip_address(inner))
    except ValueError:
        pass
    if not text.strip():
        raise argparse.ArgumentTypeError("empty host")
    try:
        return arguments.host(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def ae_title(text: str) -> str:
    from asyncecho.protocol.pdu_fields import validate_ae_title

    try:
        return validate_ae_title(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive(text: str) -> int:
    value = non_negative(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value
