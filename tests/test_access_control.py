"""SCP access control: allowed calling AE titles (A-ASSOCIATE-RJ reason 3),
allowed called AE titles and `require_called_ae` (reason 7), allowed client
networks (the connection is closed without a byte), for `serve()` and for
`asyncecho echoscp`. Every refusal is a structured event naming the peer
address: `scp.associate.rejected` / `scp.refused_network`.

Loopback only: the allowed network is 127.0.0.0/8, the refused one
10.0.0.0/8 (or ::1/128, which an IPv4 loopback peer is not in).
Library tests run under asyncio and trio.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from anyio.abc import SocketStream

import peers
from asyncecho import (
    AssociationAborted,
    AssociationRejected,
    EchoOptions,
    disable_logging,
    echo,
    enable_logging,
    serve,
    verify,
)
from asyncecho.protocol.negotiation import build_rq

pytestmark = pytest.mark.anyio

LOCALHOST = "127.0.0.1"
OPTIONS = EchoOptions(connect_timeout=5.0, acse_timeout=5.0, dimse_timeout=5.0, network_timeout=5.0)
CALLING_AE_REFUSED = (1, 1, 3)  # permanent, service user, calling AE title not recognised
CALLED_AE_REFUSED = (1, 1, 7)  # permanent, service user, called AE title not recognised


@dataclass
class Captured:
    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def debug(self, event: str, **fields: Any) -> None:
        self.events.append(("debug", event, fields))

    def info(self, event: str, **fields: Any) -> None:
        self.events.append(("info", event, fields))

    def warning(self, event: str, **fields: Any) -> None:
        self.events.append(("warning", event, fields))

    def error(self, event: str, **fields: Any) -> None:
        self.events.append(("error", event, fields))

    def critical(self, event: str, **fields: Any) -> None:
        self.events.append(("critical", event, fields))

    def named(self, name: str) -> list[tuple[str, dict[str, Any]]]:
        return [(level, fields) for level, event, fields in self.events if event == name]


@pytest.fixture
def captured() -> Iterator[Captured]:
    capture = Captured()
    enable_logging(capture)
    try:
        yield capture
    finally:
        disable_logging()


def codes(error: AssociationRejected) -> tuple[int, int, int]:
    return (error.result, error.source, error.reason)


async def rejected(port: int, **settings: Any) -> AssociationRejected:
    with pytest.raises(AssociationRejected) as info:
        await echo(LOCALHOST, port, options=OPTIONS, **settings)
    return info.value


async def raw_client(port: int, calling_ae: str = "RAWSCU") -> tuple[int, bytes]:
    """Connect, send an A-ASSOCIATE-RQ, read until closed: (our port, bytes)."""
    data = bytearray()
    async with await anyio.connect_tcp(LOCALHOST, port) as stream:
        local_port = local_port_of(stream)
        try:
            await stream.send(build_rq(calling_ae=calling_ae, called_ae="ANY-SCP").encode())
        except (anyio.BrokenResourceError, OSError):
            return local_port, b""  # already closed under us
        with anyio.fail_after(5):
            while True:
                try:
                    data += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    break
    return local_port, bytes(data)


def local_port_of(stream: SocketStream) -> int:
    from anyio.abc import SocketAttribute

    return int(stream.extra(SocketAttribute.local_address)[1])


# --- serve() -----------------------------------------------------------------------------------


async def test_allowed_calling_aes(captured: Captured) -> None:
    async with serve(allowed_calling_aes=["FRIEND", "ALLY"]) as server:
        assert (await echo(LOCALHOST, server.port, options=OPTIONS, calling_ae="FRIEND")).ok
        assert (await echo(LOCALHOST, server.port, options=OPTIONS, calling_ae="ALLY")).ok
        error = await rejected(server.port, calling_ae="STRANGER")
        assert server.accepted_total == 2
    assert codes(error) == CALLING_AE_REFUSED
    assert error.reason_name == "Calling AE title not recognised"
    [(level, event)] = captured.named("scp.associate.rejected")
    assert level == "warning"
    assert event["calling_ae"] == "STRANGER" and event["called_ae"] == "ANY-SCP"
    assert event["reason"] == "Calling AE title not recognised"
    host, _, port = event["peer"].rpartition(":")
    assert host == LOCALHOST and port.isdigit()


async def test_allowed_called_aes(captured: Captured) -> None:
    async with serve(ae_title="MAIN", allowed_called_aes={"MAIN", "ALIAS"}) as server:
        for called in ("MAIN", "ALIAS"):
            result = await echo(LOCALHOST, server.port, options=OPTIONS, called_ae=called)
            assert result.ok and result.peer_ae == called
        error = await rejected(server.port, called_ae="OTHER")
    assert codes(error) == CALLED_AE_REFUSED
    [(_, event)] = captured.named("scp.associate.rejected")
    assert event["called_ae"] == "OTHER"
    assert event["reason"] == "Called AE title not recognised"
    assert event["peer"].startswith(f"{LOCALHOST}:")


async def test_allowed_called_aes_need_not_include_the_ae_title() -> None:
    async with serve(ae_title="MAIN", allowed_called_aes=["ALIAS"]) as server:
        assert codes(await rejected(server.port, called_ae="MAIN")) == CALLED_AE_REFUSED
        assert (await echo(LOCALHOST, server.port, options=OPTIONS, called_ae="ALIAS")).ok


async def test_require_called_ae(captured: Captured) -> None:
    async with serve(ae_title="MAIN", require_called_ae=True) as server:
        assert (await echo(LOCALHOST, server.port, options=OPTIONS, called_ae="MAIN")).ok
        error = await rejected(server.port, called_ae="ANY-SCP")
    assert codes(error) == CALLED_AE_REFUSED
    assert [e["called_ae"] for _, e in captured.named("scp.associate.rejected")] == ["ANY-SCP"]
    # Without it, any called AE title will do.
    async with serve(ae_title="MAIN") as server:
        assert (await echo(LOCALHOST, server.port, options=OPTIONS, called_ae="WHATEVER")).ok


async def test_called_ae_is_checked_before_calling_ae() -> None:
    async with serve(
        ae_title="MAIN", require_called_ae=True, allowed_calling_aes=["FRIEND"]
    ) as server:
        both_wrong = await rejected(server.port, calling_ae="STRANGER", called_ae="OTHER")
        calling_wrong = await rejected(server.port, calling_ae="STRANGER", called_ae="MAIN")
        assert (
            await echo(
                LOCALHOST, server.port, options=OPTIONS, calling_ae="FRIEND", called_ae="MAIN"
            )
        ).ok
    assert codes(both_wrong) == CALLED_AE_REFUSED
    assert codes(calling_wrong) == CALLING_AE_REFUSED


@pytest.mark.parametrize(
    "networks",
    [["127.0.0.0/8"], ["10.0.0.0/8", "127.0.0.1/32"], ["127.0.0.1"]],
    ids=["loopback-block", "two-networks", "single-host"],
)
async def test_allowed_network_lets_loopback_in(captured: Captured, networks: list[str]) -> None:
    async with serve(allowed_networks=networks) as server:
        assert (await echo(LOCALHOST, server.port, options=OPTIONS)).ok
    assert captured.named("scp.refused_network") == []


@pytest.mark.parametrize("networks", [["10.0.0.0/8"], ["::1/128"]], ids=["ipv4", "ipv6-only"])
async def test_refused_network_is_closed_without_an_answer(
    captured: Captured, networks: list[str]
) -> None:
    async with serve(allowed_networks=networks) as server:
        local_port, answer = await raw_client(server.port)
        assert answer == b""  # no A-ASSOCIATE-RJ, no A-ABORT: nothing
        start = time.monotonic()
        result = await verify(LOCALHOST, server.port, options=OPTIONS)
        assert time.monotonic() - start < 1.0
        assert server.accepted_total == 0
    assert isinstance(result.error, AssociationAborted)
    assert result.error.source is None and result.error.reason is None
    refusals = captured.named("scp.refused_network")
    assert len(refusals) == 2
    level, first = refusals[0]
    assert level == "warning"
    assert first["peer"] == f"{LOCALHOST}:{local_port}"
    assert captured.named("scp.associate.rejected") == []


# --- asyncecho echoscp -------------------------------------------------------------------------


CliScp = peers.CliScp


def cli_echoscp(*args: str) -> contextlib.AbstractContextManager[CliScp]:
    return peers.asyncecho_echoscp("-v", *args)


@pytest.fixture(scope="module")
def ae_scp() -> Iterator[CliScp]:
    with cli_echoscp(
        "-aet",
        "MAIN",
        "--allowed-calling-aet",
        "FRIEND",
        "--allowed-calling-aet",
        "ALLY",
        "--allowed-called-aet",
        "MAIN",
        "--allowed-called-aet",
        "ALIAS",
        "--allowed-network",
        "127.0.0.0/8",
    ) as scp:
        yield scp


@pytest.fixture(scope="module")
def strict_scp() -> Iterator[CliScp]:
    with cli_echoscp("-aet", "MAIN", "--require-called-aet") as scp:
        yield scp


@pytest.fixture(scope="module")
def fenced_scp() -> Iterator[CliScp]:
    with cli_echoscp("--allowed-network", "10.0.0.0/8") as scp:
        yield scp


@pytest.mark.peer
async def test_cli_allowed_aes(ae_scp: CliScp) -> None:
    port = ae_scp.port
    for calling, called in (("FRIEND", "MAIN"), ("ALLY", "ALIAS")):
        result = await echo(LOCALHOST, port, options=OPTIONS, calling_ae=calling, called_ae=called)
        assert result.ok
    stranger = await rejected(port, calling_ae="STRANGER", called_ae="MAIN")
    assert codes(stranger) == CALLING_AE_REFUSED
    other = await rejected(port, calling_ae="FRIEND", called_ae="OTHER")
    assert codes(other) == CALLED_AE_REFUSED
    log = ae_scp.wait_for_log("FRIEND -> OTHER")
    assert f"W: Association Rejected: STRANGER -> MAIN from {LOCALHOST}:" in log, log
    assert "Calling AE title not recognised" in log
    assert f"W: Association Rejected: FRIEND -> OTHER from {LOCALHOST}:" in log
    assert "Called AE title not recognised" in log
    assert "refused: not in the allowed networks" not in log


@pytest.mark.peer
async def test_cli_require_called_aet(strict_scp: CliScp) -> None:
    assert (await echo(LOCALHOST, strict_scp.port, options=OPTIONS, called_ae="MAIN")).ok
    error = await rejected(strict_scp.port, calling_ae="WANDERER", called_ae="ANY-SCP")
    assert codes(error) == CALLED_AE_REFUSED
    log = strict_scp.wait_for_log("WANDERER -> ANY-SCP")
    assert f"WANDERER -> ANY-SCP from {LOCALHOST}:" in log
    assert "Called AE title not recognised" in log


@pytest.mark.peer
async def test_cli_allowed_network(fenced_scp: CliScp) -> None:
    local_port, answer = await raw_client(fenced_scp.port)
    assert answer == b""
    result = await verify(LOCALHOST, fenced_scp.port, options=OPTIONS)
    assert result.outcome == "aborted"
    line = f"W: Connection from {LOCALHOST}:{local_port} refused: not in the allowed networks"
    assert line in fenced_scp.wait_for_log(line)


@pytest.mark.peer
@pytest.mark.parametrize(
    "args",
    [
        ("--allowed-network", "not-a-network"),
        ("--allowed-called-aet", "WAY-TOO-LONG-AE-TITLE"),
        ("--allowed-calling-aet", ""),
    ],
    ids=["bad-cidr", "long-called-aet", "empty-calling-aet"],
)
def test_cli_access_control_usage_errors(args: tuple[str, ...]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "asyncecho", "echoscp", "104", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "error:" in result.stderr and "Traceback" not in result.stderr
