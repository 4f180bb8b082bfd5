"""Many connections' deadlines on a few loop timers.

One loop timer per connection costs, for the life of the connection, a
timer handle, the bound method it calls and the context it copies: objects
that the garbage collector walks again and again when thousands of
connections are open. Here a deadline is rounded up to the next tick (so a
timer never fires early, and at most one tick late) and all the connections
due in the same tick share one loop timer; a connection waiting costs an
entry in that tick's dict. A tick's loop timer is cancelled once nothing is
due in it any more, so an idle wheel holds no timer at all.

The callbacks run in an empty `contextvars` context of the wheel's own:
not in a copy per connection, and never in the context of whichever
connection happened to open a tick. (asyncecho binds no context variables
of its own; an application that binds some for its log lines still has them
where `echo()`'s result or error reaches it, in its own task.) An exception
from one callback goes to the loop's exception handler, as it would from a
loop timer of its own, and the others of the tick still run.

May import asyncio only.
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from typing import Protocol

#: seconds: coarse enough that a burst of connections shares timers, fine
#: enough against timeouts of a second or more (and it is never early)
DEFAULT_TICK = 0.01


class Timed(Protocol):
    def on_timer(self) -> None:
        """The deadline it was scheduled for has come (check the time: a
        clock's resolution may make it a hair early; schedule again then)."""


class TimerWheel:
    __slots__ = ("__weakref__", "_context", "_loop", "_slots", "_tick")

    def __init__(self, loop: asyncio.AbstractEventLoop, tick: float = DEFAULT_TICK) -> None:
        if tick <= 0:
            raise ValueError("the tick must be positive")
        # Weakly: `for_loop` keeps a wheel per loop, which must not keep the loop alive.
        self._loop = weakref.ref(loop)
        self._tick = tick
        self._context = contextvars.Context()
        # tick number -> (its loop timer, the items due in it, in order)
        self._slots: dict[int, tuple[asyncio.TimerHandle, dict[Timed, None]]] = {}

    def schedule(self, item: Timed, when: float) -> int:
        """Call `item.on_timer()` at `when` (loop time) or up to one tick
        later; returns the key that `cancel` needs. An item may be scheduled
        in several ticks at once: each calls it."""
        key = self.key(when)
        slot = self._slots.get(key)
        if slot is None:
            loop = self._loop()
            if loop is None:
                raise RuntimeError("the wheel's event loop is gone")
            handle = loop.call_at(key * self._tick, self._fire, key, context=self._context)
            slot = self._slots[key] = (handle, {})
        slot[1][item] = None
        return key

    def key(self, when: float) -> int:
        """The tick `when` falls in: the first at or after it."""
        return -int(-when // self._tick)

    def cancel(self, item: Timed, key: int) -> None:
        """Unschedule `item` from tick `key` (nothing if it is not in it)."""
        slot = self._slots.get(key)
        if slot is None:
            return
        handle, items = slot
        items.pop(item, None)
        if not items:
            handle.cancel()
            del self._slots[key]

    def close(self) -> None:
        """Drop every scheduled item and loop timer."""
        for handle, _ in self._slots.values():
            handle.cancel()
        self._slots.clear()

    @property
    def pending(self) -> int:
        """Items scheduled, over all ticks (for tests and diagnostics)."""
        return sum(len(items) for _, items in self._slots.values())

    def _fire(self, key: int) -> None:
        slot = self._slots.pop(key, None)
        if slot is None:
            return
        for item in slot[1]:
            try:
                item.on_timer()
            except Exception as exc:  # one item's bug must not cost the others their timers
                loop = self._loop()
                if loop is not None:
                    loop.call_exception_handler(
                        {"message": "timer wheel callback failed", "exception": exc}
                    )


_wheels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TimerWheel] = (
    weakref.WeakKeyDictionary()
)
_last: tuple[weakref.ref[asyncio.AbstractEventLoop], TimerWheel] | None = None


def for_loop(loop: asyncio.AbstractEventLoop) -> TimerWheel:
    """The wheel of `loop`, shared by every client connection on it (made
    at the first; gone with the loop)."""
    global _last
    last = _last
    if last is not None and last[0]() is loop:
        return last[1]  # the usual case: the loop of the last call
    wheel = _wheels.get(loop)
    if wheel is None:
        wheel = _wheels[loop] = TimerWheel(loop)
    _last = (weakref.ref(loop), wheel)
    return wheel
