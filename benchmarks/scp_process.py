"""A server process: `python -m benchmarks.scp_process KIND --loop LOOP`.

KIND is `minimal` (the precomputed-bytes SCP), `silent` (accepts, never
answers) or `asyncecho` (asyncecho's `serve()`). It prints `LISTENING
<port>` once bound, and runs until its stdin closes, so it never outlives
the harness that started it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from . import minimal_scp


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """None for the default asyncio loop; uvloop's `new_event_loop`."""
    if name == "asyncio":
        return None
    if name == "uvloop":
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    raise ValueError(f"unknown loop {name!r}")


def run_on(loop: str, main: Coroutine[Any, Any, None]) -> None:
    """`asyncio.run(main)` on the named loop (asyncio.Runner is 3.11+)."""
    factory = loop_factory(loop)
    event_loop = factory() if factory is not None else asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(event_loop)
        event_loop.run_until_complete(main)
        event_loop.run_until_complete(event_loop.shutdown_asyncgens())
    finally:
        asyncio.set_event_loop(None)
        event_loop.close()


async def _until_stdin_closes() -> None:
    loop = asyncio.get_running_loop()
    closed = loop.create_future()
    fd = sys.stdin.fileno()

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        if not data and not closed.done():
            closed.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await closed
    finally:
        loop.remove_reader(fd)


def _listening(port: int) -> None:
    sys.stdout.write(f"LISTENING {port}\n")
    sys.stdout.flush()


async def _serve_minimal(silent: bool) -> None:
    server = await minimal_scp.start(silent=silent)
    _listening(int(server.sockets[0].getsockname()[1]))
    try:
        await _until_stdin_closes()
    finally:
        server.close()


async def _serve_asyncecho() -> None:
    import asyncecho

    # No association limit: P6 measures throughput, not the busy reject.
    async with asyncecho.serve("127.0.0.1", 0, max_associations=1_000_000) as server:
        _listening(server.port)
        await _until_stdin_closes()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scp_process")
    parser.add_argument("kind", choices=["minimal", "silent", "asyncecho"])
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args(argv)
    if args.kind == "asyncecho":
        run_on(args.loop, _serve_asyncecho())
    else:
        run_on(args.loop, _serve_minimal(args.kind == "silent"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
