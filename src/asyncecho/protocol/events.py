"""What the upper layer tells its user: the indication and confirmation
primitives of PS3.8 7, one small immutable class each.

May import the rest of `protocol/` only.
"""

from __future__ import annotations

from dataclasses import dataclass

from asyncecho.protocol.dimse import Message
from asyncecho.protocol.errors import PDUError
from asyncecho.protocol.pdu import AssociateAC, AssociateRJ, AssociateRQ


@dataclass(frozen=True, slots=True)
class AssociationRequested:
    """A-ASSOCIATE indication (acceptor): answer with accept() or reject()."""

    rq: AssociateRQ


@dataclass(frozen=True, slots=True)
class AssociationAccepted:
    """A-ASSOCIATE confirmation, accept (requestor)."""

    ac: AssociateAC


@dataclass(frozen=True, slots=True)
class AssociationRejected:
    """A-ASSOCIATE confirmation, reject (requestor)."""

    rj: AssociateRJ


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """P-DATA indication, joined into one whole DIMSE message."""

    message: Message


@dataclass(frozen=True, slots=True)
class ReleaseRequested:
    """A-RELEASE indication; `collision` when both sides asked at once."""

    collision: bool = False


@dataclass(frozen=True, slots=True)
class ReleaseConfirmed:
    """A-RELEASE confirmation."""


@dataclass(frozen=True, slots=True)
class Aborted:
    """A-ABORT indication (the peer's user aborted: `by_peer`, source 0) or
    A-P-ABORT indication (the service provider aborted: either side's provider
    on a protocol error, or the transport closed under the association).

    `error` is the protocol violation that made us abort, if that is why.
    """

    source: int
    reason: int
    by_peer: bool
    error: PDUError | None = None
    connection_lost: bool = False


Event = (
    AssociationRequested
    | AssociationAccepted
    | AssociationRejected
    | MessageReceived
    | ReleaseRequested
    | ReleaseConfirmed
    | Aborted
)
