"""The load server: a Verification SCP on precomputed bytes.

Any A-ASSOCIATE-RQ gets the same A-ASSOCIATE-AC (context 1 accepted with
Implicit VR Little Endian), any P-DATA-TF the same C-ECHO-RSP with the
request's message ID patched in, an A-RELEASE-RQ an A-RELEASE-RP. No
negotiation, no state machine, no timers: the ceiling for a server on this
loop, against which asyncecho's `serve()` is measured (P6).

`SilentProtocol` accepts a connection and never answers (the "silent" third
of the sweep in P5).
"""

from __future__ import annotations

import asyncio
from typing import cast

from . import pdus


class MinimalScpProtocol(asyncio.Protocol):
    __slots__ = ("_buffer", "_transport")

    def __init__(self) -> None:
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._buffer:
            data = self._buffer + data
        start, size = 0, len(data)
        while size - start >= pdus.HEADER:
            end = start + pdus.HEADER + int.from_bytes(data[start + 2 : start + 6], "big")
            if end > size:
                break
            self._pdu(data, start, end)
            start = end
        self._buffer = data[start:] if start < size else b""

    def _pdu(self, data: bytes, start: int, end: int) -> None:
        transport = self._transport
        assert transport is not None
        pdu_type = data[start]
        if pdu_type == pdus.P_DATA_TF:
            at = data.find(pdus.MESSAGE_ID_ELEMENT, start, end)
            message_id = data[at + 8 : at + 10] if at >= 0 else b"\x01\x00"
            transport.write(pdus.ECHO_RSP_PREFIX + message_id + pdus.ECHO_RSP_SUFFIX)
        elif pdu_type == pdus.A_ASSOCIATE_RQ:
            transport.write(pdus.ASSOCIATE_AC)
        elif pdu_type == pdus.A_RELEASE_RQ:
            # PS3.8 AR-4: send RP; the requestor closes the connection.
            transport.write(pdus.RELEASE_RP)
        else:  # A-ABORT, or anything an SCP never expects
            transport.abort()

    def eof_received(self) -> bool:
        return False  # close our side too


class SilentProtocol(asyncio.Protocol):
    """Accepts, reads and discards, never answers; closes when the peer does."""

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False


async def start(
    host: str = "127.0.0.1", port: int = 0, *, silent: bool = False, backlog: int = 4096
) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    factory = SilentProtocol if silent else MinimalScpProtocol
    return await loop.create_server(factory, host, port, backlog=backlog)
