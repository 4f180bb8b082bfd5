"""Association negotiation (PS3.8 7.1.1, PS3.7 Annex D): building the
A-ASSOCIATE-RQ, checking the peer's A-ASSOCIATE-AC against it, and, for the
acceptor, answering an A-ASSOCIATE-RQ with an AC or an RJ.

May import the rest of `protocol/` only.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType

from asyncecho.protocol import uids
from asyncecho.protocol.errors import ABORT_INVALID_PDU_PARAMETER_VALUE, PDUError
from asyncecho.protocol.pdu import (
    PROTOCOL_VERSION,
    RJ_PERMANENT,
    RJ_SOURCE_ACSE,
    RJ_SOURCE_PRESENTATION,
    RJ_SOURCE_USER,
    RJ_TRANSIENT,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
)
from asyncecho.protocol.pdu_fields import validate_ae_title
from asyncecho.protocol.pdu_items import (
    PC_ABSTRACT_SYNTAX_NOT_SUPPORTED,
    PC_ACCEPTANCE,
    PC_TRANSFER_SYNTAXES_NOT_SUPPORTED,
    PC_USER_REJECTION,
    ImplementationClassUID,
    ImplementationVersionName,
    MaximumLength,
    PresentationContextAC,
    PresentationContextRQ,
    RoleSelection,
    UserIdentityRQ,
    UserItem,
)

# PS3.8 Table 9-21 reasons used here.
REASON_NO_REASON = 1
REASON_APPLICATION_CONTEXT = 2
REASON_CALLING_AE = 3
REASON_CALLED_AE = 7
REASON_PROTOCOL_VERSION = 2
REASON_LOCAL_LIMIT = 2

# What our SCP accepts, in its order of preference.
SCP_TRANSFER_SYNTAXES = (
    uids.IMPLICIT_VR_LE,
    uids.EXPLICIT_VR_LE,
    uids.DEFLATED_EXPLICIT_VR_LE,
    uids.EXPLICIT_VR_BE,
)


def implementation_items(max_pdu: int) -> tuple[UserItem, ...]:
    return (
        MaximumLength(max_pdu),
        ImplementationClassUID(uids.IMPLEMENTATION_CLASS_UID),
        ImplementationVersionName(uids.IMPLEMENTATION_VERSION_NAME),
    )


def build_rq(
    *,
    calling_ae: str,
    called_ae: str,
    transfer_syntaxes: Sequence[str] = uids.DEFAULT_TRANSFER_SYNTAXES,
    abstract_syntax: str = uids.VERIFICATION,
    max_pdu: int = 16382,
    extra_user_items: Sequence[UserItem] = (),
) -> AssociateRQ:
    """One presentation context (ID 1) proposing `transfer_syntaxes`
    (built once per distinct set of arguments: every association of a
    sweep sends the same RQ)."""
    return _build_rq(
        calling_ae,
        called_ae,
        tuple(transfer_syntaxes),
        abstract_syntax,
        max_pdu,
        tuple(extra_user_items),
    )


@lru_cache(maxsize=256)
def _build_rq(
    calling_ae: str,
    called_ae: str,
    transfer_syntaxes: tuple[str, ...],
    abstract_syntax: str,
    max_pdu: int,
    extra_user_items: tuple[UserItem, ...],
) -> AssociateRQ:
    return AssociateRQ(
        called_ae=validate_ae_title(called_ae),
        calling_ae=validate_ae_title(calling_ae),
        presentation_contexts=(PresentationContextRQ(1, abstract_syntax, transfer_syntaxes),),
        user_items=implementation_items(max_pdu) + extra_user_items,
    )


def check_ac(rq: AssociateRQ, ac: AssociateAC) -> None:
    """Raise PDUError if the AC does not answer the RQ (PS3.8 9.3.3).

    The AC's AE title fields are not checked: PS3.8 9.3.3 says they "shall not
    be tested" on receipt.
    """
    if ac.application_context != rq.application_context:
        raise PDUError(
            f"A-ASSOCIATE-AC application context {ac.application_context} is not the one proposed",
            0,
            ABORT_INVALID_PDU_PARAMETER_VALUE,
        )
    proposed = {pc.context_id: pc for pc in rq.presentation_contexts}
    for pc in ac.presentation_contexts:
        asked = proposed.get(pc.context_id)
        if asked is None:
            raise PDUError(
                f"A-ASSOCIATE-AC answers context ID {pc.context_id}, which was never proposed", 0
            )
        if pc.accepted and pc.transfer_syntax not in asked.transfer_syntaxes:
            raise PDUError(
                f"A-ASSOCIATE-AC accepts transfer syntax {pc.transfer_syntax} for context "
                f"{pc.context_id}, which was not proposed for it",
                0,
            )


# (RQ, AC) pairs already worked out, by identity: a health check or a sweep
# sends the same (cached) RQ and a peer answers with the same AC bytes, which
# decode to the same (cached) object; an SCP answers the same (cached) RQ
# with the same AC. So the check and the accepted contexts are worked out
# once per pair, and every association of it shares one read-only mapping.
# The objects are kept in the entry, so their ids cannot be reused while it
# exists; invalid pairs are not kept.
_ContextsMemo = dict[
    tuple[int, int], tuple[AssociateRQ, AssociateAC, Mapping[int, tuple[str, str]]]
]
_VALID_ANSWERS: _ContextsMemo = {}  # checked (the requestor's view)
_OUR_ANSWERS: _ContextsMemo = {}  # as given (the acceptor's own AC)
_MEMO_MAX = 256


def _remembered(
    memo: _ContextsMemo, rq: AssociateRQ, ac: AssociateAC, check: bool
) -> Mapping[int, tuple[str, str]]:
    key = (id(rq), id(ac))
    known = memo.get(key)
    if known is not None and known[0] is rq and known[1] is ac:
        return known[2]
    if check:
        check_ac(rq, ac)
    contexts = MappingProxyType(accepted_contexts(rq, ac))
    if len(memo) >= _MEMO_MAX:
        memo.clear()
    memo[key] = (rq, ac, contexts)
    return contexts


def answered_contexts(rq: AssociateRQ, ac: AssociateAC) -> Mapping[int, tuple[str, str]]:
    """`check_ac` (raises PDUError), then `accepted_contexts`, read-only."""
    return _remembered(_VALID_ANSWERS, rq, ac, True)


def our_contexts(rq: AssociateRQ, ac: AssociateAC) -> Mapping[int, tuple[str, str]]:
    """`accepted_contexts` of the AC we answer `rq` with, read-only."""
    return _remembered(_OUR_ANSWERS, rq, ac, False)


def accepted_contexts(rq: AssociateRQ, ac: AssociateAC) -> dict[int, tuple[str, str]]:
    """{context ID: (abstract syntax, transfer syntax)} for each accepted one."""
    abstract = {pc.context_id: pc.abstract_syntax for pc in rq.presentation_contexts}
    return {
        pc.context_id: (abstract[pc.context_id], pc.transfer_syntax)
        for pc in ac.presentation_contexts
        if pc.accepted and pc.transfer_syntax is not None and pc.context_id in abstract
    }


@dataclass(frozen=True, slots=True)
class AcceptorPolicy:
    """What an SCP accepts. Empty `allowed_calling_aes` means any."""

    ae_title: str = "ANY-SCP"
    require_called_ae: bool = False
    allowed_calling_aes: frozenset[str] = frozenset()
    allowed_called_aes: frozenset[str] = frozenset()
    # abstract syntax -> transfer syntaxes accepted for it, in preference order
    supported: Mapping[str, Sequence[str]] = field(
        default_factory=lambda: {uids.VERIFICATION: SCP_TRANSFER_SYNTAXES}
    )
    max_pdu: int = 16382
    # Answers already worked out, by the RQ (an immutable value): a busy SCP
    # sees equal RQs over and over (hashing one costs ~1 µs, working the
    # answer out ~12 µs). A memo, not part of the policy's value; bounded.
    _answers: dict[AssociateRQ, AssociateRJ | AssociateAC] = field(
        default_factory=dict, repr=False, compare=False, hash=False
    )

    def answer(self, rq: AssociateRQ) -> AssociateRJ | AssociateAC:
        """`reject_for(rq)` if it rejects, else `build_ac(rq)`."""
        answers = self._answers
        answer = answers.get(rq)
        if answer is None:
            answer = reject_for(rq, self) or build_ac(rq, self)
            if len(answers) >= 256:
                answers.clear()
            answers[rq] = answer
        return answer


def reject_for(rq: AssociateRQ, policy: AcceptorPolicy) -> AssociateRJ | None:
    """The A-ASSOCIATE-RJ the policy gives `rq`, or None to go on."""
    if not rq.protocol_version & PROTOCOL_VERSION:
        return AssociateRJ(RJ_PERMANENT, RJ_SOURCE_ACSE, REASON_PROTOCOL_VERSION)
    if rq.application_context != uids.APPLICATION_CONTEXT:
        return AssociateRJ(RJ_PERMANENT, RJ_SOURCE_USER, REASON_APPLICATION_CONTEXT)
    called_ok = rq.called_ae == policy.ae_title or not policy.require_called_ae
    if policy.allowed_called_aes:
        called_ok = rq.called_ae in policy.allowed_called_aes
    if not called_ok:
        return AssociateRJ(RJ_PERMANENT, RJ_SOURCE_USER, REASON_CALLED_AE)
    if policy.allowed_calling_aes and rq.calling_ae not in policy.allowed_calling_aes:
        return AssociateRJ(RJ_PERMANENT, RJ_SOURCE_USER, REASON_CALLING_AE)
    return None


def busy_reject() -> AssociateRJ:
    """PS3.8 Table 9-21: transient, presentation-related, local limit exceeded."""
    return AssociateRJ(RJ_TRANSIENT, RJ_SOURCE_PRESENTATION, REASON_LOCAL_LIMIT)


def build_ac(
    rq: AssociateRQ, policy: AcceptorPolicy, extra_user_items: Collection[UserItem] = ()
) -> AssociateAC:
    """Answer each proposed context: the first of our transfer syntaxes (in our
    order of preference) that the requestor also proposed."""
    answers = []
    roles = {i.sop_class_uid: i for i in rq.user_items if isinstance(i, RoleSelection)}
    role_replies: list[UserItem] = []
    replied: set[str] = set()
    for pc in rq.presentation_contexts:
        ours = policy.supported.get(pc.abstract_syntax)
        if ours is None:
            answers.append(
                PresentationContextAC(pc.context_id, PC_ABSTRACT_SYNTAX_NOT_SUPPORTED, None)
            )
            continue
        chosen = next((ts for ts in ours if ts in pc.transfer_syntaxes), None)
        if chosen is None:
            answers.append(
                PresentationContextAC(pc.context_id, PC_TRANSFER_SYNTAXES_NOT_SUPPORTED, None)
            )
            continue
        asked = roles.get(pc.abstract_syntax)
        if asked is not None and not asked.scu_role:
            # PS3.7 D.3.3.4: we act only as SCP, and the requestor has ruled
            # out the SCU role for itself: no one could invoke an operation
            # on this context, so it is not usable. Rejected, as pynetdicom
            # does (user rejection), rather than accepted with no roles.
            answers.append(PresentationContextAC(pc.context_id, PC_USER_REJECTION, None))
            continue
        answers.append(PresentationContextAC(pc.context_id, PC_ACCEPTANCE, chosen))
        if asked is not None and asked.sop_class_uid not in replied:
            # PS3.7 D.3.3.4: we act only as SCP for what we accept, so the
            # requestor keeps the SCU role it asked for and never the SCP
            # role. One reply per SOP class, however many contexts carry it.
            replied.add(asked.sop_class_uid)
            role_replies.append(RoleSelection(pc.abstract_syntax, True, False))
    user_items = (
        implementation_items(policy.max_pdu) + tuple(role_replies) + tuple(extra_user_items)
    )
    return AssociateAC(
        called_ae=rq.called_ae,
        calling_ae=rq.calling_ae,
        application_context=uids.APPLICATION_CONTEXT,
        presentation_contexts=tuple(answers),
        user_items=user_items,
    )


def user_identity(rq: AssociateRQ) -> UserIdentityRQ | None:
    for item in rq.user_items:
        if isinstance(item, UserIdentityRQ):
            return item
    return None


__all__ = [
    "REASON_CALLED_AE",
    "REASON_CALLING_AE",
    "REASON_NO_REASON",
    "RJ_SOURCE_ACSE",
    "AcceptorPolicy",
    "accepted_contexts",
    "answered_contexts",
    "build_ac",
    "build_rq",
    "busy_reject",
    "check_ac",
    "reject_for",
    "user_identity",
]
