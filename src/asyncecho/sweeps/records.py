"""What a sweep checks and what it says about each: `Target` (one peer),
`SweepRecord` (what became of it), the record's flat columns (`FIELDS`,
`SweepRecord.as_dict()`, the JSONL and CSV columns) and the record made from
a `verify()` result.

May import: the public API's data modules (`asyncecho.arguments`,
`asyncecho.results`); nothing that does I/O, nothing of the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from asyncecho import arguments
from asyncecho.results import EchoResult, Timings

DEFAULT_PORT = 104


@dataclass(frozen=True, slots=True)
class Target:
    """One peer to check. `called_ae` / `calling_ae` of None take the sweep's
    defaults (`EchoOptions`); a record's target always has them filled in."""

    host: str
    port: int = DEFAULT_PORT
    called_ae: str | None = None
    calling_ae: str | None = None

    def __post_init__(self) -> None:
        arguments.host(self.host, "target host")
        arguments.port(self.port, "target port")
        for name in ("called_ae", "calling_ae"):
            title = getattr(self, name)
            if title is not None:
                object.__setattr__(self, name, arguments.ae_title(title, f"target {name}"))

    @property
    def key(self) -> tuple[str, int, str | None, str | None]:
        """What identifies a target across runs (`--resume`)."""
        return (self.host, self.port, self.called_ae, self.calling_ae)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        called = f"{self.called_ae}@" if self.called_ae else ""
        return f"{called}{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class SweepRecord:
    """What became of one target."""

    target: Target
    #: `success`, `status-0xNNNN`, an `EchoError.outcome` (`refused`,
    #: `timeout-deadline`, …), `cancelled` (the sweep was stopped), or
    #: `error` (a bug: an unexpected exception, kept to this target)
    outcome: str
    #: wall clock (UTC) when the target was started
    started: datetime
    #: the reject reason, the OS error, the status name…; empty on success
    detail: str = ""
    timings: Timings = field(default_factory=Timings)
    status: int | None = None
    peer_ae: str | None = None
    peer_implementation_class_uid: str | None = None
    peer_implementation_version_name: str | None = None
    transfer_syntax: str | None = None
    #: the `EchoError` that `verify()` reported (or the unexpected exception
    #: of an `error` record), for callers that want its fields
    error: Exception | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        return self.outcome == "success"

    @property
    def final(self) -> bool:
        """False only for a `cancelled` record (the target was not really checked)."""
        return self.outcome != "cancelled"

    def as_dict(self) -> dict[str, Any]:
        """A flat, JSON-ready mapping (the JSONL and CSV columns)."""
        timings = self.timings

        def ms(seconds: float | None) -> float | None:
            return None if seconds is None else round(seconds * 1000.0, 3)

        return {
            "host": self.target.host,
            "port": self.target.port,
            "called_aet": self.target.called_ae,
            "calling_aet": self.target.calling_ae,
            "ok": self.ok,
            "outcome": self.outcome,
            "detail": self.detail,
            "status": self.status,
            "started": iso_utc(self.started),
            "connect_ms": ms(timings.connect),
            "associate_ms": ms(timings.associate),
            "echo_ms": ms(timings.echo),
            "release_ms": ms(timings.release),
            "total_ms": ms(timings.total),
            "peer_aet": self.peer_ae,
            "implementation_class_uid": self.peer_implementation_class_uid,
            "implementation_version_name": self.peer_implementation_version_name,
            "transfer_syntax": self.transfer_syntax,
        }


#: The columns of `SweepRecord.as_dict()`, in order.
FIELDS = (
    "host",
    "port",
    "called_aet",
    "calling_aet",
    "ok",
    "outcome",
    "detail",
    "status",
    "started",
    "connect_ms",
    "associate_ms",
    "echo_ms",
    "release_ms",
    "total_ms",
    "peer_aet",
    "implementation_class_uid",
    "implementation_version_name",
    "transfer_syntax",
)


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record_from_result(target: Target, started: datetime, result: EchoResult) -> SweepRecord:
    error = result.error
    if error is not None:
        detail = str(error)
    elif result.ok:
        detail = ""
    else:
        detail = result.status_name or ""
    return SweepRecord(
        target=target,
        outcome=result.outcome,
        started=started,
        detail=detail,
        timings=result.timings,
        status=result.status,
        peer_ae=result.peer_ae,
        peer_implementation_class_uid=result.peer_implementation_class_uid,
        peer_implementation_version_name=result.peer_implementation_version_name,
        transfer_syntax=result.transfer_syntax,
        error=error,
    )
