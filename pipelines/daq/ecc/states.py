"""The ECC state machine: states, which operation leads where, and one step back."""
from __future__ import annotations

from enum import IntEnum, StrEnum


class EccState(IntEnum):
    """The ECC state machine's states, as GetState reports them."""

    IDLE = 1
    DESCRIBED = 2
    PREPARED = 3
    READY = 4
    RUNNING = 5


class Operation(StrEnum):
    """The SOAP operations that move an ECC server from one state to another."""

    DESCRIBE = "Describe"
    PREPARE = "Prepare"
    CONFIGURE = "Configure"
    START = "Start"
    STOP = "Stop"
    BREAKUP = "Breakup"
    UNDO = "Undo"


# operation -> (state it starts from, state it leads to); Undo goes one back.
TRANSITIONS: dict[str, tuple[EccState, EccState]] = {
    Operation.DESCRIBE: (EccState.IDLE, EccState.DESCRIBED),
    Operation.PREPARE: (EccState.DESCRIBED, EccState.PREPARED),
    Operation.CONFIGURE: (EccState.PREPARED, EccState.READY),
    Operation.START: (EccState.READY, EccState.RUNNING),
    Operation.STOP: (EccState.RUNNING, EccState.READY),
    Operation.BREAKUP: (EccState.READY, EccState.PREPARED),
}
UNDO_FROM = {EccState.PREPARED: EccState.DESCRIBED, EccState.DESCRIBED: EccState.IDLE}


def step_back(state: EccState) -> tuple[str, EccState] | None:
    """The operation that takes a server one step down from ``state``, and where to."""
    if state == EccState.RUNNING:
        return Operation.STOP, EccState.READY
    if state == EccState.READY:
        return Operation.BREAKUP, EccState.PREPARED
    if state in UNDO_FROM:
        return Operation.UNDO, UNDO_FROM[state]
    return None


def leads_to(operation: str, state: int) -> EccState | None:
    """Where ``operation`` takes a server settled in ``state``; None where it does not apply."""
    if operation == Operation.UNDO:
        return UNDO_FROM.get(state)
    start, end = TRANSITIONS.get(operation, (None, None))
    return end if start == state else None


def target_state(operation: str, current: EccState | None = None) -> EccState:
    """The state ``operation`` leads to (Undo needs the state it starts from)."""
    if operation == Operation.UNDO:
        if current not in UNDO_FROM:
            raise ValueError(f"Undo is not possible from state {current!r}")
        return UNDO_FROM[current]
    return TRANSITIONS[operation][1]


def state_name(state: int | None) -> str:
    """A state's name for people: READY, ..., UNKNOWN when never seen, else the number."""
    if state is None:
        return "UNKNOWN"
    try:
        return EccState(state).name
    except ValueError:
        return str(state)
