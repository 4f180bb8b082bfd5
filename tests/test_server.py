"""`serve()`: its options, its limits, and how it treats clients that
misbehave (silence, half a header, garbage, hostile lengths), idle
associations and its own shutdown.

Every async test runs under asyncio (the Protocol SCP) and trio (the anyio
SCP); the clients are asyncecho's own and small raw anyio sockets.
"""

from __future__ import annotations

import resource
import socket
from collections.abc import Callable
from contextlib import AsyncExitStack

import anyio
import pytest
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from asyncecho import (
    AssociationAborted,
    AssociationRejected,
    EchoResult,
    NoAcceptedContext,
    associate,
    echo,
    serve,
    uids,
    verify,
)
from asyncecho.protocol.dimse import encode_echo_rq
from asyncecho.protocol.negotiation import build_rq
from asyncecho.protocol.pdu import (
    PDV,
    Abort,
    AssociateAC,
    AssociateRJ,
    PDataTF,
    ReleaseRP,
    ReleaseRQ,
    decode_pdu,
)

pytestmark = pytest.mark.anyio

LOCALHOST = "127.0.0.1"


# --- raw-socket helpers ------------------------------------------------------------------------


def rq_bytes(called_ae: str = "ANY-SCP", calling_ae: str = "RAWSCU") -> bytes:
    return build_rq(calling_ae=calling_ae, called_ae=called_ae).encode()


async def read_pdu(reader: BufferedByteReceiveStream) -> bytes:
    header = await reader.receive_exactly(6)
    return header + await reader.receive_exactly(int.from_bytes(header[2:6], "big"))


async def read_until_closed(stream: SocketStream) -> bytes:
    """Everything the server sends until it closes (FIN or RST)."""
    data = bytearray()
    while True:
        try:
            data += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return bytes(data)


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():  # noqa: ASYNC110 - polls counters no event reports
            await anyio.sleep(0.01)


async def established(port: int) -> tuple[SocketStream, BufferedByteReceiveStream]:
    """A raw client with an association accepted by the server (Sta6)."""
    stream = await anyio.connect_tcp(LOCALHOST, port)
    reader = BufferedByteReceiveStream(stream)
    await stream.send(rq_bytes())
    with anyio.fail_after(5):
        assert isinstance(decode_pdu(await read_pdu(reader)), AssociateAC)
    return stream, reader


# --- acceptance policy ---------------------------------------------------------------------------


async def test_require_called_ae_rejects_another_called_ae() -> None:
    async with serve(ae_title="STRICT", require_called_ae=True) as server:
        with pytest.raises(AssociationRejected) as info:
            await echo(LOCALHOST, server.port, called_ae="SOMEONE-ELSE")
        assert (await echo(LOCALHOST, server.port, called_ae="STRICT")).ok
        assert server.accepted_total == 1
    error = info.value
    assert (error.result, error.source, error.reason) == (1, 1, 7)
    assert error.result_name == "Rejected Permanent"
    assert error.source_name == "Service User"
    assert error.reason_name == "Called AE title not recognised"
    assert error.outcome == "rejected"


async def test_any_called_ae_is_accepted_by_default() -> None:
    async with serve(ae_title="LAX") as server:
        assert (await echo(LOCALHOST, server.port, called_ae="WHATEVER")).ok


async def test_allowed_calling_aes_rejects_others() -> None:
    async with serve(allowed_calling_aes=["FRIEND", "ALLY"]) as server:
        assert (await echo(LOCALHOST, server.port, calling_ae="FRIEND")).ok
        assert (await echo(LOCALHOST, server.port, calling_ae="ALLY")).ok
        with pytest.raises(AssociationRejected) as info:
            await echo(LOCALHOST, server.port, calling_ae="STRANGER")
    error = info.value
    assert (error.result, error.source, error.reason) == (1, 1, 3)
    assert error.reason_name == "Calling AE title not recognised"


async def test_allowed_called_aes() -> None:
    # The list replaces the server's own title as what a called AE must be.
    async with serve(ae_title="MAIN", allowed_called_aes={"ALIAS1", "ALIAS2"}) as server:
        assert (await echo(LOCALHOST, server.port, called_ae="ALIAS1")).ok
        assert (await echo(LOCALHOST, server.port, called_ae="ALIAS2")).ok
        for called in ("OTHER", "MAIN"):
            with pytest.raises(AssociationRejected) as info:
                await echo(LOCALHOST, server.port, called_ae=called)
            assert (info.value.result, info.value.source, info.value.reason) == (1, 1, 7)


async def test_allowed_networks_closes_other_peers_without_an_answer() -> None:
    async with serve(allowed_networks=["10.0.0.0/8"]) as server:
        # What echo() sees: the connection closes under the A-ASSOCIATE-RQ
        # with no PDU at all, which is AssociationAborted (no A-ABORT source
        # or reason, since none was sent).
        with pytest.raises(AssociationAborted) as info:
            await echo(LOCALHOST, server.port, acse_timeout=5)
        assert type(info.value) is AssociationAborted
        assert info.value.source is None and info.value.reason is None
        assert info.value.outcome == "aborted"

        # A raw client gets no byte back, just the close.
        async with await anyio.connect_tcp(LOCALHOST, server.port) as stream:
            await stream.send(rq_bytes())
            with anyio.fail_after(5):
                assert await read_until_closed(stream) == b""
        assert server.accepted_total == 0
        assert server.active == 0


async def test_allowed_networks_lets_matching_peers_in() -> None:
    async with serve(allowed_networks=["10.0.0.0/8", "127.0.0.0/8"]) as server:
        assert (await echo(LOCALHOST, server.port)).ok


async def test_transfer_syntaxes_without_a_common_one_gives_no_accepted_context() -> None:
    async with serve(transfer_syntaxes=[uids.IMPLICIT_VR_LE]) as server:
        with pytest.raises(NoAcceptedContext) as info:
            await echo(LOCALHOST, server.port, transfer_syntaxes=[uids.EXPLICIT_VR_BE])
        assert info.value.results == {1: "Transfer Syntax(es) Not Supported"}
        assert info.value.outcome == "no-context"
        # The client released the useless association rather than abort it.
        await wait_until(lambda: server.active == 0)
        result = await echo(LOCALHOST, server.port)
        assert result.ok and result.transfer_syntax == uids.IMPLICIT_VR_LE


async def test_transfer_syntaxes_restricts_the_choice() -> None:
    async with serve(transfer_syntaxes=[uids.EXPLICIT_VR_BE]) as server:
        result = await echo(LOCALHOST, server.port)
    assert result.ok and result.transfer_syntax == uids.EXPLICIT_VR_BE


# --- max_associations -----------------------------------------------------------------------------


async def test_max_associations_rejects_the_extra_ones_transiently() -> None:
    limit, extra = 3, 2
    async with serve(max_associations=limit) as server:
        held = [AsyncExitStack() for _ in range(limit)]
        try:
            for stack in held:
                await stack.enter_async_context(associate(LOCALHOST, server.port))
            assert server.active == limit

            for _ in range(extra):
                with pytest.raises(AssociationRejected) as info:
                    async with associate(LOCALHOST, server.port):
                        pytest.fail("an association over the limit was accepted")
                error = info.value
                assert (error.result, error.source, error.reason) == (2, 3, 2)
                assert error.result_name == "Rejected Transient"
                assert error.source_name == "Service Provider (Presentation)"
                assert error.reason_name == "Local limit exceeded"
            assert server.active == limit  # refused ones are not counted

            # Free one slot: new associations succeed again.
            await held.pop().aclose()
            await wait_until(lambda: server.active < limit)
            assert (await echo(LOCALHOST, server.port)).ok
            assert (await echo(LOCALHOST, server.port)).ok

            # Fill it again: the limit still holds.
            stack = AsyncExitStack()
            held.append(stack)
            await stack.enter_async_context(associate(LOCALHOST, server.port))
            result = await verify(LOCALHOST, server.port)
            assert isinstance(result.error, AssociationRejected)
        finally:
            for stack in held:
                await stack.aclose()
        await wait_until(lambda: server.active == 0)
        assert (await echo(LOCALHOST, server.port)).ok


async def test_max_associations_concurrent_burst() -> None:
    limit = 4
    async with serve(max_associations=limit) as server, AsyncExitStack() as stack:
        for _ in range(limit):
            await stack.enter_async_context(associate(LOCALHOST, server.port))
        results: list[EchoResult] = []

        async def one() -> None:
            results.append(await verify(LOCALHOST, server.port))

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(one)
        assert len(results) == 10
        assert all(isinstance(r.error, AssociationRejected) for r in results)
        assert all(r.outcome == "rejected" for r in results)


# --- the port -----------------------------------------------------------------------------------------


async def test_server_port_is_ephemeral() -> None:
    async with serve() as first, serve(port=0) as second:
        assert 0 < first.port < 65536 and 0 < second.port < 65536
        assert first.port != second.port
        assert first.host == LOCALHOST
        assert (await echo(LOCALHOST, first.port)).ok
        assert (await echo(LOCALHOST, second.port)).ok


# --- scale ----------------------------------------------------------------------------------------------


async def test_one_thousand_concurrent_associations() -> None:
    count = 1000
    results: list[EchoResult] = []
    async with serve() as server:

        async def one() -> None:
            results.append(await verify(LOCALHOST, server.port))

        async with anyio.create_task_group() as tg:
            for _ in range(count):
                tg.start_soon(one)
        assert server.echoes_total == count
        assert server.accepted_total == count
        await wait_until(lambda: server.active == 0)
    failures = [r.outcome for r in results if not r.ok]
    assert len(results) == count
    assert failures == []


# --- misbehaving clients --------------------------------------------------------------------------------


async def test_keeps_serving_while_raw_clients_stall() -> None:
    async with serve() as server:
        silent = await anyio.connect_tcp(LOCALHOST, server.port)
        half = await anyio.connect_tcp(LOCALHOST, server.port)
        partial = await anyio.connect_tcp(LOCALHOST, server.port)
        async with silent, half, partial:
            await half.send(rq_bytes()[:3])  # half a PDU header
            await partial.send(rq_bytes()[:40])  # a header and part of the body
            await anyio.sleep(0.05)
            for _ in range(5):
                assert (await echo(LOCALHOST, server.port)).ok

            results: list[EchoResult] = []

            async def one() -> None:
                results.append(await verify(LOCALHOST, server.port))

            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(one)
            assert all(results) and len(results) == 20
            assert server.echoes_total == 25


async def test_artim_disconnects_a_silent_client() -> None:
    async with serve(acse_timeout=0.3) as server:
        async with await anyio.connect_tcp(LOCALHOST, server.port) as stream:
            start = anyio.current_time()
            with anyio.fail_after(5):
                data = await read_until_closed(stream)
            elapsed = anyio.current_time() - start
        assert data == b""  # nothing to abort before an A-ASSOCIATE-RQ: just closed
        assert 0.2 <= elapsed < 3.0
        assert (await echo(LOCALHOST, server.port)).ok


async def test_artim_disconnects_a_client_stuck_in_the_header() -> None:
    async with serve(acse_timeout=0.3) as server:
        async with await anyio.connect_tcp(LOCALHOST, server.port) as stream:
            await stream.send(b"\x01\x00\x00")
            start = anyio.current_time()
            with anyio.fail_after(5):
                assert await read_until_closed(stream) == b""
            assert 0.2 <= anyio.current_time() - start < 3.0
        assert (await echo(LOCALHOST, server.port)).ok


async def test_valid_rq_then_garbage_gets_ac_then_abort() -> None:
    async with serve(acse_timeout=0.2) as server:
        stream, reader = await established(server.port)
        async with stream:
            await stream.send(b"\xff\x00\x00\x00\x00\x04GARB")  # an unknown PDU type
            with anyio.fail_after(5):
                abort = decode_pdu(await read_pdu(reader))
                assert isinstance(abort, Abort)
                assert (abort.source, abort.reason) == (2, 1)  # provider: unrecognised PDU
                rest = await read_until_closed(stream)
            assert rest == b""
        await wait_until(lambda: server.active == 0)
        assert (await echo(LOCALHOST, server.port)).ok


async def test_rq_and_garbage_in_one_read() -> None:
    """The RQ and an invalid PDU arrive in the same read: the SCP accepts the
    RQ first (as if the PDUs had come one by one), then the garbage is an
    invalid PDU in Sta6 (AA-8): an A-ABORT from the service provider."""
    async with serve(acse_timeout=0.2) as server:
        async with await anyio.connect_tcp(LOCALHOST, server.port) as stream:
            await stream.send(rq_bytes() + b"\xff\x00\x00\x00\x00\x04GARB")
            with anyio.fail_after(5):
                pdus = split_pdus(await read_until_closed(stream))
        assert len(pdus) == 2
        assert isinstance(pdus[0], AssociateAC)
        abort = pdus[1]
        assert isinstance(abort, Abort) and (abort.source, abort.reason) == (2, 1)
        await wait_until(lambda: server.active == 0)
        assert (await echo(LOCALHOST, server.port)).ok


ECHO_RQ = PDataTF((PDV(1, True, True, encode_echo_rq(7)),)).encode()
RELEASE_RQ = ReleaseRQ().encode()
GARBAGE = b"\xff\x00\x00\x00\x00\x04GARB"


@pytest.mark.parametrize(
    ("before_ac", "after_ac", "expected"),
    [
        # The SCP acts on each PDU before the next of the same read is taken
        # in, exactly as if TCP had delivered them one by one.
        (Abort().encode(), b"", [AssociateAC]),
        (b"", RELEASE_RQ + GARBAGE, [ReleaseRP, Abort]),
        (b"", RELEASE_RQ + Abort().encode(), [ReleaseRP]),
        (b"", ECHO_RQ + GARBAGE, [PDataTF, Abort]),
        (b"", ECHO_RQ + RELEASE_RQ, [PDataTF, ReleaseRP]),
    ],
    ids=["rq+abort", "release+garbage", "release+abort", "echo+garbage", "echo+release"],
)
async def test_several_pdus_in_one_read(
    before_ac: bytes, after_ac: bytes, expected: list[type]
) -> None:
    """Several PDUs in a single read: the server answers each as the state
    table allows at that point and never falls over."""
    async with serve(acse_timeout=0.2) as server:
        async with await anyio.connect_tcp(LOCALHOST, server.port) as stream:
            reader = BufferedByteReceiveStream(stream)
            await stream.send(rq_bytes() + before_ac)
            with anyio.fail_after(5):
                if not before_ac:
                    assert isinstance(decode_pdu(await read_pdu(reader)), AssociateAC)
                    await stream.send(after_ac)
                pdus = [decode_pdu(await read_pdu(reader)) for _ in expected]
                assert await read_until_closed(stream) == b""
        assert [type(p) for p in pdus] == expected
        await wait_until(lambda: server.active == 0)
        assert (await echo(LOCALHOST, server.port)).ok


def split_pdus(data: bytes) -> list[object]:
    pdus: list[object] = []
    while len(data) >= 6:
        end = 6 + int.from_bytes(data[2:6], "big")
        pdus.append(decode_pdu(data[:end]))
        data = data[end:]
    assert data == b""
    return pdus


async def test_hostile_length_in_an_association_aborts_without_allocating() -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    async with serve(acse_timeout=0.2) as server:
        stream, reader = await established(server.port)
        async with stream:
            # A P-DATA-TF header claiming 4 GiB, and not a byte of its body.
            await stream.send(b"\x04\x00\xff\xff\xff\xff")
            with anyio.fail_after(5):
                abort = decode_pdu(await read_pdu(reader))
                assert isinstance(abort, Abort)
                assert abort.source == 2  # service provider
                assert await read_until_closed(stream) == b""
        await wait_until(lambda: server.active == 0)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 256 * 1024


async def test_hostile_length_before_an_association_aborts_and_closes() -> None:
    # (ARTIM bounds the wait for the close after the A-ABORT; 1 s, not less,
    # so that the echo after it is not cut short on a loaded machine)
    async with serve(acse_timeout=1.0) as server:
        async with await anyio.connect_tcp(LOCALHOST, server.port) as stream:
            await stream.send(b"\x01\x00\xff\xff\xff\xff")  # an A-ASSOCIATE-RQ of 4 GiB
            with anyio.fail_after(5):
                pdus = split_pdus(await read_until_closed(stream))
        # Sta2: AA-1, an A-ABORT (the implementation gives it the
        # service-user source here, PS3.8 9.2.2), then the close.
        assert len(pdus) == 1 and isinstance(pdus[0], Abort)
        assert (await echo(LOCALHOST, server.port)).ok


async def test_rejected_raw_client_gets_rj_and_close() -> None:
    async with serve(require_called_ae=True, acse_timeout=0.2) as server:
        async with await anyio.connect_tcp(LOCALHOST, server.port) as stream:
            await stream.send(rq_bytes(called_ae="WRONG"))
            with anyio.fail_after(5):
                pdus = split_pdus(await read_until_closed(stream))
        assert len(pdus) == 1
        rj = pdus[0]
        assert isinstance(rj, AssociateRJ)
        assert (rj.result, rj.source, rj.reason) == (1, 1, 7)


# --- idle network timeout ------------------------------------------------------------------------------------


async def test_network_timeout_aborts_a_silent_association() -> None:
    async with serve(network_timeout=0.3) as server:
        stream, reader = await established(server.port)
        async with stream:
            start = anyio.current_time()
            with anyio.fail_after(5):
                abort = decode_pdu(await read_pdu(reader))
                assert isinstance(abort, Abort)
                assert await read_until_closed(stream) == b""
            elapsed = anyio.current_time() - start
        assert 0.2 <= elapsed < 3.0
        await wait_until(lambda: server.active == 0)


async def test_network_timeout_seen_by_associate() -> None:
    async with serve(network_timeout=0.3) as server:
        async with associate(LOCALHOST, server.port, network_timeout=None) as assoc:
            assert await assoc.echo() == 0
            await anyio.sleep(0.7)
            with pytest.raises(AssociationAborted):
                await assoc.echo()
        await wait_until(lambda: server.active == 0)
        assert (await echo(LOCALHOST, server.port)).ok


async def test_network_timeout_spares_a_busy_association() -> None:
    async with serve(network_timeout=0.3) as server, associate(LOCALHOST, server.port) as assoc:
        for _ in range(6):
            await anyio.sleep(0.1)
            assert await assoc.echo() == 0


# --- shutdown -------------------------------------------------------------------------------------------------


def connect_refused(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((LOCALHOST, port)) != 0


async def test_shutdown_aborts_associations_in_flight_and_stops_listening() -> None:
    async with AsyncExitStack() as stack:
        async with serve() as server:
            port = server.port
            assocs = [await stack.enter_async_context(associate(LOCALHOST, port)) for _ in range(3)]
            for assoc in assocs:
                assert await assoc.echo() == 0
            assert server.active == 3
        for assoc in assocs:
            with anyio.fail_after(5), pytest.raises(AssociationAborted):
                await assoc.echo()
    assert connect_refused(port)
    result = await verify(LOCALHOST, port)
    assert result.outcome == "refused"


async def test_shutdown_with_a_raw_client_that_never_spoke() -> None:
    """A connection still in Sta2 (no A-ASSOCIATE-RQ yet) at shutdown: there
    is no association to abort, the server just closes it."""
    async with serve() as server:
        port = server.port
        stream = await anyio.connect_tcp(LOCALHOST, port)
        await anyio.sleep(0.05)  # let the server take it in
    async with stream:
        with anyio.fail_after(5):
            assert await read_until_closed(stream) == b""
    assert connect_refused(port)


async def test_shutdown_with_a_raw_association_sends_an_abort() -> None:
    async with serve() as server:
        port = server.port
        stream, reader = await established(port)
    async with stream:
        with anyio.fail_after(5):
            abort = decode_pdu(await read_pdu(reader))
            assert isinstance(abort, Abort)
            assert await read_until_closed(stream) == b""
    assert connect_refused(port)
