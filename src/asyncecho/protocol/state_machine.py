"""The DICOM upper layer state machine: PS3.8 9.2, Table 9-10.

Everything that decides what the upper layer does next lives in this file:
the states, the events, the actions and the one table that joins them. It
knows which role we play only where the standard does (AR-8), and it knows
nothing of bytes, sockets or clocks; `UpperLayer` carries out the actions.

Theory of operation. Each input to the upper layer (a local primitive, a PDU
from the peer, the transport, the ARTIM timer) is one of the nineteen events.
`StateMachine.fire(event)` looks up the cell (state, event) of the
table; the cell names one action, and the action names the next state. A
blank cell that a local primitive hits is our own misuse and raises
LocalProtocolError (`UpperLayer` documents the few calls that are no-ops
instead, each where the standard has nothing left to do). A blank cell that a
remote event hits cannot happen: every PDU event is defined in every state
that has a transport connection (Sta2, Sta3, Sta5 to Sta13), and the upper
layer sends no bytes up before one exists.

ARTIM runs in exactly Sta2 and Sta13: the actions that enter those states
start it (AA-1 restarts it), and every action leaving them stops it.

May import `protocol/errors` only.
"""

from __future__ import annotations

import enum

from asyncecho.protocol.errors import LocalProtocolError


class State(enum.IntEnum):
    STA1 = 1  # Idle
    STA2 = 2  # Transport connection open (awaiting A-ASSOCIATE-RQ PDU)
    STA3 = 3  # Awaiting local A-ASSOCIATE response primitive
    STA4 = 4  # Awaiting transport connection opening to complete
    STA5 = 5  # Awaiting A-ASSOCIATE-AC or A-ASSOCIATE-RJ PDU
    STA6 = 6  # Association established and ready for data transfer
    STA7 = 7  # Awaiting A-RELEASE-RP PDU
    STA8 = 8  # Awaiting local A-RELEASE response primitive
    STA9 = 9  # Release collision requestor side; awaiting A-RELEASE response
    STA10 = 10  # Release collision acceptor side; awaiting A-RELEASE-RP PDU
    STA11 = 11  # Release collision requestor side; awaiting A-RELEASE-RP PDU
    STA12 = 12  # Release collision acceptor side; awaiting A-RELEASE response
    STA13 = 13  # Awaiting transport connection close indication

    def __str__(self) -> str:
        return f"Sta{self.value}"


class Event(enum.IntEnum):
    EVT1 = 1  # A-ASSOCIATE request (local user)
    EVT2 = 2  # Transport connect confirmation (local transport service)
    EVT3 = 3  # A-ASSOCIATE-AC PDU received
    EVT4 = 4  # A-ASSOCIATE-RJ PDU received
    EVT5 = 5  # Transport connection indication (local transport service)
    EVT6 = 6  # A-ASSOCIATE-RQ PDU received
    EVT7 = 7  # A-ASSOCIATE response primitive (accept)
    EVT8 = 8  # A-ASSOCIATE response primitive (reject)
    EVT9 = 9  # P-DATA request primitive
    EVT10 = 10  # P-DATA-TF PDU received
    EVT11 = 11  # A-RELEASE request primitive
    EVT12 = 12  # A-RELEASE-RQ PDU received
    EVT13 = 13  # A-RELEASE-RP PDU received
    EVT14 = 14  # A-RELEASE response primitive
    EVT15 = 15  # A-ABORT request primitive
    EVT16 = 16  # A-ABORT PDU received
    EVT17 = 17  # Transport connection closed indication
    EVT18 = 18  # ARTIM timer expired
    EVT19 = 19  # Unrecognized or invalid PDU received

    def __str__(self) -> str:
        return f"Evt{self.value}"


# A str enum, as State and Event are int enums, so that its members hash in C
# (as their values): the upper layer looks an action up by hash at every
# transition, and a plain Enum member hashes in Python code, which cost 2-4%
# of the core's instructions per association (`benchmarks.profiling core`
# under valgrind).
class Action(str, enum.Enum):
    AE_1 = "AE-1"  # Issue TRANSPORT CONNECT request primitive
    AE_2 = "AE-2"  # Send A-ASSOCIATE-RQ PDU
    AE_3 = "AE-3"  # Issue A-ASSOCIATE confirmation (accept) primitive
    AE_4 = "AE-4"  # Issue A-ASSOCIATE confirmation (reject); close transport
    AE_5 = "AE-5"  # Issue transport connection response; start ARTIM
    AE_6 = "AE-6"  # Stop ARTIM; indication (Sta3) or send A-ASSOCIATE-RJ + ARTIM (Sta13)
    AE_7 = "AE-7"  # Send A-ASSOCIATE-AC PDU
    AE_8 = "AE-8"  # Send A-ASSOCIATE-RJ PDU; start ARTIM
    DT_1 = "DT-1"  # Send P-DATA-TF PDU
    DT_2 = "DT-2"  # Issue P-DATA indication
    AR_1 = "AR-1"  # Send A-RELEASE-RQ PDU
    AR_2 = "AR-2"  # Issue A-RELEASE indication
    AR_3 = "AR-3"  # Issue A-RELEASE confirmation; close transport
    AR_4 = "AR-4"  # Send A-RELEASE-RP PDU; start ARTIM
    AR_5 = "AR-5"  # Stop ARTIM
    AR_6 = "AR-6"  # Issue P-DATA indication
    AR_7 = "AR-7"  # Send P-DATA-TF PDU
    AR_8 = "AR-8"  # Issue A-RELEASE indication (release collision)
    AR_9 = "AR-9"  # Send A-RELEASE-RP PDU
    AR_10 = "AR-10"  # Issue A-RELEASE confirmation
    AA_1 = "AA-1"  # Send A-ABORT PDU (service-user source); (re)start ARTIM
    AA_2 = "AA-2"  # Stop ARTIM if running; close transport
    AA_3 = "AA-3"  # Issue A-ABORT / A-P-ABORT indication; close transport
    AA_4 = "AA-4"  # Issue A-P-ABORT indication
    AA_5 = "AA-5"  # Stop ARTIM
    AA_6 = "AA-6"  # Ignore PDU
    AA_7 = "AA-7"  # Send A-ABORT PDU
    AA_8 = "AA-8"  # Send A-ABORT PDU (service-provider source); A-P-ABORT indication; start ARTIM

    def __str__(self) -> str:
        return self.value


S = State
E = Event
A = Action

# PS3.8 Table 9-10, written out cell by cell as {event: {state: action}}, to
# be checked against the standard one cell at a time. Each event's cells run
# in state order over three lines, Sta1-Sta5, Sta6-Sta9 and Sta10-Sta13, each
# state in its own column: a gap, or a state not written, is a blank cell.
# fmt: off
TABLE: dict[Event, dict[State, Action]] = {
    E.EVT1: {  # A-ASSOCIATE request (local user)
        S.STA1: A.AE_1,
    },
    E.EVT2: {  # Transport connect confirmation
                                                        S.STA4: A.AE_2,
    },
    E.EVT3: {  # A-ASSOCIATE-AC PDU received
                        S.STA2: A.AA_1, S.STA3: A.AA_8,                 S.STA5: A.AE_3,
        S.STA6: A.AA_8, S.STA7: A.AA_8, S.STA8: A.AA_8, S.STA9: A.AA_8,
        S.STA10: A.AA_8,  S.STA11: A.AA_8,  S.STA12: A.AA_8,  S.STA13: A.AA_6,
    },
    E.EVT4: {  # A-ASSOCIATE-RJ PDU received
                        S.STA2: A.AA_1, S.STA3: A.AA_8,                 S.STA5: A.AE_4,
        S.STA6: A.AA_8, S.STA7: A.AA_8, S.STA8: A.AA_8, S.STA9: A.AA_8,
        S.STA10: A.AA_8,  S.STA11: A.AA_8,  S.STA12: A.AA_8,  S.STA13: A.AA_6,
    },
    E.EVT5: {  # Transport connection indication
        S.STA1: A.AE_5,
    },
    E.EVT6: {  # A-ASSOCIATE-RQ PDU received
                        S.STA2: A.AE_6, S.STA3: A.AA_8,                 S.STA5: A.AA_8,
        S.STA6: A.AA_8, S.STA7: A.AA_8, S.STA8: A.AA_8, S.STA9: A.AA_8,
        S.STA10: A.AA_8,  S.STA11: A.AA_8,  S.STA12: A.AA_8,  S.STA13: A.AA_7,
    },
    E.EVT7: {  # A-ASSOCIATE response primitive (accept)
                                        S.STA3: A.AE_7,
    },
    E.EVT8: {  # A-ASSOCIATE response primitive (reject)
                                        S.STA3: A.AE_8,
    },
    E.EVT9: {  # P-DATA request primitive
        S.STA6: A.DT_1,                 S.STA8: A.AR_7,
    },
    E.EVT10: {  # P-DATA-TF PDU received
                        S.STA2: A.AA_1, S.STA3: A.AA_8,                 S.STA5: A.AA_8,
        S.STA6: A.DT_2, S.STA7: A.AR_6, S.STA8: A.AA_8, S.STA9: A.AA_8,
        S.STA10: A.AA_8,  S.STA11: A.AA_8,  S.STA12: A.AA_8,  S.STA13: A.AA_6,
    },
    E.EVT11: {  # A-RELEASE request primitive
        S.STA6: A.AR_1,
    },
    E.EVT12: {  # A-RELEASE-RQ PDU received
                        S.STA2: A.AA_1, S.STA3: A.AA_8,                 S.STA5: A.AA_8,
        S.STA6: A.AR_2, S.STA7: A.AR_8, S.STA8: A.AA_8, S.STA9: A.AA_8,
        S.STA10: A.AA_8,  S.STA11: A.AA_8,  S.STA12: A.AA_8,  S.STA13: A.AA_6,
    },
    E.EVT13: {  # A-RELEASE-RP PDU received
                        S.STA2: A.AA_1, S.STA3: A.AA_8,                 S.STA5: A.AA_8,
        S.STA6: A.AA_8, S.STA7: A.AR_3, S.STA8: A.AA_8, S.STA9: A.AA_8,
        S.STA10: A.AR_10, S.STA11: A.AR_3,  S.STA12: A.AA_8,  S.STA13: A.AA_6,
    },
    E.EVT14: {  # A-RELEASE response primitive
                                        S.STA8: A.AR_4, S.STA9: A.AR_9,
                                            S.STA12: A.AR_4,
    },
    E.EVT15: {  # A-ABORT request primitive
                                        S.STA3: A.AA_1, S.STA4: A.AA_2, S.STA5: A.AA_1,
        S.STA6: A.AA_1, S.STA7: A.AA_1, S.STA8: A.AA_1, S.STA9: A.AA_1,
        S.STA10: A.AA_1,  S.STA11: A.AA_1,  S.STA12: A.AA_1,
    },
    E.EVT16: {  # A-ABORT PDU received
                        S.STA2: A.AA_2, S.STA3: A.AA_3,                 S.STA5: A.AA_3,
        S.STA6: A.AA_3, S.STA7: A.AA_3, S.STA8: A.AA_3, S.STA9: A.AA_3,
        S.STA10: A.AA_3,  S.STA11: A.AA_3,  S.STA12: A.AA_3,  S.STA13: A.AA_2,
    },
    E.EVT17: {  # Transport connection closed indication
                        S.STA2: A.AA_5, S.STA3: A.AA_4, S.STA4: A.AA_4, S.STA5: A.AA_4,
        S.STA6: A.AA_4, S.STA7: A.AA_4, S.STA8: A.AA_4, S.STA9: A.AA_4,
        S.STA10: A.AA_4,  S.STA11: A.AA_4,  S.STA12: A.AA_4,  S.STA13: A.AR_5,
    },
    E.EVT18: {  # ARTIM timer expired
                        S.STA2: A.AA_2,
                                                              S.STA13: A.AA_2,
    },
    E.EVT19: {  # Unrecognized or invalid PDU received
                        S.STA2: A.AA_1, S.STA3: A.AA_8,                 S.STA5: A.AA_8,
        S.STA6: A.AA_8, S.STA7: A.AA_8, S.STA8: A.AA_8, S.STA9: A.AA_8,
        S.STA10: A.AA_8,  S.STA11: A.AA_8,  S.STA12: A.AA_8,  S.STA13: A.AA_7,
    },
}
# fmt: on

# The state each action leads to; AE-6 and AR-8 depend on a condition.
NEXT_STATE: dict[Action, State | None] = {
    A.AE_1: S.STA4,
    A.AE_2: S.STA5,
    A.AE_3: S.STA6,
    A.AE_4: S.STA1,
    A.AE_5: S.STA2,
    A.AE_6: None,
    A.AE_7: S.STA6,
    A.AE_8: S.STA13,
    A.DT_1: S.STA6,
    A.DT_2: S.STA6,
    A.AR_1: S.STA7,
    A.AR_2: S.STA8,
    A.AR_3: S.STA1,
    A.AR_4: S.STA13,
    A.AR_5: S.STA1,
    A.AR_6: S.STA7,
    A.AR_7: S.STA8,
    A.AR_8: None,
    A.AR_9: S.STA11,
    A.AR_10: S.STA12,
    A.AA_1: S.STA13,
    A.AA_2: S.STA1,
    A.AA_3: S.STA1,
    A.AA_4: S.STA1,
    A.AA_5: S.STA1,
    A.AA_6: S.STA13,
    A.AA_7: S.STA13,
    A.AA_8: S.STA13,
}

# Actions whose definition says "start ARTIM timer" (AA-1: "start or restart").
# AE-6 starts it only on its reject branch.
STARTS_ARTIM = frozenset({A.AE_5, A.AE_8, A.AR_4, A.AA_1, A.AA_8})
# Actions after which the transport connection is closed (or is already gone).
CLOSES_TRANSPORT = frozenset({A.AE_4, A.AR_3, A.AR_5, A.AA_2, A.AA_3, A.AA_4, A.AA_5})


class StateMachine:
    """The current state, and the table lookup that moves it."""

    __slots__ = ("is_requestor", "state")

    def __init__(self, is_requestor: bool) -> None:
        self.is_requestor = is_requestor
        self.state = S.STA1

    def action_for(self, event: Event) -> Action | None:
        """The action `event` would cause now; None for a blank cell."""
        return TABLE[event].get(self.state)

    def fire(self, event: Event, *, acceptable: bool = True) -> Action:
        """Apply `event`: move to the next state; return the action to carry
        out. A blank cell raises LocalProtocolError and changes nothing.

        `acceptable` is AE-6's condition: whether the service provider can
        accept the A-ASSOCIATE-RQ (e.g. its protocol version).
        """
        action = TABLE[event].get(self.state)
        if action is None:
            raise LocalProtocolError(f"{event} is not allowed in {self.state}")
        next_state = NEXT_STATE[action]
        if next_state is None:
            if action is A.AE_6:
                next_state = S.STA3 if acceptable else S.STA13
            else:  # AR-8
                next_state = S.STA9 if self.is_requestor else S.STA10
        self.state = next_state
        return action
