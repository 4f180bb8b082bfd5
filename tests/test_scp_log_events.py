"""The SCP's log events (issue #13, section 5): every `scp.*` event has flat,
queryable fields (never a PDU object; the incoming A-ASSOCIATE-RQ itself only
in the debug-level `scp.associate.request.pdu` event, for the CLI's -d dump),
a `peer` wherever there is one, an `outcome` on every refusal or failure, and
the level an operator would pick: accepted, echo and release are `info`; a
refusal, an abort, a slow or silent peer, a failed TLS handshake a `warning`;
our own bug an `error`. The same on asyncio and trio. Each event also has a
line in echoscp's output (`cli_output`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream

import certs as pki
from asyncecho import echo, serve, server_logs, verify
from asyncecho.cli import output as cli_output
from asyncecho.protocol.negotiation import build_rq
from log_capture import WAIT, Record, capturing

pytestmark = pytest.mark.anyio

LOCALHOST = "127.0.0.1"
RQ = build_rq(calling_ae="RAWSCU", called_ae="ANY-SCP").encode()
A_ABORT_BY_USER = bytes((0x07, 0, 0, 0, 0, 4, 0, 0, 0, 0))  # source 0: service user
NO_SUCH_PDU = bytes((0x09, 0, 0, 0, 0, 4, 0, 0, 0, 0))


def is_flat(value: object) -> bool:
    if isinstance(value, list):
        return all(isinstance(item, str) for item in value)
    return value is None or isinstance(value, (str, int, float, bool))


def check_scp_events(records: list[Record]) -> None:
    """Flat fields; a peer "host:port" on each association's event; and a
    line in echoscp's output for each (at the event's own level)."""
    for level, event, fields in records:
        assert level in ("debug", "info", "warning", "error"), (event, level)
        if event.endswith(".pdu"):
            assert level == "debug", event
            continue
        for name, value in fields.items():
            assert is_flat(value), (event, name, value)
        if event not in ("scp.listening", "scp.stopped", "scp.accept_paused"):
            host, _, port = str(fields["peer"]).rpartition(":")
            assert host == LOCALHOST and port.isdigit(), (event, fields)
        if level in ("warning", "error"):
            assert isinstance(fields["outcome"], str), event
        lines = cli_output._lines_for(event, dict(fields, _level=level), debug=False)
        assert lines, event
        expected = "notice" if event in ("scp.listening", "scp.stopped") else level
        assert {line_level for line_level, _ in lines} == {expected}, (event, lines)


async def associated(port: int) -> SocketStream:
    """A raw connection with an association established (the AC read)."""
    stream = await anyio.connect_tcp(LOCALHOST, port)
    await stream.send(RQ)
    header = b""
    with anyio.fail_after(WAIT):
        while len(header) < 6:
            header += await stream.receive(6 - len(header))
        assert header[0] == 0x02  # A-ASSOCIATE-AC
        rest = int.from_bytes(header[2:6], "big")
        while rest:
            rest -= len(await stream.receive(rest))
    return stream


def local_peer(stream: SocketStream) -> str:
    address = stream.extra(SocketAttribute.local_address)
    assert isinstance(address, tuple)
    return f"{address[0]}:{address[1]}"


# --- a successful association ------------------------------------------------------------


async def test_a_successful_association_is_info_with_flat_fields() -> None:
    with capturing() as capture:
        async with serve(ae_title="LOGGED") as server:
            result = await echo(LOCALHOST, server.port, calling_ae="CALLER", called_ae="LOGGED")
            assert result.ok
            await capture.wait_for("scp.release")
    records = capture.scp()
    check_scp_events(records)
    assert [event for _, event, _ in records] == [
        "scp.listening",
        "scp.associate.request.pdu",
        "scp.associate.accepted",
        "scp.echo",
        "scp.release",
        "scp.stopped",
    ]
    assert {level for level, event, _ in records if not event.endswith(".pdu")} == {"info"}
    listening = capture.one("scp.listening")[1]
    assert listening == {
        "host": LOCALHOST,
        "port": server.port,
        "ae_title": "LOGGED",
        "tls": False,
    }
    accepted = capture.one("scp.associate.accepted")[1]
    peer = accepted["peer"]
    assert (accepted["calling_ae"], accepted["called_ae"]) == ("CALLER", "LOGGED")
    assert accepted["contexts"] == 1 and accepted["contexts_accepted"] == 1
    assert accepted["abstract_syntaxes"] == ["1.2.840.10008.1.1"]
    assert accepted["transfer_syntax"] == result.transfer_syntax
    assert accepted["peer_max_pdu"] == 16382
    assert accepted["peer_implementation_version_name"] == "ASYNCECHO_010"
    assert accepted["user_identity"] is None
    echoed = capture.one("scp.echo")[1]
    assert echoed == {"peer": peer, "message_id": 1, "status": 0, "status_name": "Success"}
    assert capture.one("scp.release")[1]["peer"] == peer
    stopped = capture.one("scp.stopped")[1]
    assert stopped["accepted_total"] == 1 and stopped["echoes_total"] == 1
    # The PDU itself: only in its debug event (the CLI's -d dump reads it).
    dumped = capture.one("scp.associate.request.pdu")
    assert dumped[0] == "debug" and dumped[1]["peer"] == peer
    assert dumped[1]["pdu"].calling_ae == "CALLER"


# --- refusals ---------------------------------------------------------------------------------


async def test_a_rejection_is_a_warning_with_the_reason_as_text() -> None:
    with capturing() as capture:
        async with serve(ae_title="ONLY-ME", require_called_ae=True) as server:
            assert (await verify(LOCALHOST, server.port, called_ae="SOMEONE")).outcome == "rejected"
            await capture.wait_for("scp.associate.rejected")
    check_scp_events(capture.scp())
    level, fields = capture.one("scp.associate.rejected")
    assert level == "warning"
    assert (fields["calling_ae"], fields["called_ae"]) == ("ECHOSCU", "SOMEONE")
    assert fields["outcome"] == "rejected"
    assert fields["result"] == "Rejected Permanent"
    assert fields["source"] == "Service User"
    assert fields["reason"] == "Called AE title not recognised"
    assert (fields["result_code"], fields["source_code"], fields["reason_code"]) == (1, 1, 7)
    assert capture.one("scp.associate.request.pdu")[0] == "debug"


async def test_a_busy_rejection_is_a_warning_with_the_reason_as_text() -> None:
    with capturing() as capture:
        async with serve(max_associations=0) as server:
            assert (await verify(LOCALHOST, server.port)).outcome == "rejected"
            await capture.wait_for("scp.associate.rejected")
    check_scp_events(capture.scp())
    level, fields = capture.one("scp.associate.rejected")
    assert level == "warning"
    assert (fields["result"], fields["reason"]) == ("Rejected Transient", "Local limit exceeded")


async def test_a_refused_network_is_a_warning_with_the_peer() -> None:
    with capturing() as capture:
        async with serve(allowed_networks=["10.0.0.0/8"]) as server:
            stream = await anyio.connect_tcp(LOCALHOST, server.port)
            async with stream:
                peer = local_peer(stream)
                await capture.wait_for("scp.refused_network")
    check_scp_events(capture.scp())
    level, fields = capture.one("scp.refused_network")
    assert level == "warning"
    assert fields == {"peer": peer, "outcome": "refused-network"}


async def test_a_failed_tls_handshake_is_a_warning_with_the_peer(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    context = pki.server_ssl(pki.session_certs(tmp_path_factory))
    with capturing() as capture:
        async with serve(ssl=context, acse_timeout=5.0) as server:
            stream = await anyio.connect_tcp(LOCALHOST, server.port)
            async with stream:
                peer = local_peer(stream)
                await stream.send(RQ)  # not a TLS ClientHello
                await capture.wait_for("scp.tls_failed")
    check_scp_events(capture.scp())
    level, fields = capture.one("scp.tls_failed")
    assert level == "warning"
    assert fields["peer"] == peer and fields["outcome"] == "tls"
    assert isinstance(fields["reason"], str) and fields["reason"]


# --- aborts and slow peers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "outcome", "reason"),
    [
        pytest.param(A_ABORT_BY_USER, "aborted", "A-ABORT", id="a-abort"),
        pytest.param(b"", "aborted", "connection closed", id="connection-closed"),
        pytest.param(NO_SUCH_PDU, "protocol-error", "unknown PDU type 0x09", id="invalid-pdu"),
    ],
)
async def test_an_abort_is_a_warning_with_the_reason_as_text(
    sent: bytes, outcome: str, reason: str
) -> None:
    with capturing() as capture:
        async with serve() as server:
            stream = await associated(server.port)
            peer = local_peer(stream)
            if sent:
                await stream.send(sent)
            else:
                await stream.aclose()
            await capture.wait_for("scp.aborted")
            await stream.aclose()
    check_scp_events(capture.scp())
    level, fields = capture.one("scp.aborted")
    assert level == "warning"
    assert fields["peer"] == peer
    assert fields["outcome"] == outcome
    assert fields["reason"] == reason
    assert fields["by_peer"] is (sent == A_ABORT_BY_USER)


async def test_a_silent_peer_is_a_warning() -> None:
    with capturing() as capture:
        async with serve(network_timeout=0.2) as server:
            stream = await associated(server.port)
            async with stream:
                peer = local_peer(stream)
                await capture.wait_for("scp.idle_timeout")
    check_scp_events(capture.scp())
    level, fields = capture.one("scp.idle_timeout")
    assert level == "warning"
    assert fields == {
        "peer": peer,
        "outcome": "timeout-network",
        "timeout": 0.2,
        "reason": "nothing received",
    }


async def test_a_slow_pdu_is_a_warning() -> None:
    with capturing() as capture:
        async with serve(dimse_timeout=0.2, network_timeout=WAIT) as server:
            stream = await associated(server.port)
            async with stream:
                peer = local_peer(stream)
                await stream.send(b"\x04\x00\x00")  # a P-DATA-TF begun, never finished
                await capture.wait_for("scp.dimse_timeout")
    check_scp_events(capture.scp())
    level, fields = capture.one("scp.dimse_timeout")
    assert level == "warning"
    assert fields["peer"] == peer and fields["timeout"] == 0.2
    assert fields["outcome"] == "timeout-dimse"


# --- every event the SCP logs has a line in echoscp's output ------------------------------------


class _AnyField(dict[str, Any]):
    def __missing__(self, key: str) -> Any:
        return 0


def test_every_scp_event_has_an_echoscp_line() -> None:
    source = Path(server_logs.__file__).read_text()  # (every scp.* event is logged there)
    events = set(re.findall(r'"(scp\.[a-z_.]+)"', source))
    assert "scp.internal_error" in events and "scp.accept_paused" in events
    for event in sorted(events):
        if event.endswith(".pdu"):
            continue
        fields = _AnyField(_level="warning")
        assert cli_output._lines_for(event, fields, debug=False), event
