"""The DICOM upper layer state machine: PS3.8 9.2, Table 9-10.

Everything that decides what the upper layer does next lives in this file:
the states, the events, the actions and the one table that joins them. It
knows which role we play only where the standard does (AR-8), and it knows
nothing of bytes, sockets or clocks; `UpperLayer` carries out the actions.

Theory of operation. Each input to the upper layer (a local primitive, a PDU
from the peer, the transport, the ARTIM timer) is one of the nineteen events.
`StateMachine.fire(event)` looks up the cell (state, event) of the table; the
cell names one action, and the action names the next state. A blank cell
that a local primitive hits is our own misuse and raises LocalProtocolError.
A blank cell that a remote event hits cannot happen: every PDU event is
defined in every state that has a transport connection (Sta2, Sta3, Sta5 to
Sta13), and the upper layer sends no bytes up before one exists.

ARTIM runs in exactly Sta2 and Sta13: the actions that enter those states
start it (AA-1 restarts it), and every action leaving them stops it.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

from .protocol_errors import LocalProtocolError


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


# Events raised by the local user or the local transport, as opposed to the peer.
LOCAL_EVENTS = frozenset(
    {
        Event.EVT1,
        Event.EVT2,
        Event.EVT5,
        Event.EVT7,
        Event.EVT8,
        Event.EVT9,
        Event.EVT11,
        Event.EVT14,
        Event.EVT15,
        Event.EVT17,
        Event.EVT18,
    }
)


class Action(enum.Enum):
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

    # Enum hashes its members by name in Python code; they are singletons
    # compared by identity, so the identity hash (in C) is equivalent and
    # keeps a dict lookup by action (upper_layer's dispatch) cheap.
    __hash__ = object.__hash__


S = State
E = Event
A = Action

# PS3.8 Table 9-10, row by row (one row per event); a missing cell is blank.
_ALL_CONNECTED = (S.STA6, S.STA7, S.STA8, S.STA9, S.STA10, S.STA11, S.STA12)
_RELEASING = (S.STA8, S.STA9, S.STA10, S.STA11, S.STA12)


def _row(
    cells: dict[State, Action], rest: tuple[State, ...] = (), rest_action: Action | None = None
) -> dict[State, Action]:
    row = dict(cells)
    for state in rest:
        assert rest_action is not None
        row.setdefault(state, rest_action)
    return row


TABLE: dict[Event, dict[State, Action]] = {
    E.EVT1: {S.STA1: A.AE_1},
    E.EVT2: {S.STA4: A.AE_2},
    E.EVT3: _row(
        {S.STA2: A.AA_1, S.STA3: A.AA_8, S.STA5: A.AE_3, S.STA13: A.AA_6}, _ALL_CONNECTED, A.AA_8
    ),
    E.EVT4: _row(
        {S.STA2: A.AA_1, S.STA3: A.AA_8, S.STA5: A.AE_4, S.STA13: A.AA_6}, _ALL_CONNECTED, A.AA_8
    ),
    E.EVT5: {S.STA1: A.AE_5},
    E.EVT6: _row(
        {S.STA2: A.AE_6, S.STA3: A.AA_8, S.STA5: A.AA_8, S.STA13: A.AA_7}, _ALL_CONNECTED, A.AA_8
    ),
    E.EVT7: {S.STA3: A.AE_7},
    E.EVT8: {S.STA3: A.AE_8},
    E.EVT9: {S.STA6: A.DT_1, S.STA8: A.AR_7},
    E.EVT10: _row(
        {
            S.STA2: A.AA_1,
            S.STA3: A.AA_8,
            S.STA5: A.AA_8,
            S.STA6: A.DT_2,
            S.STA7: A.AR_6,
            S.STA13: A.AA_6,
        },
        _RELEASING,
        A.AA_8,
    ),
    E.EVT11: {S.STA6: A.AR_1},
    E.EVT12: _row(
        {
            S.STA2: A.AA_1,
            S.STA3: A.AA_8,
            S.STA5: A.AA_8,
            S.STA6: A.AR_2,
            S.STA7: A.AR_8,
            S.STA13: A.AA_6,
        },
        _RELEASING,
        A.AA_8,
    ),
    E.EVT13: _row(
        {
            S.STA2: A.AA_1,
            S.STA3: A.AA_8,
            S.STA5: A.AA_8,
            S.STA6: A.AA_8,
            S.STA7: A.AR_3,
            S.STA10: A.AR_10,
            S.STA11: A.AR_3,
            S.STA13: A.AA_6,
        },
        _RELEASING,
        A.AA_8,
    ),
    E.EVT14: {S.STA8: A.AR_4, S.STA9: A.AR_9, S.STA12: A.AR_4},
    E.EVT15: _row({S.STA3: A.AA_1, S.STA4: A.AA_2, S.STA5: A.AA_1}, _ALL_CONNECTED, A.AA_1),
    E.EVT16: _row(
        {S.STA2: A.AA_2, S.STA3: A.AA_3, S.STA5: A.AA_3, S.STA13: A.AA_2}, _ALL_CONNECTED, A.AA_3
    ),
    E.EVT17: _row(
        {S.STA2: A.AA_5, S.STA3: A.AA_4, S.STA4: A.AA_4, S.STA5: A.AA_4, S.STA13: A.AR_5},
        _ALL_CONNECTED,
        A.AA_4,
    ),
    E.EVT18: {S.STA2: A.AA_2, S.STA13: A.AA_2},
    E.EVT19: _row(
        {S.STA2: A.AA_1, S.STA3: A.AA_8, S.STA5: A.AA_8, S.STA13: A.AA_7}, _ALL_CONNECTED, A.AA_8
    ),
}

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


class Cell(NamedTuple):
    """One filled cell of the table with what its action implies, looked up
    once per event (plain Enum members hash in Python: kept off the hot path)."""

    action: Action
    next_state: State | None  # None: AE-6 and AR-8 decide at run time
    starts_artim: bool
    closes_transport: bool


CELLS: dict[Event, dict[State, Cell]] = {
    event: {
        state: Cell(action, NEXT_STATE[action], action in STARTS_ARTIM, action in CLOSES_TRANSPORT)
        for state, action in row.items()
    }
    for event, row in TABLE.items()
}


class StateMachine:
    """The current state, and the table lookup that moves it."""

    __slots__ = ("cell", "is_requestor", "state")

    def __init__(self, is_requestor: bool) -> None:
        self.is_requestor = is_requestor
        self.state = S.STA1
        #: the cell of the last transition
        self.cell: Cell | None = None

    def action_for(self, event: Event) -> Action | None:
        return TABLE[event].get(self.state)

    def fire(self, event: Event, *, acceptable: bool = True) -> Action:
        """Apply `event`; return the action to carry out.

        `acceptable` is AE-6's condition: whether the service provider can
        accept the A-ASSOCIATE-RQ (e.g. its protocol version).
        """
        cell = CELLS[event].get(self.state)
        if cell is None:
            raise LocalProtocolError(f"{event} is not allowed in {self.state}")
        action = cell.action
        next_state = cell.next_state
        if next_state is None:
            if action is A.AE_6:
                next_state = S.STA3 if acceptable else S.STA13
            else:  # AR-8
                next_state = S.STA9 if self.is_requestor else S.STA10
        self.state = next_state
        self.cell = cell
        return action
