"""The two error types of the sans-I/O core (the h11 split).

`PDUError`: the peer sent bytes that break PS3.8 (or PS3.7 for DIMSE command
sets). It carries the byte offset and what was wrong, and which A-ABORT reason
(PS3.8 Table 9-26) the state machine should send for it.

`LocalProtocolError`: our own code asked the core for something the state
machine does not allow in its current state (a programming error, never
caused by the peer).

Imports nothing; the rest of `protocol/` imports it.
"""

from __future__ import annotations

# PS3.8 Table 9-26, A-ABORT reason/diag values for a service-provider abort.
ABORT_REASON_NOT_SPECIFIED = 0
ABORT_UNRECOGNIZED_PDU = 1
ABORT_UNEXPECTED_PDU = 2
ABORT_UNRECOGNIZED_PDU_PARAMETER = 4
ABORT_UNEXPECTED_PDU_PARAMETER = 5
ABORT_INVALID_PDU_PARAMETER_VALUE = 6


class PDUError(ValueError):
    """A malformed PDU, item or DIMSE command set from the peer."""

    def __init__(
        self,
        message: str,
        offset: int = 0,
        abort_reason: int = ABORT_INVALID_PDU_PARAMETER_VALUE,
    ) -> None:
        super().__init__(f"{message} (at byte {offset})")
        self.message = message
        self.offset = offset
        self.abort_reason = abort_reason


class LocalProtocolError(RuntimeError):
    """The local user asked for a primitive the current state does not allow."""
