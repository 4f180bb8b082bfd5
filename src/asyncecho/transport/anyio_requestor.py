"""The requestor driver on anyio byte streams (trio, or any anyio backend): a
`RequestorSession` run by the task that awaits it.

Holds `AnyioRequestor`. May import `protocol/` and the anyio channel.

`outcome()` reads until the session has an answer, each read bounded by
`session.next_deadline()`: a read that times out is the session's timer
(`handle_timer`). After every input the driver sends what the session has
to send, closes when it says so and hands each event to `report` (the
API's log) in order.
"""

from __future__ import annotations

from collections.abc import Callable

from asyncecho.protocol.requestor import RequestorSession
from asyncecho.protocol.requestor_events import (
    ENDS,
    OUTCOMES,
    SessionEvent,
)
from asyncecho.transport.anyio_channel import AnyioChannel
from asyncecho.transport.channel import ReceiveTimeout


class AnyioRequestor:
    """Runs `session` on `channel` (connected). `report` gets every event."""

    __slots__ = ("channel", "report", "session")

    def __init__(
        self,
        session: RequestorSession,
        channel: AnyioChannel,
        report: Callable[[SessionEvent], None] | None,
    ) -> None:
        self.session = session
        self.channel = channel
        self.report = report

    async def start(self) -> None:
        """The transport is connected (Evt2): the A-ASSOCIATE-RQ goes out."""
        self.session.connection_made(self.channel.now())
        await self._flush()

    async def outcome(self, *, final: bool = False) -> SessionEvent:
        """The next answer (`Accepted`, `EchoAnswered`) or the end
        (`Released`, a `Failure`); with `final`, the end only. What the
        user asked of the session since the last input goes out first."""
        session, channel = self.session, self.channel
        wanted = ENDS if final else OUTCOMES
        await self._flush()
        while True:
            event = session.next_event()
            while event is not None:
                if self.report is not None:
                    self.report(event)
                if isinstance(event, wanted):
                    return event
                event = session.next_event()
            if session.should_close:
                raise RuntimeError("the association has ended")  # pragma: no cover - a bug
            when = session.next_deadline()
            try:
                data = await channel.receive(None if when is None else when - channel.now())
            except ReceiveTimeout:
                session.handle_timer(channel.now())
            else:
                if data:
                    session.receive_data(data, channel.now())
                    if session.partial_pdu:
                        channel.quickack()
                else:
                    session.connection_lost(channel.now())
            await self._flush()

    async def abort(self) -> None:
        """A-ABORT and close now (the user gave up)."""
        self.session.abort(self.channel.now())
        await self._flush()

    async def _flush(self) -> None:
        session, channel = self.session, self.channel
        data = session.data_to_send()
        if data:
            await channel.send(data)
        if session.should_close:
            await channel.aclose()
