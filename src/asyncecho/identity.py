"""User Identity negotiation (PS3.7 D.3.3.7): the request a requestor
sends, and the shape of an SCP's check.

Secrets never reach a log: `UserIdentityRQ` leaves its secondary field (the
passcode) out of its repr, and the `-d` dump masks it.

May import `protocol/` only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asyncecho.protocol.pdu import AssociateRQ
from asyncecho.protocol.pdu_items import (
    USER_IDENTITY_JWT,
    USER_IDENTITY_KERBEROS,
    USER_IDENTITY_SAML,
    USER_IDENTITY_USERNAME,
    USER_IDENTITY_USERNAME_PASSCODE,
    UserIdentityRQ,
)

#: An SCP's identity check: given the requestor's identity (None if it sent
#: none) and its A-ASSOCIATE-RQ, return False to reject the association,
#: True to accept it, or bytes to accept it with that server response.
IdentityCheck = Callable[[UserIdentityRQ | None, AssociateRQ], Awaitable[bool | bytes]]


def user_identity(
    *,
    username: str | None = None,
    passcode: str | None = None,
    kerberos_ticket: bytes | None = None,
    saml_assertion: bytes | str | None = None,
    jwt: str | None = None,
    positive_response: bool = False,
) -> UserIdentityRQ:
    """Build the User Identity sub-item from exactly one kind of identity."""
    kinds = [
        k
        for k, v in (
            ("username", username),
            ("kerberos_ticket", kerberos_ticket),
            ("saml_assertion", saml_assertion),
            ("jwt", jwt),
        )
        if v is not None
    ]
    if len(kinds) != 1:
        raise ValueError("give exactly one of username, kerberos_ticket, saml_assertion, jwt")
    if passcode is not None and username is None:
        raise ValueError("a passcode goes with a username")
    if username is not None:
        if passcode is not None:
            return UserIdentityRQ(
                USER_IDENTITY_USERNAME_PASSCODE,
                positive_response,
                username.encode("utf-8"),
                passcode.encode("utf-8"),
            )
        return UserIdentityRQ(USER_IDENTITY_USERNAME, positive_response, username.encode("utf-8"))
    if kerberos_ticket is not None:
        return UserIdentityRQ(USER_IDENTITY_KERBEROS, positive_response, kerberos_ticket)
    if saml_assertion is not None:
        raw = saml_assertion.encode("utf-8") if isinstance(saml_assertion, str) else saml_assertion
        return UserIdentityRQ(USER_IDENTITY_SAML, positive_response, raw)
    assert jwt is not None
    return UserIdentityRQ(USER_IDENTITY_JWT, positive_response, jwt.encode("ascii"))
