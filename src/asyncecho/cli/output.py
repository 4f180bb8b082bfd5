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

from asyncecho.protocol.dimse import status_name

# `notice` (as syslog's): an `I:` line shown at echoscp's default level, for
# what an operator reads an SCP's log for later (when it started listening and
# when it stopped), without every association's lines.
LEVELS = {
    "critical": 50,
    "error": 40,
    "warning": 30,
    "warn": 30,
    "notice": 25,
    "info": 20,
    "debug": 10,
}
_PREFIX = {"critical": "C", "error": "E", "warning": "W", "notice": "I", "info": "I", "debug": "D"}
# Library events whose lines are notices, though the events are info.
_NOTICES = frozenset({"scp.listening", "scp.stopped"})


def _echo_status(status: int) -> str:
    if status == 0:
        return "Success"
    return f"0x{status:04X} - {status_name(status)}"


def _lines_for(event: str, fields: MutableMapping[str, Any], debug: bool) -> list[tuple[str, str]]:
    """(level, text) pairs for one event; the library's events have fixed
    texts here, the CLI's own events carry their text in `event`."""
    from asyncecho.cli import pdu_dump

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
    if event.startswith("scp."):
        return _scp_lines(event, fields, debug)
    if event == "cli.message":
        return [(fields["_level"], fields["text"])]
    return []  # other library events have no echoscu line


def _address(host: str, port: object) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _scp_lines(event: str, fields: MutableMapping[str, Any], debug: bool) -> list[tuple[str, str]]:
    """The SCP's lines (echoscp). Each at its event's own level, so that a
    refusal is a `W:` line and our own failure an `E:` line; the start and
    stop lines at `notice`, shown by default."""
    from asyncecho.cli import pdu_dump

    level = fields["_level"]
    peer = fields.get("peer")
    if event == "scp.associate.request.pdu":
        if not debug:
            return []
        return [("debug", line) for line in pdu_dump.dump_rq(fields["pdu"], outgoing=False)]
    if event == "scp.listening":
        tls = " (TLS)" if fields.get("tls") else ""
        where = _address(str(fields["host"]), fields["port"])
        return [("notice", f"Listening on {where} as {fields['ae_title']}{tls}")]
    if event == "scp.stopped":
        where = _address(str(fields["host"]), fields["port"])
        return [
            (
                "notice",
                f"Stopped listening on {where} (associations accepted: "
                f"{fields.get('accepted_total', 0)}, echoes answered: "
                f"{fields.get('echoes_total', 0)})",
            )
        ]
    titles = f"{fields.get('calling_ae')} -> {fields.get('called_ae')}"
    if event == "scp.associate.accepted":
        return [(level, f"Association Accepted: {titles} from {peer}")]
    if event == "scp.associate.rejected":
        return [(level, f"Association Rejected: {titles} from {peer}: {fields['reason']}")]
    if event == "scp.echo":
        if fields["status"] == 0:
            return [(level, f"Received Echo Request (MsgID {fields['message_id']}) from {peer}")]
        return [
            (
                level,
                f"Refused a request other than C-ECHO (MsgID {fields['message_id']}) "
                f"from {peer}: {_echo_status(fields['status'])}",
            )
        ]
    if event == "scp.release":
        return [(level, f"Association Released: {peer}")]
    if event == "scp.aborted":
        reason = fields["reason"]
        if fields.get("source"):
            reason = f"{reason}, source: {fields['source']}, reason: {fields.get('abort_reason')}"
        return [(level, f"Association Aborted: {peer} ({reason})")]
    if event in ("scp.idle_timeout", "scp.dimse_timeout"):
        return [
            (
                level,
                f"Aborting the association with {peer}: {fields.get('reason')} "
                f"(timeout {fields.get('timeout')} s)",
            )
        ]
    if event == "scp.refused_network":
        return [(level, f"Connection from {peer} refused: not in the allowed networks")]
    if event == "scp.tls_failed":
        return [(level, f"TLS handshake with {peer} failed: {fields['reason']}")]
    if event == "scp.identity_refused":
        kind = fields.get("user_identity") or "none sent"
        return [(level, f"User identity refused ({kind}): {fields['calling_ae']} from {peer}")]
    if event == "scp.identity_check_failed":
        return [
            (
                level,
                f"User identity check failed ({fields['error']}): association from {peer} rejected",
            )
        ]
    if event == "scp.internal_error":
        return [(level, f"Internal error serving {peer}: {fields['error']} (association aborted)")]
    if event == "scp.accept_paused":
        return [
            (
                level,
                f"Not accepting connections for {fields['pause']} s: {fields['reason']} "
                f"({fields['errno']}; {fields['failures']} accept(s) failed since the last "
                "warning)",
            )
        ]
    return []


def _timestamp() -> str:
    """Now, ISO 8601 in UTC to the millisecond: `2026-12-02T04:30:00.123Z`."""
    import time

    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


class CliLog:
    """Prints echoscu-style lines at or above `level` to `stream`; with
    `timestamps`, each line after the time it was printed (UTC)."""

    def __init__(
        self,
        level: str = "error",
        stream: TextIO | None = None,
        *,
        skip_prefix: str = "",
        timestamps: bool = False,
    ) -> None:
        self.skip_prefix = skip_prefix  # e.g. "scp." to leave out the server's events
        self.timestamps = timestamps
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
        event_dict.setdefault("_level", method)
        lines = [
            f"{_PREFIX[level]}: {text}"
            for level, text in _lines_for(event, event_dict, self.debug_on)
            if self.enabled_for(level)
        ]
        if not lines:
            raise structlog.DropEvent
        if self.timestamps:
            stamp = _timestamp()
            lines = [f"{stamp} {line}" for line in lines]
        return "\n".join(lines)

    def emit(self, level: str, event: str, **fields: Any) -> None:
        shown = "notice" if event in _NOTICES else level
        if LEVELS[shown] >= self.threshold and not (
            self.skip_prefix and event.startswith(self.skip_prefix)
        ):
            # (structlog has no notice method: the line's level goes along)
            method = "info" if level == "notice" else level
            getattr(self._structlog(), method)(event, _level=level, **fields)

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
