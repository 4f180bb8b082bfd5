"""Where `serve()`'s cost over the minimal SCP goes, by ablation:

    python -m benchmarks.profiling server-ablation [-n 10000]

Three SCPs in this process on the asyncio loop, pinned to one CPU; the raw
client in a child pinned to the other sends them N concurrent associations
in turn, for five interleaved rounds:

- minimal: `minimal_scp`, precomputed bytes (the ceiling, as in P6);
- minimal+core: a protocol as bare as the minimal one driving asyncecho's
  `AcceptorSession` (upper layer, state machine, negotiation): what
  the core costs in situ;
- serve(): the real thing, adding its glue (timers, limits, counting,
  logging checks).

Prints the median server CPU per association of each, and of it the time
spent in the garbage collector (with the number of collections per round).
"""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
import sys
from typing import cast

import asyncecho
from asyncecho.protocol.acceptor import AcceptorSession
from asyncecho.protocol.negotiation import AcceptorPolicy

from . import minimal_scp, procstat
from .ablation import Figures, cost_per_association, format_figures
from .servers import REPO_ROOT, child_env, read_line

HOST = "127.0.0.1"

_POLICY = AcceptorPolicy()


class CoreScpProtocol(asyncio.Protocol):
    """The minimal SCP's kind of protocol, answering through asyncecho's
    acceptor: no timers, no counting, no logging."""

    __slots__ = ("_acceptor", "_transport")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._acceptor = AcceptorSession(_POLICY)
        self._acceptor.connection_made(0.0)

    def data_received(self, data: bytes) -> None:
        acceptor = self._acceptor
        acceptor.receive_data(data, 0.0)
        out = acceptor.data_to_send()
        if out:
            self._transport.write(out)
        if acceptor.should_close:
            self._transport.close()

    def eof_received(self) -> bool:
        return False


# The raw client, in a child: reads "PORT N" lines, answers "done" once all
# N associations have been released ("failed" if any was not).
_CLIENT = f"""
import asyncio, sys
sys.path.insert(0, {str(REPO_ROOT)!r})
from benchmarks.raw_client import raw_echo
async def main():
    for line in sys.stdin:
        port, n = map(int, line.split())
        done = await asyncio.gather(*(raw_echo({HOST!r}, port) for _ in range(n)))
        print("done" if all(done) else "failed", flush=True)
asyncio.run(main())
"""


async def _measure(n: int, rounds: int, client: subprocess.Popen[bytes]) -> Figures:
    loop = asyncio.get_running_loop()
    minimal = await minimal_scp.start(HOST, 0)
    core = await loop.create_server(CoreScpProtocol, HOST, 0, backlog=4096)
    async with asyncecho.serve(HOST, 0, max_associations=1_000_000) as served:
        ports = {
            "minimal": minimal.sockets[0].getsockname()[1],
            "minimal+core": core.sockets[0].getsockname()[1],
            "serve()": served.port,
        }
        assert client.stdin is not None and client.stdout is not None
        stdout = client.stdout

        async def batch(port: int, count: int) -> None:
            assert client.stdin is not None
            client.stdin.write(f"{port} {count}\n".encode())
            client.stdin.flush()
            line = await loop.run_in_executor(None, read_line, stdout, 300.0)
            if line.strip() != b"done":
                raise RuntimeError(f"the raw client against port {port}: {line!r}")

        figures: Figures = {name: [] for name in ports}
        try:
            for port in ports.values():  # warm-up: lazy imports, caches
                await batch(port, min(n, 200))
            for _ in range(rounds):
                for name, port in ports.items():
                    figures[name].append(
                        await cost_per_association(n, functools.partial(batch, port, n))
                    )
        finally:
            minimal.close()
            core.close()
    return figures


def report(n: int, rounds: int = 5, *, pin: bool = True) -> str:
    """`pin`: this process to one CPU and the client to another (for a
    measurement; not inside a test run, whose later peers would inherit it)."""
    client_cpus, server_cpus = procstat.cpu_split() if pin else (None, None)
    procstat.pin(os.getpid(), server_cpus)
    client = subprocess.Popen(
        [sys.executable, "-c", _CLIENT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=child_env(),
    )
    try:
        procstat.pin(client.pid, client_cpus)
        figures = asyncio.run(_measure(n, rounds, client))
    finally:
        client.kill()
        client.wait(10)
    title = f"server CPU per association, N={n} concurrent, median of {rounds} interleaved rounds"
    return format_figures(title, figures)
