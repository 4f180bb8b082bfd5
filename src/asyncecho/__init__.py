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

# The public names: {name: the submodule it comes from} (a name that is its
# own module's is that submodule). Loaded on first use (PEP 562), since the
# client pulls in the whole core and the CLI must start fast.
_EXPORTS = {
    "echo": "client",
    "verify": "client",
    "associate": "client",
    "Association": "association",
    "EchoOptions": "options",
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
    "sweep": "sweeps.engine",
    "Sweep": "sweeps.engine",
    "Target": "sweeps.engine",
    "SweepRecord": "sweeps.engine",
    "tune_collector": "collector",
    "identity": "identity",
    "tls": "tls",
    "uids": "protocol.uids",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    # For type checkers, which cannot follow the lazy map: the same names
    # (tests/test_typed_api.py checks that they agree), each `x as x`, the
    # explicit re-export mypy --strict wants.
    from . import identity as identity
    from . import tls as tls
    from ._version import __version__ as __version__
    from .association import Association as Association
    from .client import associate as associate
    from .client import echo as echo
    from .client import verify as verify
    from .collector import tune_collector as tune_collector
    from .exceptions import AcseTimeout as AcseTimeout
    from .exceptions import AssociationAborted as AssociationAborted
    from .exceptions import AssociationRejected as AssociationRejected
    from .exceptions import ConnectionFailed as ConnectionFailed
    from .exceptions import ConnectionRefused as ConnectionRefused
    from .exceptions import ConnectTimeout as ConnectTimeout
    from .exceptions import DeadlineExceeded as DeadlineExceeded
    from .exceptions import DimseTimeout as DimseTimeout
    from .exceptions import EchoError as EchoError
    from .exceptions import EchoTimeout as EchoTimeout
    from .exceptions import HostUnreachable as HostUnreachable
    from .exceptions import LocalResourceError as LocalResourceError
    from .exceptions import NameResolutionFailed as NameResolutionFailed
    from .exceptions import NetworkTimeout as NetworkTimeout
    from .exceptions import NoAcceptedContext as NoAcceptedContext
    from .exceptions import ProtocolError as ProtocolError
    from .exceptions import TLSHandshakeFailed as TLSHandshakeFailed
    from .logs import disable_logging as disable_logging
    from .logs import enable_logging as enable_logging
    from .options import EchoOptions as EchoOptions
    from .protocol import uids as uids
    from .results import EchoResult as EchoResult
    from .results import Timings as Timings
    from .server import Server as Server
    from .server import ServerOptions as ServerOptions
    from .server import serve as serve
    from .sweeps.engine import Sweep as Sweep
    from .sweeps.engine import SweepRecord as SweepRecord
    from .sweeps.engine import Target as Target
    from .sweeps.engine import sweep as sweep


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'asyncecho' has no attribute {name!r}")
    loaded = import_module(f".{module}", __name__)
    value = loaded if module.rpartition(".")[2] == name else getattr(loaded, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public API (PEP 562), not the helpers this module imports."""
    return sorted(__all__)
