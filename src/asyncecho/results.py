"""What an echo returns.

May import `exceptions` and `protocol/` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asyncecho.exceptions import EchoError
from asyncecho.protocol.dimse import STATUS_SUCCESS, status_name


@dataclass(frozen=True, slots=True)
class Timings:
    """Seconds spent in each phase; None for a phase not reached."""

    connect: float | None = None
    associate: float | None = None
    echo: float | None = None
    release: float | None = None
    total: float | None = None


@dataclass(frozen=True, slots=True)
class EchoResult:
    """The outcome of one C-ECHO on one association (from `echo()` or
    `verify()`); true only on success."""

    host: str
    port: int
    #: the C-ECHO-RSP's status (0x0000: success), None if none came
    status: int | None = None
    timings: Timings = field(default_factory=Timings)
    message_id: int | None = None
    #: what the peer's A-ASSOCIATE-AC says of it
    peer_ae: str | None = None
    peer_implementation_class_uid: str | None = None
    peer_implementation_version_name: str | None = None
    peer_max_pdu: int | None = None
    transfer_syntax: str | None = None
    tls_version: str | None = None
    #: the SCP's User Identity server response, if it sent one
    user_identity_response: bytes | None = None
    #: set by verify() instead of raising
    error: EchoError | None = None

    @property
    def ok(self) -> bool:
        """A Success status and no error."""
        return self.error is None and self.status == STATUS_SUCCESS

    @property
    def status_name(self) -> str | None:
        """The status's meaning (PS3.7 Annex C), e.g. "Success"."""
        return None if self.status is None else status_name(self.status)

    @property
    def outcome(self) -> str:
        """`success`, `status-0x....`, or the error's class (e.g. `refused`)."""
        if self.error is not None:
            return self.error.outcome
        if self.status == STATUS_SUCCESS:
            return "success"
        return f"status-0x{self.status:04X}" if self.status is not None else "error"

    def __bool__(self) -> bool:
        return self.ok
