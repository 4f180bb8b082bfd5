"""The sans-I/O core's CPU per association, without sockets or a loop:

    python -m benchmarks.profiling core [-n 20000] [--profile]

- client: what `echo()` runs for one association once connected (the
  `Association` and its `RequestorSession`), fed the minimal SCP's
  A-ASSOCIATE-AC, C-ECHO-RSP and A-RELEASE-RP one read each, its events
  taken and the result built;
- SCP: an `AcceptorSession` fed the raw client's A-ASSOCIATE-RQ,
  C-ECHO-RQ and A-RELEASE-RQ, then the close.

This is the floor of what asyncecho adds to a raw-bytes client on any loop:
the raw client's whole association costs ~80-90 µs of CPU on uvloop here.
"""

from __future__ import annotations

import cProfile
import functools
import gc
import io
import pstats
import time
from collections.abc import Callable

from asyncecho.association import Association
from asyncecho.options import EchoOptions
from asyncecho.protocol.acceptor import AcceptorSession, EchoAnswered
from asyncecho.protocol.negotiation import AcceptorPolicy
from asyncecho.protocol.requestor_events import Released, SessionEvent

from . import pdus

_NOW = 1.0


_OPTIONS = EchoOptions()


def client_association() -> None:
    assoc = Association("127.0.0.1", 104, _OPTIONS, echoes=True)
    session = assoc._session
    session.start(_NOW)
    session.connection_made(_NOW)
    session.data_to_send()
    for pdu in (pdus.ASSOCIATE_AC, pdus.ECHO_RSP_PREFIX + b"\x01\x00" + pdus.ECHO_RSP_SUFFIX):
        session.receive_data(pdu, _NOW)
        session.data_to_send()
    session.receive_data(pdus.RELEASE_RP, _NOW)
    last: SessionEvent | None = None
    while (event := session.next_event()) is not None:
        last = event
    if not isinstance(last, Released):
        raise RuntimeError(f"the client association did not succeed: {last!r}")
    assoc.result(now=_NOW)


@functools.cache
def _policy() -> AcceptorPolicy:
    return AcceptorPolicy()  # one per SCP, as serve() has: it caches its answers


def scp_association() -> None:
    acceptor = AcceptorSession(_policy(), network_timeout=30.0)
    acceptor.connection_made(_NOW)
    acceptor.receive_data(pdus.ASSOCIATE_RQ, _NOW)
    acceptor.data_to_send()
    answered = acceptor.receive_data(pdus.ECHO_RQ, _NOW)
    acceptor.data_to_send()
    acceptor.receive_data(pdus.RELEASE_RQ, _NOW)
    acceptor.data_to_send()
    acceptor.connection_lost(_NOW)
    if answered != [EchoAnswered(1, 0)]:
        raise RuntimeError("the SCP did not answer the C-ECHO")


def cost(one: Callable[[], None], n: int) -> tuple[float, float]:
    """µs of CPU per call, with the GC on and off."""
    for _ in range(min(n, 1000)):
        one()  # warm-up: lazy imports, caches
    figures = []
    for collect in (True, False):
        if not collect:
            gc.disable()
        try:
            start = time.process_time()
            for _ in range(n):
                one()
            figures.append((time.process_time() - start) / n * 1e6)
        finally:
            gc.enable()
    return figures[0], figures[1]


def report(n: int, profile: bool, top: int = 25) -> str:
    out = io.StringIO()
    for name, one in (("client", client_association), ("SCP", scp_association)):
        with_gc, without_gc = cost(one, n)
        print(
            f"{name:6} core per association: {with_gc:5.1f} µs ({without_gc:.1f} without the GC)",
            file=out,
        )
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(n):
                one()
            profiler.disable()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()
