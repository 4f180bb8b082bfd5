"""The Verification SCP: `serve()`, its `ServerOptions` and the running
`Server`.

The association itself is `protocol.acceptor.AcceptorSession`; one driver
per backend moves its bytes and keeps its timer (`transport.asyncio_scp`:
asyncio Protocol callbacks, also uvloop; `transport.anyio_scp`: a task per
connection on trio). This module checks the options, picks the driver for
the running backend and is its sink (`transport.scp.ScpSink`): it counts
what the sessions did, runs the identity check and logs (`server_logs`).

Imports the API modules beside it, `asyncecho.transport` and
`asyncecho.protocol`.
"""

from __future__ import annotations

import ipaddress
import ssl as _ssl
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from asyncecho import arguments, logs, server_logs
from asyncecho.arguments import defaults_of, given
from asyncecho.identity import IdentityCheck
from asyncecho.protocol import uids
from asyncecho.protocol.acceptor import (
    AssociationEstablished,
    EchoAnswered,
    IdentityCheckNeeded,
)
from asyncecho.protocol.negotiation import AcceptorPolicy
from asyncecho.transport.asyncio_scp import serve_asyncio
from asyncecho.transport.channel import on_asyncio
from asyncecho.transport.scp import ScpListening


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """Everything that shapes the SCP: the settings of `serve()` (see its
    docstring for each), checked and normalised when made."""

    ae_title: str = "ANY-SCP"
    require_called_ae: bool = False
    allowed_calling_aes: frozenset[str] = frozenset()
    allowed_called_aes: frozenset[str] = frozenset()
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    transfer_syntaxes: Sequence[str] = (
        uids.IMPLICIT_VR_LE,
        uids.EXPLICIT_VR_LE,
        uids.DEFLATED_EXPLICIT_VR_LE,
        uids.EXPLICIT_VR_BE,
    )
    max_pdu: int = 16382
    max_associations: int = 10_000
    acse_timeout: float = 30.0
    dimse_timeout: float = 30.0
    network_timeout: float = 30.0
    ssl: _ssl.SSLContext | None = None
    backlog: int = 4096
    #: async (identity, rq) -> False | True | server response bytes
    identity_check: IdentityCheck | None = None
    policy: AcceptorPolicy = field(init=False)

    def __post_init__(self) -> None:
        # Every field checked (and normalised) once, here, whichever way the
        # options are made: a bad value is a TypeError/ValueError naming it,
        # the same on every backend, before anything listens.
        put = object.__setattr__
        put(self, "ae_title", arguments.ae_title(self.ae_title, "ae_title"))
        arguments.flag(self.require_called_ae, "require_called_ae")
        for name in ("allowed_calling_aes", "allowed_called_aes"):
            put(self, name, arguments.ae_titles(getattr(self, name), name))
        put(self, "allowed_networks", arguments.networks(self.allowed_networks))
        put(
            self,
            "transfer_syntaxes",
            arguments.uid_list(self.transfer_syntaxes, "transfer_syntaxes"),
        )
        arguments.max_pdu(self.max_pdu)
        # 0 is meaningful: every association is rejected, transient (local
        # limit exceeded), as echoscp --max-associations 0 does for maintenance.
        arguments.integer(self.max_associations, "max_associations", minimum=0)
        for name in ("acse_timeout", "dimse_timeout", "network_timeout"):
            arguments.seconds(getattr(self, name), name, none_ok=False)
        arguments.ssl_context(self.ssl)
        arguments.integer(self.backlog, "backlog", minimum=0)
        if self.identity_check is not None and not callable(self.identity_check):
            raise TypeError(
                "identity_check must be an async function (identity, rq) or None, "
                f"not {type(self.identity_check).__name__}"
            )
        put(
            self,
            "policy",
            AcceptorPolicy(
                ae_title=self.ae_title,
                require_called_ae=self.require_called_ae,
                allowed_calling_aes=self.allowed_calling_aes,
                allowed_called_aes=self.allowed_called_aes,
                supported={uids.VERIFICATION: tuple(self.transfer_syntaxes)},
                max_pdu=self.max_pdu,
            ),
        )

    def network_allowed(self, peer: Any) -> bool:
        if not self.allowed_networks:
            return True
        try:
            address = ipaddress.ip_address(str(peer[0]).split("%")[0])
        except (ValueError, TypeError, IndexError):
            return False
        return any(address in net for net in self.allowed_networks)


class Server:
    """A running Verification SCP, made by `serve()`.

    Attributes: `host` and `port` (the bound address: the port that port 0
    picked), `options` (the `ServerOptions`), `active` (associations in
    progress, not counting refused ones), `accepted_total` and
    `echoes_total` (since it started).
    """

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.host = ""
        self.port = 0
        self.active = 0  # associations in progress (not counting refused ones)
        self.accepted_total = 0
        self.echoes_total = 0
        self._connections: Any = frozenset()  # the driver's (asyncio: its Protocols)

    @property
    def _closers(self) -> Any:
        """The open connections (on asyncio; none are kept on trio)."""
        return self._connections


class _Sink:
    """What the drivers report (`transport.scp.ScpSink`), for one `Server`:
    counted on it and logged."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._options = server.options
        self._accept_log = server_logs.AcceptPausedLog()

    def take_slot(self) -> bool:
        server = self._server
        if server.active >= self._options.max_associations:
            return False
        server.active += 1
        return True

    def free_slot(self) -> None:
        self._server.active -= 1

    def record(self, peer: Any, events: Sequence[object]) -> None:
        server = self._server
        for item in events:
            if isinstance(item, EchoAnswered):
                server.echoes_total += 1
            elif isinstance(item, AssociationEstablished):
                server.accepted_total += 1
        if logs.enabled and events:
            server_logs.log_events(peer, events, self._options)

    def refused_network(self, peer: Any) -> None:
        server_logs.log_refused_network(peer)

    def tls_failed(self, peer: Any, error: BaseException) -> None:
        server_logs.log_tls_failed(peer, error)

    def internal_error(self, peer: Any, bug: BaseException) -> None:
        server_logs.log_internal_error(peer, bug)

    def accept_failed(self, error: OSError, now: float, pause: float) -> None:
        self._accept_log.failed(error, now, pause)

    async def check_identity(self, item: IdentityCheckNeeded, peer: Any) -> bool | bytes:
        """The user's identity check, bounded by the ACSE timeout; a failing
        or slow check refuses the association."""
        import anyio  # (anyio is imported only when identities are checked)

        check = self._options.identity_check
        assert check is not None
        try:
            with anyio.fail_after(self._options.acse_timeout):
                verdict = await check(item.identity, item.rq)
        except Exception as exc:
            server_logs.log_identity_check_failed(peer, item.rq, exc)
            return False
        if verdict is False:
            server_logs.log_identity_refused(peer, item.rq, item.identity)
        return verdict


# `_SERVER[name]`: the default of serve()'s keyword `name` (see client.Default).
_SERVER: dict[str, Any] = defaults_of(ServerOptions)
_SERVER_NAMES = tuple(_SERVER)

_AnyNetwork = str | ipaddress.IPv4Network | ipaddress.IPv6Network


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ae_title: str = _SERVER["ae_title"],
    require_called_ae: bool = _SERVER["require_called_ae"],
    allowed_calling_aes: Iterable[str] = _SERVER["allowed_calling_aes"],
    allowed_called_aes: Iterable[str] = _SERVER["allowed_called_aes"],
    allowed_networks: Iterable[_AnyNetwork] = _SERVER["allowed_networks"],
    transfer_syntaxes: Sequence[str] = _SERVER["transfer_syntaxes"],
    max_pdu: int = _SERVER["max_pdu"],
    max_associations: int = _SERVER["max_associations"],
    acse_timeout: float = _SERVER["acse_timeout"],
    dimse_timeout: float = _SERVER["dimse_timeout"],
    network_timeout: float = _SERVER["network_timeout"],
    ssl: _ssl.SSLContext | None = _SERVER["ssl"],
    backlog: int = _SERVER["backlog"],
    identity_check: IdentityCheck | None = _SERVER["identity_check"],
    options: ServerOptions | None = None,
) -> AbstractAsyncContextManager[Server]:
    """Run a Verification SCP while the block runs.

    `async with serve("127.0.0.1", 0) as server:` then `server.port` is the
    bound port. Leaving the block aborts the associations in flight and
    stops listening. Every timeout is a finite number of seconds > 0; on
    asyncio a limit may fire up to 10 ms late, never early.

    Args:
        host: The address to listen on; "" listens on every interface.
            Default "127.0.0.1".
        port: The TCP port, 0-65535; 0 (the default): any free one.
        ae_title: Our AE title. Default "ANY-SCP".
        require_called_ae: Reject a request whose called AE title is not
            `ae_title`. Default False: any.
        allowed_calling_aes: Accept only these calling AE titles. Default:
            any.
        allowed_called_aes: Accept only these called AE titles (in place of
            `require_called_ae`'s check). Default: as `require_called_ae`.
        allowed_networks: Accept connections only from these networks (CIDR
            strings or `ipaddress` networks). Default: any.
        transfer_syntaxes: The transfer syntax UIDs accepted, in order of
            preference. Default: Implicit VR LE, Explicit VR LE, Deflated
            Explicit VR LE, Explicit VR BE.
        max_pdu: The largest PDU we accept, in bytes; 0 = no limit, else
            7-4294967295. Default 16382.
        max_associations: Associations at once; beyond it an A-ASSOCIATE-RJ
            (transient, local limit exceeded); 0 rejects every one. Default
            10000.
        acse_timeout: Seconds for the A-ASSOCIATE-RQ (ARTIM) and the TLS
            handshake. Default 30.
        dimse_timeout: Seconds for a PDU, once its first bytes have come.
            Default 30.
        network_timeout: Seconds without a byte from the peer. Default 30.
        ssl: An `ssl.SSLContext` for DICOM over TLS (see `asyncecho.tls`).
            Default None: plain TCP.
        backlog: The listen() backlog. Default 4096.
        identity_check: An async function (identity, rq) returning False
            (reject), True (accept) or the server response bytes (accept),
            for User Identity negotiation (`asyncecho.identity`). Default
            None: identities are not checked.
        options: A `ServerOptions` holding the above: give either it or the
            settings as keywords, not both (a TypeError). Default None.

    Raises:
        TypeError, ValueError: A bad argument, at the call (before anything
            listens).
        OSError: On entering the block, if the address cannot be listened on.
    """
    # Checked at the call, before anything listens, on every backend alike.
    arguments.host(host, "host", empty_ok=True)
    arguments.port(port, "port", zero_ok=True)
    settings = given(
        _SERVER_NAMES,
        (
            ae_title,
            require_called_ae,
            allowed_calling_aes,
            allowed_called_aes,
            allowed_networks,
            transfer_syntaxes,
            max_pdu,
            max_associations,
            acse_timeout,
            dimse_timeout,
            network_timeout,
            ssl,
            backlog,
            identity_check,
        ),
    )
    if options is None:
        options = ServerOptions(**settings)
    elif not isinstance(options, ServerOptions):
        raise TypeError(f"options must be a ServerOptions or None, not {type(options).__name__}")
    else:
        arguments.no_conflict("serve()", options, settings)
    return _serving(host, port, options)


@asynccontextmanager
async def _serving(host: str, port: int, options: ServerOptions) -> AsyncIterator[Server]:
    """The driver is the running backend's."""
    server = Server(options)
    sink = _Sink(server)
    driver: Callable[..., AbstractAsyncContextManager[ScpListening]] = serve_asyncio
    if not on_asyncio():
        from asyncecho.transport.anyio_scp import serve_anyio  # (imports anyio)

        driver = serve_anyio
    try:
        async with driver(host, port, options, sink) as listening:
            server.host, server.port = listening.address
            server._connections = listening.connections
            server_logs.log_listening(
                server.host, server.port, options.ae_title, options.ssl is not None
            )
            yield server
    finally:
        if server.port:
            server_logs.log_stopped(
                server.host, server.port, server.accepted_total, server.echoes_total
            )
