"""The timer wheel (asyncio only: it sits on the loop's own timers)."""

from __future__ import annotations

import asyncio

import pytest

from asyncecho.transport.timer_wheel import TimerWheel

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]

TICK = 0.02


class Recorder:
    def __init__(self, loop: asyncio.AbstractEventLoop, name: str, log: list[str]) -> None:
        self.loop, self.name, self.log = loop, name, log
        self.fired_at: list[float] = []

    def on_timer(self) -> None:
        self.fired_at.append(self.loop.time())
        self.log.append(self.name)


def _loop_timers(loop: asyncio.AbstractEventLoop) -> int:
    """Live (not cancelled) timers on asyncio's own loop."""
    scheduled: list[asyncio.TimerHandle] = loop._scheduled  # type: ignore[attr-defined]
    return len([handle for handle in scheduled if not handle.cancelled()])


async def test_fires_never_early_and_at_most_a_tick_late() -> None:
    loop = asyncio.get_running_loop()
    wheel = TimerWheel(loop, TICK)
    log: list[str] = []
    items = [Recorder(loop, str(i), log) for i in range(3)]
    start = loop.time()
    whens = [start + 0.05, start + 0.013, start + 0.1]
    for item, when in zip(items, whens, strict=True):
        wheel.schedule(item, when)
    await asyncio.sleep(0.2)
    assert log == ["1", "0", "2"]  # in the order of their deadlines
    for item, when in zip(items, whens, strict=True):
        (fired,) = item.fired_at
        assert when <= fired + 1e-6  # never early (but for the loop's clock resolution)
        # at most a tick late, give or take the loop's own wake-up
        assert fired <= when + TICK + 0.05
    assert wheel.pending == 0 and _loop_timers(loop) == 0


async def test_one_loop_timer_per_tick() -> None:
    loop = asyncio.get_running_loop()
    wheel = TimerWheel(loop, 1.0)
    before = _loop_timers(loop)
    base = wheel.key(loop.time() + 10) * 1.0  # the start of a tick, 10 s away
    items = [Recorder(loop, str(i), []) for i in range(100)]
    keys = {wheel.schedule(item, base + 0.001 * i) for i, item in enumerate(items)}
    assert len(keys) == 2  # base itself is the end of one tick, the rest in the next
    assert _loop_timers(loop) == before + 2
    assert wheel.pending == 100
    wheel.close()
    assert wheel.pending == 0 and _loop_timers(loop) == before


async def test_cancel_drops_the_item_and_the_last_one_the_loop_timer() -> None:
    loop = asyncio.get_running_loop()
    wheel = TimerWheel(loop, TICK)
    log: list[str] = []
    first, second = Recorder(loop, "first", log), Recorder(loop, "second", log)
    when = loop.time() + 0.05
    key = wheel.schedule(first, when)
    assert wheel.schedule(second, when) == key
    before = _loop_timers(loop)
    wheel.cancel(first, key)
    assert _loop_timers(loop) == before  # the second still needs it
    wheel.cancel(first, key)  # again: nothing
    wheel.cancel(second, key)
    assert _loop_timers(loop) == before - 1 and wheel.pending == 0
    wheel.cancel(second, key)  # a tick that has no slot any more: nothing
    await asyncio.sleep(0.1)
    assert log == []


async def test_an_item_may_reschedule_itself_from_on_timer() -> None:
    loop = asyncio.get_running_loop()
    wheel = TimerWheel(loop, TICK)

    class Twice:
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_timer(self) -> None:
            self.times.append(loop.time())
            if len(self.times) == 1:
                wheel.schedule(self, loop.time() + 0.03)

    item = Twice()
    wheel.schedule(item, loop.time() + 0.01)
    await asyncio.sleep(0.2)
    assert len(item.times) == 2 and item.times[1] - item.times[0] >= 0.03
    assert wheel.pending == 0


async def test_an_item_cancelled_by_another_in_the_same_tick_still_is_not_lost() -> None:
    """Cancelling from inside a firing tick touches nothing being iterated."""
    loop = asyncio.get_running_loop()
    wheel = TimerWheel(loop, TICK)
    log: list[str] = []
    other = Recorder(loop, "other", log)
    when = loop.time() + 0.01
    key = wheel.schedule(other, when)

    class Canceller:
        def on_timer(self) -> None:
            log.append("canceller")
            wheel.cancel(other, key)

    wheel.schedule(Canceller(), when)
    await asyncio.sleep(0.1)
    # Both were due: the tick had been taken off the wheel before either ran.
    assert sorted(log) == ["canceller", "other"]


async def test_the_tick_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        TimerWheel(asyncio.get_running_loop(), 0)


async def test_a_failing_callback_does_not_cost_the_others_their_timers() -> None:
    loop = asyncio.get_running_loop()
    wheel = TimerWheel(loop, TICK)
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        log: list[str] = []

        class Broken:
            def on_timer(self) -> None:
                raise RuntimeError("a bug")

        when = loop.time() + 0.01
        wheel.schedule(Broken(), when)
        wheel.schedule(Recorder(loop, "after", log), when)
        await asyncio.sleep(0.1)
    finally:
        loop.set_exception_handler(None)
    assert log == ["after"]
    assert [type(context["exception"]) for context in reported] == [RuntimeError]
