"""Whatever a peer sends, split at any byte boundary, ends as a protocol
error (issue 13, section 1): never as an exception out of the core, a
connection's callback or `serve()`.

Every message of both roles (A-ASSOCIATE-RQ/AC/RJ, P-DATA with a C-ECHO-RQ
or -RSP, A-RELEASE-RQ/RP, A-ABORT), corrupted (byte flips, truncations, bad
lengths, and the malformed DIMSE command sets below) and cut into reads at
arbitrary boundaries:

- through the core alone (`AcceptorSession`, a requestor `UpperLayer`):
  only typed events come out, and what we answer does not depend on where
  the reads were cut;
- through `serve()` on asyncio, uvloop and trio, fed by a raw loopback
  client: the server answers as the core does, logs no traceback, frees the
  slot and goes on serving;
- through `echo()`/`verify()`/`associate()` against a raw loopback SCP:
  `ProtocolError` (outcome "protocol-error") and an A-ABORT on the wire.

The example counts are small in the default run; `ASYNCECHO_FUZZ=1` runs
many more (as tests/test_fuzz.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import time
from collections.abc import Callable, Iterator

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncecho import Server, echo, logs, serve
from asyncecho.exceptions import EchoError, ProtocolError
from asyncecho.protocol.acceptor import AcceptorSession
from asyncecho.protocol.dimse import decode_command, encode_echo_rq, encode_echo_rsp
from asyncecho.protocol.errors import PDUError
from asyncecho.protocol.events import Aborted, AssociationAccepted, Event, MessageReceived
from asyncecho.protocol.negotiation import AcceptorPolicy, build_ac, build_rq
from asyncecho.protocol.pdu import (
    PDV,
    Abort,
    AssociateRJ,
    AssociateRQ,
    PDataTF,
    ReleaseRP,
    ReleaseRQ,
    decode_pdu,
)
from asyncecho.protocol.state_machine import Event as Evt
from asyncecho.protocol.upper_layer import UpperLayer
from hostile import (
    PeerConnection,
    Script,
    ac_for,
    hostile_scp,
    scu_call,
    summary,
    wait_until,
)

LONG_RUN = os.environ.get("ASYNCECHO_FUZZ") == "1"
CORE_EXAMPLES = 3000 if LONG_RUN else 300
CORE = settings(
    max_examples=CORE_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- the messages of both roles -------------------------------------------------------------

RQ_PDU = build_rq(calling_ae="SPLITSCU", called_ae="ANY-SCP")
RQ = RQ_PDU.encode()
AC = build_ac(RQ_PDU, AcceptorPolicy()).encode()
RJ = AssociateRJ(1, 1, 7).encode()
RELEASE_RQ = ReleaseRQ().encode()
RELEASE_RP = ReleaseRP().encode()
ABORT = Abort(0, 0).encode()


def element(elem: int, value: bytes) -> bytes:
    """One command-group element, Implicit VR Little Endian (PS3.7 6.3.1)."""
    return b"\x00\x00" + elem.to_bytes(2, "little") + len(value).to_bytes(4, "little") + value


def command_set(*elements: bytes) -> bytes:
    body = b"".join(elements)
    return element(0x0000, len(body).to_bytes(4, "little")) + body


def us(value: int) -> bytes:
    return value.to_bytes(2, "little")


VERIFICATION = element(0x0002, b"1.2.840.10008.1.1\x00")


def pdata(*pdvs: PDV) -> bytes:
    return PDataTF(pdvs).encode()


def command(data: bytes, context_id: int = 1) -> bytes:
    """A P-DATA-TF carrying `data` as one whole command PDV."""
    return pdata(PDV(context_id, True, True, data))


def _malformed_commands(field: int, message_id_tag: int) -> dict[str, bytes]:
    """Command sets a decoder must refuse (PS3.7 6.3, 9.3.5), each a P-DATA."""
    rest = [element(0x0100, us(field)), element(message_id_tag, us(1))]
    no_data = element(0x0800, us(0x0101))
    status = [element(0x0900, us(0))] if field & 0x8000 else []
    overrun = element(0x0800, us(0x0101))[:4] + (0xFF).to_bytes(4, "little") + us(0x0101)
    good = command_set(VERIFICATION, *rest, no_data, *status)
    return {
        "element-overruns": command(command_set(VERIFICATION, *rest, *status) + overrun),
        "no-data-set-type": command(command_set(VERIFICATION, *rest, *status)),
        "no-command-field": command(command_set(VERIFICATION, rest[1], no_data, *status)),
        "non-ascii-uid": command(
            command_set(element(0x0002, b"1.2.\xff\xfe"), *rest, no_data, *status)
        ),
        "group-length-wrong": command(good[:8] + (len(good)).to_bytes(4, "little") + good[12:]),
        "us-not-2-bytes": command(
            command_set(VERIFICATION, element(0x0100, b"\x30"), rest[1], no_data, *status)
        ),
        "element-twice": command(command_set(VERIFICATION, *rest, no_data, no_data, *status)),
        "not-command-group": command(good + b"\x08\x00\x05\x00\x00\x00\x00\x00"),
        "header-cut": command(good + b"\x00\x00\x00"),
        # Inconsistent fragment flags (PS3.8 E.2): a data set PDV with no
        # command before it, a command fragment where the data set was due,
        # a data set for a command that has none.
        "data-without-command": pdata(PDV(1, False, True, b"\x00\x00")),
        "data-for-no-data-set": pdata(PDV(1, True, True, good), PDV(1, False, True, b"\x00\x00")),
        "command-where-data-due": pdata(
            PDV(
                1,
                True,
                True,
                command_set(VERIFICATION, *rest, element(0x0800, us(0x0000)), *status),
            ),
            PDV(1, True, True, good),
        ),
        # A malformed command completed from fragments.
        "fragmented-overrun": pdata(
            PDV(1, True, False, command_set(VERIFICATION, *rest)[:10]),
            PDV(1, True, True, command_set(VERIFICATION, *rest)[10:] + overrun),
        ),
    }


#: C-ECHO-RQs that break PS3.7, for our SCP.
BAD_REQUESTS = _malformed_commands(0x0030, 0x0110)
#: C-ECHO-RSPs that break PS3.7, for our SCU.
BAD_RESPONSES = _malformed_commands(0x8030, 0x0120)

#: What a requestor sends, in order; what an acceptor answers.
SCU_SIDE = [RQ, command(encode_echo_rq(1)), RELEASE_RQ, ABORT]
SCP_SIDE = [AC, RJ, command(encode_echo_rsp(1)), RELEASE_RP, ABORT]


# --- corruption and splitting ---------------------------------------------------------------


@st.composite
def corrupted(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` with one to three byte flips, truncations, insertions or bad
    length fields (the PDU length then mostly corrected to match)."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        if not out:
            break
        kind = draw(st.sampled_from(["flip", "byte", "truncate", "insert", "length"]))
        pos = draw(st.integers(0, len(out) - 1))
        if kind == "flip":
            out[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            out[pos] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del out[pos:]
        elif kind == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=6))
        elif len(out) >= 6:
            out[2:6] = draw(st.integers(0, 0xFFFFFFFF)).to_bytes(4, "big")
    if len(out) >= 6 and draw(st.integers(0, 3)) > 0:
        out[2:6] = (len(out) - 6).to_bytes(4, "big")
    return bytes(out)


def cut(data: bytes, points: list[int]) -> list[bytes]:
    """`data` cut at `points` (any offsets; clipped and sorted)."""
    bounds = sorted({min(max(p, 0), len(data)) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


cuts_st = st.lists(st.integers(0, 600), max_size=12)


@st.composite
def scu_stream(draw: st.DrawFn) -> bytes:
    """What a (hostile) requestor sends: the valid sequence up to one
    message, that message corrupted or replaced by a malformed command set,
    and maybe what follows."""
    where = draw(st.integers(0, len(SCU_SIDE) - 1))
    if where == 1 and draw(st.booleans()):
        bad = BAD_REQUESTS[draw(st.sampled_from(sorted(BAD_REQUESTS)))]
    else:
        bad = draw(corrupted(SCU_SIDE[where]))
    tail = SCU_SIDE[where + 1 :] if draw(st.booleans()) else []
    return b"".join([*SCU_SIDE[:where], bad, *tail])


# --- through the core -----------------------------------------------------------------------


def run_acceptor(stream: bytes, reads: list[bytes]) -> tuple[bytes, list[object]]:
    """Feed `reads` to a AcceptorSession; what it sent and reported."""
    assert b"".join(reads) == stream
    acceptor = AcceptorSession(AcceptorPolicy())
    acceptor.connection_made(0.0)
    sent = bytearray()
    happened: list[object] = []
    for data in reads:
        if acceptor.should_close:
            break
        happened += acceptor.receive_data(data, 0.0)
        sent += acceptor.data_to_send()
    return bytes(sent), happened


def check_acceptor(stream: bytes, points: list[int]) -> None:
    whole_sent, _ = run_acceptor(stream, [stream] if stream else [])
    sent, happened = run_acceptor(stream, cut(stream, points))
    # Where the reads were cut changes nothing we answer.
    assert sent == whole_sent
    for item in happened:
        if isinstance(item, Aborted) and not item.by_peer:
            assert item.error is None or isinstance(item.error, PDUError)


@CORE
@given(stream=scu_stream(), points=cuts_st)
def test_acceptor_takes_any_split_corrupted_stream(stream: bytes, points: list[int]) -> None:
    check_acceptor(stream, points)


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_acceptor_aborts_a_malformed_command_set_split_anywhere(name: str) -> None:
    """Each malformed C-ECHO-RQ, cut at every byte: AC, then an A-ABORT
    (service provider, invalid parameter value; PS3.8 AA-8) and nothing
    else, exactly as when it arrives in one read."""
    bad = BAD_REQUESTS[name]
    expected = AC + Abort(2, 6).encode()
    for at in range(len(RQ), len(RQ) + len(bad) + 1):
        stream = RQ + bad
        sent, happened = run_acceptor(stream, cut(stream, [at]))
        assert sent == expected, at
        (aborted,) = [item for item in happened if isinstance(item, Aborted)]
        assert isinstance(aborted.error, PDUError)


def run_requestor(stream: bytes, reads: list[bytes]) -> tuple[bytes, list[Event]]:
    """A requestor as our SCU drives it (echo once, then release), fed
    `reads` from the peer; what it sent after its RQ and the events."""
    ul = UpperLayer(requestor=True)
    ul.request(RQ_PDU)
    ul.connection_made(0.0)
    ul.data_to_send()
    events: list[Event] = []

    def on_event(event: Event) -> None:
        # Answered as each PDU is taken in, so that where the reads were cut
        # cannot change what we answer.
        events.append(event)
        if isinstance(event, AssociationAccepted) and ul.contexts and ul.action_for(Evt.EVT9):
            ul.send_message(min(ul.contexts), encode_echo_rq(1))
        elif isinstance(event, MessageReceived) and ul.action_for(Evt.EVT11):
            decode_command(event.message.command)  # never raises: the core checked it
            ul.release()

    for data in reads:
        if ul.should_close:
            break
        ul.receive_data(data, 0.0, on_event)
    return ul.data_to_send(), events


@st.composite
def scp_stream(draw: st.DrawFn) -> bytes:
    where = draw(st.sampled_from([0, 1, 2, 3, 4]))
    if where == 2 and draw(st.booleans()):
        bad = BAD_RESPONSES[draw(st.sampled_from(sorted(BAD_RESPONSES)))]
    else:
        bad = draw(corrupted(SCP_SIDE[where]))
    # Before P-DATA: the AC; after the response: the release answer.
    before = {0: [], 1: [], 2: [AC], 3: [AC, command(encode_echo_rsp(1))], 4: [AC]}[where]
    return b"".join([*before, bad])


def check_requestor(stream: bytes, points: list[int]) -> None:
    whole_sent, _ = run_requestor(stream, [stream] if stream else [])
    sent, events = run_requestor(stream, cut(stream, points))
    assert sent == whole_sent
    for event in events:
        if isinstance(event, Aborted) and not event.by_peer:
            assert event.error is None or isinstance(event.error, PDUError)


@CORE
@given(stream=scp_stream(), points=cuts_st)
def test_requestor_takes_any_split_corrupted_stream(stream: bytes, points: list[int]) -> None:
    check_requestor(stream, points)


@pytest.mark.parametrize("name", sorted(BAD_RESPONSES))
def test_requestor_aborts_a_malformed_command_set_split_anywhere(name: str) -> None:
    bad = BAD_RESPONSES[name]
    stream = AC + bad
    for at in range(len(AC), len(stream) + 1):
        sent, events = run_requestor(stream, cut(stream, [at]))
        # The C-ECHO-RQ, then AA-8's A-ABORT (service provider, 6).
        assert sent == command(encode_echo_rq(1)) + Abort(2, 6).encode(), at
        aborted = [event for event in events if isinstance(event, Aborted)]
        assert len(aborted) == 1 and isinstance(aborted[0].error, PDUError)


def test_messages_decode() -> None:
    """The building blocks are what they claim (a test of the test)."""
    for data in [*SCU_SIDE, *SCP_SIDE]:
        decode_pdu(data)
    for table in (BAD_REQUESTS, BAD_RESPONSES):
        for data in table.values():
            assert isinstance(decode_pdu(data), PDataTF)



# --- through the transports -----------------------------------------------------------------

TRANSPORT_EXAMPLES = 500 if LONG_RUN else 40
TRANSPORT = settings(
    max_examples=TRANSPORT_EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
#: (anyio backend, its options): asyncio, asyncio on uvloop, trio
BACKENDS: dict[str, tuple[str, dict[str, object]]] = {
    "asyncio": ("asyncio", {}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": ("trio", {}),
}
#: a bound on every read and wait of a case (none takes near it)
BOUND = 10.0


def needs(backend: str) -> tuple[str, dict[str, object]]:
    if backend == "uvloop":
        pytest.importorskip("uvloop")
    return BACKENDS[backend]


class LiveServer:
    """`serve()` running in a portal's event loop, for a sync test to feed."""

    def __init__(self, portal: BlockingPortal, server: Server, loop_errors: list[object]) -> None:
        self.portal = portal
        self.server = server
        self.loop_errors = loop_errors

    def settle(self) -> None:
        """Until the server holds no association (every slot freed)."""

        async def idle() -> None:
            await wait_until(lambda: self.server.active == 0 and not self.server._closers)

        self.portal.call(idle)

    def still_serving(self) -> None:
        async def one_echo() -> bool:
            return (await echo("127.0.0.1", self.server.port, acse_timeout=BOUND)).ok

        assert self.portal.call(one_echo)


@contextlib.contextmanager
def live_server(backend: str) -> Iterator[LiveServer]:
    name, options = needs(backend)
    loop_errors: list[object] = []

    async def watch_loop() -> None:
        # asyncio's "Fatal error: protocol.data_received() call failed" and
        # "Exception in callback" go to the loop's handler: record them.
        if name == "asyncio":
            asyncio.get_running_loop().set_exception_handler(
                lambda _loop, context: loop_errors.append(context)
            )

    with start_blocking_portal(name, options) as portal:
        portal.call(watch_loop)
        with portal.wrap_async_context_manager(serve("127.0.0.1", 0)) as server:
            yield LiveServer(portal, server, loop_errors)


def raw_exchange(port: int, reads: list[bytes], *, answered: bool = False) -> tuple[bytes, bool]:
    """Send `reads` (a pause between, so that they arrive as separate reads
    where the kernel allows; with `answered`, the first is answered before
    the rest go), half-close, and read until the server closes: (what it
    sent, whether it reset the connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=BOUND) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        received = bytearray()
        try:
            for i, data in enumerate(reads):
                if i == 1 and answered:
                    while len(received) < 6 or len(received) < 6 + int.from_bytes(
                        received[2:6], "big"
                    ):
                        received += sock.recv(65536)
                elif i:
                    time.sleep(0.001)
                sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server closed first (it took an A-ABORT, say): read what it sent
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                return bytes(received), True
            if not data:
                return bytes(received), False
            received += data


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_serve_takes_any_split_corrupted_stream(backend: str) -> None:
    """Our SCP on each transport answers a hostile client exactly as the core
    does, whatever the client sends and wherever it is cut; no traceback,
    every slot freed, and it goes on serving."""
    with live_server(backend) as live:

        @TRANSPORT
        @given(stream=scu_stream(), points=cuts_st)
        def feed(stream: bytes, points: list[int]) -> None:
            expected, _ = run_acceptor(stream, [stream] if stream else [])
            sent, reset = raw_exchange(live.server.port, cut(stream, points))
            if reset:  # (the kernel may drop what a reset overtook)
                assert expected.startswith(sent)
            else:
                assert sent == expected
            live.settle()

        feed()
        live.still_serving()
        assert live.loop_errors == []


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_serve_aborts_malformed_command_sets_split_anywhere(backend: str) -> None:
    """Each malformed C-ECHO-RQ, cut in two at every point: the AC, the
    A-ABORT (service provider, invalid parameter value), nothing else; the
    server closes when the client does, frees the slot, goes on serving."""
    with live_server(backend) as live:
        for name, bad in sorted(BAD_REQUESTS.items()):
            for at in range(0, len(bad) + 1, 3):
                sent, _ = raw_exchange(live.server.port, [RQ, bad[:at], bad[at:]])
                assert summary(sent) == ["AC", "ABORT(2,6)"], (name, at)
                live.settle()
        live.still_serving()
        assert live.loop_errors == []


class Recorder:
    """A structlog-style logger that keeps every event."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, object]]] = []

    def __getattr__(self, level: str) -> Callable[..., None]:
        def log(event: str, **fields: object) -> None:
            self.events.append((level, event, fields))

        return log


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_serve_contains_a_bug_to_its_connection(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception from the core (a bug: the core reports whatever a peer
    sends as events) ends that association only: an A-ABORT (service
    provider, reason not specified), one error line with the peer, the slot
    freed; no loop traceback on asyncio, no ExceptionGroup out of serve() on
    trio, and the server goes on serving."""
    taken_in = AcceptorSession.receive_data

    def buggy(self: AcceptorSession, data: bytes, now: float) -> list[object]:
        if data.startswith(b"\x04"):
            raise RuntimeError("injected")
        return taken_in(self, data, now)

    recorder = Recorder()
    logs.enable_logging(recorder)
    try:
        with live_server(backend) as live:
            monkeypatch.setattr(AcceptorSession, "receive_data", buggy)
            for _ in range(3):
                sent, _reset = raw_exchange(
                    live.server.port, [RQ, command(encode_echo_rq(1))], answered=True
                )
                assert summary(sent) == ["AC", "ABORT(2,0)"]
                live.settle()
            monkeypatch.undo()
            live.still_serving()
            assert live.loop_errors == []
    finally:
        logs.disable_logging()
    errors = [(event, fields) for level, event, fields in recorder.events if level == "error"]
    assert [event for event, _ in errors] == ["scp.internal_error"] * 3
    assert all(fields["error"] == "RuntimeError: injected" for _, fields in errors)
    assert all(str(fields["peer"]).startswith("127.0.0.1:") for _, fields in errors)


# --- our SCU against a raw loopback SCP ---------------------------------------------------------

CALLS = ["echo", "verify", "associate"]


def split_sender(chunks: Callable[[AssociateRQ], list[bytes]], *, after_echo: bool) -> Script:
    """A raw SCP: read the RQ (and, if `after_echo`, accept and read the
    C-ECHO-RQ), then send `chunks(rq)` as separate writes."""

    async def script(conn: PeerConnection) -> None:
        rq = await conn.expect_rq()
        if after_echo:
            await conn.send(ac_for(rq))
            await conn.expect_echo_rq()
        for i, data in enumerate(chunks(rq)):
            if i:
                await anyio.sleep(0.001)  # separate reads, where the kernel allows
            await conn.send(data)

    return script


def run_scu(
    backend: str, kind: str, script: Script, *, hold: float = BOUND
) -> tuple[EchoError | None, list[str]]:
    """`kind` (echo, verify, associate) on `backend` against `script` (the
    peer closes `hold` s after it, unless we did): the error it ended in
    and the PDUs it sent."""
    name, options = needs(backend)

    async def main() -> tuple[EchoError | None, list[str]]:
        async with hostile_scp(script, hold=hold) as peer:
            with anyio.fail_after(BOUND):
                error = await scu_call(kind, peer.port, {"acse_timeout": BOUND})
                conn = await peer.connection()
                await conn.ended.wait()  # we closed it
            return error, conn.pdus()

    return anyio.run(main, backend=name, backend_options=options)


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("name", sorted(BAD_RESPONSES))
def test_scu_aborts_malformed_response_split_anywhere(backend: str, name: str) -> None:
    """A malformed C-ECHO-RSP cut in two: ProtocolError (outcome
    "protocol-error") from echo(), verify() and associate(), and our A-ABORT
    (service provider, invalid parameter value) on the wire."""
    bad = BAD_RESPONSES[name]
    for at in (1, 7, len(bad) // 2, len(bad) - 1):

        def halves(_rq: AssociateRQ, at: int = at) -> list[bytes]:
            return [bad[:at], bad[at:]]

        for kind in CALLS:
            error, sent = run_scu(backend, kind, split_sender(halves, after_echo=True))
            assert isinstance(error, ProtocolError), (kind, at, error)
            assert error.outcome == "protocol-error"
            assert sent == ["RQ", "P-DATA", "ABORT(2,6)"], (kind, at)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_scu_takes_any_split_corrupted_stream(backend: str) -> None:
    """Whatever a raw SCP answers, corrupted and cut anywhere: echo(),
    verify() and associate() end in success or an EchoError, never anything
    else, and close the connection."""

    @TRANSPORT
    @given(stream=scp_stream(), points=cuts_st, kind=st.sampled_from(CALLS))
    def feed(stream: bytes, points: list[int], kind: str) -> None:
        def chunks(_rq: AssociateRQ) -> list[bytes]:
            return cut(stream, points)

        # The peer closes once it has sent it all: a truncated answer ends
        # at once (the connection lost), not after a timeout.
        error, _sent = run_scu(backend, kind, split_sender(chunks, after_echo=False), hold=0.0)
        assert error is None or isinstance(error, EchoError)

    feed()
