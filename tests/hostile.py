"""Small hostile DICOM peers on real loopback sockets, for issue 8's failure paths.

Not a test module. The peers are built on anyio's raw-socket waits
(`wait_readable` / `wait_writable`) rather than on streams, so that every
byte on the wire is where a case puts it: half a PDU header, an
A-ASSOCIATE-AC trickled a byte at a time, a reset (SO_LINGER 0) in the middle
of a PDU, a client that never reads. They run unchanged under asyncio and trio.

- `PeerConnection`: one connection. A reader task records every byte the
  side under test sends and how the connection ended (its FIN, its reset,
  or our own close); the *script* of a case sends what it likes.
- `hostile_scp()`: a listener that runs a script on each connection, for
  the SCU tests (`echo()`, `verify()`, `associate()`, the CLI).
- `raw_client()`: one connection to a server, for the SCP tests.
- `SCU_CASES` / `SCP_CASES`: the cases of issue 8 with what each must end
  in, shared by the hostile tests, the leak tests and the CLI tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio

from asyncecho import associate, echo, verify
from asyncecho.exceptions import (
    AcseTimeout,
    AssociationAborted,
    EchoError,
    NetworkTimeout,
    NoAcceptedContext,
    ProtocolError,
)
from asyncecho.protocol import uids
from asyncecho.protocol.dimse import decode_command, encode_echo_rq
from asyncecho.protocol.errors import PDUError
from asyncecho.protocol.negotiation import AcceptorPolicy, build_ac, build_rq
from asyncecho.protocol.pdu import (
    PDU,
    PDV,
    Abort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    PDataTF,
    ReleaseRP,
    ReleaseRQ,
    decode_pdu,
)
from asyncecho.protocol.pdu_items import PresentationContextAC

LOCALHOST = "127.0.0.1"
#: how long a peer waits, after its script, for the side under test to close
HOLD = 5.0
#: what a case may take beyond its configured timeout (generous: not a benchmark)
MARGIN = 1.5


class ScriptEnded(Exception):
    """The side under test closed, or sent something the script did not
    expect: the script has nothing more to do."""


# --- one connection --------------------------------------------------------------------------


class PeerConnection:
    """A non-blocking socket, a reader task that records what arrives, and
    the sends a script makes."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.received = bytearray()
        #: "eof" (the other side closed), "reset" (it reset) or "local" (we closed)
        self.end: str | None = None
        self.ended = anyio.Event()
        self._cursor = 0
        self._arrived = anyio.Event()
        self._reader_scope = anyio.CancelScope()
        self._reader_done = anyio.Event()
        self._reading = False
        self._closed = False

    # -- reading (the reader task only) --

    def start_reading(self, tg: anyio.abc.TaskGroup) -> None:
        """Start the reader task in `tg`."""
        self._reading = True
        tg.start_soon(self._read_loop)

    async def _read_loop(self) -> None:
        try:
            with self._reader_scope:
                while True:
                    await anyio.wait_readable(self.sock)
                    try:
                        data = self.sock.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        self._finish("reset")
                        return
                    if not data:
                        self._finish("eof")
                        return
                    self.received += data
                    self._wake()
        finally:
            self._finish("local")
            self._reader_done.set()

    def _wake(self) -> None:
        self._arrived.set()
        self._arrived = anyio.Event()

    def _finish(self, how: str) -> None:
        if self.end is None:
            self.end = how
            self.ended.set()
            self._wake()

    async def _wait_for(self, count: int) -> None:
        while len(self.received) - self._cursor < count:
            if self.end is not None:
                raise ScriptEnded(f"connection ended ({self.end})")
            await self._arrived.wait()

    async def read_pdu(self) -> PDU:
        """The next whole PDU the other side sent (ScriptEnded if it closed)."""
        await self._wait_for(6)
        length = int.from_bytes(self.received[self._cursor + 2 : self._cursor + 6], "big")
        await self._wait_for(6 + length)
        raw = bytes(self.received[self._cursor : self._cursor + 6 + length])
        self._cursor += 6 + length
        return decode_pdu(raw)

    async def expect_rq(self) -> AssociateRQ:
        pdu = await self.read_pdu()
        if not isinstance(pdu, AssociateRQ):
            raise ScriptEnded(f"expected an A-ASSOCIATE-RQ, got {pdu}")
        return pdu

    async def expect_echo_rq(self) -> tuple[int, int]:
        """(context ID, message ID) of the next C-ECHO-RQ."""
        pdu = await self.read_pdu()
        if not isinstance(pdu, PDataTF):
            raise ScriptEnded(f"expected a P-DATA-TF, got {pdu}")
        pdv = pdu.pdvs[0]
        message_id = decode_command(pdv.data).message_id
        assert message_id is not None
        return pdv.context_id, message_id

    async def expect(self, kind: type) -> None:
        pdu = await self.read_pdu()
        if not isinstance(pdu, kind):
            raise ScriptEnded(f"expected a {kind.__name__}, got {pdu}")

    def pdus(self) -> list[str]:
        """Everything received so far, one short name per PDU (`summary`)."""
        return summary(bytes(self.received))

    # -- writing (the script) --

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                sent = self.sock.send(view)
            except BlockingIOError:
                await anyio.wait_writable(self.sock)
                continue
            except OSError as exc:  # EPIPE, ECONNRESET, EBADF once closed
                raise ScriptEnded(f"send failed: {exc}") from exc
            view = view[sent:]

    async def trickle(self, data: bytes, delay: float) -> None:
        """Slowloris: one byte every `delay` seconds."""
        for byte in data:
            await self.send(bytes((byte,)))
            await anyio.sleep(delay)

    async def flood(self, block: bytes, *, stall: float = 0.3, limit: float = 3.0) -> int:
        """Write `block` again and again without ever reading, until a write
        has been blocked for `stall` seconds (or `limit` passed); return the
        bytes written."""
        written = 0
        with anyio.move_on_after(limit):
            while True:
                at = written % len(block)  # a partial send goes on mid-block
                try:
                    written += self.sock.send(memoryview(block)[at:])
                    continue
                except BlockingIOError:
                    pass
                except OSError:
                    return written
                with anyio.move_on_after(stall) as blocked:
                    await anyio.wait_writable(self.sock)
                if blocked.cancelled_caught:
                    return written
        return written

    async def close(self, *, reset: bool = False) -> None:
        """Close (FIN), or reset (RST: SO_LINGER 0) when `reset`."""
        if self._reading:
            self._reader_scope.cancel()
            await self._reader_done.wait()
        if reset and not self._closed:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_now()

    def close_now(self) -> None:
        """Close the socket; only once the reader task is no longer waiting on it."""
        if not self._closed:
            self._closed = True
            self.sock.close()

    async def hold(self, limit: float = HOLD) -> None:
        """Until the other side closes (at most `limit` seconds)."""
        with anyio.move_on_after(limit):
            await self.ended.wait()

    def peer_gone(self) -> bool:
        """Whether the other side has closed or reset, without reading (for
        a client that never reads): the kernel's own TCP state."""
        info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)
        return info[0] != 1  # 1: ESTABLISHED


Script = Callable[[PeerConnection], Awaitable[None]]


async def run_script(conn: PeerConnection, script: Script, hold: float = HOLD) -> None:
    """Record everything on `conn` while `script` runs, then until the other
    side closes (at most `hold` s); close the socket at the end."""
    try:
        async with anyio.create_task_group() as tg:
            conn.start_reading(tg)
            try:
                await script(conn)
            except ScriptEnded:
                pass
            await conn.hold(hold)
            tg.cancel_scope.cancel()
    finally:
        conn.close_now()


# --- the two kinds of peer -----------------------------------------------------------------------


@dataclass
class HostileScp:
    port: int
    listener: socket.socket
    connections: list[PeerConnection] = field(default_factory=list)
    _accepted: anyio.Event = field(default_factory=anyio.Event)

    def own_fds(self) -> set[str]:
        """The peer's own descriptors (its listener and open connections),
        to tell them from those of the side under test."""
        socks = [self.listener, *(conn.sock for conn in self.connections)]
        return {str(sock.fileno()) for sock in socks if sock.fileno() >= 0}

    async def connection(self, index: int = 0, timeout: float = 5.0) -> PeerConnection:
        with anyio.fail_after(timeout):
            while len(self.connections) <= index:
                await self._accepted.wait()
                self._accepted = anyio.Event()
        return self.connections[index]


@asynccontextmanager
async def hostile_scp(script: Script, *, hold: float = HOLD) -> AsyncIterator[HostileScp]:
    """A loopback listener that runs `script` on every connection."""
    listener = socket.socket()
    listener.setblocking(False)
    listener.bind((LOCALHOST, 0))
    listener.listen(256)
    peer = HostileScp(int(listener.getsockname()[1]), listener)

    async def accept_loop(tg: anyio.abc.TaskGroup) -> None:
        while True:
            await anyio.wait_readable(listener)
            try:
                sock, _ = listener.accept()
            except BlockingIOError:
                continue
            conn = PeerConnection(sock)
            peer.connections.append(conn)
            peer._accepted.set()
            tg.start_soon(run_script, conn, script, hold)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(accept_loop, tg)
            try:
                yield peer
            finally:
                tg.cancel_scope.cancel()
    finally:
        listener.close()
        for conn in peer.connections:
            conn.close_now()


async def connect(port: int, *, buffers: int | None = None) -> PeerConnection:
    """A raw non-blocking TCP connection to a loopback port; `buffers`: its
    kernel send and receive buffer sizes (set before the connect, so that
    the window it advertises stays small)."""
    sock = socket.socket()
    sock.setblocking(False)
    if buffers is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffers)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffers)
    try:
        code = sock.connect_ex((LOCALHOST, port))
        if code not in (0, errno.EINPROGRESS):
            raise OSError(code, errno.errorcode.get(code, "connect failed"))
        await anyio.wait_writable(sock)
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, errno.errorcode.get(code, "connect failed"))
    except BaseException:
        sock.close()
        raise
    return PeerConnection(sock)


@asynccontextmanager
async def raw_client(
    port: int, *, read: bool = True, buffers: int | None = None
) -> AsyncIterator[PeerConnection]:
    """A hostile SCU: a raw connection to `port` that records what the
    server sends (unless `read` is False: a client that never reads)."""
    conn = await connect(port, buffers=buffers)
    try:
        if not read:
            yield conn
            return
        async with anyio.create_task_group() as tg:
            conn.start_reading(tg)
            try:
                yield conn
            finally:
                tg.cancel_scope.cancel()
    finally:
        conn.close_now()


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll `condition` (kernel and server state, which no event reports)."""
    with anyio.fail_after(timeout):
        while not condition():  # noqa: ASYNC110 - nothing to wait on but the poll
            await anyio.sleep(0.01)


def open_fds(pid: int | str = "self") -> set[str]:
    """The open file descriptors of a process (`/proc/PID/fd`), without the
    one the listing itself used (closed by the time it is looked at)."""
    listed = os.listdir(f"/proc/{pid}/fd")
    alive = set()
    for fd in listed:
        try:
            os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        alive.add(fd)
    return alive


def describe_fds(fds: set[str]) -> list[str]:
    """`fd -> target` for each of this process's descriptors in `fds` that
    is still open (for an assertion's message: [] once none is left)."""
    out = []
    for fd in sorted(fds, key=int):
        try:
            out.append(f"{fd} -> {os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            pass  # closed meanwhile
    return out


def open_files(pid: int | str = "self") -> set[str]:
    """What the open descriptors of a process point to (`socket:[inode]`,
    paths): unlike descriptor numbers, never reused for a new socket."""
    targets = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
    return targets


# --- bytes ---------------------------------------------------------------------------------------


def summary(data: bytes) -> list[str]:
    """Short names of the PDUs in `data`: RQ, AC, RJ(result,source,reason),
    P-DATA, RELEASE-RQ, RELEASE-RP, ABORT(source,reason); `?` for what does
    not decode."""
    names: list[str] = []
    while len(data) >= 6:
        end = 6 + int.from_bytes(data[2:6], "big")
        if end > len(data):
            names.append("?")
            break
        try:
            pdu = decode_pdu(data[:end])
        except PDUError:
            names.append("?")
        else:
            names.append(pdu_name(pdu))
        data = data[end:]
    if data:
        names.append("?")
    return names


def pdu_name(pdu: PDU) -> str:
    if isinstance(pdu, Abort):
        return f"ABORT({pdu.source},{pdu.reason})"
    if isinstance(pdu, AssociateRJ):
        return f"RJ({pdu.result},{pdu.source},{pdu.reason})"
    return {
        AssociateRQ: "RQ",
        AssociateAC: "AC",
        PDataTF: "P-DATA",
        ReleaseRQ: "RELEASE-RQ",
        ReleaseRP: "RELEASE-RP",
    }[type(pdu)]


def element(elem: int, value: bytes) -> bytes:
    """One command-group element, Implicit VR Little Endian (PS3.7 6.3.1)."""
    return b"\x00\x00" + elem.to_bytes(2, "little") + len(value).to_bytes(4, "little") + value


def command_set(*elements: bytes) -> bytes:
    body = b"".join(elements)
    return element(0x0000, len(body).to_bytes(4, "little")) + body


def us(value: int) -> bytes:
    return value.to_bytes(2, "little")


def echo_rsp(
    message_id: int,
    *,
    status: int | None = 0x0000,
    command_field: int = 0x8030,
    data_set_type: int = 0x0101,
) -> bytes:
    """A C-ECHO-RSP command set built here, independent of the codec, so it
    can be wrong in one field at a time."""
    elements = [
        element(0x0002, b"1.2.840.10008.1.1\x00"),
        element(0x0100, us(command_field)),
        element(0x0120, us(message_id)),
        element(0x0800, us(data_set_type)),
    ]
    if status is not None:
        elements.append(element(0x0900, us(status)))
    return command_set(*elements)


def pdata(*pdvs: PDV) -> bytes:
    return PDataTF(pdvs).encode()


def command_pdv(context_id: int, data: bytes, *, last: bool = True) -> PDV:
    return PDV(context_id, True, last, data)


def ac_for(rq: AssociateRQ, **changes: object) -> bytes:
    """The A-ASSOCIATE-AC a correct SCP answers `rq` with, with `changes`."""
    ac = build_ac(rq, AcceptorPolicy())
    return dataclasses.replace(ac, **changes).encode()  # type: ignore[arg-type]


def overrun_first_context(pdu: bytes) -> bytes:
    """An A-ASSOCIATE-RQ/AC with its first presentation context item's length
    set to 0xFFFF, past the end of the PDU (an item overrunning its parent)."""
    at = 6 + 68  # the application context item (PS3.8 Tables 9-11, 9-17)
    at += 4 + int.from_bytes(pdu[at + 2 : at + 4], "big")
    assert pdu[at] in (0x20, 0x21)
    return pdu[: at + 2] + b"\xff\xff" + pdu[at + 4 :]


def short_length(pdu: bytes, cut: int = 10) -> bytes:
    """`pdu` with a PDU length `cut` bytes shorter than its items."""
    length = int.from_bytes(pdu[2:6], "big") - cut
    return pdu[:2] + length.to_bytes(4, "big") + pdu[6:]


UNKNOWN_PDU = b"\xff\x00\x00\x00\x00\x04GARB"
HUGE_AC_HEADER = b"\x02\x00\xff\xff\xff\xff"
HUGE_PDATA_HEADER = b"\x04\x00\xff\xff\xff\xff"
RQ = build_rq(calling_ae="HOSTILE", called_ae="ANY-SCP").encode()
ECHO_RQ = pdata(command_pdv(1, encode_echo_rq(1)))
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


# --- scripts for a hostile SCP ---------------------------------------------------------------------


async def answer_echo(conn: PeerConnection, rsp: Callable[[int, int], bytes] | None = None) -> None:
    """Read a C-ECHO-RQ and answer it (with `rsp(context, message_id)` if given)."""
    context_id, message_id = await conn.expect_echo_rq()
    if rsp is None:
        await conn.send(pdata(command_pdv(context_id, echo_rsp(message_id))))
    else:
        await conn.send(rsp(context_id, message_id))


async def answer_release(conn: PeerConnection) -> None:
    await conn.expect(ReleaseRQ)
    await conn.send(ReleaseRP().encode())


def accept_then(*rest: Script, **ac_changes: object) -> Script:
    """Accept the association (with `ac_changes` to the AC), then run `rest`."""

    async def script(conn: PeerConnection) -> None:
        rq = await conn.expect_rq()
        await conn.send(ac_for(rq, **ac_changes))
        for step in rest:
            await step(conn)

    return script


def after_rq(data: bytes | Callable[[AssociateRQ], bytes]) -> Script:
    """Read the A-ASSOCIATE-RQ, send `data` (or what `data(rq)` builds)."""

    async def script(conn: PeerConnection) -> None:
        rq = await conn.expect_rq()
        await conn.send(data(rq) if callable(data) else data)

    return script


def send(data: bytes) -> Script:
    async def script(conn: PeerConnection) -> None:
        await conn.send(data)

    return script


def rsp_with(build: Callable[[int, int], bytes]) -> Script:
    async def script(conn: PeerConnection) -> None:
        await answer_echo(conn, build)

    return script


async def silent(conn: PeerConnection) -> None:
    """Accept TCP and never send a byte."""


async def close_at_once(conn: PeerConnection) -> None:
    await conn.close()


async def half_header(conn: PeerConnection) -> None:
    await conn.send(b"\x02\x00\x00")


async def slowloris_ac(conn: PeerConnection) -> None:
    rq = await conn.expect_rq()
    await conn.trickle(ac_for(rq), 0.2)


async def reset_mid_ac(conn: PeerConnection) -> None:
    rq = await conn.expect_rq()
    await conn.send(ac_for(rq)[:40])
    await anyio.sleep(0.05)
    await conn.close(reset=True)


async def never_release(conn: PeerConnection) -> None:
    await conn.expect(ReleaseRQ)


async def send_abort_after_echo_rq(conn: PeerConnection) -> None:
    await conn.expect_echo_rq()
    await conn.send(Abort(2, 0).encode())


async def send_abort_after_release_rq(conn: PeerConnection) -> None:
    await conn.expect(ReleaseRQ)
    await conn.send(Abort(0, 0).encode())


async def release_instead_of_rsp(conn: PeerConnection) -> None:
    await conn.expect_echo_rq()
    await conn.send(ReleaseRQ().encode())
    await conn.expect(ReleaseRP)


async def garbage_instead_of_rsp(conn: PeerConnection) -> None:
    await conn.expect_echo_rq()
    await conn.send(UNKNOWN_PDU)


async def second_ac_instead_of_rsp(conn: PeerConnection) -> None:
    await conn.expect_echo_rq()
    await conn.send(ac_for(build_rq(calling_ae="HOSTILE", called_ae="ANY-SCP")))


async def huge_pdata_instead_of_rsp(conn: PeerConnection) -> None:
    await conn.expect_echo_rq()
    await conn.send(HUGE_PDATA_HEADER)


async def zero_pdata_instead_of_rsp(conn: PeerConnection) -> None:
    await conn.expect_echo_rq()
    await conn.send(b"\x04\x00\x00\x00\x00\x00")


async def rsp_then_release_rq(conn: PeerConnection) -> None:
    """Answer, and ask to release in the same write (the peer releases first)."""
    context_id, message_id = await conn.expect_echo_rq()
    await conn.send(pdata(command_pdv(context_id, echo_rsp(message_id))) + ReleaseRQ().encode())
    await conn.expect(ReleaseRP)


def one_byte_pdvs(context_id: int, message_id: int) -> bytes:
    rsp = echo_rsp(message_id)
    return pdata(
        *(command_pdv(context_id, rsp[i : i + 1], last=i == len(rsp) - 1) for i in range(len(rsp)))
    )


def one_byte_pdv_per_pdu(context_id: int, message_id: int) -> bytes:
    rsp = echo_rsp(message_id)
    return b"".join(
        pdata(command_pdv(context_id, rsp[i : i + 1], last=i == len(rsp) - 1))
        for i in range(len(rsp))
    )


def rsp_with_data_set(context_id: int, message_id: int) -> bytes:
    rsp = echo_rsp(message_id, data_set_type=0x0000)
    return pdata(command_pdv(context_id, rsp), PDV(context_id, False, True, b"\x08\x00\x05\x00"))


def rsp_then_stray_data_pdv(context_id: int, message_id: int) -> bytes:
    """A complete C-ECHO-RSP (no data set), then a data set fragment nobody announced."""
    rsp = echo_rsp(message_id)
    return pdata(command_pdv(context_id, rsp), PDV(context_id, False, True, b"\x00\x00"))


# --- the SCU cases ---------------------------------------------------------------------------------

#: short timeouts: a silent peer ends in the ACSE or DIMSE timeout, not the network one
SCU_TIMEOUTS: Mapping[str, Any] = {
    "connect_timeout": 2.0,
    "acse_timeout": 0.2,
    "dimse_timeout": 0.2,
    "network_timeout": 2.0,
}


@dataclass(frozen=True)
class ScuCase:
    """A hostile SCP and what an echo against it must end in.

    `outcome`: the exact exception class (None: the echo succeeds).
    `sent`: every PDU the SCU sent, in order (None: not checked, the peer
    closed before it could read them). `ends_by`: the timeout that must end
    it (and bound its duration), if one does. `peer_closes`: the peer, not
    the SCU, ends the connection.
    """

    script: Script
    outcome: type[EchoError] | None
    sent: tuple[str, ...] | None
    ends_by: str | None = None
    timeouts: Mapping[str, Any] = field(default_factory=dict)
    peer_closes: bool = False

    def options(self) -> dict[str, Any]:
        return {**SCU_TIMEOUTS, **self.timeouts}

    def bound(self) -> float:
        """The configured time this case may take (before the margin)."""
        options = self.options()
        return options[self.ends_by] if self.ends_by else 0.0


# A timeout: the SCU's own A-ABORT (service user, PS3.8 7.3).
SENT_RQ_ABORT = ("RQ", "ABORT(0,0)")
# A protocol violation, in a PDU or in the C-ECHO-RSP command set it carries:
# the upper layer's A-ABORT (AA-8: service provider, with the reason of PS3.8
# Table 9-26; 6, invalid PDU parameter value, for a bad command set).
SENT_ECHO_ABORT = ("RQ", "P-DATA", "ABORT(2,6)")


SCU_CASES: dict[str, ScuCase] = {
    # --- silence and broken transports ---
    "silent": ScuCase(silent, AcseTimeout, SENT_RQ_ABORT, ends_by="acse_timeout"),
    "silent-network-timeout": ScuCase(
        silent,
        NetworkTimeout,
        SENT_RQ_ABORT,
        ends_by="network_timeout",
        timeouts={"acse_timeout": 2.0, "network_timeout": 0.2},
    ),
    "half-header": ScuCase(half_header, AcseTimeout, SENT_RQ_ABORT, ends_by="acse_timeout"),
    # network_timeout is an idle timeout: each byte resets it, so it never
    # fires; the ACSE timeout bounds the whole wait for the AC.
    "slowloris-ac": ScuCase(
        slowloris_ac,
        AcseTimeout,
        SENT_RQ_ABORT,
        ends_by="acse_timeout",
        timeouts={"acse_timeout": 0.5, "network_timeout": 0.3},
    ),
    "close-after-accept": ScuCase(close_at_once, AssociationAborted, None, peer_closes=True),
    "reset-mid-pdu": ScuCase(reset_mid_ac, AssociationAborted, ("RQ",), peer_closes=True),
    # --- malformed PDUs: A-ABORT from the service provider (AA-8) ---
    "huge-length": ScuCase(after_rq(HUGE_AC_HEADER), ProtocolError, ("RQ", "ABORT(2,6)")),
    "huge-length-pdata": ScuCase(
        accept_then(huge_pdata_instead_of_rsp), ProtocolError, ("RQ", "P-DATA", "ABORT(2,6)")
    ),
    "length-shorter-than-items": ScuCase(
        after_rq(lambda rq: short_length(ac_for(rq))), ProtocolError, ("RQ", "ABORT(2,6)")
    ),
    "item-overruns-parent": ScuCase(
        after_rq(lambda rq: overrun_first_context(ac_for(rq))),
        ProtocolError,
        ("RQ", "ABORT(2,6)"),
    ),
    "zero-length-pdu": ScuCase(
        after_rq(b"\x02\x00\x00\x00\x00\x00"), ProtocolError, ("RQ", "ABORT(2,6)")
    ),
    "zero-length-pdata": ScuCase(
        accept_then(zero_pdata_instead_of_rsp), ProtocolError, ("RQ", "P-DATA", "ABORT(2,6)")
    ),
    "unknown-pdu-type": ScuCase(after_rq(UNKNOWN_PDU), ProtocolError, ("RQ", "ABORT(2,1)")),
    # --- A-ASSOCIATE-AC that does not answer the RQ ---
    "ac-other-application-context": ScuCase(
        accept_then(application_context="1.2.3.4"), ProtocolError, ("RQ", "ABORT(2,6)")
    ),
    # PS3.8 9.3.3 asks for one or more contexts; read leniently, it accepts
    # none of ours, and the SCU releases the useless association.
    "ac-no-presentation-contexts": ScuCase(
        accept_then(answer_release, presentation_contexts=()),
        NoAcceptedContext,
        ("RQ", "RELEASE-RQ"),
    ),
    "ac-context-id-never-proposed": ScuCase(
        accept_then(
            presentation_contexts=(PresentationContextAC(3, 0, uids.IMPLICIT_VR_LE),),
        ),
        ProtocolError,
        ("RQ", "ABORT(2,6)"),
    ),
    "ac-transfer-syntax-never-proposed": ScuCase(
        accept_then(presentation_contexts=(PresentationContextAC(1, 0, JPEG_BASELINE),)),
        ProtocolError,
        ("RQ", "ABORT(2,6)"),
    ),
    # PS3.8 9.3.3: the AC's AE title fields "shall not be tested" on receipt.
    "ac-ae-titles-changed": ScuCase(
        accept_then(answer_echo, answer_release, called_ae="SOMEONE", calling_ae="ELSE"),
        None,
        ("RQ", "P-DATA", "RELEASE-RQ"),
    ),
    # --- PDUs at the wrong time: AA-8, unexpected PDU ---
    "two-acs": ScuCase(
        after_rq(lambda rq: ac_for(rq) + ac_for(rq)), ProtocolError, ("RQ", "ABORT(2,2)")
    ),
    "second-ac-instead-of-rsp": ScuCase(
        accept_then(second_ac_instead_of_rsp), ProtocolError, ("RQ", "P-DATA", "ABORT(2,2)")
    ),
    "pdata-before-ac": ScuCase(
        after_rq(lambda rq: pdata(command_pdv(1, echo_rsp(1))) + ac_for(rq)),
        ProtocolError,
        ("RQ", "ABORT(2,2)"),
    ),
    "garbage-after-ac": ScuCase(
        after_rq(lambda rq: ac_for(rq) + UNKNOWN_PDU), ProtocolError, ("RQ", "ABORT(2,1)")
    ),
    "garbage-instead-of-rsp": ScuCase(
        accept_then(garbage_instead_of_rsp), ProtocolError, ("RQ", "P-DATA", "ABORT(2,1)")
    ),
    # --- release and abort from the peer ---
    # The peer releases with our request outstanding: answered (AR-4), and
    # the echo fails as aborted.
    "release-rq-instead-of-rsp": ScuCase(
        accept_then(release_instead_of_rsp), AssociationAborted, ("RQ", "P-DATA", "RELEASE-RP")
    ),
    # The peer answers and releases in one write: the echo is complete and
    # the association released (by the peer): success.
    "release-rq-after-rsp": ScuCase(
        accept_then(rsp_then_release_rq), None, ("RQ", "P-DATA", "RELEASE-RP")
    ),
    "abort-after-rq": ScuCase(after_rq(Abort(0, 0).encode()), AssociationAborted, ("RQ",)),
    "abort-with-the-ac": ScuCase(
        after_rq(lambda rq: ac_for(rq) + Abort(0, 0).encode()), AssociationAborted, ("RQ",)
    ),
    "abort-waiting-for-rsp": ScuCase(
        accept_then(send_abort_after_echo_rq), AssociationAborted, ("RQ", "P-DATA")
    ),
    "abort-waiting-for-rp": ScuCase(
        accept_then(answer_echo, send_abort_after_release_rq),
        AssociationAborted,
        ("RQ", "P-DATA", "RELEASE-RQ"),
    ),
    "never-answers-release": ScuCase(
        accept_then(answer_echo, never_release),
        AcseTimeout,
        ("RQ", "P-DATA", "RELEASE-RQ", "ABORT(0,0)"),
        ends_by="acse_timeout",
    ),
    # --- C-ECHO-RSP: violations of PS3.7 in a well-formed P-DATA ---
    "rsp-wrong-message-id": ScuCase(
        accept_then(rsp_with(lambda c, m: pdata(command_pdv(c, echo_rsp(m + 1))))),
        ProtocolError,
        SENT_ECHO_ABORT,
    ),
    "rsp-wrong-command-field": ScuCase(
        accept_then(
            rsp_with(lambda c, m: pdata(command_pdv(c, echo_rsp(m, command_field=0x8001))))
        ),
        ProtocolError,
        SENT_ECHO_ABORT,
    ),
    "rsp-missing-status": ScuCase(
        accept_then(rsp_with(lambda c, m: pdata(command_pdv(c, echo_rsp(m, status=None))))),
        ProtocolError,
        SENT_ECHO_ABORT,
    ),
    "rsp-with-data-set": ScuCase(
        accept_then(rsp_with(rsp_with_data_set)), ProtocolError, SENT_ECHO_ABORT
    ),
    # PS3.8 Annex E: a data fragment with no command announcing one breaks
    # the P-DATA itself, so the upper layer aborts (even after a whole RSP).
    "rsp-then-stray-data-pdv": ScuCase(
        accept_then(rsp_with(rsp_then_stray_data_pdv)),
        ProtocolError,
        ("RQ", "P-DATA", "ABORT(2,6)"),
    ),
    "rsp-pdv-unknown-context": ScuCase(
        accept_then(rsp_with(lambda c, m: pdata(command_pdv(3, echo_rsp(m))))),
        ProtocolError,
        ("RQ", "P-DATA", "ABORT(2,6)"),
    ),
    # PS3.8 Annex E allows any fragmentation: these must work.
    "rsp-one-byte-pdvs": ScuCase(
        accept_then(rsp_with(one_byte_pdvs), answer_release), None, ("RQ", "P-DATA", "RELEASE-RQ")
    ),
    "rsp-one-byte-pdv-per-pdu": ScuCase(
        accept_then(rsp_with(one_byte_pdv_per_pdu), answer_release),
        None,
        ("RQ", "P-DATA", "RELEASE-RQ"),
    ),
}


# --- the SCP cases ----------------------------------------------------------------------------------

#: serve() settings for the SCP cases: ARTIM (the ACSE timeout) and the idle timeout
SCP_SETTINGS: Mapping[str, Any] = {"acse_timeout": 0.2, "network_timeout": 0.3}


async def associated(conn: PeerConnection) -> None:
    """Send an A-ASSOCIATE-RQ and wait for the server's answer."""
    await conn.send(RQ)
    await conn.read_pdu()


def then_send(data: bytes) -> Script:
    async def script(conn: PeerConnection) -> None:
        await associated(conn)
        await conn.send(data)

    return script


async def slowloris_rq(conn: PeerConnection) -> None:
    await conn.trickle(RQ, 0.05)


async def reset_mid_rq(conn: PeerConnection) -> None:
    await conn.send(RQ[:40])
    await anyio.sleep(0.02)
    await conn.close(reset=True)


async def rq_then_close(conn: PeerConnection) -> None:
    await conn.send(RQ)
    await conn.close()


@dataclass(frozen=True)
class ScpCase:
    """A hostile client and what the server must answer before it closes.

    `expect`: every PDU the server sends. `ends_by`: "acse_timeout" (ARTIM),
    "network_timeout" (the idle timeout) or None (at once). `client_closes`:
    the client ends it, the server only has to clean up."""

    script: Script
    expect: tuple[str, ...]
    ends_by: str | None
    client_closes: bool = False


SCP_CASES: dict[str, ScpCase] = {
    # Sta2: ARTIM bounds the wait for the A-ASSOCIATE-RQ (PS3.8 9.1.4), and
    # a byte at a time does not restart it.
    "silent": ScpCase(silent, (), "acse_timeout"),
    "half-header": ScpCase(send(b"\x01\x00\x00"), (), "acse_timeout"),
    "slowloris-rq": ScpCase(slowloris_rq, (), "acse_timeout"),
    # Sta2 + Evt19: AA-1, an A-ABORT (service user source), then ARTIM
    # closes (the client never does).
    "huge-length-rq": ScpCase(send(b"\x01\x00\xff\xff\xff\xff"), ("ABORT(0,0)",), "acse_timeout"),
    "zero-length-rq": ScpCase(send(b"\x01\x00\x00\x00\x00\x00"), ("ABORT(0,0)",), "acse_timeout"),
    "unknown-pdu-type-sta2": ScpCase(send(UNKNOWN_PDU), ("ABORT(0,0)",), "acse_timeout"),
    "item-overruns-parent": ScpCase(
        send(overrun_first_context(RQ)), ("ABORT(0,0)",), "acse_timeout"
    ),
    "pdata-before-rq": ScpCase(send(ECHO_RQ), ("ABORT(0,0)",), "acse_timeout"),
    # Sta6: a PDU never completed; the idle timeout aborts the association.
    "half-header-sta6": ScpCase(
        then_send(b"\x04\x00\x00"), ("AC", "ABORT(0,0)"), "network_timeout"
    ),
    "half-pdu-sta6": ScpCase(then_send(ECHO_RQ[:20]), ("AC", "ABORT(0,0)"), "network_timeout"),
    # Sta6 + Evt19 (or a PDU out of turn): AA-8, an A-ABORT from the service
    # provider with its reason; ARTIM then closes (Sta13).
    "huge-length-pdata": ScpCase(
        then_send(HUGE_PDATA_HEADER), ("AC", "ABORT(2,6)"), "acse_timeout"
    ),
    "zero-length-pdata": ScpCase(
        then_send(b"\x04\x00\x00\x00\x00\x00"), ("AC", "ABORT(2,6)"), "acse_timeout"
    ),
    "unknown-pdu-type-sta6": ScpCase(then_send(UNKNOWN_PDU), ("AC", "ABORT(2,1)"), "acse_timeout"),
    "second-rq": ScpCase(then_send(RQ), ("AC", "ABORT(2,2)"), "acse_timeout"),
    "pdv-unknown-context": ScpCase(
        then_send(pdata(command_pdv(3, encode_echo_rq(1)))), ("AC", "ABORT(2,6)"), "acse_timeout"
    ),
    # The client goes away: nothing to send, only to clean up.
    "reset-mid-rq": ScpCase(reset_mid_rq, (), None, client_closes=True),
    "rq-then-close": ScpCase(rq_then_close, (), None, client_closes=True),
}


# --- running the cases -------------------------------------------------------------------------


async def scu_call(kind: str, port: int, options: Mapping[str, Any]) -> EchoError | None:
    """The error the call ends in, None on success."""
    if kind == "echo":
        try:
            result = await echo("127.0.0.1", port, **options)
        except EchoError as error:
            return error
        assert result.ok
        return None
    if kind == "verify":
        result = await verify("127.0.0.1", port, **options)
        assert bool(result) is (result.error is None)
        return result.error
    try:
        async with associate("127.0.0.1", port, **options) as assoc:
            assert await assoc.echo() == 0
    except EchoError as error:
        return error
    return None


async def check_closed_by_scu(case: ScuCase, conn: PeerConnection) -> None:
    """The SCU closed its socket (the peer saw its FIN or reset), and sent
    exactly the PDUs of the case."""
    if not case.peer_closes:
        with anyio.fail_after(MARGIN):
            await conn.ended.wait()
        assert conn.end in ("eof", "reset")
    if case.sent is not None:
        assert conn.pdus() == list(case.sent)


async def run_scp_case(case: ScpCase, port: int, settings: Mapping[str, Any]) -> PeerConnection:
    """Run one hostile client against `port` (a good echo alongside); the
    connection once the server has closed it."""
    bound = settings[case.ends_by] if case.ends_by else 0.0
    async with raw_client(port) as conn:
        start = anyio.current_time()
        with anyio.fail_after(bound + MARGIN):
            with contextlib.suppress(ScriptEnded):
                await case.script(conn)
            # a well-behaved client, while the hostile one is still connected
            assert (await echo(LOCALHOST, port, acse_timeout=2, dimse_timeout=2)).ok
            await conn.ended.wait()
        elapsed = anyio.current_time() - start
    if not case.client_closes:
        assert conn.end in ("eof", "reset")
        assert conn.pdus() == list(case.expect)
    if case.ends_by is not None:
        assert elapsed >= bound * 0.8
    return conn
