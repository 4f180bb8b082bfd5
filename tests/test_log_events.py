"""The client's log events (issue #13, section 5): flat, queryable fields
(never PDU objects), `assoc` and `peer` on every one, the same fields
whichever way the association runs (echo(), where the session runs the
whole exchange by itself, or associate(), where the user asks for each
step; on asyncio and on trio), and levels an operator would pick: a peer
that is down is a warning, our own machine's limit an error."""

from __future__ import annotations

import errno

import pytest

from asyncecho import EchoOptions, associate, echo, serve, verify
from asyncecho.client import Association
from asyncecho.exceptions import LocalResourceError
from log_capture import Record, capturing
from peers import closed_port, silent_listener

pytestmark = pytest.mark.anyio

LOCALHOST = "127.0.0.1"


def is_flat(value: object) -> bool:
    if isinstance(value, list):
        return all(isinstance(item, (str, int)) for item in value)
    return value is None or isinstance(value, (str, int, float, bool))


def shape(records: list[Record]) -> list[tuple[str, str, list[str]]]:
    """(level, event, field names) of each record: what must not depend on the path."""
    return [(level, event, sorted(fields)) for level, event, fields in records]


def check_flat(records: list[Record], peer: str) -> None:
    for level, event, fields in records:
        assert fields["peer"] == peer, event
        assert isinstance(fields["assoc"], int), event
        if event.endswith(".pdu"):
            # (the debug events that exist to carry a PDU, for the CLI's -d dump)
            assert level == "debug", event
            continue
        for name, value in fields.items():
            assert is_flat(value), (event, name, value)


async def test_a_successful_association_logs_the_same_fields_on_either_path() -> None:
    async with serve(ae_title="CHECKED") as server:
        peer = f"{LOCALHOST}:{server.port}"
        with capturing() as one_shot:
            assert (await echo(LOCALHOST, server.port, called_ae="CHECKED")).ok
        with capturing() as coroutine:
            async with associate(LOCALHOST, server.port, called_ae="CHECKED") as assoc:
                assert await assoc.echo() == 0
    first, second = one_shot.client(), coroutine.client()
    assert shape(first) == shape(second)
    check_flat(first, peer)
    check_flat(second, peer)
    assert [event for _, event, _ in first] == [
        "connect.start",
        "associate.request.pdu",
        "associate.request",
        "associate.accepted.pdu",
        "associate.accepted",
        "echo.request",
        "echo.response",
        "release.request",
        "release.confirmed",
    ]
    assert {level for level, event, _ in first if not event.endswith(".pdu")} == {"info"}
    fields = {event: f for _, event, f in first}
    request = fields["associate.request"]
    assert (request["calling_ae"], request["called_ae"]) == ("ECHOSCU", "CHECKED")
    assert request["contexts"] == 1 and request["abstract_syntaxes"] == ["1.2.840.10008.1.1"]
    assert request["connect_seconds"] > 0
    accepted = fields["associate.accepted"]
    assert accepted["peer_ae"] == "CHECKED" and accepted["contexts_accepted"] == 1
    assert accepted["transfer_syntax"] == "1.2.840.10008.1.2" and accepted["seconds"] > 0
    response = fields["echo.response"]
    assert (response["status"], response["status_name"]) == (0, "Success")
    assert response["seconds"] > 0
    assert fields["release.confirmed"]["total_seconds"] > 0


async def test_a_refused_peer_is_a_warning_with_its_outcome() -> None:
    port = closed_port()
    with capturing() as capture:
        assert (await verify(LOCALHOST, port)).outcome == "refused"
    (failed,) = [r for r in capture.client() if r[1] == "connect.failed"]
    level, _, fields = failed
    assert level == "warning" and fields["outcome"] == "refused"
    assert fields["peer"] == f"{LOCALHOST}:{port}"
    assert fields["errno"] == errno.ECONNREFUSED
    assert all(level != "error" for level, _, _ in capture.client())


async def test_a_rejection_is_a_warning_with_flat_fields_on_either_path() -> None:
    async with serve(require_called_ae=True, ae_title="ONLY-ME") as server:
        with capturing() as one_shot:
            assert (await verify(LOCALHOST, server.port)).outcome == "rejected"
        with capturing() as coroutine, pytest.raises(Exception, match="rejected"):
            async with associate(LOCALHOST, server.port):
                pass  # pragma: no cover
    assert shape(one_shot.client()) == shape(coroutine.client())
    (rejected,) = [r for r in one_shot.client() if r[1] == "associate.rejected"]
    level, _, fields = rejected
    assert level == "warning"
    check_flat([rejected], f"{LOCALHOST}:{server.port}")
    assert fields["outcome"] == "rejected"
    assert fields["reason"] == "Called AE title not recognised" and fields["reason_code"] == 7


async def test_a_timeout_is_a_warning_with_the_same_fields_on_either_path() -> None:
    with silent_listener() as port:
        with capturing() as one_shot:
            assert (await verify(LOCALHOST, port, acse_timeout=0.2)).outcome == "timeout-acse"
        with capturing() as coroutine, pytest.raises(TimeoutError):
            async with associate(LOCALHOST, port, acse_timeout=0.2):
                pass  # pragma: no cover
    assert shape(one_shot.client()) == shape(coroutine.client())
    (timeout,) = [r for r in one_shot.client() if r[1] == "timeout"]
    level, _, fields = timeout
    assert level == "warning" and fields["outcome"] == "timeout-acse"
    assert fields["timeout"] == 0.2
    check_flat(one_shot.client(), f"{LOCALHOST}:{port}")


def test_our_own_limit_is_an_error() -> None:
    assoc = Association(LOCALHOST, 104, EchoOptions())
    with capturing() as capture:
        error = assoc._connect_failed(OSError(errno.EMFILE, "Too many open files"))
    assert isinstance(error, LocalResourceError)
    ((level, event, fields),) = capture.records
    assert (level, event, fields["outcome"]) == ("error", "connect.failed", "local-error")
    assert fields["errno"] == errno.EMFILE
