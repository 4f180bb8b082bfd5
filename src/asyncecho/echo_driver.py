"""`echo()` on asyncio, driven from transport callbacks.

The coroutine path (`Association`) wakes its task for every read and arms a
timer for every wait; for one association, C-ECHO and release that is most
of the client's cost next to a raw-bytes client. Here the whole association
after the TCP connect runs in the connection's callbacks: each read goes
through the same `UpperLayer` and the same checks and errors as the
coroutine path, the next request goes out from the callback, one timer
bounds each phase, and the task wakes once, at the end.
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
from typing import TYPE_CHECKING

from asyncecho import logs
from asyncecho.exceptions import (
    AcseTimeout,
    AssociationAborted,
    DeadlineExceeded,
    DimseTimeout,
    EchoError,
    EchoTimeout,
    NetworkTimeout,
)
from asyncecho.protocol.dimse import encode_echo_rq
from asyncecho.protocol.events import (
    AssociationAccepted,
    Event,
    MessageReceived,
    ReleaseConfirmed,
    ReleaseRequested,
)
from asyncecho.protocol.state_machine import Event as Evt
from asyncecho.protocol.state_machine import State

if TYPE_CHECKING:
    from asyncecho.client import Association
    from asyncecho.transport.asyncio_channel import AsyncioChannel

_ASSOCIATE, _ECHO, _RELEASE = 1, 2, 3
_STA6, _STA13 = State.STA6, State.STA13
_ENDED = (State.STA1, State.STA13)
_MESSAGE_ID = 1


class EchoDriver:
    """Runs A-ASSOCIATE (already requested), one C-ECHO and A-RELEASE of
    `assoc` on `channel`; `done` gets the status or the error."""

    __slots__ = (
        "_phase",
        "_phase_end",
        "_phase_kind",
        "_phase_timeout",
        "_released",
        "_started_phase",
        "assoc",
        "channel",
        "done",
        "last",
        "pending_error",
    )

    def __init__(
        self, assoc: Association, channel: AsyncioChannel, done: asyncio.Future[int]
    ) -> None:
        self.assoc = assoc
        self.channel = channel
        self.done = done
        self.pending_error: EchoError | None = None
        self.last = channel.now()
        self._phase = _ASSOCIATE
        self._phase_end: float | None = None
        self._phase_kind: type[EchoTimeout] = AcseTimeout
        self._phase_timeout: float | None = None
        self._started_phase = self.last
        self._released = False

    # --- phases ----------------------------------------------------------------------

    def start(self) -> None:
        """Send the A-ASSOCIATE-RQ (AE-2) and wait for the answer."""
        assoc = self.assoc
        now = self.channel.now()
        if logs.enabled:
            assoc._log_request()
        assoc._upper.connection_made(now)
        self.channel.write(assoc._upper.data_to_send())
        self._enter(_ASSOCIATE, AcseTimeout, assoc.options.acse_timeout, now)
        self.channel.listen(self)

    def _enter(
        self, phase: int, kind: type[EchoTimeout], timeout: float | None, now: float
    ) -> None:
        self._phase, self._phase_kind, self._phase_timeout = phase, kind, timeout
        self._started_phase = now
        self._phase_end = None if timeout is None else now + timeout
        self._arm(now)

    def _send_echo(self, now: float) -> None:
        assoc = self.assoc
        if assoc._upper.state is _STA6:
            # (otherwise a later PDU of the same read has already ended the
            # association: its event comes next and says how)
            assoc._upper.send_message(assoc.context_id, encode_echo_rq(_MESSAGE_ID))
            if logs.enabled:
                assoc._log("echo.request", message_id=_MESSAGE_ID)
            self.channel.write(assoc._upper.data_to_send())
        self._enter(_ECHO, DimseTimeout, assoc.options.dimse_timeout, now)

    def _send_release(self, now: float) -> None:
        upper = self.assoc._upper
        if upper.state is _STA6:
            upper.release()
            if logs.enabled:
                self.assoc._log("release.request")
            self.channel.write(upper.data_to_send())
        self._enter(_RELEASE, AcseTimeout, self.assoc.options.acse_timeout, now)

    # --- input -----------------------------------------------------------------------

    def on_data(self, data: bytes) -> None:
        if self.done.done():
            return
        try:
            self._on_data(data)
        except Exception as bug:  # never left to the loop's handler: the caller gets it
            self.abort()
            self._fail(bug)

    def _on_data(self, data: bytes) -> None:
        assoc, channel = self.assoc, self.channel
        upper = assoc._upper
        now = self.last = channel.now()
        if data:
            events = upper.receive_data(data, now)
        else:
            error = channel.error
            if isinstance(error, _ssl.SSLError):
                # TLS 1.3 reports a refused client certificate after the handshake.
                channel.close()
                self._fail(assoc._tls_failed(error))
                return
            events = upper.connection_lost(now)
        channel.write(upper.data_to_send())
        state = upper.state
        if upper.should_close or state is _STA13:
            channel.close()
        elif upper.partial_pdu:
            channel.quickack()
        try:
            for event in events:
                self._handle(event, now)
                if self.done.done():
                    return
        except EchoError as failure:
            channel.close()
            self._fail(failure)
            return
        if self._phase == _RELEASE and (upper.should_close or self._released):
            self._finish(now)
        elif not events and (not data or upper.state in _ENDED):
            channel.close()
            self._fail(AssociationAborted("the connection closed without an A-ABORT"))

    def _handle(self, event: Event, now: float) -> None:
        assoc = self.assoc
        phase = self._phase
        if phase == _ASSOCIATE:
            if not isinstance(event, AssociationAccepted):
                assoc._raise_for(event)
            assoc._accepted(event.ac)
            assoc.associate_time = now - self._started_phase
            if logs.enabled:
                assoc._log_accepted()
            if assoc.context_id:
                self._send_echo(now)
                return
            self.pending_error = assoc._no_context()
            self._send_release(now)
        elif phase == _ECHO:
            if isinstance(event, MessageReceived):
                status, problem = assoc._check_echo_response(event, _MESSAGE_ID)
                if problem is not None:
                    error = assoc._violation(problem, now)
                    self.channel.write(assoc._upper.data_to_send())
                    raise error
                assoc.status = status
                assoc.echo_time = now - self._started_phase
                if logs.enabled:
                    assoc._log_echo_response(_MESSAGE_ID, status, assoc.echo_time)
                self._send_release(now)
                return
            if isinstance(event, ReleaseRequested):
                # The peer released with our request outstanding: answer it
                # (PS3.8 Evt14) rather than leave it waiting, then fail.
                self._answer_release(now)
            assoc._raise_for(event)
        else:  # releasing
            if isinstance(event, (ReleaseConfirmed, MessageReceived)):
                return  # AR-3 / AR-10; AR-6: a late message, nothing to do with it
            if isinstance(event, ReleaseRequested):
                # A collision (AR-8, the requestor answers first: AR-9), or
                # the peer asked first in the read that ended the echo.
                self._answer_release(now)
                if not event.collision:
                    self._released = True
                return
            assoc._raise_for(event)

    def _answer_release(self, now: float) -> None:
        upper = self.assoc._upper
        if upper.action_for(Evt.EVT14) is not None:
            upper.release_response(now)
            self.channel.write(upper.data_to_send())

    # --- ends ------------------------------------------------------------------------

    def _finish(self, now: float) -> None:
        assoc = self.assoc
        self.channel.close()
        assoc.release_time = now - self._started_phase
        if logs.enabled:
            assoc._log_released()
        if self.pending_error is not None:
            self._fail(self.pending_error)
        elif not self.done.done():
            self.done.set_result(assoc.status if assoc.status is not None else 0)
            self.channel.stop_listening()

    def _fail(self, error: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(error)
        self.channel.stop_listening()

    def abort(self) -> None:
        """A-ABORT and close now (a timeout, or the caller was cancelled)."""
        upper, channel = self.assoc._upper, self.channel
        if upper.state not in (State.STA1, State.STA13):
            upper.abort(channel.now())
            channel.write(upper.data_to_send())
        channel.close()
        channel.stop_listening()

    # --- the phase timer -------------------------------------------------------------

    def _limits(self, now: float) -> tuple[float | None, type[EchoTimeout], float | None]:
        """The nearest of the phase's end, the overall deadline and the idle
        network limit: (when, which, its configured value)."""
        options = self.assoc.options
        when, kind, value = self._phase_end, self._phase_kind, self._phase_timeout
        deadline = self.assoc._deadline
        if deadline is not None and (when is None or deadline < when):
            when, kind, value = deadline, DeadlineExceeded, options.deadline
        network = options.network_timeout
        if network is not None and (when is None or self.last + network < when):
            when, kind, value = self.last + network, NetworkTimeout, network
        return when, kind, value

    def _arm(self, now: float) -> None:
        when, _, _ = self._limits(now)
        if when is not None:
            self.channel.call_at(when)

    def on_timer(self) -> None:
        if self.done.done():
            return
        now = self.channel.now()
        when, kind, value = self._limits(now)
        if when is None:
            return
        if now < when:
            self.channel.call_at(when)  # data came meanwhile: not idle
            return
        self.abort()
        error = kind(value)
        self.assoc._log_timeout(error)
        self._fail(error)
