"""`sweep()`: one record per target, every outcome class from a real peer on
loopback, bounded concurrency and rate, lazy input, `stop()`, and nothing
left behind when the consumer leaves early.

Every async test runs under asyncio and trio (see conftest.py).
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from asyncecho import EchoOptions, SweepRecord, Target, serve, sweep
from asyncecho.protocol import uids
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
from asyncecho.sweeps.records import FIELDS
from peers import closed_port, pynetdicom_scp, silent_listener, storescp

pytestmark = pytest.mark.anyio

LOCALHOST = "127.0.0.1"
UNREACHABLE = "127.255.255.255"  # the 127/8 broadcast address: ENETUNREACH, never sent


async def collect(
    targets: Iterable[Target] | AsyncIterator[Target], **kwargs: Any
) -> list[SweepRecord]:
    async with sweep(targets, **kwargs) as records:
        return [record async for record in records]


def by_called_ae(records: list[SweepRecord]) -> dict[str | None, SweepRecord]:
    found = {record.target.called_ae: record for record in records}
    assert len(found) == len(records), "a target has more than one record"
    return found


# --- small raw peers -------------------------------------------------------------------


async def _read_pdu(reader: BufferedByteReceiveStream) -> bytes:
    header = await reader.receive_exactly(6)
    return header + await reader.receive_exactly(int.from_bytes(header[2:6], "big"))


Handler = Callable[[SocketStream], Awaitable[None]]


@asynccontextmanager
async def raw_peer(handler: Handler) -> AsyncIterator[int]:
    """Serve `handler` on an ephemeral 127.0.0.1 port while the block runs."""

    async def guarded(stream: SocketStream) -> None:
        try:
            await handler(stream)
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, OSError):
            pass
        finally:
            await anyio.aclose_forcefully(stream)

    listener = await anyio.create_tcp_listener(local_host=LOCALHOST)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, guarded)
        yield int(listener.extra(SocketAttribute.local_port))
        tg.cancel_scope.cancel()


def scp(echo_status: int | None) -> Handler:
    """Accepts any association; answers each C-ECHO with `echo_status`, or
    never (None)."""

    async def handle(stream: SocketStream) -> None:
        reader = BufferedByteReceiveStream(stream)
        while True:
            pdu = decode_pdu(await _read_pdu(reader))
            if isinstance(pdu, AssociateRQ):
                await stream.send(build_ac(pdu, AcceptorPolicy()).encode())
            elif isinstance(pdu, PDataTF):
                status = echo_status
                if status is None:
                    await anyio.sleep_forever()
                    return
                pdv = pdu.pdvs[0]
                message_id = decode_command(pdv.data).message_id
                assert message_id is not None
                rsp = encode_echo_rsp(message_id, status)
                await stream.send(PDataTF((PDV(pdv.context_id, True, True, rsp),)).encode())
            elif isinstance(pdu, ReleaseRQ):
                await stream.send(ReleaseRP().encode())

    return handle


async def aborting(stream: SocketStream) -> None:
    await stream.receive()
    await stream.send(Abort(2, 0).encode())  # PS3.8 9.3.8: service-provider, reason not given
    await anyio.sleep_forever()


async def garbage(stream: SocketStream) -> None:
    await stream.receive()
    await stream.send(b"\x55\x00\x00\x00\x00\x04\x00\x00\x00\x00")  # no such PDU type
    await anyio.sleep_forever()


@contextmanager
def full_backlog() -> Iterator[int]:
    """A listener whose accept queue is full: new SYNs are dropped, so a
    connect times out."""
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        sock.listen(0)
        port = int(sock.getsockname()[1])
        with socket.create_connection((LOCALHOST, port)):  # fills the queue
            yield port


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# --- every outcome class --------------------------------------------------------------


async def test_outcome_classes_of_one_sweep() -> None:
    refused = closed_port()
    async with (
        serve() as live,
        serve(require_called_ae=True, ae_title="STRICT") as strict,
        serve(transfer_syntaxes=(uids.EXPLICIT_VR_BE,)) as big_endian_only,
        raw_peer(scp(0x0110)) as failing,
        raw_peer(aborting) as abort_peer,
        raw_peer(garbage) as garbage_peer,
    ):
        targets = [
            Target(LOCALHOST, live.port, "LIVE"),
            Target(LOCALHOST, strict.port, "NOT-STRICT"),
            Target(LOCALHOST, big_endian_only.port, "BE-ONLY"),
            Target(LOCALHOST, failing, "STATUS"),
            Target(LOCALHOST, abort_peer, "ABORTS"),
            Target(LOCALHOST, garbage_peer, "GARBAGE"),
            Target(LOCALHOST, refused, "CLOSED"),
            Target(UNREACHABLE, 104, "BROADCAST"),
            Target("nonexistent.invalid", 104, "NO-DNS"),
        ]
        records = await collect(
            targets, deadline=5.0, transfer_syntaxes=(uids.IMPLICIT_VR_LE,), calling_ae="SWEEPER"
        )
    found = by_called_ae(records)
    assert {name: record.outcome for name, record in found.items()} == {
        "LIVE": "success",
        "NOT-STRICT": "rejected",
        "BE-ONLY": "no-context",
        "STATUS": "status-0x0110",
        "ABORTS": "aborted",
        "GARBAGE": "protocol-error",
        "CLOSED": "refused",
        "BROADCAST": "unreachable",
        "NO-DNS": "dns",
    }
    assert [r.ok for r in records].count(True) == 1
    assert "Called AE title not recognised" in found["NOT-STRICT"].detail
    assert "refused" in found["CLOSED"].detail
    assert "Network is unreachable" in found["BROADCAST"].detail
    assert "nonexistent.invalid" in found["NO-DNS"].detail
    assert found["STATUS"].status == 0x0110
    assert found["STATUS"].detail  # the status name
    assert all(record.target.calling_ae == "SWEEPER" for record in records)


@pytest.mark.parametrize(
    ("outcome", "options"),
    [
        ("timeout-connect", {"connect_timeout": 0.3}),
        ("timeout-acse", {"acse_timeout": 0.3}),
        ("timeout-network", {"network_timeout": 0.3}),
        ("timeout-deadline", {"deadline": 0.3}),
        ("timeout-dimse", {"dimse_timeout": 0.3}),
    ],
)
async def test_timeout_classes(outcome: str, options: dict[str, float]) -> None:
    settings: dict[str, Any] = {"deadline": 5.0, **options}
    start = time.monotonic()
    if outcome == "timeout-connect":
        with full_backlog() as port:
            records = await collect([Target(LOCALHOST, port)], **settings)
    elif outcome == "timeout-dimse":
        async with raw_peer(scp(None)) as port:
            records = await collect([Target(LOCALHOST, port)], **settings)
    else:
        with silent_listener() as port:
            records = await collect([Target(LOCALHOST, port)], **settings)
    elapsed = time.monotonic() - start
    (record,) = records
    assert record.outcome == outcome
    assert not record.ok
    assert "timed out after 0.3 s" in record.detail
    assert elapsed < 2.0  # a silent peer costs its timeout, never more


async def test_tls_failure_class() -> None:
    async with serve() as plain:  # answers a TLS ClientHello with an A-ABORT
        records = await collect(
            [Target(LOCALHOST, plain.port)],
            ssl=ssl.create_default_context(),
            server_hostname="localhost",
        )
    assert [r.outcome for r in records] == ["tls"]
    assert "TLS" in records[0].detail


@pytest.mark.peer
async def test_third_party_peers() -> None:
    with (
        storescp() as dcmtk,
        pynetdicom_scp() as pynetdicom,
        pynetdicom_scp("no-verification") as no_verification,
        pynetdicom_scp("require-called-aet", ae_title="PYNETDICOM") as strict,
    ):
        records = await collect(
            [
                Target(LOCALHOST, dcmtk.port, "DCMTK"),
                Target(LOCALHOST, pynetdicom.port, "PYNETDICOM"),
                Target(LOCALHOST, no_verification.port, "NO-VERIFICATION"),
                Target(LOCALHOST, strict.port, "WRONG-AE"),
            ],
            deadline=10.0,
        )
    found = by_called_ae(records)
    assert {name: r.outcome for name, r in found.items()} == {
        "DCMTK": "success",
        "PYNETDICOM": "success",
        "NO-VERIFICATION": "no-context",
        "WRONG-AE": "rejected",
    }
    assert found["DCMTK"].peer_implementation_version_name == "OFFIS_DCMTK_367"
    assert (found["PYNETDICOM"].peer_implementation_version_name or "").startswith("PYNETDICOM")


# --- the record -----------------------------------------------------------------------


async def test_success_record_fields() -> None:
    before = datetime.now(timezone.utc)
    async with serve(ae_title="RECORDER") as server:
        (record,) = await collect([Target(LOCALHOST, server.port, "RECORDER", "ME")])
    assert record.ok and record.final
    assert record.outcome == "success"
    assert record.detail == ""
    assert record.status == 0
    assert record.target == Target(LOCALHOST, server.port, "RECORDER", "ME")
    assert record.peer_ae == "RECORDER"
    assert record.peer_implementation_class_uid
    assert record.transfer_syntax in uids.DEFAULT_TRANSFER_SYNTAXES
    assert before - timedelta(seconds=1) <= record.started <= datetime.now(timezone.utc)
    assert record.started.tzinfo is not None
    timings = record.timings
    phases = (timings.connect, timings.associate, timings.echo, timings.release)
    assert all(t is not None and t >= 0 for t in phases)
    assert timings.total is not None and timings.total >= sum(t or 0 for t in phases) * 0.99
    row = record.as_dict()
    assert tuple(row) == FIELDS
    assert json.loads(json.dumps(row))["started"].endswith("Z")
    assert row["total_ms"] == round(timings.total * 1000, 3)


async def test_defaults_fill_the_record_target() -> None:
    async with serve() as server:
        records = await collect(
            [Target(LOCALHOST, server.port), Target(LOCALHOST, server.port, "OWN", "MINE")],
            options=EchoOptions(called_ae="DEFAULT", calling_ae="DEFAULT-ME"),
        )
    assert sorted((r.target.called_ae, r.target.calling_ae) for r in records) == [
        ("DEFAULT", "DEFAULT-ME"),
        ("OWN", "MINE"),
    ]
    assert sorted(r.peer_ae or "" for r in records) == ["DEFAULT", "OWN"]


# --- scale ----------------------------------------------------------------------------


async def test_a_thousand_mixed_targets() -> None:
    """One bad target never disturbs the others: exactly one record each,
    with the right class."""
    refused = closed_port()
    kinds: dict[str, str] = {}
    targets: list[Target] = []
    with silent_listener() as silent:
        async with serve() as live:
            for i in range(1000):
                if i % 100 == 7:
                    port, kind = silent, "timeout-deadline"
                elif i % 10 == 3:
                    port, kind = refused, "refused"
                else:
                    port, kind = live.port, "success"
                name = f"T{i:04d}"
                kinds[name] = kind
                targets.append(Target(LOCALHOST, port, name))
            start = time.monotonic()
            records = await collect(targets, concurrency=256, deadline=1.5)
            elapsed = time.monotonic() - start
            assert live.echoes_total == 890
    assert len(records) == 1000
    found = by_called_ae(records)
    assert {name: r.outcome for name, r in found.items()} == kinds
    assert Counter(kinds.values()) == {"success": 890, "refused": 100, "timeout-deadline": 10}
    assert elapsed < 20


async def test_concurrency_is_a_bound() -> None:
    now_open = most_open = 0

    async def hold(stream: SocketStream) -> None:
        nonlocal now_open, most_open
        now_open += 1
        most_open = max(most_open, now_open)
        try:
            while True:  # until the client hangs up
                await stream.receive()
        finally:
            now_open -= 1

    async with raw_peer(hold) as port:
        targets = [Target(LOCALHOST, port, f"T{i}") for i in range(12)]
        start = time.monotonic()
        records = await collect(targets, concurrency=4, deadline=0.3)
        elapsed = time.monotonic() - start
    assert [r.outcome for r in records] == ["timeout-deadline"] * 12
    assert most_open == 4
    assert elapsed >= 3 * 0.3  # three rounds of four


async def test_rate_paces_the_starts() -> None:
    async with serve() as server:
        start = time.monotonic()
        records = await collect([Target(LOCALHOST, server.port)] * 6, rate=20.0)
        elapsed = time.monotonic() - start
    assert [r.outcome for r in records] == ["success"] * 6
    assert elapsed >= 5 / 20.0 * 0.9
    starts = sorted(r.started for r in records)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.8 / 20.0


# --- lazy input -----------------------------------------------------------------------


async def test_async_iterable_targets() -> None:
    async with serve() as server:

        async def produce() -> AsyncIterator[Target]:
            for i in range(30):
                await anyio.lowlevel.checkpoint()
                yield Target(LOCALHOST, server.port, f"A{i}")

        records = await collect(produce(), concurrency=8)
    assert sorted(name or "" for name in by_called_ae(records)) == sorted(
        f"A{i}" for i in range(30)
    )
    assert {r.outcome for r in records} == {"success"}


async def test_targets_are_pulled_only_as_slots_free() -> None:
    """An endless iterable: the producer runs at most one target ahead of
    the free slots."""
    pulled = 0

    def endless(port: int) -> Iterator[Target]:
        nonlocal pulled
        for i in itertools.count():
            pulled += 1
            yield Target(LOCALHOST, port, f"E{i}")

    async with serve() as server, sweep(endless(server.port), concurrency=5) as records:
        seen = 0
        async for record in records:
            assert record.ok
            seen += 1
            assert pulled <= seen + 5 + 1
            if seen == 40:
                break
    assert pulled <= 40 + 5 + 1


async def test_an_error_of_the_iterable_is_raised_after_the_started_records() -> None:
    async with serve() as server:

        def failing() -> Iterator[Target]:
            yield Target(LOCALHOST, server.port)
            yield Target(LOCALHOST, server.port)
            raise LookupError("the inventory went away")

        got: list[SweepRecord] = []
        with pytest.raises(LookupError, match="inventory"):
            async with sweep(failing()) as records:
                async for record in records:
                    got.append(record)
    assert len(got) == 2


async def test_a_non_target_item_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="Target objects, not tuple"):
        await collect([("127.0.0.1", 104)])  # type: ignore[list-item]


# --- stopping and leaving -------------------------------------------------------------


async def test_stop_cancels_in_flight_targets_each_with_a_record() -> None:
    with silent_listener() as silent:
        async with serve() as live:
            targets = [Target(LOCALHOST, live.port, f"LIVE{i}") for i in range(3)]
            targets += [Target(LOCALHOST, silent, f"SILENT{i}") for i in range(10)]
            got: list[SweepRecord] = []
            start = time.monotonic()
            async with sweep(targets, concurrency=20, deadline=60.0) as records:
                async for record in records:
                    got.append(record)
                    if len(got) == 3:
                        assert records.in_flight == 10
                        records.stop()
                        records.stop()  # again: nothing more happens
            elapsed = time.monotonic() - start
    found = by_called_ae(got)
    assert len(found) == 13
    assert {found[f"LIVE{i}"].outcome for i in range(3)} == {"success"}
    assert {found[f"SILENT{i}"].outcome for i in range(10)} == {"cancelled"}
    assert not any(found[f"SILENT{i}"].final for i in range(10))
    assert elapsed < 5


async def test_stop_leaves_targets_not_yet_started_without_a_record() -> None:
    four_open = anyio.Event()
    now_open = 0

    async def hold(stream: SocketStream) -> None:
        nonlocal now_open
        now_open += 1
        if now_open == 4:
            four_open.set()
        while True:
            await stream.receive()

    async with raw_peer(hold) as port:
        targets = [Target(LOCALHOST, port, f"S{i}") for i in range(10)]
        async with sweep(targets, concurrency=4, deadline=60.0) as records:
            with anyio.fail_after(5):
                await four_open.wait()
            records.stop()
            got = [record async for record in records]
    assert [r.outcome for r in got] == ["cancelled"] * 4
    assert records.started == 4


async def test_stop_before_iterating() -> None:
    async with serve() as server:
        job = sweep([Target(LOCALHOST, server.port)] * 3)
        job.stop()
        async with job as records:
            assert [r async for r in records] == []


async def test_leaving_early_cancels_everything_and_leaks_no_fds() -> None:
    with silent_listener() as silent:
        async with serve() as live:
            await collect([Target(LOCALHOST, live.port)])  # warm up the backend's fds
            before = open_fds()
            targets = [Target(LOCALHOST, live.port, f"L{i}") for i in range(5)]
            targets += [Target(LOCALHOST, silent, f"S{i}") for i in range(50)]
            start = time.monotonic()
            async with sweep(targets, concurrency=100, deadline=60.0) as records:
                async for record in records:
                    assert record.ok
                    break
            elapsed = time.monotonic() - start
            await anyio.sleep(0.1)  # let the server see its connections close
            after = open_fds()
    assert after <= before
    assert elapsed < 5


async def test_cancelling_the_enclosing_scope_ends_the_sweep() -> None:
    with silent_listener() as silent:
        before = open_fds()
        with anyio.move_on_after(0.5) as scope:
            await collect([Target(LOCALHOST, silent, f"S{i}") for i in range(20)], deadline=60.0)
        assert scope.cancelled_caught
        assert open_fds() <= before


async def test_iterating_outside_the_block_is_an_error() -> None:
    job = sweep([])
    with pytest.raises(RuntimeError, match="async with sweep"):
        job.__aiter__()
    async with job as records:
        assert [r async for r in records] == []
    with pytest.raises(RuntimeError, match="runs once"):
        async with job:
            pass


async def test_an_exception_of_the_block_comes_out_unwrapped() -> None:
    async with serve() as server:
        with pytest.raises(KeyError):
            async with sweep([Target(LOCALHOST, server.port)] * 5) as records:
                async for _record in records:
                    raise KeyError("the consumer's own bug")


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        sweep([], concurrency=0)
    with pytest.raises(ValueError, match="rate"):
        sweep([], rate=0)
    with pytest.raises(ValueError, match="deadline"):
        sweep([], deadline=-1)
    with pytest.raises(TypeError):
        sweep([], no_such_option=1)  # type: ignore[call-arg]
