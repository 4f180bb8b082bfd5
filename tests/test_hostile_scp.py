"""`serve()` against hostile clients (issue 8), under asyncio (the Protocol
SCP) and trio (the anyio SCP), and a subset against `asyncecho echoscp` as
a subprocess.

Every case of `hostile.SCP_CASES` must end with exactly the PDUs the PS3.8
state machine sends and the connection closed by the server within its
timeout plus a margin, while a well-behaved client is served meanwhile;
then no association is left counted. Beyond the table: floods of
connections past `max_associations` (A-ASSOCIATE-RJ transient, never a
hang) and a client that writes C-ECHO-RQs without ever reading the
responses (the server must not buffer them without bound, and must give up
on it).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

import peers
from asyncecho import AssociationRejected, Server, echo, serve, verify
from hostile import (
    ECHO_RQ,
    MARGIN,
    RQ,
    SCP_CASES,
    SCP_SETTINGS,
    PeerConnection,
    connect,
    open_files,
    raw_client,
    run_scp_case,
    wait_until,
)

pytestmark = pytest.mark.anyio

LOCALHOST = "127.0.0.1"
BUSY = "RJ(2,3,2)"  # PS3.8 Table 9-21: transient, presentation provider, local limit exceeded


@pytest.mark.parametrize("name", list(SCP_CASES))
async def test_serve_against_hostile_client(name: str) -> None:
    async with serve(**SCP_SETTINGS) as server:
        await run_scp_case(SCP_CASES[name], server.port, SCP_SETTINGS)
        await wait_until(lambda: server.active == 0)
        assert (await echo(LOCALHOST, server.port)).ok


# --- floods past max_associations ---------------------------------------------------------------


async def test_flood_of_requests_past_max_associations() -> None:
    limit, flood = 4, 40
    async with serve(max_associations=limit, **SCP_SETTINGS) as server:
        answers: list[str] = []
        gone: list[PeerConnection] = []

        async def one() -> None:
            async with raw_client(server.port) as conn:
                await conn.send(RQ)
                with anyio.fail_after(5):
                    await conn.read_pdu()
                    answers.append(conn.pdus()[0])
                    # the client holds on; the server closes (ARTIM after the
                    # RJ, the idle timeout after the AC)
                    await conn.ended.wait()
                gone.append(conn)

        async with anyio.create_task_group() as tg:
            for _ in range(flood):
                tg.start_soon(one)
            await wait_until(lambda: len(answers) == flood)
            result = await verify(LOCALHOST, server.port)  # a real SCU meanwhile
        assert sorted(answers) == ["AC"] * limit + [BUSY] * (flood - limit)
        assert isinstance(result.error, AssociationRejected)
        assert (result.error.result, result.error.source, result.error.reason) == (2, 3, 2)
        assert all(conn.end in ("eof", "reset") for conn in gone)
        await wait_until(lambda: server.active == 0)
        assert (await echo(LOCALHOST, server.port)).ok


async def test_flood_of_silent_connections_is_rejected_then_freed_by_artim() -> None:
    """Silent connections take slots (an association may yet come on them)
    until ARTIM closes them; meanwhile a real SCU is rejected transiently,
    at once, and served again after."""
    limit = 3
    async with (
        serve(max_associations=limit, **SCP_SETTINGS) as server,
        contextlib.AsyncExitStack() as stack,
    ):
        silent = [await stack.enter_async_context(raw_client(server.port)) for _ in range(limit)]
        await wait_until(lambda: server.active == limit)
        start = anyio.current_time()
        result = await verify(LOCALHOST, server.port, acse_timeout=5)
        assert isinstance(result.error, AssociationRejected)
        assert anyio.current_time() - start < 1.0
        with anyio.fail_after(SCP_SETTINGS["acse_timeout"] + MARGIN):
            for conn in silent:
                await conn.ended.wait()
        await wait_until(lambda: server.active == 0)
        assert (await echo(LOCALHOST, server.port)).ok


# --- a client that never reads -------------------------------------------------------------------

#: 1 MiB of valid P-DATA-TF PDUs, each a C-ECHO-RQ
ECHO_FLOOD = ECHO_RQ * ((1 << 20) // len(ECHO_RQ))
#: the server may still be answering what the kernel buffered when the
#: flood stalled (its idle timer restarts with every read): a generous bound
BACKLOG = 5.0


def server_write_buffer(server: Server) -> int:
    """What the asyncio SCP holds in user space for its clients to read.
    (The trio SCP has no such buffer: its send waits for the socket.)"""
    total = 0
    for protocol in list(server._closers):
        transport: Any = getattr(protocol, "_transport", None)
        if transport is not None and not transport.is_closing():
            total += transport.get_write_buffer_size()
    return total


async def test_client_that_never_reads_is_bounded_and_dropped() -> None:
    """A client that writes C-ECHO-RQs and never reads the responses (with
    small socket buffers, so the kernel absorbs little): the server stops
    reading once its responses back up, instead of buffering them without
    bound, serves others meanwhile, and drops the stuck one after its idle
    timeout (then ARTIM: the A-ABORT cannot be flushed)."""
    async with serve(**SCP_SETTINGS) as server:
        before = open_files()  # (what they point to: numbers are reused)
        async with raw_client(server.port, read=False, buffers=16384) as conn:
            await conn.send(RQ)
            peak = 0

            async def watch() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, server_write_buffer(server))
                    await anyio.sleep(0.005)

            async with anyio.create_task_group() as tg:
                tg.start_soon(watch)
                await conn.flood(ECHO_FLOOD, stall=0.2, limit=4.0)
                tg.cancel_scope.cancel()
            assert peak < 1 << 20, f"the server buffered {peak} bytes for a client not reading"
            assert server.echoes_total > 0
            assert (await echo(LOCALHOST, server.port)).ok
            bound = SCP_SETTINGS["network_timeout"] + SCP_SETTINGS["acse_timeout"] + BACKLOG
            # the server's end of it closed: only ours is left open
            ours = {os.readlink(f"/proc/self/fd/{conn.sock.fileno()}")}
            await wait_until(lambda: not server.active and open_files() - before == ours, bound)
        assert (await echo(LOCALHOST, server.port)).ok


async def test_shutdown_with_a_client_that_never_reads_does_not_hang() -> None:
    """Leaving serve() while a client's responses are stuck unread: the
    server's A-ABORT cannot be delivered, and shutdown does not wait for it
    (trio's SCP gives it a second)."""
    conn: PeerConnection | None = None
    try:
        async with anyio.create_task_group() as tg:

            async def watchdog() -> None:
                # a hung shutdown is unblocked (by a reset), so the test fails, not hangs
                await anyio.sleep(10)
                if conn is not None:
                    await conn.close(reset=True)

            tg.start_soon(watchdog)
            before = open_files()  # (what they point to: numbers are reused)
            async with serve(acse_timeout=10, network_timeout=10) as server:
                conn = await connect(server.port, buffers=16384)
                await conn.send(RQ)
                await conn.flood(ECHO_FLOOD, stall=0.2, limit=4.0)
                start = anyio.current_time()
            elapsed = anyio.current_time() - start
            # nothing of the server is left open: only our end of the connection
            ours = {os.readlink(f"/proc/self/fd/{conn.sock.fileno()}")}
            await wait_until(lambda: open_files() - before == ours, MARGIN)
            tg.cancel_scope.cancel()
    finally:
        if conn is not None:
            conn.close_now()
    assert elapsed < 1.0 + MARGIN


# --- asyncecho echoscp as a subprocess ----------------------------------------------------------


Echoscp = peers.CliScp


@pytest.fixture(scope="module")
def echoscp() -> Iterator[Echoscp]:
    with peers.asyncecho_echoscp(
        "-ta",
        str(SCP_SETTINGS["acse_timeout"]),
        "-tn",
        str(SCP_SETTINGS["network_timeout"]),
        "--max-associations",
        "4",
        clean_exit=True,
    ) as scp:
        yield scp


CLI_CASES = [
    "silent",
    "half-header",
    "slowloris-rq",
    "huge-length-rq",
    "half-header-sta6",
    "huge-length-pdata",
    "unknown-pdu-type-sta6",
    "reset-mid-rq",
]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the clients' loop; echoscp is its own
@pytest.mark.parametrize("name", CLI_CASES)
async def test_echoscp_against_hostile_client(echoscp: Echoscp, name: str) -> None:
    await run_scp_case(SCP_CASES[name], echoscp.port, SCP_SETTINGS)
    assert echoscp.process.poll() is None


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_echoscp_flood_past_max_associations(echoscp: Echoscp) -> None:
    answers: list[str] = []

    async def one() -> None:
        async with raw_client(echoscp.port) as conn:
            await conn.send(RQ)
            with anyio.fail_after(5):
                await conn.read_pdu()
            answers.append(conn.pdus()[0])

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(one)
    assert answers.count("AC") <= 4 and answers.count(BUSY) >= 16
    await anyio.sleep(SCP_SETTINGS["network_timeout"] + 0.2)  # the held ones time out
    assert (await echo(LOCALHOST, echoscp.port)).ok


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_echoscp_client_that_never_reads(echoscp: Echoscp) -> None:
    pid = echoscp.process.pid
    # Compared by what they point to: a connection of an earlier test may
    # still be closing now (its number then reused), which is not a leak.
    before_files, before_rss = open_files(pid), echoscp.rss_kib()
    async with raw_client(echoscp.port, read=False, buffers=16384) as conn:
        await conn.send(RQ)
        await conn.flood(ECHO_FLOOD, stall=0.2, limit=4.0)
        grown = echoscp.rss_kib() - before_rss
        assert grown < 8 * 1024, f"echoscp grew by {grown} KiB for a client not reading"
        assert (await echo(LOCALHOST, echoscp.port)).ok
        bound = SCP_SETTINGS["network_timeout"] + SCP_SETTINGS["acse_timeout"] + BACKLOG
        await wait_until(lambda: open_files(pid) <= before_files, bound)


@pytest.mark.anyio
async def test_trickled_pdata_is_bounded_by_the_dimse_timeout() -> None:
    """Once associated, a client trickling a P-DATA one byte at a time resets
    the idle network timeout with every byte, but the PDU as a whole must
    arrive within the DIMSE timeout: then the SCP aborts (A-ABORT) and
    closes, and keeps serving others."""
    from asyncecho.protocol.dimse import encode_echo_rq
    from asyncecho.protocol.negotiation import build_rq
    from asyncecho.protocol.pdu import PDV, Abort, AssociateAC, PDataTF, decode_pdu

    pdata = PDataTF((PDV(1, True, True, encode_echo_rq(1)),)).encode()
    async with serve("127.0.0.1", 0, network_timeout=0.4, dimse_timeout=0.6) as server:
        start = anyio.current_time()
        async with await anyio.connect_tcp("127.0.0.1", server.port) as stream:
            await stream.send(build_rq(calling_ae="TRICKLE", called_ae="ANY-SCP").encode())
            received = b""
            while len(received) < 6 or len(received) < 6 + int.from_bytes(received[2:6], "big"):
                received += await stream.receive()
            assert isinstance(decode_pdu(received), AssociateAC)
            rest = b""
            with anyio.fail_after(5):
                for byte in pdata:
                    try:
                        await stream.send(bytes([byte]))
                    except (anyio.BrokenResourceError, OSError):
                        break
                    with anyio.move_on_after(0.1):
                        rest += await stream.receive()
                    if rest:
                        break
                while True:
                    try:
                        chunk = await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                        break
                    rest += chunk
        elapsed = anyio.current_time() - start
        abort = decode_pdu(rest[:10])
        assert isinstance(abort, Abort)
        assert elapsed < 3.0
        assert (await echo("127.0.0.1", server.port)).ok
