"""The requestor driver on asyncio (and uvloop): a `RequestorSession` run from
its connection's callbacks.

Holds `AsyncioRequestor`. May import `protocol/` and the asyncio channel.

Every read and every timer goes straight from the `AsyncioChannel` into the
session; the driver writes what the session has to send, closes when it
says so, keeps the connection's one timer at `session.next_deadline()` and
hands each event the session reports to `report` (the API's log) in order.
The task that awaits `outcome()` wakes once per answer it waits for (for
`echo()`, once: at the end), not once per read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from asyncecho.protocol.requestor import RequestorSession
from asyncecho.protocol.requestor_events import (
    ENDS,
    OUTCOMES,
    SessionEvent,
)
from asyncecho.transport.asyncio_channel import AsyncioChannel


class AsyncioRequestor:
    """Runs `session` on `channel` (connected). `report` gets every event."""

    __slots__ = ("_final", "_waiter", "channel", "report", "session")

    def __init__(
        self,
        session: RequestorSession,
        channel: AsyncioChannel,
        report: Callable[[SessionEvent], None] | None,
    ) -> None:
        self.session = session
        self.channel = channel
        self.report = report
        self._waiter: asyncio.Future[SessionEvent] | None = None
        self._final = False

    def start(self) -> None:
        """The transport is connected (Evt2): the A-ASSOCIATE-RQ goes out."""
        channel = self.channel
        self.session.connection_made(channel.now())
        self._flush()
        channel.listen(self)

    def outcome(self, *, final: bool = False) -> asyncio.Future[SessionEvent]:
        """The next answer (`Accepted`, `EchoAnswered`) or the end
        (`Released`, a `Failure`); with `final`, the end only. What the
        user asked of the session since the last input goes out first."""
        waiter = self.channel.loop.create_future()
        self._waiter, self._final = waiter, final
        self._flush()
        return waiter

    def abort(self) -> None:
        """A-ABORT and close now (the user gave up): nothing more to hear."""
        self.session.abort(self.channel.now())
        self._flush()
        self.channel.stop_listening()  # (no cycle left for the collector to find)

    # --- the channel's calls ---------------------------------------------------------

    def on_data(self, data: bytes) -> None:
        session, channel = self.session, self.channel
        try:
            if data:
                session.receive_data(data, channel.now())
                if session.partial_pdu:
                    channel.quickack()
            else:
                session.connection_lost(channel.now())
            self._flush()
        except Exception as bug:  # never left to the loop's handler: the waiter gets it
            self.abort()
            self._give(bug)

    def on_timer(self) -> None:
        self.session.handle_timer(self.channel.now())
        self._flush()

    # --- after every input ---------------------------------------------------------------

    def _flush(self) -> None:
        session, channel = self.session, self.channel
        channel.write(session.data_to_send())
        if session.should_close:
            channel.close()
        else:
            when = session.next_deadline()
            if when is not None:
                channel.call_at(when)
        self._deliver()

    def _deliver(self) -> None:
        waiter = self._waiter
        if waiter is None:
            return  # nobody waits: the events wait for the next `outcome()`
        session, report = self.session, self.report
        event = session.next_event()
        while event is not None:
            if report is not None:
                report(event)
            if isinstance(event, ENDS if self._final else OUTCOMES):
                self._waiter = None
                if not waiter.done():
                    waiter.set_result(event)
                if isinstance(event, ENDS):
                    self.channel.stop_listening()
                return
            event = session.next_event()

    def _give(self, error: BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self.channel.stop_listening()
