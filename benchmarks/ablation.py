"""Where `echo()`'s cost over the raw client goes, by ablation:

    python -m benchmarks.profiling ablation [-n 1000]

Three clients in this process, N concurrent associations each, interleaved
for five rounds against one minimal SCP (pinned apart where possible):

- raw: `raw_client.raw_echo`, precomputed bytes;
- raw+core: the raw client's kind of protocol, driving asyncecho's core
  (`Association`, `UpperLayer`, `EchoDriver`): what the core costs in situ;
- echo(): the real thing, adding the asyncio glue (the channel and its
  timer, the connect timeout, the coroutine).

Prints the median CPU per association of each, and of it the time spent
in the garbage collector (with the number of collections per round).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncecho
from asyncecho.association import Association
from asyncecho.options import EchoOptions
from asyncecho.protocol.requestor_events import Failure
from asyncecho.results import EchoResult
from asyncecho.transport.asyncio_channel import Listener
from asyncecho.transport.asyncio_requestor import AsyncioRequestor

from . import procstat
from .raw_client import raw_echo
from .servers import start_python_server

HOST = "127.0.0.1"


class _BareChannel:
    """Just what the asyncio requestor driver calls, on a plain transport; no timer."""

    tls_version = None
    error = None
    __slots__ = ("listener", "loop", "transport")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.listener: Listener | None = None

    def now(self) -> float:
        return self.loop.time()

    def write(self, data: bytes) -> None:
        if data and self.transport is not None:
            self.transport.write(data)

    def listen(self, listener: Listener) -> None:
        self.listener = listener

    def stop_listening(self) -> None:
        self.listener = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def call_at(self, when: float) -> None:
        pass

    def quickack(self) -> None:
        pass


class _BareProtocol(asyncio.Protocol):
    __slots__ = ("channel",)

    def __init__(self, channel: _BareChannel) -> None:
        self.channel = channel

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.channel.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.channel.listener is not None:
            self.channel.listener.on_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.channel.listener is not None:
            self.channel.listener.on_data(b"")


_OPTIONS = EchoOptions()


async def core_echo(host: str, port: int) -> EchoResult:
    """One association: the raw client's way of connecting, asyncecho's core."""
    loop = asyncio.get_running_loop()
    assoc = Association(host, port, _OPTIONS, echoes=True)
    assoc._session.start(loop.time())
    channel = _BareChannel(loop)
    await loop.create_connection(lambda: _BareProtocol(channel), host, port)
    driver = AsyncioRequestor(assoc._session, channel, None)  # type: ignore[arg-type]
    driver.start()
    end = await driver.outcome(final=True)
    if isinstance(end, Failure):
        raise RuntimeError(f"the association failed: {end!r}")
    return assoc.result()


#: per competitor, per round: (µs of CPU per association, µs of it in the
#: garbage collector, collections)
Figures = dict[str, list[tuple[float, float, int]]]


async def cost_per_association(
    n: int, run: Callable[[], Awaitable[object]]
) -> tuple[float, float, int]:
    """Run one batch of `n` associations (`await run()`): its CPU per
    association in µs, the collector's part of it, and its collections."""
    gc.collect()
    with procstat.GcClock() as gc_clock:
        cpu = time.process_time()
        await run()
        cpu = time.process_time() - cpu
    return cpu / n * 1e6, gc_clock.seconds / n * 1e6, gc_clock.count


def format_figures(title: str, figures: Figures) -> str:
    """The medians over the rounds, each round's CPU in brackets."""
    lines = [title, "(of it in the garbage collector; collections per round):"]
    width = max(len(name) for name in figures)
    for name, values in figures.items():
        cpu = statistics.median(v[0] for v in values)
        in_gc = statistics.median(v[1] for v in values)
        collections = statistics.median(v[2] for v in values)
        runs = ", ".join(f"{v[0]:.0f}" for v in values)
        lines.append(
            f"  {name:{width}} {cpu:5.0f} µs   gc {in_gc:4.1f} µs, "
            f"{collections:.0f} collections   ({runs})"
        )
    return "\n".join(lines) + "\n"


async def _measure(n: int, rounds: int, port: int) -> Figures:
    clients: dict[str, Callable[[str, int], Awaitable[Any]]] = {
        "raw": raw_echo,
        "raw+core": core_echo,
        "echo()": asyncecho.echo,
    }
    for one in clients.values():  # warm-up: lazy imports, caches
        await asyncio.gather(*(one(HOST, port) for _ in range(min(n, 200))))
    figures: Figures = {name: [] for name in clients}
    for _ in range(rounds):
        for name, one in clients.items():
            batch = functools.partial(_batch, name, one, port, n)
            figures[name].append(await cost_per_association(n, batch))
    return figures


async def _batch(name: str, one: Callable[[str, int], Awaitable[Any]], port: int, n: int) -> None:
    """N concurrent associations of one client; raises if any failed."""
    if not all(await asyncio.gather(*(one(HOST, port) for _ in range(n)))):
        raise RuntimeError(f"{name}: an association failed")


def report(n: int, rounds: int = 5, *, pin: bool = True) -> str:
    """`pin`: this process to one CPU and the SCP to another (for a
    measurement; not inside a test run, whose later peers would inherit it)."""
    client_cpus, server_cpus = procstat.cpu_split() if pin else (None, None)
    procstat.pin(os.getpid(), client_cpus)
    server = start_python_server("minimal", "asyncio", server_cpus)
    try:
        figures = asyncio.run(_measure(n, rounds, server.port))
    finally:
        server.stop()
    title = f"CPU per association, N={n} concurrent, median of {rounds} interleaved rounds"
    return format_figures(title, figures)
