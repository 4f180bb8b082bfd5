"""The asyncio transport on uvloop, when it is installed (its transports are
not asyncio.Transport subclasses)."""

from __future__ import annotations

import socket

import pytest

import asyncecho
from asyncecho.transport.asyncio_channel import AsyncioChannel

uvloop = pytest.importorskip("uvloop")


def test_echo_and_serve_on_uvloop() -> None:
    async def main() -> tuple[bool, int, str, set[int]]:
        async with asyncecho.serve("127.0.0.1", 0) as server:
            result = await asyncecho.echo("127.0.0.1", server.port)
            async with asyncecho.associate("127.0.0.1", server.port) as assoc:
                statuses = [await assoc.echo() for _ in range(3)]
                # TCP_NODELAY (uvloop sets it, as asyncio does), on both ends
                assert assoc._driver is not None
                assert isinstance(assoc._driver.channel, AsyncioChannel)
                client = assoc._driver.channel._transport.get_extra_info("socket")
                (scp,) = (  # (the first echo's may not have closed yet)
                    scp for scp in server._closers if scp._peer == client.getsockname()
                )
                nodelay = {
                    sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                    for sock in (client, scp._transport.get_extra_info("socket"))
                }
            refused = await asyncecho.verify("127.0.0.1", 1)
        return result.ok, sum(statuses), refused.outcome, nodelay

    assert uvloop.run(main()) == (True, 0, "refused", {1})
