"""The CLI's log lines: structlog events rendered the way echoscu prints them
(`I: Requesting Association`, `E: Association Rejected`, `D: …`).

Library events (see `logs`) and the CLI's own messages go through one
structlog logger whose last processor turns each event into its lines.
structlog is imported on the first line actually printed, so a quiet,
successful run never pays for it.
"""

from __future__ import annotations

import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

from .dimse import status_name

LEVELS = {"critical": 50, "error": 40, "warning": 30, "warn": 30, "info": 20, "debug": 10}
_PREFIX = {"critical": "C", "error": "E", "warning": "W", "info": "I", "debug": "D"}


def _echo_status(status: int) -> str:
    if status == 0:
        return "Success"
    return f"0x{status:04X} - {status_name(status)}"


def _lines_for(event: str, fields: MutableMapping[str, Any], debug: bool) -> list[tuple[str, str]]:
    """(level, text) pairs for one event; the library's events have fixed
    texts here, the CLI's own events carry their text in `event`."""
    from . import pdu_dump

    if event == "connect.start":
        # echoscu says this before it connects, so that it precedes a
        # connect failure too (the A-ASSOCIATE request is Evt1, before the
        # transport connect: PS3.8 9.2).
        return [("info", "Requesting Association")]
    if event == "associate.request.pdu":
        if not debug:
            return []
        lines = [("debug", "Request Parameters:")]
        lines += [("debug", line) for line in pdu_dump.dump_rq(fields["pdu"])]
        return lines
    if event == "associate.request":
        return []
    if event == "associate.accepted.pdu":
        if not debug:
            return []
        lines = [("debug", "Accept Parameters:")]
        lines += [("debug", line) for line in pdu_dump.dump_ac(fields["pdu"], fields.get("rq"))]
        return lines
    if event == "associate.accepted":
        return [("info", "Association Accepted")]
    if event == "echo.request":
        return [("info", f"Sending Echo Request: MsgID {fields['message_id']}")]
    if event == "echo.response":
        return [("info", f"Received Echo Response (Status: {_echo_status(fields['status'])})")]
    if event == "release.request":
        return [("info", "Releasing Association")]
    if event == "abort.request":
        return [("info", "Aborting Association")]
    if event == "scp.associate.accepted":
        lines = [
            (
                "info",
                f"Association Accepted: {fields['calling_ae']} -> {fields['called_ae']} from {fields['peer']}",
            )
        ]
        if debug:
            lines += [("debug", line) for line in pdu_dump.dump_rq(fields["rq"], outgoing=False)]
        return lines
    if event == "scp.associate.rejected":
        return [
            (
                "info",
                f"Association Rejected: {fields['calling_ae']} -> {fields['called_ae']} from {fields['peer']}: {fields['reason']}",
            )
        ]
    if event == "scp.echo":
        return [
            ("info", f"Received Echo Request (MsgID {fields['message_id']}) from {fields['peer']}")
        ]
    if event == "scp.release":
        return [("info", f"Association Released: {fields['peer']}")]
    if event == "scp.aborted":
        return [("info", f"Association Aborted: {fields['peer']} ({fields['reason']})")]
    if event == "scp.idle_timeout":
        return [("warning", f"Network timeout: aborting the association with {fields['peer']}")]
    if event == "scp.refused_network":
        return [
            ("warning", f"Connection from {fields['peer']} refused: not in the allowed networks")
        ]
    if event == "scp.listening":
        return [("info", f"Listening on {fields['host']}:{fields['port']} as {fields['ae_title']}")]
    if event == "cli.message":
        return [(fields["_level"], fields["text"])]
    return []  # other library events have no echoscu line


class CliLog:
    """Prints echoscu-style lines at or above `level` to `stream`."""

    def __init__(
        self, level: str = "error", stream: TextIO | None = None, *, skip_prefix: str = ""
    ) -> None:
        self.skip_prefix = skip_prefix  # e.g. "scp." to leave out the server's events
        self.threshold = LEVELS[level]
        self.debug_on = self.threshold <= LEVELS["debug"]
        self.stream = stream or sys.stderr
        self._logger: Any = None

    def enabled_for(self, level: str) -> bool:
        return LEVELS[level] >= self.threshold

    def _structlog(self) -> Any:
        if self._logger is None:
            import structlog

            self._logger = structlog.wrap_logger(
                structlog.PrintLogger(self.stream),
                processors=[self._render],
                wrapper_class=structlog.make_filtering_bound_logger(0),
                cache_logger_on_first_use=True,
            )
        return self._logger

    def _render(self, _logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
        import structlog

        event = str(event_dict.pop("event"))
        event_dict["_level"] = method
        lines = [
            f"{_PREFIX[level]}: {text}"
            for level, text in _lines_for(event, event_dict, self.debug_on)
            if self.enabled_for(level)
        ]
        if not lines:
            raise structlog.DropEvent
        return "\n".join(lines)

    def emit(self, level: str, event: str, **fields: Any) -> None:
        if LEVELS[level] >= self.threshold and not (
            self.skip_prefix and event.startswith(self.skip_prefix)
        ):
            getattr(self._structlog(), level)(event, **fields)

    def say(self, level: str, text: str) -> None:
        """One of the CLI's own lines."""
        self.emit(level, "cli.message", text=text)

    # The interface `logs.enable_logging` expects: one method per level.
    def error(self, event: str, **fields: Any) -> None:
        self.emit("error", event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self.emit("info", event, **fields)

    def debug(self, event: str, **fields: Any) -> None:
        self.emit("debug", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self.emit("warning", event, **fields)

    def critical(self, event: str, **fields: Any) -> None:
        self.emit("critical", event, **fields)
