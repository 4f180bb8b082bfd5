"""Structured log events of the library, through structlog.

Quiet by default: until `enable_logging()` is called, `log()` returns at
once and structlog is never imported (it costs ~70 ms of start-up). Events
are named `<area>.<what>` (e.g. `associate.accepted`) and carry bound
fields: peer, assoc (a per-process association number) and timings.
"""

from __future__ import annotations

from typing import Any

_logger: Any = None
enabled = False


def enable_logging(logger: Any = None) -> None:
    """Send events to `logger` (any structlog-style logger), or to
    `structlog.get_logger("asyncecho")`, which follows the application's
    structlog configuration."""
    global _logger, enabled
    if logger is None:
        import structlog

        logger = structlog.get_logger("asyncecho")
    _logger = logger
    enabled = True


def disable_logging() -> None:
    global _logger, enabled
    _logger = None
    enabled = False


def log(event: str, level: str = "info", **fields: Any) -> None:
    if not enabled:
        return
    getattr(_logger, level)(event, **fields)
