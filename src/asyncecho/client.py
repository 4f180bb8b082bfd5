"""The requestor side of the API: `echo()`, `verify()` and `associate()`.

Holds the three calls, typed option by option (a misspelt or mistyped
option is a type checker's error). `echo()` and `verify()` run one
lifecycle (connect, associate, one C-ECHO, release) as an `Association`
whose session runs it all by itself. May import the API's modules
below it (`association`, `options`, `exceptions`, `results`) and, through
them, `transport/` and `protocol/`.
"""

from __future__ import annotations

import ssl as _ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from asyncecho.association import Association
from asyncecho.exceptions import EchoError
from asyncecho.options import OPTION as _OPTION
from asyncecho.options import EchoOptions, checked, documented, merged
from asyncecho.protocol.pdu_items import UserIdentityRQ, UserItem
from asyncecho.results import EchoResult


@documented
def associate(
    host: str,
    port: int,
    *,
    calling_ae: str = _OPTION["calling_ae"],
    called_ae: str = _OPTION["called_ae"],
    transfer_syntaxes: Sequence[str] = _OPTION["transfer_syntaxes"],
    max_pdu: int = _OPTION["max_pdu"],
    connect_timeout: float | None = _OPTION["connect_timeout"],
    acse_timeout: float | None = _OPTION["acse_timeout"],
    dimse_timeout: float | None = _OPTION["dimse_timeout"],
    network_timeout: float | None = _OPTION["network_timeout"],
    deadline: float | None = _OPTION["deadline"],
    ssl: _ssl.SSLContext | None = _OPTION["ssl"],
    server_hostname: str | None = _OPTION["server_hostname"],
    user_identity: UserIdentityRQ | None = _OPTION["user_identity"],
    user_items: Sequence[UserItem] = _OPTION["user_items"],
    options: EchoOptions | None = None,
) -> AbstractAsyncContextManager[Association]:
    """Open an association for several echoes.

    `async with associate(host, port) as assoc:` then `await assoc.echo()`
    (message IDs 1, 2, ...); released on normal exit, aborted on an
    exception or cancellation.

    Every timeout is a finite number of seconds > 0, or None for no limit;
    a limit never fires early (on asyncio, up to 10 ms late).

    Args:
        host: The peer's host name or address.
        port: Its TCP port, 1-65535.
        @options

    Raises:
        EchoError: On entering the block, a subclass for anything the peer
            or the network did (see `asyncecho.exceptions`).
        TypeError, ValueError: A bad argument, at the call (before any I/O).
    """
    host, port = checked(host, port)
    settings = (
        calling_ae,
        called_ae,
        transfer_syntaxes,
        max_pdu,
        connect_timeout,
        acse_timeout,
        dimse_timeout,
        network_timeout,
        deadline,
        ssl,
        server_hostname,
        user_identity,
        user_items,
    )
    return _associated(Association(host, port, merged(options, settings)))




@asynccontextmanager
async def _associated(assoc: Association) -> AsyncIterator[Association]:
    try:
        await assoc._associate()
    except BaseException:
        await assoc._abort_now()
        raise
    try:
        yield assoc
    except BaseException:
        await assoc._abort_now()
        raise
    try:
        await assoc.release()
    except BaseException:
        await assoc._abort_now()
        raise


@documented
async def echo(
    host: str,
    port: int,
    *,
    calling_ae: str = _OPTION["calling_ae"],
    called_ae: str = _OPTION["called_ae"],
    transfer_syntaxes: Sequence[str] = _OPTION["transfer_syntaxes"],
    max_pdu: int = _OPTION["max_pdu"],
    connect_timeout: float | None = _OPTION["connect_timeout"],
    acse_timeout: float | None = _OPTION["acse_timeout"],
    dimse_timeout: float | None = _OPTION["dimse_timeout"],
    network_timeout: float | None = _OPTION["network_timeout"],
    deadline: float | None = _OPTION["deadline"],
    ssl: _ssl.SSLContext | None = _OPTION["ssl"],
    server_hostname: str | None = _OPTION["server_hostname"],
    user_identity: UserIdentityRQ | None = _OPTION["user_identity"],
    user_items: Sequence[UserItem] = _OPTION["user_items"],
    options: EchoOptions | None = None,
) -> EchoResult:
    """Associate, send one C-ECHO, release; return the result.

    Every timeout is a finite number of seconds > 0, or None for no limit;
    a limit never fires early (on asyncio, up to 10 ms late).

    Args:
        host: The peer's host name or address.
        port: Its TCP port, 1-65535.
        @options

    Returns:
        The `EchoResult`; a non-success C-ECHO status is in it (falsy), not
        raised.

    Raises:
        EchoError: A subclass for anything the peer or the network did (see
            `asyncecho.exceptions`).
        TypeError, ValueError: A bad argument, before any I/O.
    """
    host, port = checked(host, port)
    settings = (
        calling_ae,
        called_ae,
        transfer_syntaxes,
        max_pdu,
        connect_timeout,
        acse_timeout,
        dimse_timeout,
        network_timeout,
        deadline,
        ssl,
        server_hostname,
        user_identity,
        user_items,
    )
    assoc = Association(host, port, merged(options, settings), echoes=True)
    del settings  # (not kept alive in this frame while the association runs)
    # The connect, then the exchange, which runs by itself (on asyncio in
    # the connection's callbacks), are awaited in this frame, as in verify():
    # a shared helper coroutine would be one more object per association in
    # flight for the collector to walk (measured: P1 at 10,000 concurrent).
    try:
        try:
            channel = await assoc._connecting()
        except OSError as exc:  # (TimeoutError and ssl.SSLError among them)
            raise assoc._connect_failed(exc) from None
        end = await assoc._attach(channel, final=True)
    except BaseException:
        await assoc._abort_now()
        raise
    return assoc._ended(end)


@documented
async def verify(
    host: str,
    port: int,
    *,
    calling_ae: str = _OPTION["calling_ae"],
    called_ae: str = _OPTION["called_ae"],
    transfer_syntaxes: Sequence[str] = _OPTION["transfer_syntaxes"],
    max_pdu: int = _OPTION["max_pdu"],
    connect_timeout: float | None = _OPTION["connect_timeout"],
    acse_timeout: float | None = _OPTION["acse_timeout"],
    dimse_timeout: float | None = _OPTION["dimse_timeout"],
    network_timeout: float | None = _OPTION["network_timeout"],
    deadline: float | None = _OPTION["deadline"],
    ssl: _ssl.SSLContext | None = _OPTION["ssl"],
    server_hostname: str | None = _OPTION["server_hostname"],
    user_identity: UserIdentityRQ | None = _OPTION["user_identity"],
    user_items: Sequence[UserItem] = _OPTION["user_items"],
    options: EchoOptions | None = None,
) -> EchoResult:
    """Like `echo()`, but never raises for what the peer or the network did.

    Every timeout is a finite number of seconds > 0, or None for no limit;
    a limit never fires early (on asyncio, up to 10 ms late). Cancellation
    is not caught: an association in progress is aborted (A-ABORT) and the
    cancellation propagates.

    Args:
        host: The peer's host name or address.
        port: Its TCP port, 1-65535.
        @options

    Returns:
        The `EchoResult`: truthy only on success; otherwise its `error` is
        the `EchoError` and its timings those of the phases it got through.

    Raises:
        TypeError, ValueError: A bad argument, before any I/O.
    """
    host, port = checked(host, port)
    settings = (
        calling_ae,
        called_ae,
        transfer_syntaxes,
        max_pdu,
        connect_timeout,
        acse_timeout,
        dimse_timeout,
        network_timeout,
        deadline,
        ssl,
        server_hostname,
        user_identity,
        user_items,
    )
    assoc = Association(host, port, merged(options, settings), echoes=True)
    del settings  # (not kept alive in this frame while the association runs)
    try:  # (as in echo())
        try:
            channel = await assoc._connecting()
        except OSError as exc:
            raise assoc._connect_failed(exc) from None
        end = await assoc._attach(channel, final=True)
    except EchoError as error:
        return assoc.result(error)
    except BaseException:
        await assoc._abort_now()
        raise
    try:
        return assoc._ended(end)
    except EchoError as error:
        return assoc.result(error)


__all__ = ["Association", "EchoOptions", "associate", "echo", "verify"]
