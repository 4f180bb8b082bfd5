"""The requestor side's log events, one place for each event's fields
whatever backend runs the association: the session's events as the driver
reports them (`report`), and the failures with the exception made for each
(`log_failure`).

Every event has `assoc` and `peer`; the values are flat (str, int, float,
bool, None, lists of str), never PDU objects, except in the two debug-level
`*.pdu` events that exist to carry the PDU (for the CLI's -d; a PDU's repr
never shows a passcode). A failure is a warning when the peer or the network
is the cause (a target being down is no error of this program), an error
when this machine is (`LocalResourceError`).

May import `logs`, `exceptions` and `protocol/`; it reads an association's
public attributes only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from asyncecho import logs
from asyncecho.exceptions import EchoError, LocalResourceError
from asyncecho.protocol.pdu_items import USER_IDENTITY_TYPE_NAMES
from asyncecho.protocol.requestor_events import (
    Accepted,
    EchoAnswered,
    EchoSent,
    Released,
    ReleaseSent,
    RequestSent,
    SessionEvent,
)

if TYPE_CHECKING:
    from asyncecho.association import Association


def log(assoc: Association, event: str, level: str = "info", **fields: Any) -> None:
    logs.log(event, level, assoc=assoc.id, peer=f"{assoc.host}:{assoc.port}", **fields)


def log_failure(assoc: Association, event: str, error: EchoError, **fields: Any) -> None:
    if logs.enabled:
        level = "error" if isinstance(error, LocalResourceError) else "warning"
        log(assoc, event, level, outcome=error.outcome, **fields)


def report(assoc: Association, event: SessionEvent) -> None:
    """The driver's report of each session event, in order (only while
    logging is enabled). A failure is logged with the exception made for it."""
    if isinstance(event, RequestSent):
        _request(assoc)
    elif isinstance(event, Accepted):
        _accepted(assoc, event)
    elif isinstance(event, EchoSent):
        log(assoc, "echo.request", message_id=event.message_id)
    elif isinstance(event, EchoAnswered):
        from asyncecho.protocol.dimse import status_name

        log(
            assoc,
            "echo.response",
            message_id=event.message_id,
            status=event.status,
            status_name=status_name(event.status),
            seconds=event.seconds,
        )
    elif isinstance(event, ReleaseSent):
        log(assoc, "release.request")
    elif isinstance(event, Released):
        log(assoc, "release.confirmed", seconds=event.seconds, total_seconds=assoc.elapsed())


def _request(assoc: Association) -> None:
    rq, options = assoc.rq, assoc.options
    log(assoc, "associate.request.pdu", "debug", pdu=rq)
    contexts = rq.presentation_contexts
    identity = options.user_identity
    log(
        assoc,
        "associate.request",
        calling_ae=rq.calling_ae,
        called_ae=rq.called_ae,
        contexts=len(contexts),
        abstract_syntaxes=sorted({pc.abstract_syntax for pc in contexts}),
        transfer_syntaxes=list(options.transfer_syntaxes),
        max_pdu=options.max_pdu,
        user_identity=None
        if identity is None
        else USER_IDENTITY_TYPE_NAMES.get(identity.identity_type, str(identity.identity_type)),
        tls_version=assoc.tls_version,
        connect_seconds=assoc.connect_time,
    )


def _accepted(assoc: Association, event: Accepted) -> None:
    ac, rq = event.ac, assoc.rq
    log(assoc, "associate.accepted.pdu", "debug", pdu=ac, rq=rq)
    log(
        assoc,
        "associate.accepted",
        calling_ae=rq.calling_ae,
        called_ae=rq.called_ae,
        peer_ae=ac.called_ae,
        contexts_accepted=sum(1 for pc in ac.presentation_contexts if pc.result == 0),
        transfer_syntax=event.transfer_syntax,
        peer_max_pdu=ac.max_length,
        peer_implementation_class_uid=ac.implementation_class_uid,
        peer_implementation_version_name=ac.implementation_version_name,
        seconds=event.seconds,
    )
