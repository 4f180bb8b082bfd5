"""The SCP's log events (`scp.*`): one function per kind of event, and the
builders of their flat fields (str, int, float, bool, None, lists of str),
so that every event can be queried as it is. `asyncecho.server` calls them;
the README lists the events, their fields, outcomes and levels.

Levels: what the SCP is for is info; what a peer did wrong or was refused
is a warning (nothing here to repair); a bug of ours or of the application's
identity check is an error. The RQ itself goes only into a debug event of
its own, for a renderer that dumps it (the CLI's -d).

Imports `asyncecho.logs`, `asyncecho.tls` and `asyncecho.protocol`.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable
from typing import Any

from asyncecho import logs
from asyncecho.protocol.acceptor import (
    AssociationEstablished,
    AssociationRefused,
    EchoAnswered,
    Stalled,
)
from asyncecho.protocol.dimse import status_name
from asyncecho.protocol.events import Aborted, ReleaseRequested
from asyncecho.protocol.negotiation import accepted_contexts, user_identity
from asyncecho.protocol.pdu import Abort, AssociateRQ
from asyncecho.protocol.pdu_items import USER_IDENTITY_TYPE_NAMES, UserIdentityRQ

# For each way a peer can be too slow (`Stalled.kind`): the log event, its
# outcome (the client's word for the same limit), the option that bounds it,
# and why, in words.
_STALLS = {
    "idle": ("scp.idle_timeout", "timeout-network", "network_timeout", "nothing received"),
    "slow-pdu": (
        "scp.dimse_timeout",
        "timeout-dimse",
        "dimse_timeout",
        "one PDU took longer than the DIMSE timeout",
    ),
    "not-reading": (
        "scp.idle_timeout",
        "timeout-network",
        "network_timeout",
        "the peer does not read what we send",
    ),
}
# How often at most accept() failing for want of resources is logged.
_ACCEPT_LOG_INTERVAL = 10.0


def peer_text(peer: Any) -> str:
    """`host:port`, as every scp.* event gives the peer."""
    return f"{peer[0]}:{peer[1]}" if peer else "?"


def log_events(peer: Any, happened: Iterable[object], options: Any) -> None:
    """What a session did (see `AcceptorSession`). `options` (the
    `ServerOptions`) gives the timeout a stall names and our max_pdu."""
    where = peer_text(peer)
    for item in happened:
        if isinstance(item, EchoAnswered):
            # Any status but Success: the peer sent a request other than
            # C-ECHO, which we refused (PS3.7 C.5.3).
            logs.log(
                "scp.echo",
                level="info" if item.status == 0 else "warning",
                peer=where,
                message_id=item.message_id,
                status=item.status,
                status_name=status_name(item.status),
            )
        elif isinstance(item, AssociationEstablished):
            rq = item.rq
            logs.log("scp.associate.request.pdu", level="debug", peer=where, pdu=rq)
            accepted = accepted_contexts(rq, item.ac)
            first = min(accepted, default=None)
            logs.log(
                "scp.associate.accepted",
                peer=where,
                **_rq_fields(rq),
                contexts_accepted=len(accepted),
                transfer_syntax=None if first is None else accepted[first][1],
                max_pdu=options.max_pdu,
            )
        elif isinstance(item, AssociationRefused):
            rq, rj = item.rq, item.rj
            logs.log("scp.associate.request.pdu", level="debug", peer=where, pdu=rq)
            logs.log(
                "scp.associate.rejected",
                level="warning",
                peer=where,
                outcome="rejected",
                **_rq_fields(rq),
                result=rj.result_name,
                source=rj.source_name,
                reason=rj.reason_name,
                result_code=rj.result,
                source_code=rj.source,
                reason_code=rj.reason,
            )
        elif isinstance(item, ReleaseRequested):
            logs.log("scp.release", peer=where)
        elif isinstance(item, Aborted):
            logs.log("scp.aborted", level="warning", peer=where, **_abort_fields(item))
        elif isinstance(item, Stalled):
            # A peer too slow for our limits: we aborted.
            event, outcome, limit, reason = _STALLS[item.kind]
            logs.log(
                event,
                level="warning",
                peer=where,
                outcome=outcome,
                timeout=getattr(options, limit),
                reason=reason,
            )


def _rq_fields(rq: AssociateRQ) -> dict[str, Any]:
    """What an A-ASSOCIATE-RQ asks for, as flat fields."""
    contexts = rq.presentation_contexts
    identity = user_identity(rq)
    return {
        "calling_ae": rq.calling_ae,
        "called_ae": rq.called_ae,
        "contexts": len(contexts),
        "abstract_syntaxes": sorted({pc.abstract_syntax for pc in contexts}),
        "transfer_syntaxes": list(
            dict.fromkeys(ts for pc in contexts for ts in pc.transfer_syntaxes)
        ),
        "peer_max_pdu": rq.max_length,
        "peer_implementation_class_uid": rq.implementation_class_uid,
        "peer_implementation_version_name": rq.implementation_version_name,
        "user_identity": None if identity is None else _identity_name(identity.identity_type),
    }


def _identity_name(identity_type: int) -> str:
    return USER_IDENTITY_TYPE_NAMES.get(identity_type, str(identity_type))


def _abort_fields(item: Aborted) -> dict[str, Any]:
    """Why an association ended in an abort (PS3.8 7.3, 7.4), as text."""
    if item.by_peer:
        pdu = Abort(item.source, item.reason)
        return {
            "outcome": "aborted",
            "by_peer": True,
            "reason": "A-ABORT",
            "source": pdu.source_name,
            "abort_reason": pdu.reason_name,
        }
    if item.connection_lost:
        return {"outcome": "aborted", "by_peer": False, "reason": "connection closed"}
    # AA-8: we aborted, for an invalid PDU or one the state does not allow.
    return {
        "outcome": "protocol-error",
        "by_peer": False,
        "reason": item.error.message
        if item.error is not None
        else "unexpected PDU for the state of the association",
    }


def log_internal_error(peer: Any, bug: BaseException) -> None:
    """One line for a bug contained to one connection."""
    logs.log(
        "scp.internal_error",
        level="error",
        peer=peer_text(peer),
        outcome="internal-error",
        error=f"{type(bug).__name__}: {bug}",
    )


def log_refused_network(peer: Any) -> None:
    """A connection from outside `allowed_networks`, closed unanswered."""
    logs.log(
        "scp.refused_network", level="warning", peer=peer_text(peer), outcome="refused-network"
    )


def log_tls_failed(peer: Any, error: BaseException) -> None:
    """A failed TLS handshake: the connection closed, no association."""
    from asyncecho.tls import describe_ssl_error  # (ssl is imported only with TLS in use)

    logs.log(
        "scp.tls_failed",
        level="warning",
        peer=peer_text(peer),
        outcome="tls",
        reason=describe_ssl_error(error),
    )


def log_identity_check_failed(peer: Any, rq: AssociateRQ, error: BaseException) -> None:
    """The application's own check failed (an error of this program, not of
    the peer): the association is refused all the same. Only the
    exception's type: its text could hold what the peer sent."""
    logs.log(
        "scp.identity_check_failed",
        level="error",
        peer=peer_text(peer),
        outcome="rejected",
        calling_ae=rq.calling_ae,
        error=type(error).__name__,
    )


def log_identity_refused(peer: Any, rq: AssociateRQ, identity: UserIdentityRQ | None) -> None:
    """Never the passcode: only who asked and which kind of identity."""
    identity_type = identity.identity_type if identity else None
    logs.log(
        "scp.identity_refused",
        level="warning",
        peer=peer_text(peer),
        outcome="rejected",
        calling_ae=rq.calling_ae,
        identity_type=identity_type,
        user_identity=None if identity_type is None else _identity_name(identity_type),
    )


def log_listening(host: str, port: int, ae_title: str, tls: bool) -> None:
    logs.log("scp.listening", host=host, port=port, ae_title=ae_title, tls=tls)


def log_stopped(host: str, port: int, accepted_total: int, echoes_total: int) -> None:
    logs.log(
        "scp.stopped",
        host=host,
        port=port,
        accepted_total=accepted_total,
        echoes_total=echoes_total,
    )


class AcceptPausedLog:
    """One warning per interval for accept() failing for want of resources,
    with how many failures it stands for."""

    def __init__(self) -> None:
        self._last: float | None = None
        self._since = 0

    def failed(self, error: OSError, now: float, pause: float) -> None:
        self._since += 1
        if self._last is None or now - self._last >= _ACCEPT_LOG_INTERVAL:
            # A warning, not an error: this machine's limit, but nothing is
            # lost (the connections wait in the backlog) and the operator
            # is told once per interval, not per attempt.
            logs.log(
                "scp.accept_paused",
                level="warning",
                outcome="local-error",
                reason=error.strerror or str(error),
                errno=errno.errorcode.get(error.errno or 0, str(error.errno)),
                failures=self._since,
                pause=pause,
            )
            self._last, self._since = now, 0
