"""What the requestor session reports, as data: its `Limits`, the events of
an association's life (`RequestSent`, `Accepted`, `EchoSent`,
`EchoAnswered`, `ReleaseSent`, `Released`) and the failures that end one
(`Failure` and its kinds). The API turns each failure into its exception.
May import the rest of `protocol/` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from asyncecho.protocol.pdu import AssociateAC, AssociateRJ, AssociateRQ

# --- the limits -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Limits:
    """Seconds each wait may take; None: no limit."""

    connect: float | None = 30.0
    acse: float | None = 30.0
    dimse: float | None = 30.0
    network: float | None = 30.0
    deadline: float | None = None


# --- what the session reports -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestSent:
    """The A-ASSOCIATE-RQ went out (the transport is connected)."""

    rq: AssociateRQ


@dataclass(frozen=True, slots=True)
class Accepted:
    """The peer accepted the association (A-ASSOCIATE-AC); `context_id` 0
    when it accepted no Verification context (a `NoContext` follows)."""

    ac: AssociateAC
    context_id: int
    transfer_syntax: str | None
    seconds: float


@dataclass(frozen=True, slots=True)
class EchoSent:
    message_id: int


@dataclass(frozen=True, slots=True)
class EchoAnswered:
    message_id: int
    status: int
    seconds: float


@dataclass(frozen=True, slots=True)
class ReleaseSent:
    """The A-RELEASE-RQ went out."""


@dataclass(frozen=True, slots=True)
class Released:
    """The association is released (terminal)."""

    seconds: float


# --- how it can fail (each one terminal) -------------------------------------------

Phase: TypeAlias = Literal["connect", "acse", "dimse", "network", "deadline"]


@dataclass(frozen=True, slots=True)
class Failure:
    """Base of the terminal failures."""


@dataclass(frozen=True, slots=True)
class TimedOut(Failure):
    """A limit passed; an A-ABORT went out (after the connect)."""

    phase: Phase
    timeout: float | None


@dataclass(frozen=True, slots=True)
class Rejected(Failure):
    rj: AssociateRJ


@dataclass(frozen=True, slots=True)
class PeerAborted(Failure):
    """The peer sent an A-ABORT."""

    source: int
    reason: int


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Failure):
    """The transport closed under the association (A-P-ABORT), or after
    what ended it without saying why (`unannounced`)."""

    accepted: bool
    unannounced: bool = False


@dataclass(frozen=True, slots=True)
class ProtocolViolation(Failure):
    """The peer broke PS3.7/PS3.8; an A-ABORT went out (AA-8)."""

    problem: str


@dataclass(frozen=True, slots=True)
class NoContext(Failure):
    """The peer accepted none of our contexts: {context ID: result name}.
    The session then releases the association; if that release fails it is
    still NoContext, unless a limit passed (then `TimedOut`)."""

    results: dict[int, str]


@dataclass(frozen=True, slots=True)
class PeerReleased(Failure):
    """The peer released the association with our request outstanding
    (answered: PS3.8 Evt14)."""


SessionEvent: TypeAlias = (
    RequestSent | Accepted | EchoSent | EchoAnswered | ReleaseSent | Released | Failure
)
# What a driver's `outcome()` waits for: the answers to what the user asked
# (`Accepted`, `EchoAnswered`), and the ends; the other events are only
# reported as they pass.
OUTCOMES = (Accepted, EchoAnswered, Released, Failure)
ENDS = (Released, Failure)


__all__ = [
    "ENDS",
    "OUTCOMES",
    "Accepted",
    "ConnectionClosed",
    "EchoAnswered",
    "EchoSent",
    "Failure",
    "Limits",
    "NoContext",
    "PeerAborted",
    "PeerReleased",
    "Phase",
    "ProtocolViolation",
    "Rejected",
    "ReleaseSent",
    "Released",
    "RequestSent",
    "SessionEvent",
    "TimedOut",
]
