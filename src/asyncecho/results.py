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

    #: the peer's host, as given
    host: str
    #: the peer's port
    port: int
    #: the C-ECHO-RSP's status (0x0000 is Success), None if none came
    status: int | None = None
    #: the seconds each phase took (None for a phase not reached)
    timings: Timings = field(default_factory=Timings)
    #: the C-ECHO-RQ's message ID
    message_id: int | None = None
    #: the peer's AE title, as its A-ASSOCIATE-AC gives it (the fields below
    #: too come from the AC)
    peer_ae: str | None = None
    #: the peer's Implementation Class UID
    peer_implementation_class_uid: str | None = None
    #: the peer's Implementation Version Name, if it sent one
    peer_implementation_version_name: str | None = None
    #: the largest PDU the peer accepts, in bytes (0 means no limit)
    peer_max_pdu: int | None = None
    #: the transfer syntax UID the peer accepted for Verification
    transfer_syntax: str | None = None
    #: the TLS version ("TLSv1.3" …), None over plain TCP
    tls_version: str | None = None
    #: the SCP's User Identity server response, if it sent one
    user_identity_response: bytes | None = None
    #: the `EchoError`, set by verify() instead of raising
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
