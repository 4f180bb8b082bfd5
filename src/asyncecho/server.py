"""The Verification SCP: `serve()`.

On asyncio the whole association runs in `asyncio.Protocol` callbacks: no
task per connection, one timer handle each. On trio (any non-asyncio anyio
backend) each connection is a task reading an anyio byte stream. Both drive
the same `VerificationAcceptor`.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import ssl as _ssl
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast

from asyncecho import arguments, logs
from asyncecho.arguments import defaults_of, given
from asyncecho.identity import IdentityCheck
from asyncecho.protocol import uids
from asyncecho.protocol.acceptor import (
    AssociationEstablished,
    AssociationRefused,
    EchoAnswered,
    IdentityCheckNeeded,
    VerificationAcceptor,
)
from asyncecho.protocol.dimse import status_name
from asyncecho.protocol.errors import ABORT_REASON_NOT_SPECIFIED
from asyncecho.protocol.events import Aborted, ReleaseRequested
from asyncecho.protocol.negotiation import AcceptorPolicy, accepted_contexts, user_identity
from asyncecho.protocol.pdu import ABORT_SOURCE_PROVIDER, Abort, AssociateAC, AssociateRQ
from asyncecho.protocol.pdu_items import USER_IDENTITY_TYPE_NAMES
from asyncecho.protocol.state_machine import State
from asyncecho.transport.channel import on_asyncio, tune_socket
from asyncecho.transport.timer_wheel import TimerWheel

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)
_STA13 = State.STA13
# No association to abort: before the transport (Sta1), or already over (Sta13).
_NOTHING_TO_ABORT = (State.STA1, State.STA13)
# PS3.8 Table 9-26: A-ABORT from the service provider, reason not specified.
_PROVIDER_ABORT = Abort(ABORT_SOURCE_PROVIDER, ABORT_REASON_NOT_SPECIFIED).encode()

# For each way a peer can be too slow (VerificationAcceptor.stalled): the log
# event, its outcome (the client's word for the same limit), the option that
# bounds it, and why, in words.
_STALLS = {
    "idle": ("scp.idle_timeout", "timeout-network", "network_timeout", "nothing received"),
    "slow-pdu": (
        "scp.dimse_timeout",
        "timeout-dimse",
        "dimse_timeout",
        "one PDU took longer than the DIMSE timeout",
    ),
    # (the transports' own check: what we send is not read)
    "not-reading": (
        "scp.idle_timeout",
        "timeout-network",
        "network_timeout",
        "the peer does not read what we send",
    ),
}
# Leaving serve() sends each association an A-ABORT, but waits no longer than
# this for a peer that is not reading (asyncio's SCP does not wait at all).
_SHUTDOWN_ABORT_WAIT = 1.0


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


def _peer_text(peer: Any) -> str:
    """`host:port`, as every scp.* event gives the peer."""
    return f"{peer[0]}:{peer[1]}" if peer else "?"


def _log_internal_error(peer: Any, bug: BaseException) -> None:
    """One line for a bug contained to one connection (both transports)."""
    logs.log(
        "scp.internal_error",
        level="error",
        peer=_peer_text(peer),
        outcome="internal-error",
        error=f"{type(bug).__name__}: {bug}",
    )


def _log_stall(stalled: str, peer: Any, options: ServerOptions) -> None:
    """A peer too slow for our limits: we abort (both transports)."""
    event, outcome, limit, reason = _STALLS[stalled]
    logs.log(
        event,
        level="warning",
        peer=_peer_text(peer),
        outcome=outcome,
        timeout=getattr(options, limit),
        reason=reason,
    )


def _log_refused_network(peer: Any) -> None:
    """A connection from outside `allowed_networks`, closed unanswered."""
    logs.log(
        "scp.refused_network", level="warning", peer=_peer_text(peer), outcome="refused-network"
    )


def _peer_of(sock: socket.socket) -> Any:
    try:
        return sock.getpeername()
    except OSError:
        return None


def _log_tls_failed(peer: Any, exc: BaseException) -> None:
    """A failed TLS handshake: the connection closed, no association."""
    from asyncecho.tls import describe_ssl_error

    logs.log(
        "scp.tls_failed",
        level="warning",
        peer=_peer_text(peer),
        outcome="tls",
        reason=describe_ssl_error(exc),
    )


def _log_listening(server: Server) -> None:
    options = server.options
    logs.log(
        "scp.listening",
        host=server.host,
        port=server.port,
        ae_title=options.ae_title,
        tls=options.ssl is not None,
    )


def _log_stopped(server: Server) -> None:
    logs.log(
        "scp.stopped",
        host=server.host,
        port=server.port,
        accepted_total=server.accepted_total,
        echoes_total=server.echoes_total,
    )


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
        self._closers: set[Any] = set()
        self._tasks: set[Any] = set()
        self._accepting: _AcceptLoop | None = None  # asyncio

    def _record(self, peer: Any, happened: Iterable[object]) -> None:
        """Count and log what an acceptor did (both transports)."""
        for item in happened:
            if isinstance(item, EchoAnswered):
                self.echoes_total += 1
            elif isinstance(item, AssociationEstablished):
                self.accepted_total += 1
        if logs.enabled:
            self._log(peer, happened)

    def _log(self, peer: Any, happened: Iterable[object]) -> None:
        # Flat fields only (str, int, float, bool, None, lists of str), so
        # that every event can be queried as it is; the RQ itself goes only
        # into a debug event of its own, for a renderer that dumps it (the
        # CLI's -d). Levels: what the SCP is for is info; what a peer did
        # wrong or was refused is a warning (nothing here to repair).
        where = _peer_text(peer)
        for item in happened:
            if isinstance(item, AssociationEstablished):
                rq = item.rq
                logs.log("scp.associate.request.pdu", level="debug", peer=where, pdu=rq)
                logs.log(
                    "scp.associate.accepted",
                    peer=where,
                    **_rq_fields(rq),
                    **_accepted_fields(rq, self.options.policy),
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
            elif isinstance(item, EchoAnswered):
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
            elif isinstance(item, ReleaseRequested):
                logs.log("scp.release", peer=where)
            elif isinstance(item, Aborted):
                logs.log("scp.aborted", level="warning", peer=where, **_abort_fields(item))


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
        "user_identity": None
        if identity is None
        else USER_IDENTITY_TYPE_NAMES.get(identity.identity_type, str(identity.identity_type)),
    }


def _accepted_fields(rq: AssociateRQ, policy: AcceptorPolicy) -> dict[str, Any]:
    """What we accepted of `rq`: the policy's answer (remembered for this RQ,
    not worked out again; an identity accepted adds no context)."""
    answer = policy.answer(rq)
    accepted = accepted_contexts(rq, answer) if isinstance(answer, AssociateAC) else {}
    first = min(accepted, default=None)
    return {
        "contexts_accepted": len(accepted),
        "transfer_syntax": None if first is None else accepted[first][1],
        "max_pdu": policy.max_pdu,
    }


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


# --- asyncio ---------------------------------------------------------------------------


class _ScpProtocol(asyncio.Protocol):
    __slots__ = (
        "_acceptor",
        "_counted",
        "_loop",
        "_peer",
        "_server",
        "_sock",
        "_timer_key",
        "_transport",
        "_wheel",
    )

    def __init__(
        self, server: Server, loop: asyncio.AbstractEventLoop, wheel: TimerWheel
    ) -> None:
        self._server = server
        self._loop = loop
        self._wheel = wheel
        self._transport: asyncio.Transport | None = None
        self._timer_key: int | None = None  # the server's timer wheel tick we are due in
        self._counted = False
        self._peer: Any = None
        self._sock: Any = None
        self._acceptor: VerificationAcceptor | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance.
        self._transport = cast(asyncio.Transport, transport)
        try:
            self._connection_made(self._transport)
        except Exception as bug:
            self._contain(bug)

    def _connection_made(self, transport: asyncio.Transport) -> None:
        server, options = self._server, self._server.options
        self._peer = transport.get_extra_info("peername")
        if not options.network_allowed(self._peer):
            _log_refused_network(self._peer)
            transport.abort()
            return
        # (TCP_NODELAY: asyncio and uvloop set it on every TCP transport.)
        self._sock = transport.get_extra_info("socket") if _QUICKACK is not None else None
        busy = server.active >= options.max_associations
        if not busy:
            server.active += 1
            self._counted = True
        server._closers.add(self)
        now = self._loop.time()
        self._acceptor = acceptor = VerificationAcceptor(
            options.policy,
            artim_timeout=options.acse_timeout,
            busy=busy,
            check_identity=options.identity_check is not None,
            network_timeout=options.network_timeout,
            dimse_timeout=options.dimse_timeout,
        )
        acceptor.connection_made(now)
        self._arm()

    def _arm(self) -> None:
        acceptor = self._acceptor
        if acceptor is None:
            return
        deadline = acceptor.next_deadline()
        stall = acceptor.stall_deadline()
        if stall is not None:
            deadline = stall if deadline is None else min(deadline, stall)
        if deadline is None:
            return
        wheel, key = self._wheel, self._timer_key
        if key is not None:
            if key <= wheel.key(deadline):
                return  # fires early enough; it re-arms itself if it was too early
            wheel.cancel(self, key)
        self._timer_key = wheel.schedule(self, deadline)

    def on_timer(self) -> None:
        self._timer_key = None
        try:
            self._on_timer()
        except Exception as bug:
            self._contain(bug)

    def _on_timer(self) -> None:
        acceptor, transport = self._acceptor, self._transport
        if acceptor is None or transport is None:
            return
        now = self._loop.time()
        artim = acceptor.next_deadline()
        if artim is not None and now >= artim:
            acceptor.handle_timer(now)  # AA-2: close
            transport.abort()
            return
        stalled = acceptor.stalled(now)
        if stalled is not None:
            _log_stall(stalled, self._peer, self._server.options)
            acceptor.abort(now)
            self._flush()
            # close() waits for the A-ABORT to be flushed, which a peer that
            # does not read never lets happen: ARTIM (Sta13, started by AA-1)
            # bounds that wait as it bounds the peer's close (PS3.8 9.1.4).
            transport.close()
        self._arm()

    def _flush(self) -> None:
        acceptor, transport = self._acceptor, self._transport
        assert acceptor is not None and transport is not None
        out = acceptor.data_to_send()
        if out and not transport.is_closing():
            transport.write(out)

    def data_received(self, data: bytes) -> None:
        acceptor, transport = self._acceptor, self._transport
        if acceptor is None or transport is None:
            return
        try:
            now = self._loop.time()
            if self._after(acceptor.receive_data(data, now)):
                return
            if acceptor.upper.partial_pdu and _QUICKACK is not None and self._sock is not None:
                try:
                    self._sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
                except OSError:  # pragma: no cover
                    pass
            self._arm()
        except Exception as bug:
            self._contain(bug)

    def _contain(self, bug: Exception) -> None:
        """A bug met while serving this connection (whatever the peer sent,
        the core reports it as events): it ends this association only. An
        A-ABORT (service provider, reason not specified: PS3.8 Table 9-26),
        one log line, the connection closed and its slot freed; never the
        loop's "Fatal error" traceback, and the server goes on serving."""
        acceptor, transport = self._acceptor, self._transport
        self._acceptor = None  # nothing more is fed to it, nor logged for it
        if self._timer_key is not None:
            self._wheel.cancel(self, self._timer_key)
            self._timer_key = None
        _log_internal_error(self._peer, bug)
        if transport is not None and not transport.is_closing():
            if acceptor is not None and acceptor.upper.state not in _NOTHING_TO_ABORT:
                transport.write(_PROVIDER_ABORT)
            transport.close()
        self._uncount()

    def _after(self, happened: list[object]) -> bool:
        """Write, count and log what the acceptor did; True once closed."""
        acceptor, transport = self._acceptor, self._transport
        assert acceptor is not None and transport is not None
        out = acceptor.data_to_send()
        if out and not transport.is_closing():
            transport.write(out)
        if happened:
            server = self._server
            server._record(self._peer, happened)
            if acceptor.check_identity:
                for item in happened:
                    if isinstance(item, IdentityCheckNeeded):
                        task = self._loop.create_task(self._check_identity(item))
                        server._tasks.add(task)
                        task.add_done_callback(server._tasks.discard)
            if acceptor.upper.state is _STA13:
                self._uncount()
        if acceptor.upper.should_close:
            transport.close()
            return True
        return False

    async def _check_identity(self, item: IdentityCheckNeeded) -> None:
        options = self._server.options
        verdict = await _run_identity_check(options, item, self._peer)
        if self._acceptor is not None and self._transport is not None:
            accepted = verdict is not False
            try:
                self._after(
                    self._acceptor.decide(
                        accepted, verdict if isinstance(verdict, bytes) else None, self._loop.time()
                    )
                )
                self._arm()
            except Exception as bug:
                self._contain(bug)

    def pause_writing(self) -> None:
        # The peer does not read our responses as fast as it sends requests:
        # stop reading them until it does, so what we buffer for it stays
        # bounded (by the transport's high-water mark and one read).
        assert self._transport is not None
        self._transport.pause_reading()

    def resume_writing(self) -> None:
        transport = self._transport
        assert transport is not None
        if self._acceptor is not None:
            self._acceptor.touch(self._loop.time())  # the peer took our data: not idle
        transport.resume_reading()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer_key is not None:
            self._wheel.cancel(self, self._timer_key)
            self._timer_key = None
        acceptor = self._acceptor
        if acceptor is not None:
            happened = acceptor.connection_lost(self._loop.time())
            if happened and logs.enabled:
                self._server._log(self._peer, happened)
        self._uncount()
        server = self._server
        server._closers.discard(self)
        self._acceptor = None
        if server._accepting is not None:
            server._accepting.resume()  # a descriptor is free again

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            self._server.active -= 1

    def shutdown(self) -> None:
        """Abort the association (server shutdown)."""
        acceptor, transport = self._acceptor, self._transport
        if acceptor is not None and transport is not None and not transport.is_closing():
            acceptor.abort(self._loop.time())
            self._flush()
            transport.close()
            if transport.get_write_buffer_size():
                # The peer is not reading: it cannot take the A-ABORT, and a
                # shutdown does not wait for it.
                transport.abort()


@asynccontextmanager
async def _serve_asyncio(host: str, port: int, options: ServerOptions) -> AsyncIterator[Server]:
    loop = asyncio.get_running_loop()
    server = Server(options)
    wheel = TimerWheel(loop)  # every connection's ARTIM and idle limits
    accepting: _AcceptLoop | None = None
    if type(loop).__module__.startswith("uvloop"):
        # libuv accepts in C and, out of descriptors, neither spins nor
        # logs (it sheds the pending connections with its reserve
        # descriptor): its own accept loop is kept, and its speed.
        aserver = await loop.create_server(
            lambda: _ScpProtocol(server, loop, wheel),
            host,
            port,
            backlog=options.backlog,
            ssl=options.ssl,
            ssl_handshake_timeout=options.acse_timeout if options.ssl else None,
        )
    else:
        # asyncio binds and listens (its address handling), but we accept:
        # its accept loop, out of descriptors, logs a traceback and
        # schedules a retry for every slot of the backlog, every time (tens
        # of thousands a second at full CPU). Ours pauses (`_AcceptLoop`).
        aserver = await loop.create_server(
            lambda: _ScpProtocol(server, loop, wheel),
            host,
            port,
            backlog=options.backlog,
            start_serving=False,
        )
        socks = [socket.fromfd(s.fileno(), s.family, s.type) for s in aserver.sockets]
        accepting = server._accepting = _AcceptLoop(loop, server, wheel, socks)
    sockname = aserver.sockets[0].getsockname()
    server.host, server.port = str(sockname[0]), int(sockname[1])
    _log_listening(server)
    try:
        yield server
    finally:
        if accepting is not None:
            accepting.stop()
        aserver.close()
        for task in list(server._tasks):
            task.cancel()
        for protocol in list(server._closers):
            protocol.shutdown()
        await aserver.wait_closed() if not server._closers else None
        _log_stopped(server)


# accept() failing for want of descriptors or memory: the listener stays
# readable, so accepting pauses rather than spin (PS3.8 says nothing here;
# this is the operating system's limit on open connections).
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# How long accepting pauses (unless one of our connections closes first), and
# how often at most the pause is logged.
_ACCEPT_PAUSE = 0.1
_ACCEPT_LOG_INTERVAL = 10.0
# Connections taken per readiness of a listener, as asyncio's own loop does.
_ACCEPT_BATCH = 128


class _OutOfResourcesLog:
    """One warning per interval for accept() failing for want of resources,
    with how many failures it stands for (both transports)."""

    def __init__(self) -> None:
        self._last: float | None = None
        self._since = 0

    def failed(self, exc: OSError, now: float) -> None:
        self._since += 1
        if self._last is None or now - self._last >= _ACCEPT_LOG_INTERVAL:
            # A warning, not an error: this machine's limit, but nothing is
            # lost (the connections wait in the backlog) and the operator
            # is told once per interval, not per attempt.
            logs.log(
                "scp.accept_paused",
                level="warning",
                outcome="local-error",
                reason=exc.strerror or str(exc),
                errno=errno.errorcode.get(exc.errno or 0, str(exc.errno)),
                failures=self._since,
                pause=_ACCEPT_PAUSE,
            )
            self._last, self._since = now, 0


class _AcceptLoop:
    """Accepts on asyncio's listening sockets (reader callbacks); out of
    descriptors, it stops watching them for `_ACCEPT_PAUSE` seconds, or
    until one of our connections closes, and logs once per interval."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        server: Server,
        wheel: TimerWheel,
        socks: list[socket.socket],
    ) -> None:
        self._loop, self._server, self._wheel = loop, server, wheel
        self._socks = socks  # (duplicates of asyncio's, closed on stop)
        for sock in socks:
            sock.setblocking(False)
            sock.listen(server.options.backlog)  # (start_serving=False: not yet)
        self._paused: asyncio.TimerHandle | None = None
        self._stopped = False
        self._log = _OutOfResourcesLog()
        self._watch()

    def _watch(self) -> None:
        for sock in self._socks:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, sock: socket.socket) -> None:
        loop, server = self._loop, self._server
        for _ in range(_ACCEPT_BATCH):
            try:
                conn, _addr = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    self._log.failed(exc, loop.time())
                    self._pause()
                    return
                raise
            conn.setblocking(False)
            tune_socket(conn)  # (asyncio sets TCP_NODELAY only on what it accepts itself)
            task = loop.create_task(self._connect(conn))
            server._tasks.add(task)
            task.add_done_callback(server._tasks.discard)

    def _pause(self) -> None:
        for sock in self._socks:
            self._loop.remove_reader(sock.fileno())
        self._paused = self._loop.call_later(_ACCEPT_PAUSE, self.resume)

    def resume(self) -> None:
        """Accept again (a descriptor may be free: one of ours closed)."""
        if self._paused is None or self._stopped:
            return
        self._paused.cancel()
        self._paused = None
        self._watch()

    def stop(self) -> None:
        self._stopped = True
        if self._paused is not None:
            self._paused.cancel()
        else:
            for sock in self._socks:
                self._loop.remove_reader(sock.fileno())
        for sock in self._socks:
            sock.close()

    async def _connect(self, conn: socket.socket) -> None:
        server, options = self._server, self._server.options
        loop, wheel = self._loop, self._wheel
        # (asked now: a failed handshake leaves no socket to ask)
        peer = _peer_of(conn) if options.ssl is not None and logs.enabled else None
        try:
            await loop.connect_accepted_socket(
                lambda: _ScpProtocol(server, loop, wheel),
                conn,
                ssl=options.ssl,
                ssl_handshake_timeout=options.acse_timeout if options.ssl else None,
            )
        except (OSError, asyncio.TimeoutError) as exc:
            # A failed TLS handshake, or a peer gone before the transport
            # was made: an event, not a crash.
            if options.ssl is not None:
                _log_tls_failed(peer, exc)
            conn.close()


class _PatientListener:
    """An anyio listener whose `serve()` survives running out of descriptors:
    anyio's lets accept()'s EMFILE out, which ends the task group and with it
    serve(). It pauses accepting instead, logging once per interval, and
    accepts again after the pause."""

    def __init__(self, listener: Any) -> None:
        self.listener = listener
        self._log = _OutOfResourcesLog()

    @property
    def extra_attributes(self) -> Any:
        return self.listener.extra_attributes

    def extra(self, attribute: Any, *default: Any) -> Any:
        return self.listener.extra(attribute, *default)

    async def serve(self, handler: Any, task_group: Any) -> None:
        # (several addresses: anyio's MultiListener, one TCP listener each)
        for listener in getattr(self.listener, "listeners", ())[1:]:
            task_group.start_soon(self._serve, listener, handler, task_group)
        await self._serve(
            getattr(self.listener, "listeners", (self.listener,))[0], handler, task_group
        )

    async def _serve(self, listener: Any, handler: Any, task_group: Any) -> None:
        import anyio

        while True:
            try:
                stream = await listener.accept()
            except (OSError, anyio.BrokenResourceError) as exc:
                # (anyio's trio backend reports the OSError as its cause)
                cause = exc if isinstance(exc, OSError) else exc.__cause__
                if not isinstance(cause, OSError) or cause.errno not in _OUT_OF_RESOURCES:
                    raise
                self._log.failed(cause, anyio.current_time())
                await anyio.sleep(_ACCEPT_PAUSE)
                continue
            task_group.start_soon(handler, stream)

    async def aclose(self) -> None:
        await self.listener.aclose()


class _TLSHandshakeLogging:
    """anyio's TLSListener logs a traceback for every failed handshake; a
    client with the wrong certificate is an event, not a crash."""

    @staticmethod
    async def handle_handshake_error(exc: BaseException, stream: Any) -> None:
        import anyio
        from anyio.abc import SocketAttribute

        _log_tls_failed(stream.extra(SocketAttribute.remote_address, None), exc)
        await anyio.aclose_forcefully(stream)


# --- anyio (trio) ------------------------------------------------------------------------


@asynccontextmanager
async def _serve_anyio(host: str, port: int, options: ServerOptions) -> AsyncIterator[Server]:
    import anyio
    from anyio.abc import ByteStream, SocketAttribute
    from anyio.streams.tls import TLSListener

    class _QuietTLSListener(_TLSHandshakeLogging, TLSListener):
        pass

    server = Server(options)
    tcp = await anyio.create_tcp_listener(local_host=host, local_port=port, backlog=options.backlog)
    listener: Any = _PatientListener(tcp)
    sockname = tcp.extra(SocketAttribute.local_address)
    server.host, server.port = str(sockname[0]), int(sockname[1])
    if options.ssl is not None:
        listener = _QuietTLSListener(
            listener, options.ssl, standard_compatible=False, handshake_timeout=options.acse_timeout
        )

    async def handle(stream: ByteStream) -> None:
        peer = stream.extra(SocketAttribute.remote_address, None)
        if not options.network_allowed(peer):
            _log_refused_network(peer)
            await anyio.aclose_forcefully(stream)
            return
        raw = stream.extra(SocketAttribute.raw_socket, None)
        tune_socket(raw)
        busy = server.active >= options.max_associations
        acceptor = VerificationAcceptor(
            options.policy,
            artim_timeout=options.acse_timeout,
            busy=busy,
            check_identity=options.identity_check is not None,
            network_timeout=options.network_timeout,
            dimse_timeout=options.dimse_timeout,
        )
        counted = not busy
        if counted:
            server.active += 1
        try:
            acceptor.connection_made(anyio.current_time())
            while not acceptor.should_close:
                deadline = acceptor.next_deadline()
                stall = acceptor.stall_deadline()
                if stall is not None:
                    deadline = stall if deadline is None else min(deadline, stall)
                data: bytes | None = None
                with anyio.move_on_after(
                    max(0.0, (deadline or 0.0) - anyio.current_time())
                    if deadline is not None
                    else None
                ):
                    try:
                        data = await stream.receive(65536)
                    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError, _ssl.SSLError):
                        data = b""
                now = anyio.current_time()
                if data is None:  # a deadline passed
                    if acceptor.next_deadline() is not None and now >= (
                        acceptor.next_deadline() or 0.0
                    ):
                        acceptor.handle_timer(now)
                        break
                    stalled = acceptor.stalled(now)
                    if stalled is not None:
                        _log_stall(stalled, peer, options)
                        acceptor.abort(now)
                        await _send_quietly(
                            stream, acceptor.data_to_send(), options.network_timeout
                        )
                        break
                    continue
                if not data:
                    server._log(peer, acceptor.connection_lost(now))
                    break
                happened = acceptor.receive_data(data, now)
                sent = await _send_quietly(stream, acceptor.data_to_send(), options.network_timeout)
                for item in list(happened):
                    if isinstance(item, IdentityCheckNeeded):
                        verdict = await _run_identity_check(options, item, peer)
                        response = verdict if isinstance(verdict, bytes) else None
                        happened += acceptor.decide(
                            verdict is not False, response, anyio.current_time()
                        )
                        sent = await _send_quietly(
                            stream, acceptor.data_to_send(), options.network_timeout
                        )
                server._record(peer, happened)
                if counted and acceptor.state is acceptor.state.STA13:
                    counted = False
                    server.active -= 1
                if not sent:
                    # The peer does not read what we send (and we read no
                    # faster than we can send): give up on it, as when idle.
                    _log_stall("not-reading", peer, options)
                    break
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                acceptor.abort(anyio.current_time())
                await _send_quietly(stream, acceptor.data_to_send(), _SHUTDOWN_ABORT_WAIT)
            raise
        except Exception as bug:
            # A bug met while serving this connection (whatever the peer
            # sent, the core reports it as events): it ends this association
            # only, never the task group and with it serve(). An A-ABORT
            # (service provider, reason not specified: PS3.8 Table 9-26), one
            # log line, the connection closed and its slot freed (below).
            _log_internal_error(peer, bug)
            if acceptor.state not in _NOTHING_TO_ABORT:
                with anyio.CancelScope(shield=True):
                    await _send_quietly(stream, _PROVIDER_ABORT, _SHUTDOWN_ABORT_WAIT)
        finally:
            if counted:
                server.active -= 1
            with anyio.CancelScope(shield=True):
                await anyio.aclose_forcefully(stream)

    async def serve_one(stream: ByteStream) -> None:
        try:
            await handle(stream)
        except Exception as bug:
            # (before the association's own guard is in place: the same rule)
            _log_internal_error(stream.extra(SocketAttribute.remote_address, None), bug)
            with anyio.CancelScope(shield=True):
                await anyio.aclose_forcefully(stream)

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve_one, tg)
        _log_listening(server)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()
    with anyio.CancelScope(shield=True):
        await listener.aclose()
    _log_stopped(server)


async def _run_identity_check(
    options: ServerOptions, item: IdentityCheckNeeded, peer: Any
) -> bool | bytes:
    """The user's identity check, bounded by the ACSE timeout; a failing or
    slow check refuses the association."""
    import anyio

    check = options.identity_check
    assert check is not None
    where = _peer_text(peer)
    identity_type = item.identity.identity_type if item.identity else None
    try:
        with anyio.fail_after(options.acse_timeout):
            verdict = await check(item.identity, item.rq)
    except Exception as exc:
        # The application's own check failed (an error of this program,
        # not of the peer): the association is refused all the same. Only
        # the exception's type: its text could hold what the peer sent.
        logs.log(
            "scp.identity_check_failed",
            level="error",
            peer=where,
            outcome="rejected",
            calling_ae=item.rq.calling_ae,
            error=type(exc).__name__,
        )
        return False
    if verdict is False:
        # Never the passcode: only who asked and which kind of identity.
        logs.log(
            "scp.identity_refused",
            level="warning",
            peer=where,
            outcome="rejected",
            calling_ae=item.rq.calling_ae,
            identity_type=identity_type,
            user_identity=None
            if identity_type is None
            else USER_IDENTITY_TYPE_NAMES.get(identity_type, str(identity_type)),
        )
    return verdict


async def _send_quietly(stream: Any, data: bytes, timeout: float) -> bool:
    """Send `data`; False if the peer has not taken it within `timeout`
    seconds (it is not reading: waiting longer would hold the association,
    and the task, for ever). A peer that is gone is left for the next
    receive to find."""
    import anyio

    if not data:
        return True
    with anyio.move_on_after(timeout):
        try:
            await stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError, _ssl.SSLError):
            pass
        return True
    return False


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
    """The backend is the one running when the block is entered."""
    if on_asyncio():
        async with _serve_asyncio(host, port, options) as server:
            yield server
    else:
        async with _serve_anyio(host, port, options) as server:
            yield server
