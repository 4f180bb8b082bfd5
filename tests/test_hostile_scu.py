"""The SCU against hostile SCPs (issue 8): every case of `hostile.SCU_CASES`
through `echo()`, `verify()` and `associate()` under asyncio and trio, and a
subset through `asyncecho echoscu` as a subprocess.

Each case must end in its exact exception class (or succeed, where PS3.8
says the peer did nothing wrong), within its configured timeout plus a
margin, with the socket closed by the SCU, and with exactly the PDUs the
state machine sends on the wire, as the hostile peer recorded them:

- a timeout: the SCU's A-ABORT (service user, PS3.8 7.3), then its close;
- a protocol violation, in a PDU (PS3.8 9.3, a PDU out of turn in Table
  9-10) or in the C-ECHO-RSP command set a P-DATA carries (PS3.7): the upper
  layer's A-ABORT (AA-8: service provider, with the reason of Table 9-26);
- an A-ABORT or a close from the peer: no A-ABORT back (AA-3, AA-4).

The idle `network_timeout` restarts with every byte, so a peer trickling an
A-ASSOCIATE-AC one byte per 0.2 s never trips it; the ACSE timeout bounds
the whole wait for the AC (case "slowloris-ac").
"""

from __future__ import annotations

import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from asyncecho import (
    AcseTimeout,
    AssociationAborted,
    NetworkTimeout,
    NoAcceptedContext,
    ProtocolError,
    associate,
    echo,
    verify,
)
from asyncecho.protocol.pdu import Abort
from hostile import (
    MARGIN,
    SCU_CASES,
    PeerConnection,
    ac_for,
    after_rq,
    check_closed_by_scu,
    hostile_scp,
    scu_call,
)

CALLS = ["echo", "verify", "associate"]


@pytest.mark.anyio
@pytest.mark.parametrize("kind", CALLS)
@pytest.mark.parametrize("name", list(SCU_CASES))
async def test_scu_against_hostile_scp(name: str, kind: str) -> None:
    case = SCU_CASES[name]
    async with hostile_scp(case.script) as peer:
        start = anyio.current_time()
        with anyio.fail_after(case.bound() + MARGIN):
            error = await scu_call(kind, peer.port, case.options())
        elapsed = anyio.current_time() - start
        if case.outcome is None:
            assert error is None
        else:
            assert type(error) is case.outcome, repr(error)
        if case.ends_by is not None:
            assert elapsed >= case.bound() * 0.9
        await check_closed_by_scu(case, await peer.connection())


# --- details the table does not show ----------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("name", "source", "reason"),
    [("abort-after-rq", 0, 0), ("abort-waiting-for-rsp", 2, 0), ("abort-waiting-for-rp", 0, 0)],
)
async def test_peer_abort_carries_its_source_and_reason(
    name: str, source: int, reason: int
) -> None:
    case = SCU_CASES[name]
    async with hostile_scp(case.script) as peer:
        with pytest.raises(AssociationAborted) as info:
            await echo("127.0.0.1", peer.port, **case.options())
    assert (info.value.source, info.value.reason) == (source, reason)


@pytest.mark.anyio
async def test_peer_abort_between_ac_and_echo() -> None:
    """The A-ABORT arrives while the association is idle (Sta6, nothing
    outstanding): the next echo() reports it."""

    async def script(conn: PeerConnection) -> None:
        rq = await conn.expect_rq()
        await conn.send(ac_for(rq))
        await anyio.sleep(0.05)
        await conn.send(Abort(0, 0).encode())

    async with hostile_scp(script) as peer:
        with anyio.fail_after(MARGIN), pytest.raises(AssociationAborted):
            async with associate("127.0.0.1", peer.port, **SCU_CASES["silent"].options()) as a:
                await anyio.sleep(0.2)
                await a.echo()
        conn = await peer.connection()
        with anyio.fail_after(MARGIN):
            await conn.ended.wait()
        assert conn.pdus() in (["RQ"], ["RQ", "P-DATA"])


@pytest.mark.anyio
async def test_huge_length_is_refused_before_allocation() -> None:
    """A PDU length of 0xFFFFFFFF is refused from its 6-byte header: at
    once, with no memory to speak of."""
    case = SCU_CASES["huge-length"]
    async with hostile_scp(case.script) as peer:
        tracemalloc.start()
        try:
            start = anyio.current_time()
            with pytest.raises(ProtocolError) as info:
                await echo("127.0.0.1", peer.port, **case.options())
            elapsed = anyio.current_time() - start
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert "4294967295" in str(info.value)
    assert elapsed < 1.0
    assert peak < 2 << 20


@pytest.mark.anyio
async def test_unexpected_pdu_is_a_protocol_error_naming_it() -> None:
    """A valid PDU out of turn (a second A-ASSOCIATE-AC) is the peer's
    protocol error, not an abort by the peer: we sent the A-ABORT."""
    async with hostile_scp(SCU_CASES["two-acs"].script) as peer:
        with pytest.raises(ProtocolError) as info:
            await echo("127.0.0.1", peer.port, **SCU_CASES["two-acs"].options())
    assert "unexpected" in str(info.value).lower()


@pytest.mark.anyio
async def test_ae_titles_changed_in_the_ac_are_reported_not_tested() -> None:
    async with hostile_scp(SCU_CASES["ac-ae-titles-changed"].script) as peer:
        result = await echo("127.0.0.1", peer.port, **SCU_CASES["ac-ae-titles-changed"].options())
    assert result.ok and result.peer_ae == "SOMEONE"


@pytest.mark.anyio
async def test_no_presentation_contexts_releases_politely() -> None:
    case = SCU_CASES["ac-no-presentation-contexts"]
    async with hostile_scp(case.script) as peer:
        with pytest.raises(NoAcceptedContext) as info:
            await echo("127.0.0.1", peer.port, **case.options())
    assert info.value.results == {}


@pytest.mark.anyio
async def test_slowloris_is_bounded_by_the_acse_timeout_not_the_network_timeout() -> None:
    case = SCU_CASES["slowloris-ac"]
    async with hostile_scp(case.script) as peer:
        start = anyio.current_time()
        result = await verify("127.0.0.1", peer.port, **case.options())
        elapsed = anyio.current_time() - start
        conn = await peer.connection()
        with anyio.fail_after(MARGIN):
            await conn.ended.wait()
    assert isinstance(result.error, AcseTimeout) and not isinstance(result.error, NetworkTimeout)
    # several bytes arrived (each restarting the idle timer), but not the whole AC
    assert case.options()["network_timeout"] < elapsed < case.options()["acse_timeout"] + MARGIN
    assert conn.pdus() == ["RQ", "ABORT(0,0)"]


@pytest.mark.anyio
async def test_garbage_after_the_ac_in_the_same_read() -> None:
    """The AC and an invalid PDU in one segment: the association never
    carries an echo (before the fix: RuntimeError "no established
    association" from echo())."""
    script = after_rq(lambda rq: ac_for(rq) + b"\xff\x00\x00\x00\x00\x00")
    async with hostile_scp(script) as peer:
        with pytest.raises(ProtocolError):
            async with associate("127.0.0.1", peer.port, **SCU_CASES["silent"].options()) as a:
                await a.echo()


# --- the CLI, as a subprocess, against a peer on a loop in another thread -----------------------

CLI_CASES = [
    "silent",
    "half-header",
    "slowloris-ac",
    "close-after-accept",
    "reset-mid-pdu",
    "huge-length",
    "unknown-pdu-type",
    "two-acs",
    "garbage-after-ac",
    "ac-no-presentation-contexts",
    "rsp-wrong-message-id",
    "abort-waiting-for-rsp",
    "never-answers-release",
]
FIRST_LINE = {
    AcseTimeout: "E: ACSE timeout reached",
    NetworkTimeout: "E: Network timeout reached",
    ProtocolError: "E: Protocol error: ",
    AssociationAborted: "E: Association Aborted",
    NoAcceptedContext: "E: No accepted presentation contexts",
}


@pytest.fixture(scope="module")
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal("asyncio") as running:
        yield running


@pytest.mark.parametrize("name", CLI_CASES)
def test_cli_echoscu_against_hostile_scp(portal: BlockingPortal, name: str) -> None:
    case = SCU_CASES[name]
    assert case.outcome is not None
    options = case.options()
    with portal.wrap_async_context_manager(hostile_scp(case.script)) as peer:
        start = time.monotonic()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "asyncecho",
                "echoscu",
                "127.0.0.1",
                str(peer.port),
                "-ta",
                str(options["acse_timeout"]),
                "-td",
                str(options["dimse_timeout"]),
                "-tn",
                str(options["network_timeout"]),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        elapsed = time.monotonic() - start
        conn = portal.call(peer.connection)
        portal.call(check_closed_by_scu, case, conn)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert (result.returncode, result.stdout) == (1, "")
    lines = result.stderr.splitlines()
    assert 1 <= len(lines) <= 3 and all(line.startswith("E: ") for line in lines), lines
    assert lines[0].startswith(FIRST_LINE[case.outcome]), lines
    # interpreter start-up included: a generous bound
    assert elapsed < case.bound() + 5.0
