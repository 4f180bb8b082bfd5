"""SCP/SCU role selection at our SCP (issue 13, section 6; PS3.7 D.3.3.4).

We act only as SCP for Verification. A requestor that rules out the SCU
role for itself (SCU role 0) leaves a context on which no one may invoke
C-ECHO: it is rejected (user rejection), as pynetdicom's acceptor does with
the same roles; otherwise it is accepted with a reply SCU=1/SCP=0.
"""

from __future__ import annotations

import pytest

import peers
from asyncecho import serve
from asyncecho.protocol import uids
from asyncecho.protocol.negotiation import AcceptorPolicy, build_ac
from asyncecho.protocol.pdu import AssociateRQ
from asyncecho.protocol.pdu_items import (
    PC_ACCEPTANCE,
    PC_USER_REJECTION,
    PresentationContextRQ,
    RoleSelection,
)

#: (SCU role, SCP role) a requestor proposes; None: no role selection item
PROPOSALS = [None, (True, True), (True, False), (False, True), (False, False)]


def rq_with(roles: tuple[bool, bool] | None, contexts: int = 1) -> AssociateRQ:
    items = () if roles is None else (RoleSelection(uids.VERIFICATION, *roles),)
    return AssociateRQ(
        called_ae="ANY-SCP",
        calling_ae="ROLES",
        presentation_contexts=tuple(
            PresentationContextRQ(2 * i + 1, uids.VERIFICATION, (uids.IMPLICIT_VR_LE,))
            for i in range(contexts)
        ),
        user_items=items,
    )


def ours(roles: tuple[bool, bool] | None) -> tuple[int, list[tuple[bool, bool]]]:
    ac = build_ac(rq_with(roles), AcceptorPolicy())
    replies = [(i.scu_role, i.scp_role) for i in ac.user_items if isinstance(i, RoleSelection)]
    return ac.presentation_contexts[0].result, replies


def pynetdicoms(roles: tuple[bool, bool] | None) -> tuple[int, list[tuple[bool, bool]]]:
    """pynetdicom's acceptor with the roles we support: the requestor may be
    SCU (scu_role True), never SCP (scp_role False)."""
    peers.require_pynetdicom()
    from pynetdicom.presentation import PresentationContext, negotiate_as_acceptor

    rq = PresentationContext()
    rq.context_id = 1
    rq.abstract_syntax = uids.VERIFICATION
    rq.transfer_syntax = [uids.IMPLICIT_VR_LE]
    ac = PresentationContext()
    ac.abstract_syntax = uids.VERIFICATION
    ac.transfer_syntax = [uids.IMPLICIT_VR_LE]
    ac.scu_role, ac.scp_role = True, False
    from pydicom.uid import UID

    results, replies = negotiate_as_acceptor(
        [rq], [ac], None if roles is None else {UID(uids.VERIFICATION): roles}
    )
    assert results[0].result is not None
    return results[0].result, [(bool(r.scu_role), bool(r.scp_role)) for r in replies]


@pytest.mark.parametrize("roles", PROPOSALS, ids=str)
def test_role_selection_answered_as_pynetdicom_does(roles: tuple[bool, bool] | None) -> None:
    assert ours(roles) == pynetdicoms(roles)


def test_scp_only_requestor_gets_the_context_rejected() -> None:
    assert ours((False, True)) == (PC_USER_REJECTION, [])
    assert ours((True, True)) == (PC_ACCEPTANCE, [(True, False)])


def test_one_role_reply_per_sop_class_and_every_context_judged() -> None:
    """Two contexts for Verification: both judged by the one role item (not
    only the first), and one reply for the SOP class."""
    for roles, result, replies in [
        ((False, True), PC_USER_REJECTION, []),
        ((True, False), PC_ACCEPTANCE, [(True, False)]),
    ]:
        ac = build_ac(rq_with(roles, contexts=2), AcceptorPolicy())
        assert [pc.result for pc in ac.presentation_contexts] == [result, result]
        assert [
            (i.scu_role, i.scp_role) for i in ac.user_items if isinstance(i, RoleSelection)
        ] == replies


@pytest.mark.anyio
@pytest.mark.parametrize(("roles", "echoed"), [((False, True), False), ((True, False), True)])
async def test_pynetdicom_requestor_with_roles(roles: tuple[bool, bool], echoed: bool) -> None:
    """pynetdicom as the requestor, proposing roles for Verification: an
    SCP-only requestor finds the context rejected and cannot echo."""
    peers.require_pynetdicom()
    import anyio
    from pynetdicom import AE, build_role

    async with serve() as server:

        def requestor() -> tuple[list[int | None], int | None]:
            ae = AE(ae_title="ROLES")
            ae.add_requested_context(uids.VERIFICATION, [uids.IMPLICIT_VR_LE])
            ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
            assoc = ae.associate(
                "127.0.0.1", server.port, ext_neg=[build_role(uids.VERIFICATION, *roles)]
            )
            try:
                results = [cx.result for cx in assoc.rejected_contexts + assoc.accepted_contexts]
                status = None
                if assoc.is_established and assoc.accepted_contexts:
                    answer = assoc.send_c_echo()
                    status = int(answer.Status) if answer else None
                return results, status
            finally:
                if assoc.is_established:
                    assoc.release()

        results, status = await anyio.to_thread.run_sync(requestor)
    if echoed:
        assert (results, status) == ([PC_ACCEPTANCE], 0)
    else:
        assert results == [PC_USER_REJECTION] and status is None
