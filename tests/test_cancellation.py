"""Cancellation from outside, in every phase of an echo: during the TCP
connect, while waiting for the A-ASSOCIATE-AC, for the C-ECHO-RSP and for
the A-RELEASE-RP.

After each, no file descriptor is left open, and where the A-ASSOCIATE-RQ
had gone out the peer gets an A-ABORT before the close. Cancellation comes
from anyio (`move_on_after`, `CancelScope.cancel()` from another task) under
asyncio and trio, and under asyncio also from `asyncio.wait_for` and
`Task.cancel()`.

The connect phase needs a connect that hangs: a listener with `listen(0)`
that never accepts, with its accept queue filled first. Linux then drops
further SYNs, so a connect stays in SYN-SENT; the fixture checks that it
does, and skips (naming the reason) on a kernel that completes it anyway.
"""

from __future__ import annotations

import asyncio
import select
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from asyncecho import ConnectTimeout, DeadlineExceeded, EchoError, associate, echo, verify
from asyncecho.protocol.dimse import decode_command, encode_echo_rsp
from asyncecho.protocol.negotiation import AcceptorPolicy, build_ac
from asyncecho.protocol.pdu import (
    PDV,
    Abort,
    AssociateRQ,
    PDataTF,
    ReleaseRP,
    ReleaseRQ,
    decode_pdu,
)
from hostile import describe_fds, open_fds

pytestmark = pytest.mark.anyio

LOCALHOST = "127.0.0.1"
PHASES = ["connect", "associate", "echo", "release"]
CALLS = ["echo", "verify", "associate"]
# Long enough never to fire in these tests: only the cancellation ends a call.
QUIET: dict[str, Any] = {
    "connect_timeout": 10.0,
    "acse_timeout": 10.0,
    "dimse_timeout": 10.0,
    "network_timeout": 10.0,
}
# The PDU types the peer sees, up to and including our A-ABORT, per phase.
EXPECTED_PDUS = {
    "associate": [0x01, 0x07],
    "echo": [0x01, 0x04, 0x07],
    "release": [0x01, 0x04, 0x05, 0x07],
}


# --- file descriptors -----------------------------------------------------------------------------


async def assert_no_new_fds(before: set[str], settle: float = 2.0) -> None:
    """Every descriptor opened since `before` is closed again (after letting
    the loop run the close callbacks)."""
    with anyio.move_on_after(settle):
        while open_fds() - before:  # noqa: ASYNC110 - nothing to wait on but the kernel
            await anyio.sleep(0.01)
    assert describe_fds(open_fds() - before) == []


# --- peers --------------------------------------------------------------------------------------------


@contextmanager
def full_backlog_listener() -> Iterator[int]:
    """A port where a TCP connect hangs: `listen(0)`, never accepting, its
    accept queue filled by connections made here first."""
    listener = socket.socket()
    listener.bind((LOCALHOST, 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers: list[socket.socket] = []
    try:
        for _ in range(8):
            probe = socket.socket()
            probe.setblocking(False)
            fillers.append(probe)
            probe.connect_ex(address)
            _, writable, _ = select.select([], [probe], [], 0.05)
            if not writable:
                break  # this one hangs in SYN-SENT: the queue is full
        else:
            pytest.skip("this kernel completes connects to a full backlog; connect cannot hang")
        yield int(address[1])
    finally:
        for sock in fillers:
            sock.close()
        listener.close()


async def read_pdu(reader: BufferedByteReceiveStream) -> bytes:
    header = await reader.receive_exactly(6)
    return header + await reader.receive_exactly(int.from_bytes(header[2:6], "big"))


class StallingPeer:
    """A raw SCP that answers until `stall` and then never again: "associate"
    (never an A-ASSOCIATE-AC), "echo" (an AC, never a C-ECHO-RSP) or
    "release" (AC and RSP, never an A-RELEASE-RP). Records every PDU it
    receives until the client closes."""

    def __init__(self, stall: str) -> None:
        self.stall = stall
        self.received: list[bytes] = []
        self.reached = {phase: anyio.Event() for phase in EXPECTED_PDUS}
        self.closed = anyio.Event()

    async def handle(self, stream: SocketStream) -> None:
        reader = BufferedByteReceiveStream(stream)
        try:
            while True:
                try:
                    raw = await read_pdu(reader)
                except (anyio.IncompleteRead, anyio.EndOfStream, anyio.BrokenResourceError):
                    return
                self.received.append(raw)
                pdu = decode_pdu(raw)
                if isinstance(pdu, AssociateRQ):
                    self.reached["associate"].set()
                    if self.stall != "associate":
                        await stream.send(build_ac(pdu, AcceptorPolicy()).encode())
                elif isinstance(pdu, PDataTF):
                    self.reached["echo"].set()
                    if self.stall != "echo":
                        pdv = pdu.pdvs[0]
                        message_id = decode_command(pdv.data).message_id
                        assert message_id is not None
                        rsp = PDV(pdv.context_id, True, True, encode_echo_rsp(message_id))
                        await stream.send(PDataTF((rsp,)).encode())
                elif isinstance(pdu, ReleaseRQ):
                    self.reached["release"].set()
                    if self.stall != "release":
                        await stream.send(ReleaseRP().encode())
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.aclose_forcefully(stream)
            self.closed.set()

    async def check_aborted(self) -> None:
        """The client sent an A-ABORT as its last PDU, then closed."""
        with anyio.fail_after(5):
            await self.closed.wait()
        assert [raw[0] for raw in self.received] == EXPECTED_PDUS[self.stall]
        abort = decode_pdu(self.received[-1])
        assert isinstance(abort, Abort)
        assert abort.source == 0  # the service user: us


@asynccontextmanager
async def phase_peer(phase: str) -> AsyncIterator[tuple[int, StallingPeer | None]]:
    """(port, peer) where an echo gets stuck in `phase`."""
    if phase == "connect":
        with full_backlog_listener() as port:
            yield port, None
        return
    peer = StallingPeer(phase)
    listener = await anyio.create_tcp_listener(local_host=LOCALHOST)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, peer.handle)
        yield int(listener.extra(SocketAttribute.local_port)), peer
        tg.cancel_scope.cancel()


async def reached(phase: str, peer: StallingPeer | None) -> None:
    """Until the client is stuck in `phase`."""
    with anyio.fail_after(5):
        if peer is None:
            await anyio.sleep(0.2)  # no event for a connect in SYN-SENT
        else:
            await peer.reached[phase].wait()


def make_call(kind: str, port: int) -> Callable[[], Awaitable[None]]:
    async def call() -> None:
        if kind == "echo":
            await echo(LOCALHOST, port, **QUIET)
        elif kind == "verify":
            await verify(LOCALHOST, port, **QUIET)
        else:
            async with associate(LOCALHOST, port, **QUIET) as assoc:
                await assoc.echo()

    return call


# --- anyio cancellation (asyncio and trio) ---------------------------------------------------------------


@pytest.mark.parametrize("kind", CALLS)
@pytest.mark.parametrize("phase", PHASES)
async def test_cancel_scope_from_another_task(phase: str, kind: str) -> None:
    before = open_fds()
    finished = False
    async with phase_peer(phase) as (port, peer):
        call = make_call(kind, port)
        with anyio.fail_after(10), anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:

                async def canceller() -> None:
                    await reached(phase, peer)
                    scope.cancel()

                tg.start_soon(canceller)
                await call()
                finished = True
        assert scope.cancelled_caught and not finished
        if peer is not None:
            await peer.check_aborted()
    await assert_no_new_fds(before)


@pytest.mark.parametrize("phase", PHASES)
async def test_move_on_after(phase: str) -> None:
    before = open_fds()
    finished = False
    async with phase_peer(phase) as (port, peer):
        with anyio.move_on_after(0.25) as scope:
            await echo(LOCALHOST, port, **QUIET)
            finished = True
        assert scope.cancelled_caught and not finished
        if peer is not None:
            assert peer.reached[phase].is_set()
            await peer.check_aborted()
    await assert_no_new_fds(before)


@pytest.mark.parametrize("phase", PHASES)
async def test_cancellation_is_never_turned_into_a_result(phase: str) -> None:
    """verify() returns failures as results, but never a cancellation."""
    results = []
    async with phase_peer(phase) as (port, peer):
        with anyio.move_on_after(0.25) as scope:
            results.append(await verify(LOCALHOST, port, **QUIET))
        assert scope.cancelled_caught
        if peer is not None:
            await peer.check_aborted()
    assert results == []


# --- asyncio's own cancellation ---------------------------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("kind", CALLS)
@pytest.mark.parametrize("phase", PHASES)
async def test_asyncio_task_cancel(phase: str, kind: str) -> None:
    before = open_fds()
    async with phase_peer(phase) as (port, peer):
        task = asyncio.ensure_future(make_call(kind, port)())
        await reached(phase, peer)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        if peer is not None:
            await peer.check_aborted()
    await assert_no_new_fds(before)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("phase", PHASES)
async def test_asyncio_wait_for(phase: str) -> None:
    before = open_fds()
    async with phase_peer(phase) as (port, peer):
        with pytest.raises(TimeoutError) as info:
            await asyncio.wait_for(echo(LOCALHOST, port, **QUIET), 0.25)
        # wait_for's own timeout, not one of ours (those are TimeoutErrors too)
        assert not isinstance(info.value, EchoError)
        if peer is not None:
            await peer.check_aborted()
    await assert_no_new_fds(before)


# --- the connect timeout bounds the connect --------------------------------------------------------------------


async def test_connect_timeout_bounds_a_hanging_connect() -> None:
    before = open_fds()
    with full_backlog_listener() as port:
        start = anyio.current_time()
        with anyio.fail_after(5), pytest.raises(ConnectTimeout) as info:
            await echo(LOCALHOST, port, connect_timeout=0.3)
        elapsed = anyio.current_time() - start
        assert info.value.timeout == 0.3
        assert info.value.outcome == "timeout-connect"
        assert 0.25 <= elapsed < 3.0

        result = await verify(LOCALHOST, port, connect_timeout=0.2)
        assert isinstance(result.error, ConnectTimeout)
    await assert_no_new_fds(before)


async def test_deadline_bounds_a_hanging_connect() -> None:
    with full_backlog_listener() as port:
        start = anyio.current_time()
        with anyio.fail_after(5), pytest.raises(DeadlineExceeded):
            await echo(LOCALHOST, port, connect_timeout=10.0, deadline=0.3)
        assert anyio.current_time() - start < 3.0


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("kind", ["echo", "associate"])
async def test_a_connect_cancelled_leaves_no_timer_behind(kind: str) -> None:
    """Cancelled while its TCP connect hangs, an association leaves nothing
    on the loop: in particular no connect timer, which would fire later on
    a connection that never was."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        with full_backlog_listener() as port:
            with anyio.move_on_after(0.1) as scope:
                if kind == "echo":
                    await echo(LOCALHOST, port, connect_timeout=0.3)
                else:
                    async with associate(LOCALHOST, port, connect_timeout=0.3):
                        pass
            assert scope.cancelled_caught
            await anyio.sleep(0.5)  # past the connect timeout
    finally:
        loop.set_exception_handler(None)
    assert errors == []
