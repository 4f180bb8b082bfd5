"""The actions of PS3.8 9.2.2, one method each, as `UpperLayer` carries them
out: what each transition of the state table does beyond changing state
(send a PDU, report an event, take a message in). `UpperLayer` (in
`upper_layer`) inherits them; `ACTIONS` maps each `Action` of the table to
its method. May import the rest of `protocol/` only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import TypeAlias

from asyncecho.protocol.dimse import MessageAssembler, fragment, whole_command
from asyncecho.protocol.errors import ABORT_REASON_NOT_SPECIFIED, ABORT_UNEXPECTED_PDU, PDUError
from asyncecho.protocol.events import (
    Aborted,
    AssociationAccepted,
    AssociationRejected,
    AssociationRequested,
    Event,
    MessageReceived,
    ReleaseConfirmed,
    ReleaseRequested,
)
from asyncecho.protocol.negotiation import answered_contexts, our_contexts
from asyncecho.protocol.pdu import (
    ABORT_SOURCE_PROVIDER,
    ABORT_SOURCE_USER,
    PDU,
    Abort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    PDataTF,
    ReleaseRP,
    ReleaseRQ,
)
from asyncecho.protocol.state_machine import Action, State, StateMachine

# What an event carries to its action (see UpperLayer._fire): a PDU
# received, the error of an invalid one, the AssociateRQ/AC/RJ of a primitive,
# a P-DATA request's (context ID, command, data set), or nothing.
Arg: TypeAlias = "PDU | PDUError | tuple[int, bytes, bytes | None] | None"


# The two encoding caches save a third of the core's instructions per
# association (the RQ/AC) and a further 11-18% (the C-ECHO command).
@lru_cache(maxsize=256)
def _encode_command(context_id: int, command: bytes, max_pdu: int) -> bytes:
    return b"".join(
        PDataTF((pdv,)).encode() for pdv in fragment(context_id, command, True, max_pdu)
    )


@lru_cache(maxsize=256)
def _encode_associate(pdu: AssociateRQ | AssociateAC) -> bytes:
    # The same RQ (or AC) goes out in every association of a sweep or SCP.
    return pdu.encode()


class Actions:
    """The actions, as methods of the `UpperLayer` that inherits them: each
    gets what its event carries (see `UpperLayer._fire`) and returns the
    events for the user; ARTIM and the transport close are already seen to."""

    # The association's state the actions read and write (the UpperLayer
    # sets them up; its other slots are its own).
    __slots__ = (
        "_assembler",
        "_machine",
        "_outbox",
        "ac",
        "contexts",
        "peer_max_pdu",
        "rj",
        "rq",
    )

    _machine: StateMachine
    _outbox: bytearray
    _assembler: MessageAssembler | None
    rq: AssociateRQ | None
    ac: AssociateAC | None
    rj: AssociateRJ | None
    contexts: Mapping[int, tuple[str, str]]
    peer_max_pdu: int

    def _send(self, pdu: PDU) -> None:
        if isinstance(pdu, (AssociateRQ, AssociateAC)):
            self._outbox += _encode_associate(pdu)
        else:
            self._outbox += pdu.encode()

    # --- the actions (PS3.8 9.2.2), looked up in ACTIONS ----------------------------
    # Each gets what its event carries (see _fire) and returns the events for
    # the user; ARTIM and the transport close are already seen to.

    def _act_nothing(self, arg: Arg) -> list[Event]:
        # AE-5, AR-5, AA-2, AA-5, AA-6: nothing beyond the state change, the
        # ARTIM and close flags.
        return []

    def _act_ae_1(self, arg: Arg) -> list[Event]:
        # The caller opens the transport connection; AE-2 sends this RQ on it.
        assert isinstance(arg, AssociateRQ)
        self.rq = arg
        return []

    def _act_ae_2(self, arg: Arg) -> list[Event]:
        assert self.rq is not None
        self._send(self.rq)
        return []

    def _act_ae_3(self, arg: Arg) -> list[Event]:
        assert isinstance(arg, AssociateAC) and self.rq is not None
        self.ac = arg
        self.contexts = answered_contexts(self.rq, arg)  # (checked in _classify)
        self.peer_max_pdu = arg.max_length or 0
        return [AssociationAccepted(arg)]

    def _act_ae_4(self, arg: Arg) -> list[Event]:
        assert isinstance(arg, AssociateRJ)
        self.rj = arg
        return [AssociationRejected(arg)]

    def _act_ae_6(self, arg: Arg) -> list[Event]:
        assert isinstance(arg, AssociateRQ)
        self.rq = arg
        if self._machine.state is State.STA3:  # the RQ was acceptable
            return [AssociationRequested(arg)]
        self.rj = AssociateRJ(1, 2, 2)  # PS3.8 Table 9-21: protocol version not supported
        self._send(self.rj)
        return []

    def _act_ae_7(self, arg: Arg) -> list[Event]:
        assert isinstance(arg, AssociateAC) and self.rq is not None
        self.ac = arg
        self.contexts = our_contexts(self.rq, arg)
        self.peer_max_pdu = self.rq.max_length or 0
        self._send(arg)
        return []

    def _act_ae_8(self, arg: Arg) -> list[Event]:
        assert isinstance(arg, AssociateRJ)
        self.rj = arg
        self._send(arg)
        return []

    def _act_send_message(self, arg: Arg) -> list[Event]:
        # DT-1, AR-7
        assert isinstance(arg, tuple)
        context_id, command, data_set = arg
        if data_set is None:
            # A command alone (every C-ECHO): the same bytes for the same
            # command, context and peer maximum, so encoded once.
            self._outbox += _encode_command(context_id, command, self.peer_max_pdu)
            return []
        for payload, is_command in ((command, True), (data_set, False)):
            for pdv in fragment(context_id, payload, is_command, self.peer_max_pdu):
                self._send(PDataTF((pdv,)))
        return []

    def _act_message_in(self, arg: Arg) -> list[Event]:
        # DT-2, AR-6
        assert isinstance(arg, PDataTF)
        return self._assemble(arg)

    def _act_ar_1(self, arg: Arg) -> list[Event]:
        self._send(ReleaseRQ())
        return []

    def _act_ar_2(self, arg: Arg) -> list[Event]:
        return [ReleaseRequested()]

    def _act_released(self, arg: Arg) -> list[Event]:
        # AR-3, AR-10
        return [ReleaseConfirmed()]

    def _act_release_rp(self, arg: Arg) -> list[Event]:
        # AR-4, AR-9
        self._send(ReleaseRP())
        return []

    def _act_ar_8(self, arg: Arg) -> list[Event]:
        return [ReleaseRequested(collision=True)]

    def _act_aa_1(self, arg: Arg) -> list[Event]:
        # Sta2 receiving anything but an A-ASSOCIATE-RQ also lands here:
        # PS3.8 9.2.2 gives the A-ABORT a service-user source either way.
        self._send(Abort(ABORT_SOURCE_USER, ABORT_REASON_NOT_SPECIFIED))
        return []

    def _act_aa_3(self, arg: Arg) -> list[Event]:
        assert isinstance(arg, Abort)
        return [Aborted(arg.source, arg.reason, by_peer=True)]

    def _act_aa_4(self, arg: Arg) -> list[Event]:
        return [
            Aborted(
                ABORT_SOURCE_PROVIDER,
                ABORT_REASON_NOT_SPECIFIED,
                by_peer=False,
                connection_lost=True,
            )
        ]

    def _act_aa_7(self, arg: Arg) -> list[Event]:
        # Sta13: an A-ASSOCIATE-RQ (Evt6) or an invalid PDU (Evt19).
        reason = arg.abort_reason if isinstance(arg, PDUError) else ABORT_UNEXPECTED_PDU
        self._send(Abort(ABORT_SOURCE_PROVIDER, reason))
        return []

    def _act_aa_8(self, arg: Arg) -> list[Event]:
        # Invalid PDU (Evt19) or a valid PDU at the wrong time.
        error = arg if isinstance(arg, PDUError) else None
        reason = error.abort_reason if error is not None else ABORT_UNEXPECTED_PDU
        self._send(Abort(ABORT_SOURCE_PROVIDER, reason))
        return [Aborted(ABORT_SOURCE_PROVIDER, reason, by_peer=False, error=error)]

    def _assemble(self, pdu: PDataTF) -> list[Event]:
        """The messages `pdu`'s PDVs complete. Raises InvalidContent if a
        PDV breaks PS3.8 Annex E or PS3.7 (fragment flags, a command set
        that cannot be decoded)."""
        events: list[Event] = []
        assembler = self._assembler
        try:
            for pdv in pdu.pdvs:
                if assembler is None:
                    # No assembler until a message comes in fragments: none
                    # is kept for the association's life for a whole command.
                    whole = whole_command(pdv)
                    if whole is not None:
                        events.append(MessageReceived(whole))
                        continue
                    assembler = self._assembler = MessageAssembler()
                message = assembler.add(pdv)
                if message is not None:
                    events.append(MessageReceived(message))
        except PDUError as error:
            raise InvalidContent(error) from None
        return events


class InvalidContent(Exception):
    """A P-DATA-TF's content is invalid (`error`): the PDU is an invalid PDU."""

    def __init__(self, error: PDUError) -> None:
        super().__init__(error)
        self.error = error


_ActionMethod = Callable[[Actions, Arg], list[Event]]
# A dict lookup rather than a chain of comparisons with 28 actions.
ACTIONS: dict[Action, _ActionMethod] = {
    Action.AE_1: Actions._act_ae_1,
    Action.AE_2: Actions._act_ae_2,
    Action.AE_3: Actions._act_ae_3,
    Action.AE_4: Actions._act_ae_4,
    Action.AE_5: Actions._act_nothing,
    Action.AE_6: Actions._act_ae_6,
    Action.AE_7: Actions._act_ae_7,
    Action.AE_8: Actions._act_ae_8,
    Action.DT_1: Actions._act_send_message,
    Action.DT_2: Actions._act_message_in,
    Action.AR_1: Actions._act_ar_1,
    Action.AR_2: Actions._act_ar_2,
    Action.AR_3: Actions._act_released,
    Action.AR_4: Actions._act_release_rp,
    Action.AR_5: Actions._act_nothing,
    Action.AR_6: Actions._act_message_in,
    Action.AR_7: Actions._act_send_message,
    Action.AR_8: Actions._act_ar_8,
    Action.AR_9: Actions._act_release_rp,
    Action.AR_10: Actions._act_released,
    Action.AA_1: Actions._act_aa_1,
    Action.AA_2: Actions._act_nothing,
    Action.AA_3: Actions._act_aa_3,
    Action.AA_4: Actions._act_aa_4,
    Action.AA_5: Actions._act_nothing,
    Action.AA_6: Actions._act_nothing,
    Action.AA_7: Actions._act_aa_7,
    Action.AA_8: Actions._act_aa_8,
}
assert set(ACTIONS) == set(Action), "every action of the table has a method"
