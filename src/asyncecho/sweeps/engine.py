"""`sweep()`: one C-ECHO to each of many targets, on one event loop.

    async with asyncecho.sweep(targets, concurrency=500, deadline=5) as records:
        async for record in records:        # one per target, as each finishes
            print(record.target.host, record.outcome)

A sweep is a task group with a bound on the associations in flight: a
producer pulls the next target only when a slot is free (so a huge or
endless iterable is never held whole), starts it at the paced rate, and each
target's task runs `verify()` under its own cancel scope and sends one
record. Records travel through a memory object stream to the consumer; a
slot is freed only once its record is handed over, so a slow consumer slows
the sweep instead of piling up records.

Why a context manager and not a bare async generator: the task group must
outlive each `yield`, and a cancel scope held open across a `yield` of an
async generator leaks cancellation into the consumer and breaks when the
generator is finalised elsewhere (trio and anyio both warn against it).
Leaving the block cancels whatever is still in flight.

`stop()` is the graceful end (SIGINT in the CLI): no new target starts, the
in-flight ones are aborted and each still yields a `cancelled` record, then
the iteration ends. Targets never pulled get no record.

Holds `Sweep` and `sweep()`; the records are in `sweeps.records`, the
open-file budget in `sweeps.limits`. (`Target` and `SweepRecord` are
re-exported here: `asyncecho.Target` and `asyncecho.SweepRecord` load them
from this module.)

May import: the public API (`asyncecho.client`, `results`, `arguments`,
`logs`), the protocol's data types, `sweeps.records`, `sweeps.limits`;
nothing of the CLI.
"""

from __future__ import annotations

import math
import ssl as _ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from asyncecho import arguments
from asyncecho.arguments import Default, given
from asyncecho.client import EchoOptions, verify
from asyncecho.options import OPTION as _OPTION
from asyncecho.options import OPTION_NAMES as _OPTION_NAMES
from asyncecho.protocol.pdu_items import UserIdentityRQ, UserItem
from asyncecho.results import EchoResult
from asyncecho.sweeps.limits import clamp_concurrency
from asyncecho.sweeps.records import SweepRecord, Target, record_from_result

__all__ = ["DEFAULT_CONCURRENCY", "DEFAULT_DEADLINE", "Sweep", "SweepRecord", "Target", "sweep"]

DEFAULT_CONCURRENCY = 256
DEFAULT_DEADLINE = 10.0

#: Added to the per-target deadline for the sweep's own guard: `verify()`
#: enforces the deadline itself; the guard only bounds a slot if it did not.
_GUARD_SLACK = 1.0


class Sweep:
    """A running sweep: an async context manager whose value is an async
    iterator of `SweepRecord` objects. Made by `sweep()`."""

    def __init__(
        self,
        targets: Iterable[Target] | AsyncIterable[Target],
        *,
        concurrency: int,
        rate: float | None,
        options: EchoOptions,
    ) -> None:
        requested = arguments.integer(concurrency, "concurrency", minimum=1)
        arguments.rate(rate)
        if not isinstance(options, EchoOptions):
            raise TypeError(f"options must be an EchoOptions, not {type(options).__name__}")
        if isinstance(targets, (str, bytes)) or not isinstance(
            targets, (Iterable, AsyncIterable)
        ):
            raise TypeError(
                f"targets must be an iterable of Target objects, not {type(targets).__name__}"
            )
        self._targets = targets
        #: what the caller asked for, and what runs: fewer when the open-file
        #: limit leaves no room for so many sockets (see `clamp_concurrency`)
        self.requested_concurrency = requested
        self.concurrency = clamp_concurrency(requested)
        self.rate = rate
        self.options = options
        self.started = 0  # targets handed to a task so far
        self.finished = 0  # records handed to the consumer so far
        self._slots = anyio.Semaphore(self.concurrency)
        self._stopping = False
        self._entered = False
        self._in_flight: set[anyio.CancelScope] = set()
        self._producer_scope: anyio.CancelScope | None = None
        self._failure: BaseException | None = None
        self._task_group: TaskGroup | None = None
        self._receive: MemoryObjectReceiveStream[SweepRecord] | None = None

    # --- control -------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def stop(self) -> None:
        """Start no new target and abort the in-flight ones: each yields a
        `cancelled` record, then the iteration ends. Call it from the event
        loop's thread (a signal handler installed with the loop, another
        task…); calling it again does nothing."""
        if self._stopping:
            return
        self._stopping = True
        if self._producer_scope is not None:
            self._producer_scope.cancel()
        for scope in list(self._in_flight):
            scope.cancel()

    # --- context manager -----------------------------------------------------------

    async def __aenter__(self) -> Sweep:
        if self._entered:
            raise RuntimeError("a Sweep runs once: call sweep() again for another")
        self._entered = True
        # One record per slot fits without blocking a finished task.
        send, receive = anyio.create_memory_object_stream[SweepRecord](self.concurrency)
        self._receive = receive
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        task_group.start_soon(self._produce, task_group, send)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        task_group = self._task_group
        assert task_group is not None and self._receive is not None
        # Left early (break, an exception, cancellation): nobody will read
        # the rest, so whatever still runs is cancelled, not waited for.
        task_group.cancel_scope.cancel()
        self._receive.close()
        try:
            return await task_group.__aexit__(exc_type, exc, traceback)
        except BaseException as error:
            # The tasks never raise (each target's errors become its record),
            # so a group holding only the block's own exception is just the
            # task group's wrapping: let the exception through as it was.
            if exc is not None and _sole(error) is exc:
                return False
            raise

    # --- iteration -----------------------------------------------------------------

    def __aiter__(self) -> Sweep:
        if not self._entered:
            raise RuntimeError(
                "iterate a sweep inside its block: "
                "`async with sweep(targets) as records: async for record in records: ...`"
            )
        return self

    async def __anext__(self) -> SweepRecord:
        assert self._receive is not None
        try:
            record = await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            if self._failure is not None:
                failure, self._failure = self._failure, None
                raise failure from None
            raise StopAsyncIteration from None
        self.finished += 1
        return record

    # --- the work ------------------------------------------------------------------

    async def _produce(
        self, task_group: TaskGroup, send: MemoryObjectSendStream[SweepRecord]
    ) -> None:
        targets = self._targets
        source_async: AsyncIterator[Target] | None = None
        source_sync: Iterator[Target] | None = None
        if isinstance(targets, AsyncIterable):
            source_async = aiter(targets)
        else:
            source_sync = iter(targets)
        next_start: float | None = None
        interval = 1.0 / self.rate if self.rate else 0.0
        with send, anyio.CancelScope() as scope:
            self._producer_scope = scope
            if self._stopping:
                return
            try:
                while True:
                    # Pull the next target only once a slot is free.
                    await self._slots.acquire()
                    handed_over = False
                    try:
                        try:
                            if source_async is not None:
                                target = await anext(source_async)
                            else:
                                assert source_sync is not None
                                target = next(source_sync)
                        except (StopIteration, StopAsyncIteration):
                            return
                        if not isinstance(target, Target):
                            raise TypeError(
                                f"sweep targets must be Target objects, not {type(target).__name__}"
                            )
                        if interval:
                            # Paced starts: a timer, not a poll; after a stall
                            # the pace resumes from now rather than bursting.
                            now = anyio.current_time()
                            if next_start is not None and next_start > now:
                                await anyio.sleep_until(next_start)
                                now = next_start
                            next_start = now + interval
                        self.started += 1
                        task_group.start_soon(self._run, target, send.clone())
                        handed_over = True
                    finally:
                        if not handed_over:
                            self._slots.release()
            except Exception as exc:  # the caller's iterable failed: end the sweep with it
                self._failure = exc
                self.stop()

    def _resolved(self, target: Target) -> tuple[Target, EchoOptions]:
        options = self.options
        called = target.called_ae or options.called_ae
        calling = target.calling_ae or options.calling_ae
        if called != options.called_ae or calling != options.calling_ae:
            options = replace(options, called_ae=called, calling_ae=calling)
        if target.called_ae != called or target.calling_ae != calling:
            target = replace(target, called_ae=called, calling_ae=calling)
        return target, options

    async def _run(self, target: Target, send: MemoryObjectSendStream[SweepRecord]) -> None:
        with send:
            try:
                record = await self._check(target)
                try:
                    await send.send(record)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass  # the consumer left; the sweep is being torn down
            finally:
                self._slots.release()

    async def _check(self, target: Target) -> SweepRecord:
        started = datetime.now(timezone.utc)
        target, options = self._resolved(target)
        if self._stopping:
            return _cancelled(target, started)
        deadline = options.deadline
        scope = anyio.CancelScope(
            deadline=math.inf
            if deadline is None
            else anyio.current_time() + deadline + _GUARD_SLACK
        )
        result: EchoResult | None = None
        with scope:
            self._in_flight.add(scope)
            try:
                result = await verify(target.host, target.port, options=options)
            except Exception as exc:  # not the peer's doing: keep it to this target
                return SweepRecord(
                    target, "error", started, detail=f"{type(exc).__name__}: {exc}", error=exc
                )
            finally:
                self._in_flight.discard(scope)
        if result is not None:
            return record_from_result(target, started, result)
        if self._stopping:
            return _cancelled(target, started)
        # The guard fired: verify() did not keep to its deadline.
        return SweepRecord(
            target,
            "timeout-deadline",
            started,
            detail=f"overall deadline timed out after {deadline:g} s",
        )


def _sole(error: BaseException) -> BaseException:
    """The one exception inside nested single-member exception groups."""
    inner = getattr(error, "exceptions", None)
    while inner is not None and len(inner) == 1:
        error = inner[0]
        inner = getattr(error, "exceptions", None)
    return error


def _cancelled(target: Target, started: datetime) -> SweepRecord:
    return SweepRecord(target, "cancelled", started, detail="the sweep was stopped")


# sweep()'s deadline when it is not given: `options.deadline` if set, else
# DEFAULT_DEADLINE (which help() shows).
_SWEEP_DEADLINE: Any = Default(DEFAULT_DEADLINE)


def sweep(
    targets: Iterable[Target] | AsyncIterable[Target],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    rate: float | None = None,
    calling_ae: str = _OPTION["calling_ae"],
    called_ae: str = _OPTION["called_ae"],
    transfer_syntaxes: Sequence[str] = _OPTION["transfer_syntaxes"],
    max_pdu: int = _OPTION["max_pdu"],
    connect_timeout: float | None = _OPTION["connect_timeout"],
    acse_timeout: float | None = _OPTION["acse_timeout"],
    dimse_timeout: float | None = _OPTION["dimse_timeout"],
    network_timeout: float | None = _OPTION["network_timeout"],
    deadline: float | None = _SWEEP_DEADLINE,
    ssl: _ssl.SSLContext | None = _OPTION["ssl"],
    server_hostname: str | None = _OPTION["server_hostname"],
    user_identity: UserIdentityRQ | None = _OPTION["user_identity"],
    user_items: Sequence[UserItem] = _OPTION["user_items"],
    options: EchoOptions | None = None,
) -> Sweep:
    """Echo every target, many at once; a `SweepRecord` for each.

    Use as

        async with sweep(targets) as records:
            async for record in records: ...

    Exactly one `SweepRecord` per target, in order of completion; nothing a
    peer or the network does raises.

    Args:
        targets: `Target` objects, an iterable or an async iterable (pulled
            only as slots free up: it may be huge or endless).
        concurrency: At most this many associations at once. Default 256.
            Clamped to what the open-file limit allows (one socket per
            association, `FD_HEADROOM` descriptors left free): the sweep's
            `concurrency` attribute says what runs, and a
            `sweep.concurrency_clamped` event is logged. The process's
            limits are left as they are.
        rate: At most this many new associations per second. Default None:
            as fast as the slots allow.
        calling_ae: Our AE title, unless a target has its own. Default
            "ECHOSCU".
        called_ae: The peers' AE title, unless a target has its own.
            Default "ANY-SCP".
        transfer_syntaxes: The transfer syntax UIDs proposed. Default: those
            of `echo()`.
        max_pdu: The largest PDU we accept, in bytes; 0 = no limit.
            Default 16382.
        connect_timeout: Seconds for each TCP connect and TLS handshake.
            Default 30.
        acse_timeout: Seconds for each A-ASSOCIATE and A-RELEASE answer.
            Default 30.
        dimse_timeout: Seconds for each C-ECHO-RSP. Default 30.
        network_timeout: Seconds without a byte from a peer. Default 30.
        deadline: Seconds for each target, connect to release; None: only
            the phase timeouts. Not given: `options.deadline` if set, else
            `DEFAULT_DEADLINE`, 10 s. Giving it as well as an `options` with
            a deadline is a TypeError.
        ssl: An `ssl.SSLContext` for DICOM over TLS. Default None.
        server_hostname: The name the certificates must match. Default
            None: each target's host (with `ssl`).
        user_identity: User Identity negotiation (PS3.7 D.3.3.7), from
            `asyncecho.identity.user_identity()`. Default None.
        user_items: Further User Information sub-items to send. Default ().
        options: An `EchoOptions` for every target; the keywords given as
            well apply on top of it, as for `verify()`. Default None: the
            defaults.

    Raises:
        TypeError, ValueError: A bad argument, at the call.
        Exception: While iterating, only what the `targets` iterable itself
            raised.
    """
    if options is None:
        options = EchoOptions()
    elif not isinstance(options, EchoOptions):
        raise TypeError(f"options must be an EchoOptions or None, not {type(options).__name__}")
    if deadline is _SWEEP_DEADLINE:
        deadline = DEFAULT_DEADLINE if options.deadline is None else options.deadline
    elif options.deadline is not None:
        raise TypeError(
            f"sweep(): the deadline is given twice (deadline={deadline!r} and "
            f"options.deadline={options.deadline!r}): give one"
        )
    settings = (
        calling_ae,
        called_ae,
        transfer_syntaxes,
        max_pdu,
        connect_timeout,
        acse_timeout,
        dimse_timeout,
        network_timeout,
        deadline,
        ssl,
        server_hostname,
        user_identity,
        user_items,
    )
    merged = replace(options, **given(_OPTION_NAMES, settings))  # (checks every field)
    return Sweep(targets, concurrency=concurrency, rate=rate, options=merged)
