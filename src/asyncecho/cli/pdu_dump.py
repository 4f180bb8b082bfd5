"""Human-readable dumps of A-ASSOCIATE PDUs for `-d`, in the layout of
pynetdicom's echoscu (shared/seed/reference). UID names come from pydicom,
imported only here, only when a dump is asked for."""

from __future__ import annotations

from asyncecho.protocol.pdu import AssociateAC, AssociateRQ
from asyncecho.protocol.pdu_items import (
    PC_RESULT_NAMES,
    USER_IDENTITY_TYPE_NAMES,
    AsynchronousOperationsWindow,
    RoleSelection,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UnknownUserItem,
    UserIdentityAC,
    UserIdentityRQ,
)
from asyncecho.protocol.uids import uid_name

_WIDTH = 76


def _banner(title: str) -> str:
    return f" {title} ".center(_WIDTH, "=")


def _named(uid: str) -> str:
    name = uid_name(uid)
    return f"={name}" if name != uid else uid


def _role(rq: AssociateRQ | AssociateAC, sop_class: str) -> str:
    for item in rq.user_items:
        if isinstance(item, RoleSelection) and item.sop_class_uid == sop_class:
            roles = [name for name, on in (("SCU", item.scu_role), ("SCP", item.scp_role)) if on]
            return "/".join(roles) or "None"
    return "Default"


def _async_window(pdu: AssociateRQ | AssociateAC) -> str:
    for item in pdu.user_items:
        if isinstance(item, AsynchronousOperationsWindow):
            return (
                f"invoked {item.max_operations_invoked}, performed {item.max_operations_performed}"
            )
    return "None"


def _extended(pdu: AssociateRQ | AssociateAC) -> list[str]:
    items = [i for i in pdu.user_items if isinstance(i, SOPClassExtendedNegotiation)]
    if not items:
        return ["None"]
    return [f"  {_named(i.sop_class_uid)}: 0x{i.application_information.hex()}" for i in items]


def _common_extended(pdu: AssociateRQ) -> list[str]:
    items = [i for i in pdu.user_items if isinstance(i, SOPClassCommonExtendedNegotiation)]
    if not items:
        return ["None"]
    return [
        f"  {_named(i.sop_class_uid)} (service class {_named(i.service_class_uid)})" for i in items
    ]


def dump_rq(rq: AssociateRQ, *, outgoing: bool = True) -> list[str]:
    """Lines for an A-ASSOCIATE-RQ (passcodes are never shown)."""
    who = "Our" if outgoing else "Their"
    lines = [
        _banner(f"{'OUTGOING' if outgoing else 'INCOMING'} A-ASSOCIATE-RQ PDU"),
        f"{who} Implementation Class UID:".ljust(35) + (rq.implementation_class_uid or "None"),
        f"{who} Implementation Version Name:".ljust(35)
        + (rq.implementation_version_name or "None"),
        "Application Context Name:    " + rq.application_context,
        "Calling Application Name:    " + rq.calling_ae,
        "Called Application Name:     " + rq.called_ae,
        f"{who} Max PDU Receive Size:".ljust(29)
        + str(rq.max_length if rq.max_length is not None else "None"),
        "Presentation Context:",
    ]
    for pc in rq.presentation_contexts:
        lines += [
            f"  Context ID:        {pc.context_id} (Proposed)",
            f"    Abstract Syntax: {_named(pc.abstract_syntax)}",
            f"    Proposed SCP/SCU Role: {_role(rq, pc.abstract_syntax)}",
            "    Proposed Transfer Syntax" + ("es:" if len(pc.transfer_syntaxes) > 1 else ":"),
        ]
        lines += [f"      {_named(ts)}" for ts in pc.transfer_syntaxes]
    extended = _extended(rq)
    lines.append("Requested Extended Negotiation: " + extended[0])
    lines += extended[1:]
    common = _common_extended(rq)
    lines.append("Requested Common Extended Negotiation: " + common[0])
    lines += common[1:]
    lines.append("Requested Asynchronous Operations Window Negotiation: " + _async_window(rq))
    identity = next((i for i in rq.user_items if isinstance(i, UserIdentityRQ)), None)
    if identity is None:
        lines.append("Requested User Identity Negotiation: None")
    else:
        lines += [
            "Requested User Identity Negotiation:",
            f"  Type: {USER_IDENTITY_TYPE_NAMES[identity.identity_type]}",
            f"  Positive response requested: {'Yes' if identity.positive_response_requested else 'No'}",
            "  Primary field: " + _identity_primary(identity),
        ]
        if identity.secondary_field:
            lines.append("  Secondary field: ********")
    lines += _unknown(rq)
    lines.append(_banner("END A-ASSOCIATE-RQ PDU"))
    return lines


def _identity_primary(identity: UserIdentityRQ) -> str:
    if identity.identity_type in (1, 2):
        return identity.primary_field.decode("utf-8", "replace")
    return f"<{len(identity.primary_field)} bytes>"  # tickets, assertions, tokens: not shown


def _unknown(pdu: AssociateRQ | AssociateAC) -> list[str]:
    return [
        f"Unknown User Information Sub-item 0x{i.item_type:02x}: {len(i.data)} bytes"
        for i in pdu.user_items
        if isinstance(i, UnknownUserItem)
    ]


def dump_ac(ac: AssociateAC, rq: AssociateRQ | None = None, *, incoming: bool = True) -> list[str]:
    who = "Their" if incoming else "Our"
    abstract = {pc.context_id: pc.abstract_syntax for pc in rq.presentation_contexts} if rq else {}
    lines = [
        _banner(f"{'INCOMING' if incoming else 'OUTGOING'} A-ASSOCIATE-AC PDU"),
        f"{who} Implementation Class UID:".ljust(35) + (ac.implementation_class_uid or "None"),
        f"{who} Implementation Version Name:".ljust(35)
        + (ac.implementation_version_name or "None"),
        "Application Context Name:    " + ac.application_context,
        "Calling Application Name:    " + ac.calling_ae,
        "Called Application Name:     " + ac.called_ae,
        f"{who} Max PDU Receive Size:".ljust(29)
        + str(ac.max_length if ac.max_length is not None else "None"),
        "Presentation Contexts:",
    ]
    for pc in ac.presentation_contexts:
        state = "Accepted" if pc.accepted else PC_RESULT_NAMES[pc.result]
        syntax = abstract.get(pc.context_id)
        lines.append(f"  Context ID:        {pc.context_id} ({state})")
        if syntax:
            lines.append(f"    Abstract Syntax: {_named(syntax)}")
        if pc.accepted and pc.transfer_syntax:
            lines += [
                f"    Accepted SCP/SCU Role: {_role(ac, syntax) if syntax else 'Default'}",
                f"    Accepted Transfer Syntax: {_named(pc.transfer_syntax)}",
            ]
    extended = _extended(ac)
    lines.append("Accepted Extended Negotiation: " + extended[0])
    lines += extended[1:]
    lines.append("Accepted Asynchronous Operations Window Negotiation: " + _async_window(ac))
    response = next((i for i in ac.user_items if isinstance(i, UserIdentityAC)), None)
    lines.append(
        "User Identity Negotiation Response: "
        + ("None" if response is None else f"<{len(response.server_response)} bytes>")
    )
    lines += _unknown(ac)
    lines.append(_banner("END A-ASSOCIATE-AC PDU"))
    return lines
