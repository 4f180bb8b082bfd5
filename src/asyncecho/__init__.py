"""asyncecho: DICOM Verification (C-ECHO) at scale on one event loop.

    result = await asyncecho.echo("pacs.example", 104)       # raises EchoError
    result = await asyncecho.verify("pacs.example", 104)     # never raises
    async with asyncecho.associate(host, port) as assoc: ...
    async with asyncecho.serve(port=0) as server: ...
    async with asyncecho.sweep(targets) as records: ...   # many at once

Names are imported on first use, so `import asyncecho` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._version import __version__

_EXPORTS = {
    "echo": "client",
    "verify": "client",
    "associate": "client",
    "Association": "client",
    "EchoOptions": "client",
    "serve": "server",
    "Server": "server",
    "ServerOptions": "server",
    "EchoResult": "results",
    "Timings": "results",
    "enable_logging": "logs",
    "disable_logging": "logs",
    "EchoError": "exceptions",
    "ConnectionFailed": "exceptions",
    "ConnectionRefused": "exceptions",
    "HostUnreachable": "exceptions",
    "NameResolutionFailed": "exceptions",
    "TLSHandshakeFailed": "exceptions",
    "LocalResourceError": "exceptions",
    "EchoTimeout": "exceptions",
    "ConnectTimeout": "exceptions",
    "AcseTimeout": "exceptions",
    "DimseTimeout": "exceptions",
    "NetworkTimeout": "exceptions",
    "DeadlineExceeded": "exceptions",
    "AssociationRejected": "exceptions",
    "AssociationAborted": "exceptions",
    "NoAcceptedContext": "exceptions",
    "ProtocolError": "exceptions",
    "sweep": "sweeper",
    "Sweep": "sweeper",
    "Target": "sweeper",
    "SweepRecord": "sweeper",
}

# A literal list (not built from _EXPORTS) so that type checkers see the
# public names as re-exported (mypy --strict has no implicit re-export).
__all__ = [
    "AcseTimeout",
    "Association",
    "AssociationAborted",
    "AssociationRejected",
    "ConnectTimeout",
    "ConnectionFailed",
    "ConnectionRefused",
    "DeadlineExceeded",
    "DimseTimeout",
    "EchoError",
    "EchoOptions",
    "EchoResult",
    "EchoTimeout",
    "HostUnreachable",
    "LocalResourceError",
    "NameResolutionFailed",
    "NetworkTimeout",
    "NoAcceptedContext",
    "ProtocolError",
    "Server",
    "ServerOptions",
    "Sweep",
    "SweepRecord",
    "TLSHandshakeFailed",
    "Target",
    "Timings",
    "__version__",
    "associate",
    "disable_logging",
    "echo",
    "enable_logging",
    "serve",
    "sweep",
    "verify",
]

if TYPE_CHECKING:
    from .client import Association, EchoOptions, associate, echo, verify
    from .exceptions import (
        AcseTimeout,
        AssociationAborted,
        AssociationRejected,
        ConnectionFailed,
        ConnectionRefused,
        ConnectTimeout,
        DeadlineExceeded,
        DimseTimeout,
        EchoError,
        EchoTimeout,
        HostUnreachable,
        LocalResourceError,
        NameResolutionFailed,
        NetworkTimeout,
        NoAcceptedContext,
        ProtocolError,
        TLSHandshakeFailed,
    )
    from .logs import disable_logging, enable_logging
    from .results import EchoResult, Timings
    from .server import Server, ServerOptions, serve
    from .sweeper import Sweep, SweepRecord, Target, sweep


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'asyncecho' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
