"""A structlog-style logger for tests: records (level, event, fields) of
the library's log events, for the client's and the SCP's event tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio

from asyncecho import disable_logging, enable_logging

Record = tuple[str, str, dict[str, Any]]
WAIT = 10.0  # a bound on a wait for an event, never a measurement


class Capture:
    """A structlog-style logger recording (level, event, fields); `wait_for`
    lets a test wait for an event the SCP logs after the client is done."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self._waiting: dict[str, anyio.Event] = {}

    def __getattr__(self, level: str) -> Any:
        def record(event: str, **fields: Any) -> None:
            self.records.append((level, event, fields))
            waiting = self._waiting.get(event)
            if waiting is not None:
                waiting.set()

        return record

    async def wait_for(self, event: str) -> None:
        if not self.named(event):
            self._waiting[event] = anyio.Event()
            with anyio.fail_after(WAIT):
                await self._waiting[event].wait()

    def client(self) -> list[Record]:
        return [r for r in self.records if not r[1].startswith("scp.")]

    def scp(self) -> list[Record]:
        return [r for r in self.records if r[1].startswith("scp.")]

    def named(self, event: str) -> list[tuple[str, dict[str, Any]]]:
        return [(level, fields) for level, name, fields in self.records if name == event]

    def one(self, event: str) -> tuple[str, dict[str, Any]]:
        (found,) = self.named(event)
        return found


@contextmanager
def capturing() -> Iterator[Capture]:
    capture = Capture()
    enable_logging(capture)
    try:
        yield capture
    finally:
        disable_logging()
