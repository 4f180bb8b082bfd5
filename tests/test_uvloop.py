"""The asyncio transport on uvloop, when it is installed (its transports are
not asyncio.Transport subclasses)."""

from __future__ import annotations

import pytest

import asyncecho

uvloop = pytest.importorskip("uvloop")


def test_echo_and_serve_on_uvloop() -> None:
    async def main() -> tuple[bool, int, str]:
        async with asyncecho.serve("127.0.0.1", 0) as server:
            result = await asyncecho.echo("127.0.0.1", server.port)
            async with asyncecho.associate("127.0.0.1", server.port) as assoc:
                statuses = [await assoc.echo() for _ in range(3)]
            refused = await asyncecho.verify("127.0.0.1", 1)
        return result.ok, sum(statuses), refused.outcome

    assert uvloop.run(main()) == (True, 0, "refused")
