"""The ceiling: one association (A-ASSOCIATE-RQ, C-ECHO-RQ, A-RELEASE-RQ) as
precomputed bytes on an `asyncio.Protocol`, framed by PDU length only.

No state machine, no timers, no decoding beyond the PDU type: what is left
is the event loop's own cost of a TCP connection and three round trips,
which is the most any Python client on this loop can do.
"""

from __future__ import annotations

import asyncio
from typing import cast

from . import pdus


class RawEchoProtocol(asyncio.Protocol):
    """Sends RQ; on AC sends the C-ECHO-RQ; on P-DATA (the response) sends
    A-RELEASE-RQ; on RP closes and resolves `done` with True. Anything else
    (RJ, A-ABORT, a closed connection) resolves it with False."""

    __slots__ = ("_buffer", "_done", "_transport")

    def __init__(self, done: asyncio.Future[bool]) -> None:
        self._done = done
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance.
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(pdus.ASSOCIATE_RQ)

    def data_received(self, data: bytes) -> None:
        if self._buffer:
            data = self._buffer + data
        start, size = 0, len(data)
        while size - start >= pdus.HEADER:
            end = start + pdus.HEADER + int.from_bytes(data[start + 2 : start + 6], "big")
            if end > size:
                break
            self._pdu(data[start])
            start = end
        self._buffer = data[start:] if start < size else b""

    def _pdu(self, pdu_type: int) -> None:
        transport = self._transport
        assert transport is not None
        if pdu_type == pdus.A_ASSOCIATE_AC:
            transport.write(pdus.ECHO_RQ)
        elif pdu_type == pdus.P_DATA_TF:
            transport.write(pdus.RELEASE_RQ)
        elif pdu_type == pdus.A_RELEASE_RP:
            transport.close()
            self._finish(True)
        else:  # RJ, A-ABORT, or a PDU the requestor never expects
            transport.abort()
            self._finish(False)

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(False)

    def _finish(self, ok: bool) -> None:
        if not self._done.done():
            self._done.set_result(ok)


async def raw_echo(host: str, port: int) -> bool:
    """One association; True if it was released after the echo. Unbounded
    in time on purpose (the ceiling has no timers): callers bound a whole
    run with one timeout."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bool] = loop.create_future()
    await loop.create_connection(lambda: RawEchoProtocol(done), host, port)
    return await done
