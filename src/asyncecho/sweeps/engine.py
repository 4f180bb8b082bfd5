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
"""

from __future__ import annotations

import math
import os
import ssl as _ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from asyncecho import arguments, logs
from asyncecho.arguments import Default, given
from asyncecho.client import _OPTION, _OPTION_NAMES, EchoOptions, verify
from asyncecho.protocol.pdu_items import UserIdentityRQ, UserItem
from asyncecho.results import EchoResult, Timings

DEFAULT_CONCURRENCY = 256
DEFAULT_DEADLINE = 10.0
DEFAULT_PORT = 104

#: File descriptors a sweep leaves free beside those already open when it
#: starts: the caller's own files, the event loop's, and the resolver
#: threads' sockets (trio runs up to 40 lookups at once, each with a socket
#: to the name server and a file or two).
FD_HEADROOM = 100

#: Added to the per-target deadline for the sweep's own guard: `verify()`
#: enforces the deadline itself; the guard only bounds a slot if it did not.
_GUARD_SLACK = 1.0


@dataclass(frozen=True, slots=True)
class Target:
    """One peer to check. `called_ae` / `calling_ae` of None take the sweep's
    defaults (`EchoOptions`); a record's target always has them filled in."""

    host: str
    port: int = DEFAULT_PORT
    called_ae: str | None = None
    calling_ae: str | None = None

    def __post_init__(self) -> None:
        arguments.host(self.host, "target host")
        arguments.port(self.port, "target port")
        for name in ("called_ae", "calling_ae"):
            title = getattr(self, name)
            if title is not None:
                object.__setattr__(self, name, arguments.ae_title(title, f"target {name}"))

    @property
    def key(self) -> tuple[str, int, str | None, str | None]:
        """What identifies a target across runs (`--resume`)."""
        return (self.host, self.port, self.called_ae, self.calling_ae)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        called = f"{self.called_ae}@" if self.called_ae else ""
        return f"{called}{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class SweepRecord:
    """What became of one target."""

    target: Target
    #: `success`, `status-0xNNNN`, an `EchoError.outcome` (`refused`,
    #: `timeout-deadline`, …), `cancelled` (the sweep was stopped), or
    #: `error` (a bug: an unexpected exception, kept to this target)
    outcome: str
    #: wall clock (UTC) when the target was started
    started: datetime
    #: the reject reason, the OS error, the status name…; empty on success
    detail: str = ""
    timings: Timings = field(default_factory=Timings)
    status: int | None = None
    peer_ae: str | None = None
    peer_implementation_class_uid: str | None = None
    peer_implementation_version_name: str | None = None
    transfer_syntax: str | None = None
    #: the `EchoError` that `verify()` reported (or the unexpected exception
    #: of an `error` record), for callers that want its fields
    error: Exception | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        return self.outcome == "success"

    @property
    def final(self) -> bool:
        """False only for `cancelled`: the target was not really checked."""
        return self.outcome != "cancelled"

    def as_dict(self) -> dict[str, Any]:
        """A flat, JSON-ready mapping (the JSONL and CSV columns)."""
        timings = self.timings

        def ms(seconds: float | None) -> float | None:
            return None if seconds is None else round(seconds * 1000.0, 3)

        return {
            "host": self.target.host,
            "port": self.target.port,
            "called_aet": self.target.called_ae,
            "calling_aet": self.target.calling_ae,
            "ok": self.ok,
            "outcome": self.outcome,
            "detail": self.detail,
            "status": self.status,
            "started": iso_utc(self.started),
            "connect_ms": ms(timings.connect),
            "associate_ms": ms(timings.associate),
            "echo_ms": ms(timings.echo),
            "release_ms": ms(timings.release),
            "total_ms": ms(timings.total),
            "peer_aet": self.peer_ae,
            "implementation_class_uid": self.peer_implementation_class_uid,
            "implementation_version_name": self.peer_implementation_version_name,
            "transfer_syntax": self.transfer_syntax,
        }


#: The columns of `SweepRecord.as_dict()`, in order.
FIELDS = (
    "host",
    "port",
    "called_aet",
    "calling_aet",
    "ok",
    "outcome",
    "detail",
    "status",
    "started",
    "connect_ms",
    "associate_ms",
    "echo_ms",
    "release_ms",
    "total_ms",
    "peer_aet",
    "implementation_class_uid",
    "implementation_version_name",
    "transfer_syntax",
)


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record_from_result(target: Target, started: datetime, result: EchoResult) -> SweepRecord:
    error = result.error
    if error is not None:
        detail = str(error)
    elif result.ok:
        detail = ""
    else:
        detail = result.status_name or ""
    return SweepRecord(
        target=target,
        outcome=result.outcome,
        started=started,
        detail=detail,
        timings=result.timings,
        status=result.status,
        peer_ae=result.peer_ae,
        peer_implementation_class_uid=result.peer_implementation_class_uid,
        peer_implementation_version_name=result.peer_implementation_version_name,
        transfer_syntax=result.transfer_syntax,
        error=error,
    )


def _open_fds() -> int | None:
    """How many file descriptors this process has open (None: cannot tell)."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(folder))
        except OSError:
            continue
    return None


def socket_budget() -> tuple[int | None, int, int]:
    """(how many more sockets this process can open keeping `FD_HEADROOM`
    free, or None without a limit; the soft RLIMIT_NOFILE; the descriptors
    open now). Read only: a library does not change its caller's limits
    (the CLI, which owns its process, raises the soft limit first)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return None, 0, 0
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None, soft, 0
    in_use = _open_fds()
    if in_use is None:  # pragma: no cover - no /proc or /dev/fd
        in_use = 3
    return max(1, soft - in_use - FD_HEADROOM), soft, in_use


def clamp_concurrency(requested: int) -> int:
    """At most as many associations in flight (one socket each) as the
    open-file limit leaves room for: beyond it every extra connect fails
    with EMFILE, which is our limit, not the targets' fault. Logged
    (`sweep.concurrency_clamped`) when it clamps."""
    budget, soft, in_use = socket_budget()
    if budget is None or requested <= budget:
        return requested
    logs.log(
        "sweep.concurrency_clamped",
        level="warning",
        requested=requested,
        concurrency=budget,
        fd_limit=soft,
        fds_open=in_use,
        fd_headroom=FD_HEADROOM,
    )
    return budget


class Sweep:
    """A running sweep: an async context manager whose value is an async
    iterator of `SweepRecord`s. Made by `sweep()`."""

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
