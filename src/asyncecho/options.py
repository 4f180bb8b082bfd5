"""`EchoOptions`: everything that shapes one requestor association, and how
the keywords of `echo()`, `verify()`, `associate()` and `sweep()` become one.

Holds `EchoOptions`, the keyword defaults (`OPTION`, `OPTION_NAMES`), the
merge of an options object with the keywords given (`merged`), and the
options' entries of those functions' docstrings (`documented`). May import
`arguments` and `protocol/`.
"""

from __future__ import annotations

import ssl as _ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from asyncecho import arguments
from asyncecho.arguments import defaults_of, given
from asyncecho.protocol import uids
from asyncecho.protocol.pdu_items import UserIdentityRQ, UserItem


@dataclass(frozen=True, slots=True)
class EchoOptions:
    """Everything that shapes one association; defaults follow echoscu."""

    calling_ae: str = "ECHOSCU"
    called_ae: str = "ANY-SCP"
    transfer_syntaxes: Sequence[str] = uids.DEFAULT_TRANSFER_SYNTAXES
    max_pdu: int = 16382
    connect_timeout: float | None = 30.0
    acse_timeout: float | None = 30.0
    dimse_timeout: float | None = 30.0
    network_timeout: float | None = 30.0
    deadline: float | None = None
    ssl: _ssl.SSLContext | None = None
    server_hostname: str | None = None
    #: User Identity negotiation (see `asyncecho.identity.user_identity`)
    user_identity: UserIdentityRQ | None = None
    #: any further User Information sub-items to send
    user_items: Sequence[UserItem] = ()

    def __post_init__(self) -> None:
        # Every field checked once, when the options are made (see
        # `arguments`): a bad value is the caller's TypeError/ValueError,
        # the same on every backend, before any I/O.
        put = object.__setattr__
        put(self, "calling_ae", arguments.ae_title(self.calling_ae, "calling_ae"))
        put(self, "called_ae", arguments.ae_title(self.called_ae, "called_ae"))
        syntaxes = self.transfer_syntaxes
        if syntaxes is not uids.DEFAULT_TRANSFER_SYNTAXES:
            put(self, "transfer_syntaxes", arguments.uid_list(syntaxes, "transfer_syntaxes"))
        arguments.max_pdu(self.max_pdu)
        for name in _TIMEOUT_FIELDS:
            arguments.seconds(getattr(self, name), name)
        arguments.ssl_context(self.ssl)
        arguments.optional_str(self.server_hostname, "server_hostname")
        if self.user_identity is not None and not isinstance(self.user_identity, UserIdentityRQ):
            raise TypeError(
                "user_identity must be a UserIdentityRQ (asyncecho.identity.user_identity()) "
                f"or None, not {type(self.user_identity).__name__}"
            )
        if self.user_items != ():
            put(
                self,
                "user_items",
                arguments.instances(self.user_items, "user_items", UserItem, "User Information items"),
            )


_TIMEOUT_FIELDS = ("connect_timeout", "acse_timeout", "dimse_timeout", "network_timeout", "deadline")


# Typed Any (the parameters are typed as the options' fields): `OPTION[name]`
# is the default of the keyword `name` of echo(), verify(), associate() and
# sweep(). OPTION_NAMES is the order in which they pass their keywords on.
OPTION: dict[str, Any] = defaults_of(EchoOptions)
OPTION_NAMES = tuple(OPTION)
_NOTHING_GIVEN = tuple(OPTION.values())


_DEFAULT_OPTIONS = EchoOptions()  # frozen: one for every call that changes nothing


def merged(base: EchoOptions | None, settings: tuple[object, ...]) -> EchoOptions:
    """`base` (or the defaults) with the keywords given applied on top (the
    documented behaviour of echo(), verify() and associate()). `settings`:
    every option keyword's value, in `OPTION_NAMES` order."""
    if base is None:
        base = _DEFAULT_OPTIONS
    elif not isinstance(base, EchoOptions):
        raise TypeError(f"options must be an EchoOptions or None, not {type(base).__name__}")
    # The usual call gives none: every value is its own Default, which the
    # tuple comparison finds by identity, item by item, without building
    # anything (echo() is the hot path of a sweep).
    if settings == _NOTHING_GIVEN:
        return base
    return replace(base, **given(OPTION_NAMES, settings))


def checked(host: str, port: int) -> tuple[str, int]:
    """Checked before any I/O, so that every backend answers alike (asyncio
    took None for localhost; a port out of range was a raw OverflowError,
    an ExceptionGroup on trio, and a str port a name-resolution failure)."""
    return arguments.host(host), arguments.port(port)



# The options' entries of the Args section, the same for echo(), verify()
# and associate(): written once, put in place of each docstring's "@options".
_OPTIONS_DOC = """\
        calling_ae: Our AE title. Default "ECHOSCU".
        called_ae: The peer's AE title. Default "ANY-SCP".
        transfer_syntaxes: The transfer syntax UIDs proposed for
            Verification. Default: Explicit VR Little Endian, Implicit VR
            Little Endian, Deflated Explicit VR Little Endian, Explicit VR
            Big Endian (`uids.DEFAULT_TRANSFER_SYNTAXES`).
        max_pdu: The largest PDU we accept, in bytes (PS3.8 D.1); 0 = no
            limit, else 7-4294967295. Default 16382.
        connect_timeout: Seconds for the TCP connect and the TLS handshake.
            Default 30.
        acse_timeout: Seconds for each A-ASSOCIATE and A-RELEASE answer.
            Default 30.
        dimse_timeout: Seconds for each C-ECHO-RSP. Default 30.
        network_timeout: Seconds without a byte from the peer. Default 30.
        deadline: Seconds for everything, connect to release. Default None
            (no limit but the phases').
        ssl: An `ssl.SSLContext` for DICOM over TLS (see `asyncecho.tls`).
            Default None: plain TCP.
        server_hostname: The name the peer's certificate must match.
            Default None: `host` (with `ssl`).
        user_identity: User Identity negotiation (PS3.7 D.3.3.7), from
            `asyncecho.identity.user_identity()`. Default None.
        user_items: Further User Information sub-items to send. Default ().
        options: An `EchoOptions` holding any of the above; the keywords
            given as well apply on top of it (even one given with its
            default value). Default None: the defaults.
"""

_F = TypeVar("_F", bound=Callable[..., Any])


def documented(func: _F) -> _F:
    if func.__doc__:  # (none under python -OO)
        func.__doc__ = func.__doc__.replace("        @options\n", _OPTIONS_DOC)
    return func
