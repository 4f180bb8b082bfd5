"""PS3.8 Table 9-10, cell by cell: the table itself, the bare `StateMachine`,
and every (state, event) cell fired through a real `UpperLayer` in each role.

The expected table and the action definitions below are written out again
from PS3.8 9.2.2-9.2.3, not taken from `asyncecho.protocol.state_machine`, so that a
mistake in the module's table is caught here rather than copied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import cache
from typing import Literal

import pytest

from asyncecho.protocol import events as ev
from asyncecho.protocol import state_machine as sm
from asyncecho.protocol.dimse import encode_echo_rq
from asyncecho.protocol.errors import LocalProtocolError, PDUError
from asyncecho.protocol.negotiation import AcceptorPolicy, build_ac, build_rq
from asyncecho.protocol.pdu import (
    ABORT_SOURCE_PROVIDER,
    ABORT_SOURCE_USER,
    PDU,
    PDV,
    Abort,
    AssociateRJ,
    PDataTF,
    ReleaseRP,
    ReleaseRQ,
    decode_pdu,
)
from asyncecho.protocol.state_machine import Action, Event, State, StateMachine
from asyncecho.protocol.upper_layer import UpperLayer

Role = Literal["requestor", "acceptor"]
ROLES: tuple[Role, ...] = ("requestor", "acceptor")

# --- PS3.8 Table 9-10, written out ------------------------------------------------
# One line per event; the columns are Sta1 .. Sta13; "." is a blank cell.

_TABLE_9_10 = """
        Sta1  Sta2  Sta3  Sta4  Sta5  Sta6  Sta7  Sta8  Sta9  Sta10 Sta11 Sta12 Sta13
Evt1    AE-1  .     .     .     .     .     .     .     .     .     .     .     .
Evt2    .     .     .     AE-2  .     .     .     .     .     .     .     .     .
Evt3    .     AA-1  AA-8  .     AE-3  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6
Evt4    .     AA-1  AA-8  .     AE-4  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6
Evt5    AE-5  .     .     .     .     .     .     .     .     .     .     .     .
Evt6    .     AE-6  AA-8  .     AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-7
Evt7    .     .     AE-7  .     .     .     .     .     .     .     .     .     .
Evt8    .     .     AE-8  .     .     .     .     .     .     .     .     .     .
Evt9    .     .     .     .     .     DT-1  .     AR-7  .     .     .     .     .
Evt10   .     AA-1  AA-8  .     AA-8  DT-2  AR-6  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6
Evt11   .     .     .     .     .     AR-1  .     .     .     .     .     .     .
Evt12   .     AA-1  AA-8  .     AA-8  AR-2  AR-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6
Evt13   .     AA-1  AA-8  .     AA-8  AA-8  AR-3  AA-8  AA-8  AR-10 AR-3  AA-8  AA-6
Evt14   .     .     .     .     .     .     .     AR-4  AR-9  .     .     AR-4  .
Evt15   .     .     AA-1  AA-2  AA-1  AA-1  AA-1  AA-1  AA-1  AA-1  AA-1  AA-1  .
Evt16   .     AA-2  AA-3  .     AA-3  AA-3  AA-3  AA-3  AA-3  AA-3  AA-3  AA-3  AA-2
Evt17   .     AA-5  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AR-5
Evt18   .     AA-2  .     .     .     .     .     .     .     .     .     .     AA-2
Evt19   .     AA-1  AA-8  .     AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-7
"""


def _parse_table(text: str) -> dict[int, dict[int, str]]:
    lines = [line.split() for line in text.strip().splitlines()]
    header, rows = lines[0], lines[1:]
    assert header == [f"Sta{n}" for n in range(1, 14)]
    table: dict[int, dict[int, str]] = {}
    for row in rows:
        event, cells = int(row[0].removeprefix("Evt")), row[1:]
        assert len(cells) == 13, row
        table[event] = {n: cell for n, cell in enumerate(cells, start=1) if cell != "."}
    assert sorted(table) == list(range(1, 20))
    return table


# {event number: {state number: action name}}
EXPECTED_TABLE = _parse_table(_TABLE_9_10)

# PS3.8 Tables 9-6 to 9-9, "Next state is ...".
EXPECTED_NEXT: dict[str, int] = {
    "AE-1": 4, "AE-2": 5, "AE-3": 6, "AE-4": 1, "AE-5": 2, "AE-7": 6, "AE-8": 13,
    "DT-1": 6, "DT-2": 6,
    "AR-1": 7, "AR-2": 8, "AR-3": 1, "AR-4": 13, "AR-5": 1, "AR-6": 7, "AR-7": 8,
    "AR-9": 11, "AR-10": 12,
    "AA-1": 13, "AA-2": 1, "AA-3": 1, "AA-4": 1, "AA-5": 1, "AA-6": 13, "AA-7": 13, "AA-8": 13,
}  # fmt: skip
# AE-6: Sta3 if the A-ASSOCIATE-RQ is acceptable to the service provider, else Sta13.
AE6_NEXT = {True: 3, False: 13}
# AR-8: Sta9 if association-requestor, else Sta10.
AR8_NEXT: dict[Role, int] = {"requestor": 9, "acceptor": 10}

# "start ARTIM timer" (AA-1: "start (or restart if already started)"); AE-6 only
# on its reject branch.
ARTIM_STARTS = frozenset({"AE-5", "AE-8", "AR-4", "AA-1", "AA-8"})
# Actions that stay in Sta13 and say nothing of ARTIM: it keeps running.
ARTIM_KEEPS = frozenset({"AA-6", "AA-7"})
# "close transport connection", or the action answers Evt17 (it is already closed).
CLOSES = frozenset({"AE-4", "AR-3", "AA-2", "AA-3", "AR-5", "AA-4", "AA-5"})

PDU_EVENTS = frozenset({3, 4, 6, 10, 12, 13, 16, 19})  # received from the peer


def _act(name: str) -> Action:
    return Action(name)


def _expected_next(action: str, role: Role, acceptable: bool = True) -> int:
    if action == "AE-6":
        return AE6_NEXT[acceptable]
    if action == "AR-8":
        return AR8_NEXT[role]
    return EXPECTED_NEXT[action]


# --- the module's table --------------------------------------------------------------


def test_table_matches_ps3_8_table_9_10() -> None:
    expected = {
        Event(e): {State(s): _act(a) for s, a in row.items()} for e, row in EXPECTED_TABLE.items()
    }
    assert expected == sm.TABLE


def test_next_state_matches_action_definitions() -> None:
    assert set(sm.NEXT_STATE) == set(Action)
    for action, next_state in sm.NEXT_STATE.items():
        if action.value in ("AE-6", "AR-8"):
            assert next_state is None, "conditional: decided in StateMachine.fire"
        else:
            assert next_state == State(EXPECTED_NEXT[action.value]), action
    assert set(EXPECTED_NEXT) | {"AE-6", "AR-8"} == {a.value for a in Action}


def test_artim_and_close_sets_match_action_definitions() -> None:
    assert {a.value for a in sm.STARTS_ARTIM} == ARTIM_STARTS
    assert {a.value for a in sm.CLOSES_TRANSPORT} == CLOSES


def test_every_action_in_the_table_is_defined_and_used() -> None:
    used = {a for row in EXPECTED_TABLE.values() for a in row.values()}
    assert used == {a.value for a in Action}


def test_pdu_events_defined_exactly_where_a_transport_exists() -> None:
    # Every PDU event has an action in every state with a transport connection,
    # and none in Sta1/Sta4 (the module's docstring relies on this).
    for event in PDU_EVENTS:
        assert set(EXPECTED_TABLE[event]) == set(range(1, 14)) - {1, 4}, event


def test_artim_runs_exactly_in_sta2_and_sta13() -> None:
    # Every action entering Sta2/Sta13 from elsewhere starts ARTIM; every action
    # leaving them stops it (so Evt18 can only happen in Sta2/Sta13).
    for event, row in EXPECTED_TABLE.items():
        for state, action in row.items():
            for role in ROLES:
                target = _expected_next(action, role)
                if target in (2, 13) and state != target:
                    assert action in ARTIM_STARTS or action == "AE-6", (event, state, action)
                if state in (2, 13) and target == 13:
                    assert action in ARTIM_STARTS | ARTIM_KEEPS, (event, state, action)


# --- the bare StateMachine: all 13 x 19 cells in both roles ---------------------------


def _all_cells() -> Iterator[object]:
    for role in ROLES:
        for state in range(1, 14):
            for event in range(1, 20):
                yield pytest.param(role, state, event, id=f"{role}-Sta{state}-Evt{event}")


@pytest.mark.parametrize(("role", "state", "event"), list(_all_cells()))
def test_machine_cell(role: Role, state: int, event: int) -> None:
    machine = StateMachine(is_requestor=role == "requestor")
    machine.state = State(state)
    expected = EXPECTED_TABLE[event].get(state)
    if expected is None:
        with pytest.raises(LocalProtocolError):
            machine.fire(Event(event))
        assert machine.state == State(state)
        return
    assert machine.fire(Event(event)) is _act(expected)
    assert machine.state == State(_expected_next(expected, role))


@pytest.mark.parametrize("role", ROLES)
def test_machine_ae6_unacceptable_goes_to_sta13(role: Role) -> None:
    machine = StateMachine(is_requestor=role == "requestor")
    machine.state = State.STA2
    assert machine.fire(Event.EVT6, acceptable=False) is Action.AE_6
    assert machine.state == State(AE6_NEXT[False])


# --- real inputs for a real UpperLayer ---------------------------------------------------

ARTIM = 7.0
FIRE_AT = 50.0  # when the event under test fires; the drivers use 1.0, 2.0, ...

RQ = build_rq(calling_ae="ECHOSCU", called_ae="ANY-SCP")
AC = build_ac(RQ, AcceptorPolicy())
RJ = AssociateRJ(1, 1, 1)  # permanent, service user, no reason given
ECHO_RQ = encode_echo_rq(7)
PDATA = PDataTF((PDV(1, True, True, ECHO_RQ),))
UNKNOWN_PDU = b"\x09\x00\x00\x00\x00\x04" + bytes(4)  # PDU type 0x09 does not exist
ABORT_REASON_UNRECOGNIZED_PDU = 1
ABORT_REASON_UNEXPECTED_PDU = 2

Fire = Callable[[UpperLayer, float], list[ev.Event]]


def _feed(data: bytes) -> Fire:
    def fire(ul: UpperLayer, now: float) -> list[ev.Event]:
        return ul.receive_data(data, now)

    return fire


def _request(ul: UpperLayer, now: float) -> list[ev.Event]:
    ul.request(RQ)
    return []


def _connection_made(ul: UpperLayer, now: float) -> list[ev.Event]:
    ul.connection_made(now)
    return []


def _accept(ul: UpperLayer, now: float) -> list[ev.Event]:
    ul.accept(AC, now)
    return []


def _reject(ul: UpperLayer, now: float) -> list[ev.Event]:
    ul.reject(RJ, now)
    return []


def _send_message(ul: UpperLayer, now: float) -> list[ev.Event]:
    ul.send_message(1, ECHO_RQ)
    return []


def _release(ul: UpperLayer, now: float) -> list[ev.Event]:
    ul.release()
    return []


def _release_response(ul: UpperLayer, now: float) -> list[ev.Event]:
    ul.release_response(now)
    return []


def _abort(ul: UpperLayer, now: float) -> list[ev.Event]:
    ul.abort(now)
    return []


def _connection_lost(ul: UpperLayer, now: float) -> list[ev.Event]:
    return ul.connection_lost(now)


def _timer(ul: UpperLayer, now: float) -> list[ev.Event]:
    # Evt18 is the ARTIM deadline passing; with no ARTIM running there is none.
    deadline = ul.next_deadline()
    return ul.handle_timer(now + 1000.0 if deadline is None else deadline + 0.5)


FIRE: dict[int, Fire] = {
    1: _request,
    2: _connection_made,  # requestor: transport connect confirmation
    3: _feed(AC.encode()),
    4: _feed(RJ.encode()),
    5: _connection_made,  # acceptor: transport connection indication
    6: _feed(RQ.encode()),
    7: _accept,
    8: _reject,
    9: _send_message,
    10: _feed(PDATA.encode()),
    11: _release,
    12: _feed(ReleaseRQ().encode()),
    13: _feed(ReleaseRP().encode()),
    14: _release_response,
    15: _abort,
    16: _feed(Abort(ABORT_SOURCE_USER, 0).encode()),
    17: _connection_lost,
    18: _timer,
    19: _feed(UNKNOWN_PDU),
}

# Events a role cannot produce through UpperLayer: the A-ASSOCIATE request and the
# transport connect confirmation belong to the requestor, the transport connection
# indication to the acceptor (`connection_made()` is Evt2 or Evt5 by role).
ROLE_BOUND: dict[Role, dict[int, str]] = {
    "requestor": {5: "acceptor-only"},
    "acceptor": {1: "requestor-only", 2: "requestor-only"},
}
ROLE_EVENTS: dict[Role, tuple[int, ...]] = {
    role: tuple(e for e in range(1, 20) if e not in ROLE_BOUND[role]) for role in ROLES
}

# How each reachable state is reached, as the events fired from a fresh UpperLayer.
PATHS: dict[Role, dict[int, tuple[int, ...]]] = {
    "requestor": {
        1: (),
        4: (1,),
        5: (1, 2),
        6: (1, 2, 3),
        7: (1, 2, 3, 11),
        8: (1, 2, 3, 12),
        9: (1, 2, 3, 11, 12),  # release collision, requestor side
        11: (1, 2, 3, 11, 12, 14),
        13: (1, 2, 3, 12, 14),
    },
    "acceptor": {
        1: (),
        2: (5,),
        3: (5, 6),
        6: (5, 6, 7),
        7: (5, 6, 7, 11),
        8: (5, 6, 7, 12),
        10: (5, 6, 7, 11, 12),  # release collision, acceptor side
        12: (5, 6, 7, 11, 12, 13),
        13: (5, 6, 7, 12, 14),
    },
}
# Why a state is out of a role's reach (PS3.8 9.2.1 and the actions entering it).
UNREACHABLE: dict[Role, dict[int, str]] = {
    "requestor": {
        2: "acceptor-only",  # entered only by AE-5, on a transport connection indication
        3: "acceptor-only",  # entered only by AE-6, from Sta2
        10: "acceptor-collision",  # AR-8 leads a requestor to Sta9
        12: "acceptor-collision",  # entered only by AR-10, from Sta10
    },
    "acceptor": {
        4: "requestor-only",  # entered only by AE-1, the A-ASSOCIATE request
        5: "requestor-only",  # entered only by AE-2, from Sta4
        9: "requestor-collision",  # AR-8 leads an acceptor to Sta10
        11: "requestor-collision",  # entered only by AR-9, from Sta9
    },
}


def _new(role: Role) -> UpperLayer:
    return UpperLayer(requestor=role == "requestor", artim_timeout=ARTIM)


def drive(role: Role, state: int) -> UpperLayer:
    """A fresh UpperLayer brought into `state` by real inputs, its output drained."""
    ul = _new(role)
    for step, event in enumerate(PATHS[role][state], start=1):
        before = ul.state
        FIRE[event](ul, float(step))
        assert ul.state == State(_expected_next(EXPECTED_TABLE[event][before], role))
    assert ul.state == State(state)
    assert not ul.should_close
    ul.data_to_send()
    return ul


def split_pdus(data: bytes) -> list[PDU]:
    pdus: list[PDU] = []
    while data:
        end = 6 + int.from_bytes(data[2:6], "big")
        pdus.append(decode_pdu(data[:end]))
        data = data[end:]
    return pdus


# --- which states each role can reach --------------------------------------------------


@cache
def _explore(role: Role) -> frozenset[int]:
    """Every state a fresh UpperLayer reaches through the role's real inputs."""

    def replay(path: tuple[int, ...]) -> UpperLayer:
        ul = _new(role)
        for step, event in enumerate(path, start=1):
            FIRE[event](ul, float(step))
        return ul

    paths: dict[int, tuple[int, ...]] = {1: ()}
    queue: list[tuple[int, ...]] = [()]
    while queue:
        path = queue.pop(0)
        for event in ROLE_EVENTS[role]:
            ul = replay(path)
            try:
                FIRE[event](ul, 100.0)
            except LocalProtocolError:
                continue
            if ul.state.value not in paths:
                paths[ul.state.value] = (*path, event)
                queue.append((*path, event))
    return frozenset(paths)


@pytest.mark.parametrize("role", ROLES)
def test_reachable_states(role: Role) -> None:
    reached = _explore(role)
    assert reached == set(PATHS[role])
    assert reached == set(range(1, 14)) - set(UNREACHABLE[role])


def _unreachable_cases() -> Iterator[object]:
    for role in ROLES:
        for state, why in UNREACHABLE[role].items():
            yield pytest.param(role, state, id=f"{role}-Sta{state}-{why}")


@pytest.mark.parametrize(("role", "state"), list(_unreachable_cases()))
def test_unreachable_state_is_covered_by_the_other_role(role: Role, state: int) -> None:
    assert state not in _explore(role)
    other: Role = "acceptor" if role == "requestor" else "requestor"
    assert state in PATHS[other]
    assert drive(other, state).state == State(state)


def _role_bound_cases() -> Iterator[object]:
    for role in ROLES:
        for event, why in ROLE_BOUND[role].items():
            yield pytest.param(role, event, id=f"{role}-Evt{event}-{why}")


@pytest.mark.parametrize(("role", "event"), list(_role_bound_cases()))
def test_role_bound_event_cannot_be_produced(role: Role, event: int) -> None:
    ul = _new(role)
    if event == 1:
        with pytest.raises(LocalProtocolError):
            ul.request(RQ)
        assert ul.state is State.STA1
        assert ul.rq is None
    elif event == 2:
        # An acceptor's transport event is the connection indication: Sta1 -> Sta2.
        ul.connection_made(1.0)
        assert ul.state is State.STA2
    else:
        # A requestor's transport event is the connect confirmation, blank in Sta1.
        with pytest.raises(LocalProtocolError):
            ul.connection_made(1.0)
        assert ul.state is State.STA1
    assert ul.data_to_send() == b""


# --- every cell through a real UpperLayer -----------------------------------------------


def _ul_cells() -> Iterator[object]:
    for role in ROLES:
        for state in PATHS[role]:
            for event in ROLE_EVENTS[role]:
                yield pytest.param(role, state, event, id=f"{role}-Sta{state}-Evt{event}")


def _check_sent(action: str, event: int, sent: list[PDU]) -> None:
    if action in ("AA-7", "AA-8"):
        reason = ABORT_REASON_UNRECOGNIZED_PDU if event == 19 else ABORT_REASON_UNEXPECTED_PDU
        assert sent == [Abort(ABORT_SOURCE_PROVIDER, reason)]
    elif action == "AA-1":
        assert sent == [Abort(ABORT_SOURCE_USER, 0)]
    elif action == "AE-2":
        assert sent == [RQ]
    elif action == "AE-7":
        assert sent == [AC]
    elif action == "AE-8":
        assert sent == [RJ]
    elif action in ("DT-1", "AR-7"):
        assert sent
        assert all(isinstance(p, PDataTF) for p in sent)
        pdvs = [pdv for p in sent if isinstance(p, PDataTF) for pdv in p.pdvs]
        assert b"".join(pdv.data for pdv in pdvs) == ECHO_RQ
        assert all(pdv.context_id == 1 and pdv.is_command for pdv in pdvs)
        assert [pdv.is_last for pdv in pdvs] == [False] * (len(pdvs) - 1) + [True]
    elif action == "AR-1":
        assert sent == [ReleaseRQ()]
    elif action in ("AR-4", "AR-9"):
        assert sent == [ReleaseRP()]
    else:  # AE-1, AE-3..AE-6 (accept branch), DT-2, AR-2/3/5/6/8/10, AA-2..AA-6
        assert sent == []


def _check_events(action: str, event: int, got: list[ev.Event]) -> None:
    if action == "AE-3":
        assert got == [ev.AssociationAccepted(AC)]
    elif action == "AE-4":
        assert got == [ev.AssociationRejected(RJ)]
    elif action == "AE-6":
        assert got == [ev.AssociationRequested(RQ)]
    elif action in ("DT-2", "AR-6"):
        assert len(got) == 1
        received = got[0]
        assert isinstance(received, ev.MessageReceived)
        assert received.message.context_id == 1
        assert received.message.command == ECHO_RQ
        assert received.message.data_set is None
    elif action == "AR-2":
        assert got == [ev.ReleaseRequested(collision=False)]
    elif action == "AR-8":
        assert got == [ev.ReleaseRequested(collision=True)]
    elif action in ("AR-3", "AR-10"):
        assert got == [ev.ReleaseConfirmed()]
    elif action == "AA-3":
        assert got == [ev.Aborted(ABORT_SOURCE_USER, 0, by_peer=True)]
    elif action == "AA-4":
        assert len(got) == 1
        aborted = got[0]
        assert isinstance(aborted, ev.Aborted)
        assert aborted.source == ABORT_SOURCE_PROVIDER
        assert not aborted.by_peer
        assert aborted.connection_lost
        assert aborted.error is None
    elif action == "AA-8":
        reason = ABORT_REASON_UNRECOGNIZED_PDU if event == 19 else ABORT_REASON_UNEXPECTED_PDU
        assert len(got) == 1
        aborted = got[0]
        assert isinstance(aborted, ev.Aborted)
        assert (aborted.source, aborted.reason, aborted.by_peer) == (
            ABORT_SOURCE_PROVIDER,
            reason,
            False,
        )
        assert not aborted.connection_lost
        if event == 19:
            assert isinstance(aborted.error, PDUError)
        else:
            assert aborted.error is None
    else:
        assert got == []


@pytest.mark.parametrize(("role", "state", "event"), list(_ul_cells()))
def test_upper_layer_cell(role: Role, state: int, event: int) -> None:
    ul = drive(role, state)
    deadline_before = ul.next_deadline()
    kept = (ul.rq, ul.ac, ul.rj, dict(ul.contexts), ul.peer_max_pdu)
    # ARTIM runs in exactly Sta2 and Sta13.
    assert (deadline_before is not None) == (state in (2, 13))
    action = EXPECTED_TABLE[event].get(state)

    if action is None:
        if event in PDU_EVENTS:
            # Only Sta1/Sta4 lack a remote event's action: no transport to read.
            assert state in (1, 4)
        if (event == 15 and state in (1, 13)) or (event == 17 and state == 1) or event == 18:
            # Documented no-ops, not errors: abort() with no association left to
            # abort, the transport closing after the association ended, and
            # handle_timer() with no ARTIM running (Evt18 cannot happen).
            assert FIRE[event](ul, FIRE_AT) == []
        else:
            with pytest.raises(LocalProtocolError):
                FIRE[event](ul, FIRE_AT)
        assert ul.state == State(state)
        assert ul.data_to_send() == b""
        assert ul.next_deadline() == deadline_before
        assert not ul.should_close
        assert (ul.rq, ul.ac, ul.rj, ul.contexts, ul.peer_max_pdu) == kept
        return

    got = FIRE[event](ul, FIRE_AT)
    assert ul.state == State(_expected_next(action, role))
    _check_sent(action, event, split_pdus(ul.data_to_send()))
    _check_events(action, event, got)
    assert ul.should_close == (action in CLOSES)
    if action in ARTIM_STARTS:
        assert ul.next_deadline() == FIRE_AT + ARTIM
    elif action in ARTIM_KEEPS:
        assert ul.next_deadline() == deadline_before
    else:
        assert ul.next_deadline() is None


@pytest.mark.parametrize(
    ("role", "state"),
    [
        pytest.param("requestor", 1, id="requestor-Sta1"),
        pytest.param("requestor", 4, id="requestor-Sta4"),
        pytest.param("acceptor", 1, id="acceptor-Sta1"),  # Sta4 is requestor-only
    ],
)
def test_receive_data_without_transport_raises(role: Role, state: int) -> None:
    ul = drive(role, state)
    for data in (ReleaseRQ().encode(), b"\x01", UNKNOWN_PDU):
        with pytest.raises(LocalProtocolError):
            ul.receive_data(data, FIRE_AT)
        assert ul.state == State(state)
