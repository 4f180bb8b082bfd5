"""Every public argument is checked at the door: a TypeError or ValueError
naming the argument, before any I/O, the same on asyncio, uvloop and trio
(issue #13, section 3)."""

from __future__ import annotations

import math
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream

import asyncecho
from asyncecho import EchoOptions, ServerOptions, Target, associate, echo, serve, sweep, verify
from peers import closed_port

pytestmark = pytest.mark.anyio

LOCALHOST = "127.0.0.1"

_BACKENDS: list[Any] = [
    pytest.param("asyncio", id="asyncio"),
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    pytest.param("trio", id="trio"),
]


@pytest.fixture(params=_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    if isinstance(request.param, tuple):
        pytest.importorskip("uvloop")
    return request.param


@asynccontextmanager
async def counting_listener() -> AsyncIterator[tuple[int, list[int]]]:
    """A loopback listener that counts the connections it accepts."""
    accepted: list[int] = []

    async def count(stream: SocketStream) -> None:
        accepted.append(1)
        await stream.aclose()

    listener = await anyio.create_tcp_listener(local_host=LOCALHOST)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, count)
        yield int(listener.extra(SocketAttribute.local_port)), accepted
        tg.cancel_scope.cancel()


# --- the client: echo(), verify(), associate() ------------------------------------------------

# (host, port, settings, exception, text the message must hold)
BAD_CLIENT_CALLS: list[Any] = [
    pytest.param(LOCALHOST, -1, {}, ValueError, "port", id="port=-1"),
    pytest.param(LOCALHOST, 0, {}, ValueError, "port", id="port=0"),
    pytest.param(LOCALHOST, 65536, {}, ValueError, "port", id="port=65536"),
    pytest.param(LOCALHOST, "104X", {}, TypeError, "port", id="port=str"),
    pytest.param(LOCALHOST, "104", {}, TypeError, "port", id="port=numeric-str"),
    pytest.param(LOCALHOST, True, {}, TypeError, "port", id="port=bool"),
    pytest.param(LOCALHOST, 104.0, {}, TypeError, "port", id="port=float"),
    pytest.param(None, 104, {}, TypeError, "host", id="host=None"),
    pytest.param("", 104, {}, ValueError, "host", id="host=empty"),
    pytest.param(b"127.0.0.1", 104, {}, TypeError, "host", id="host=bytes"),
    # getaddrinfo() would raise a bare UnicodeError from its IDNA encoding.
    pytest.param("a" * 300, 104, {}, ValueError, "host .*label too long", id="host=long-label"),
    pytest.param("a." * 130, 104, {}, ValueError, "host .*253", id="host=over-253"),
    pytest.param("x..y", 104, {}, ValueError, "host .*empty", id="host=empty-label"),
    pytest.param(LOCALHOST, 104, {"connect_timeout": -1}, ValueError, "connect_timeout", id="ct<0"),
    pytest.param(LOCALHOST, 104, {"connect_timeout": 0}, ValueError, "connect_timeout", id="ct=0"),
    pytest.param(LOCALHOST, 104, {"deadline": 0}, ValueError, "deadline", id="deadline=0"),
    pytest.param(LOCALHOST, 104, {"deadline": -5}, ValueError, "deadline", id="deadline<0"),
    pytest.param(LOCALHOST, 104, {"acse_timeout": math.nan}, ValueError, "acse_timeout", id="nan"),
    pytest.param(LOCALHOST, 104, {"dimse_timeout": math.inf}, ValueError, "dimse_timeout", id="inf"),
    pytest.param(LOCALHOST, 104, {"network_timeout": "5"}, TypeError, "network_timeout", id="str"),
    pytest.param(LOCALHOST, 104, {"deadline": True}, TypeError, "deadline", id="deadline=bool"),
    pytest.param(LOCALHOST, 104, {"max_pdu": 1}, ValueError, "max_pdu", id="max_pdu=1"),
    pytest.param(LOCALHOST, 104, {"max_pdu": 6}, ValueError, "max_pdu", id="max_pdu=6"),
    pytest.param(LOCALHOST, 104, {"max_pdu": -1}, ValueError, "max_pdu", id="max_pdu<0"),
    pytest.param(LOCALHOST, 104, {"max_pdu": 2**32}, ValueError, "max_pdu", id="max_pdu=2**32"),
    pytest.param(LOCALHOST, 104, {"max_pdu": 16382.0}, TypeError, "max_pdu", id="max_pdu=float"),
    pytest.param(
        LOCALHOST,
        104,
        {"transfer_syntaxes": "1.2.840.10008.1.2"},
        TypeError,
        "transfer_syntaxes",
        id="syntaxes=bare-str",
    ),
    pytest.param(LOCALHOST, 104, {"transfer_syntaxes": []}, ValueError, "transfer_syntaxes", id="[]"),
    pytest.param(
        LOCALHOST, 104, {"transfer_syntaxes": ["1.2.x"]}, ValueError, "transfer_syntaxes", id="bad"
    ),
    pytest.param(LOCALHOST, 104, {"transfer_syntaxes": [1]}, TypeError, "transfer_syntaxes", id="1"),
    pytest.param(LOCALHOST, 104, {"calling_ae": 5}, TypeError, "calling_ae", id="calling_ae=5"),
    pytest.param(LOCALHOST, 104, {"called_ae": ""}, ValueError, "called_ae", id="called_ae=''"),
    pytest.param(LOCALHOST, 104, {"ssl": True}, TypeError, "ssl", id="ssl=True"),
    pytest.param(LOCALHOST, 104, {"server_hostname": 5}, TypeError, "server_hostname", id="sni"),
    pytest.param(LOCALHOST, 104, {"user_identity": "alice"}, TypeError, "user_identity", id="uid"),
    pytest.param(LOCALHOST, 104, {"user_items": "x"}, TypeError, "user_items", id="items"),
    pytest.param(LOCALHOST, 104, {"options": "x"}, TypeError, "options", id="options=str"),
]


@pytest.mark.parametrize(("host", "port", "settings", "error", "text"), BAD_CLIENT_CALLS)
async def test_bad_client_arguments_are_refused_before_any_io(
    host: Any, port: Any, settings: dict[str, Any], error: type[Exception], text: str
) -> None:
    async with counting_listener() as (listening, accepted):
        if type(port) is int and port == 104:
            port = listening  # a valid port: only the setting is wrong
        with pytest.raises(error, match=text):
            await echo(host, port, **settings)
        with pytest.raises(error, match=text):  # our mistake, not the peer's: raised
            await verify(host, port, **settings)
        with pytest.raises(error, match=text):
            async with associate(host, port, **settings):
                pass  # pragma: no cover
        await anyio.sleep(0.05)  # (a connection, had one been made, is accepted by now)
    assert accepted == []


async def test_the_smallest_max_pdu_works_and_unlimited_too() -> None:
    # 7: a PDV item of one byte of fragment (PS3.8 9.3.5) is the least a
    # peer can send; both ends then fragment every message that finely.
    async with serve(max_pdu=7) as server:
        for max_pdu in (7, 0, 2**32 - 1):
            result = await echo(LOCALHOST, server.port, max_pdu=max_pdu)
            assert result.ok, max_pdu


async def test_options_plus_overrides_apply_the_overrides_on_top() -> None:
    # (the documented behaviour of echo(); the overrides are checked too)
    with pytest.raises(ValueError, match="deadline"):
        await echo(LOCALHOST, closed_port(), options=EchoOptions(), deadline=-1)


def test_options_objects_check_their_fields() -> None:
    with pytest.raises(ValueError, match="acse_timeout"):
        EchoOptions(acse_timeout=-1)
    options = EchoOptions(transfer_syntaxes=[asyncecho.protocol.uids.IMPLICIT_VR_LE], calling_ae=" ME ")
    assert options.transfer_syntaxes == (asyncecho.protocol.uids.IMPLICIT_VR_LE,)  # frozen: a tuple
    assert options.calling_ae == "ME"
    with pytest.raises(ValueError, match="max_pdu"):
        ServerOptions(max_pdu=3)


# --- serve() ------------------------------------------------------------------------------------

BAD_SERVE_CALLS: list[Any] = [
    pytest.param(LOCALHOST, -1, {}, ValueError, "port", id="port=-1"),
    pytest.param(LOCALHOST, 65536, {}, ValueError, "port", id="port=65536"),
    pytest.param(LOCALHOST, "11112", {}, TypeError, "port", id="port=str"),
    pytest.param(None, 0, {}, TypeError, "host", id="host=None"),
    pytest.param(
        LOCALHOST, 0, {"allowed_calling_aes": "GOOD"}, TypeError, "allowed_calling_aes", id="aes"
    ),
    pytest.param(
        LOCALHOST, 0, {"allowed_called_aes": [5]}, TypeError, "allowed_called_aes", id="aes=[5]"
    ),
    pytest.param(
        LOCALHOST, 0, {"allowed_networks": "10.0.0.0/8"}, TypeError, "allowed_networks", id="net"
    ),
    pytest.param(
        LOCALHOST, 0, {"allowed_networks": ["10.0.0.0/33"]}, ValueError, "allowed_networks", id="/33"
    ),
    pytest.param(LOCALHOST, 0, {"ae_title": ""}, ValueError, "ae_title", id="ae_title=''"),
    pytest.param(LOCALHOST, 0, {"require_called_ae": "yes"}, TypeError, "require_called_ae", id="r"),
    pytest.param(LOCALHOST, 0, {"max_associations": -1}, ValueError, "max_associations", id="m"),
    pytest.param(LOCALHOST, 0, {"acse_timeout": 0}, ValueError, "acse_timeout", id="acse=0"),
    pytest.param(LOCALHOST, 0, {"dimse_timeout": None}, TypeError, "dimse_timeout", id="None"),
    pytest.param(LOCALHOST, 0, {"network_timeout": math.nan}, ValueError, "network_timeout", id="n"),
    pytest.param(LOCALHOST, 0, {"max_pdu": 1}, ValueError, "max_pdu", id="max_pdu=1"),
    pytest.param(LOCALHOST, 0, {"transfer_syntaxes": ()}, ValueError, "transfer_syntaxes", id="ts"),
    pytest.param(LOCALHOST, 0, {"ssl": "tls"}, TypeError, "ssl", id="ssl=str"),
    pytest.param(LOCALHOST, 0, {"identity_check": 1}, TypeError, "identity_check", id="check=1"),
    pytest.param(
        LOCALHOST,
        0,
        {"options": ServerOptions(), "ae_title": "OTHER"},
        TypeError,
        "options=",
        id="options+ae_title",
    ),
    pytest.param(LOCALHOST, 0, {"options": {"ae_title": "X"}}, TypeError, "options", id="options"),
]


@pytest.mark.parametrize(("host", "port", "settings", "error", "text"), BAD_SERVE_CALLS)
async def test_bad_serve_arguments_are_refused_at_the_call(
    host: Any, port: Any, settings: dict[str, Any], error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=text):
        serve(host, port, **settings)  # the call itself: nothing has listened


async def test_server_options_made_directly_take_networks_and_titles_as_serve_does() -> None:
    # ServerOptions(...) used to keep CIDR strings and unstripped titles as
    # given (only serve()'s keywords were converted): the check then failed.
    options = ServerOptions(
        allowed_networks=["127.0.0.0/8"],  # type: ignore[arg-type]
        allowed_calling_aes=["GOOD  "],  # type: ignore[arg-type]
        ae_title=" SCP ",
    )
    assert options.ae_title == "SCP" and options.allowed_calling_aes == frozenset({"GOOD"})
    async with serve(options=options) as server:
        assert (await echo(LOCALHOST, server.port, calling_ae="GOOD", called_ae="SCP")).ok
        assert (await verify(LOCALHOST, server.port, calling_ae="BAD")).outcome == "rejected"


# --- sweep() and Target -------------------------------------------------------------------------


def test_sweep_deadline_given_twice_is_an_error_and_options_deadline_is_kept() -> None:
    with pytest.raises(TypeError, match="deadline"):
        sweep([], options=EchoOptions(deadline=3), deadline=5)
    with pytest.raises(TypeError, match="deadline"):
        sweep([], options=EchoOptions(deadline=3), deadline=None)
    assert sweep([], options=EchoOptions(deadline=3)).options.deadline == 3  # was 10, silently
    assert sweep([], options=EchoOptions()).options.deadline == 10  # the sweep's default
    assert sweep([], deadline=None).options.deadline is None


BAD_SWEEP_CALLS: list[Any] = [
    pytest.param({"concurrency": "5"}, TypeError, "concurrency", id="concurrency=str"),
    pytest.param({"concurrency": True}, TypeError, "concurrency", id="concurrency=bool"),
    pytest.param({"concurrency": 0}, ValueError, "concurrency", id="concurrency=0"),
    pytest.param({"rate": math.nan}, ValueError, "rate", id="rate=nan"),
    pytest.param({"rate": -1}, ValueError, "rate", id="rate<0"),
    pytest.param({"deadline": math.inf}, ValueError, "deadline", id="deadline=inf"),
    pytest.param({"deadline": 0}, ValueError, "deadline", id="deadline=0"),
    pytest.param({"max_pdu": 1}, ValueError, "max_pdu", id="max_pdu=1"),
    pytest.param({"options": "x"}, TypeError, "options", id="options=str"),
    pytest.param({"ssl": ssl.PROTOCOL_TLS_CLIENT}, TypeError, "ssl", id="ssl=int"),
]


@pytest.mark.parametrize(("settings", "error", "text"), BAD_SWEEP_CALLS)
def test_bad_sweep_arguments(settings: dict[str, Any], error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        sweep([Target(LOCALHOST, 104)], **settings)


def test_sweep_targets_must_be_an_iterable_of_targets() -> None:
    with pytest.raises(TypeError, match="targets"):
        sweep("127.0.0.1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="targets"):
        sweep(5)  # type: ignore[arg-type]


def test_target_checks() -> None:
    with pytest.raises(TypeError, match="host"):
        Target(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="port"):
        Target(LOCALHOST, True)
    with pytest.raises(ValueError, match="port"):
        Target(LOCALHOST, 65536)
