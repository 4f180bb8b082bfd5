"""Nothing outlives a hostile case (issue 8): after each case of
`hostile.SCU_CASES` and `hostile.SCP_CASES`, and after a 1,000-association
mixed run, no file descriptor is left open (`/proc/self/fd`, after a short
settle for the loop's close callbacks), no task is left running, and the
loop still serves a normal echo. Under asyncio and trio.

Tasks: under asyncio, `asyncio.all_tasks()`; under trio, every task in the
tree under the root task (its nurseries' children, recursively). Each is
compared with the set from before the case, so the test runner's own tasks
do not count.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest

import peers
from asyncecho import (
    AcseTimeout,
    AssociationAborted,
    AssociationRejected,
    ConnectionRefused,
    EchoResult,
    ProtocolError,
    echo,
    serve,
    verify,
)
from asyncecho.protocol.pdu import Abort
from hostile import (
    SCP_CASES,
    SCP_SETTINGS,
    SCU_CASES,
    UNKNOWN_PDU,
    after_rq,
    describe_fds,
    hostile_scp,
    open_fds,
    run_scp_case,
    scu_call,
    silent,
    wait_until,
)

pytestmark = pytest.mark.anyio

LOCALHOST = "127.0.0.1"
SETTLE = 2.0


def running_tasks() -> set[object]:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        import trio

        tasks: set[object] = set()
        stack = [trio.lowlevel.current_root_task()]
        while stack:
            task = stack.pop()
            if task is None:
                continue
            tasks.add(task)
            for nursery in task.child_nurseries:
                stack.extend(nursery.child_tasks)
        return tasks
    return set(asyncio.all_tasks())


async def settled(left: Callable[[], set[str]]) -> None:
    """Wait (a little) until `left()` is empty; then it must be."""
    with anyio.move_on_after(SETTLE):
        await wait_until(lambda: not left(), SETTLE)
    assert describe_fds(left()) == []


@asynccontextmanager
async def nothing_left_behind() -> AsyncIterator[None]:
    """No descriptor or task opened in the block outlives it (after a settle),
    and the loop serves a normal echo afterwards."""
    fds, tasks = open_fds(), running_tasks()
    yield
    with anyio.move_on_after(SETTLE):
        await wait_until(lambda: not (open_fds() - fds or running_tasks() - tasks), SETTLE)
    assert describe_fds(open_fds() - fds) == []
    assert running_tasks() - tasks == set()
    async with serve() as server:
        assert (await echo(LOCALHOST, server.port)).ok


@pytest.mark.parametrize("name", list(SCU_CASES))
async def test_no_leak_after_hostile_scp(name: str) -> None:
    # verify(): echo() and associate() go through the same context manager
    # (`_associated`), whose exits are what could leave something behind.
    case = SCU_CASES[name]
    async with nothing_left_behind():
        before = open_fds()
        async with hostile_scp(case.script) as peer:
            error = await scu_call("verify", peer.port, case.options())
            assert type(error) is case.outcome if case.outcome else error is None
            # while the peer still holds its end open (its close would make
            # asyncio close a forgotten transport, hiding the leak)
            await settled(lambda: open_fds() - before - peer.own_fds())


@pytest.mark.parametrize("name", list(SCP_CASES))
async def test_no_leak_after_hostile_client(name: str) -> None:
    async with nothing_left_behind(), serve(**SCP_SETTINGS) as server:
        await run_scp_case(SCP_CASES[name], server.port, SCP_SETTINGS)
        await wait_until(lambda: server.active == 0)


# --- 1,000 associations, mixed ------------------------------------------------------------------


async def test_thousand_mixed_associations() -> None:
    """Good, refused (nothing listening), rejected (A-ASSOCIATE-RJ), aborted
    (the peer's A-ABORT), protocol errors and ACSE timeouts, 100 at a time,
    against serve() and hostile peers."""
    count, timeout = 1000, 0.2
    async with nothing_left_behind(), AsyncExitStack() as stack:
        good = await stack.enter_async_context(serve())
        strict = await stack.enter_async_context(serve(ae_title="STRICT", require_called_ae=True))
        aborting = await stack.enter_async_context(hostile_scp(after_rq(Abort(0, 0).encode())))
        garbling = await stack.enter_async_context(hostile_scp(after_rq(UNKNOWN_PDU)))
        mute = await stack.enter_async_context(hostile_scp(silent))
        refused = peers.closed_port()
        kinds: list[tuple[int, dict[str, Any], Callable[[EchoResult], bool]]] = [
            (good.port, {}, lambda r: r.ok),
            (refused, {}, lambda r: type(r.error) is ConnectionRefused),
            (strict.port, {"called_ae": "OTHER"}, lambda r: type(r.error) is AssociationRejected),
            (aborting.port, {}, lambda r: type(r.error) is AssociationAborted),
            (garbling.port, {}, lambda r: type(r.error) is ProtocolError),
            (mute.port, {"acse_timeout": timeout}, lambda r: type(r.error) is AcseTimeout),
        ]
        outcomes: Counter[tuple[int, bool]] = Counter()
        limiter = anyio.CapacityLimiter(100)

        async def one(index: int) -> None:
            port, overrides, expected = kinds[index % len(kinds)]
            async with limiter:
                result = await verify(LOCALHOST, port, **overrides)
            outcomes[index % len(kinds), expected(result)] += 1

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for index in range(count):
                    tg.start_soon(one, index)
        assert sum(outcomes.values()) == count
        assert [key for key in outcomes if not key[1]] == []
        assert good.echoes_total == outcomes[0, True]
        await wait_until(lambda: good.active == 0 and strict.active == 0)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_finished_echo_leaves_no_reference_cycle_of_ours() -> None:
    """On asyncio, echo()'s objects (association, upper layer, driver,
    channel) are freed by reference counting as soon as it returns: none of
    them waits in a cycle for the garbage collector, whose full collections
    grow with every object still around when thousands are in flight."""
    import gc

    async with serve(LOCALHOST, 0) as server:
        assert (await echo(LOCALHOST, server.port)).ok  # warm-up: lazy imports
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for _ in range(20):
                assert (await echo(LOCALHOST, server.port)).ok
            await anyio.sleep(0.05)  # the transports' close callbacks
            gc.collect()
            ours = Counter(
                type(obj).__qualname__
                for obj in gc.garbage
                if type(obj).__module__.startswith("asyncecho.")
            )
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
    assert ours == Counter()


def _live_timers(loop: asyncio.AbstractEventLoop) -> int:
    """Timers on asyncio's own loop, not counting cancelled ones."""
    scheduled: list[asyncio.TimerHandle] = loop._scheduled  # type: ignore[attr-defined]
    return len([handle for handle in scheduled if not handle.cancelled()])


def _objects_of_ours(collect: bool = True) -> Counter[str]:
    import gc

    if collect:
        gc.collect()
    return Counter(
        type(obj).__qualname__
        for obj in gc.get_objects()
        # (not a plain str for some metaclasses' instances)
        if str(type(obj).__module__).startswith("asyncecho.")
    )


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_open_scp_connections_keep_few_objects_and_no_timer_and_leave_nothing() -> None:
    """Each connection serve() holds open on asyncio, associated and after a
    C-ECHO, keeps at most four objects of ours alive (its protocol, its
    session, the upper layer and the upper layer's state machine): no
    framer until a read splits a PDU, no message assembler until a message
    comes in fragments, and no loop timer of its own (its ARTIM and idle
    limits are on the server's timer wheel). Every object a thousand open
    connections keep is walked again by each full collection. Once the
    peers close, nothing made per connection is left, freed by reference
    counting alone (the collector stays off): no reference cycle."""
    import gc

    from asyncecho.client import Association, EchoOptions
    from asyncecho.protocol.dimse import encode_echo_rq, fragment
    from asyncecho.protocol.pdu import PDataTF

    rq = Association(LOCALHOST, 0, EchoOptions()).rq.encode()
    (pdv,) = fragment(1, encode_echo_rq(1), True, 0)  # context 1: Verification
    echo_rq = PDataTF((pdv,)).encode()
    count = 50

    async def exchange(reader: asyncio.StreamReader, writer: Any, pdu: bytes) -> int:
        writer.write(pdu)
        header = await reader.readexactly(6)
        await reader.readexactly(int.from_bytes(header[2:], "big"))
        return header[0]

    def per_connection(objects: Counter[str]) -> dict[str, float]:
        # (what one connection made once, such as the cached decoded RQ, is shared)
        return {name: n / count for name, n in (objects - before).items() if n >= count}

    async with serve(LOCALHOST, 0) as server:
        loop = asyncio.get_running_loop()
        timers_before, before = _live_timers(loop), _objects_of_ours()
        streams = []
        try:
            for _ in range(count):
                reader, writer = await asyncio.open_connection(LOCALHOST, server.port)
                streams.append(writer)
                assert await exchange(reader, writer, rq) == 0x02  # A-ASSOCIATE-AC
                assert await exchange(reader, writer, echo_rq) == 0x04  # the C-ECHO-RSP
            held = per_connection(_objects_of_ours())
            timers = _live_timers(loop) - timers_before
            gc.disable()
        finally:
            for writer in streams:
                writer.close()
        try:
            await wait_until(lambda: not per_connection(_objects_of_ours(collect=False)))
        finally:
            gc.enable()
    assert sum(held.values()) <= 4, held
    # A few ticks of the wheel, shared by all fifty: not one timer each.
    assert timers < 10
