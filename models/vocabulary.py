"""daqflow's words, defined once: workflow kinds, states and their groupings, run classes,
roles, and the operations of file steps. The CLI, the API, the forms and the records all
take them from here; the database stores their values.
"""
from __future__ import annotations

from enum import StrEnum


class WorkflowKind(StrEnum):
    """What an operator asked for: a collective transition, or a run start or stop."""

    DESCRIBE = "describe"
    PREPARE = "prepare"
    CONFIGURE = "configure"
    RESET = "reset"
    START_RUN = "start_run"
    STOP_RUN = "stop_run"
    # One ECC server moved one step (after a power cycle, a re-configure).
    SERVER_STEP = "server_step"


# The transitions an operator asks for by name (buttons, `daqflow transition`, the API).
TRANSITION_KINDS: tuple[WorkflowKind, ...] = (
    WorkflowKind.DESCRIBE, WorkflowKind.PREPARE, WorkflowKind.CONFIGURE, WorkflowKind.RESET)


# What one ECC server may be asked to do alone (`reset`: one step back from its state).
SERVER_OPERATIONS: tuple[str, ...] = ("describe", "prepare", "configure", "start", "stop",
                                      "breakup", "undo", "reset")


class RunClass(StrEnum):
    """What a run is for, as the run sheet records it."""

    TEST = "TEST"
    PROD = "PROD"
    BEAM = "BEAM"
    JUNK = "JUNK"
    PULS = "PULS"


class Role(StrEnum):
    """Viewers see everything; operators also change the DAQ."""

    OPERATOR = "operator"
    VIEWER = "viewer"


class WorkflowState(StrEnum):
    """Where a workflow, or one of its stages, is; ``aborted`` when an operator cut it loose."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"


class StepState(StrEnum):
    """Where one attempt of one step is; ``lost`` when no live worker runs it any more."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    LOST = "lost"
    ABORTED = "aborted"


# A workflow or stage in one of these has not ended: it holds the run-control lock.
ACTIVE_STATES: tuple[str, ...] = (WorkflowState.PENDING, WorkflowState.RUNNING)
# A step in one of these has not ended yet (it may still be in the broker, or running).
UNFINISHED_STEP_STATES: tuple[str, ...] = (StepState.PENDING, StepState.RUNNING)
# A step in one of these will not change any more (a replay makes a new attempt).
ENDED_STEP_STATES: tuple[str, ...] = (StepState.SUCCEEDED, StepState.FAILED, StepState.LOST,
                                       StepState.ABORTED)
# A step in one of these did not do its work.
UNSUCCESSFUL_STEP_STATES: tuple[str, ...] = (StepState.FAILED, StepState.LOST, StepState.ABORTED)
# A workflow in one of these may be replayed: what did not succeed runs again.
REPLAYABLE_STATES: tuple[str, ...] = (WorkflowState.FAILED, WorkflowState.ABORTED)


class FilesOperation(StrEnum):
    """The operations of the end-of-run stages, on the nodes (ECC operations are the ECC's)."""

    ORGANIZE = "organize"
    BACKUP = "backup"


class FilesKind(StrEnum):
    """What a run's file record counts: a data router's data, or an ECC server's configs."""

    DATA = "data"
    CONFIGS = "configs"


class FieldType(StrEnum):
    """What a custom run field holds: a number (with its unit), free text, or one of a list."""

    NUMBER = "number"
    TEXT = "text"
    CHOICE = "choice"


class RunMoment(StrEnum):
    """When a custom run field is asked for: with the start, or at the stop."""

    START = "start"
    STOP = "stop"


class RunOutcome(StrEnum):
    """What became of a run, as the run log shows it."""

    GOING = "going"
    # Stopped, but its data are not (yet) in the run's folder on every node.
    FILES_NOT_ORGANIZED = "files not organized"
    COMPLETE = "complete"


class PlanState(StrEnum):
    """Where a run plan is: taking its entries, paused (a failure, a manual stop), or ended."""

    RUNNING = "running"
    PAUSED = "paused"
    DONE = "done"
    ABORTED = "aborted"


class EntryState(StrEnum):
    """Where one entry of a run plan is."""

    PENDING = "pending"
    # The DAQ is being taken to the entry's config.
    CONFIGURING = "configuring"
    RUNNING = "running"
    DONE = "done"
    # An operator skipped it, or stopped its run by hand.
    SKIPPED = "skipped"
    STOPPED = "stopped"


class AlarmKind(StrEnum):
    """What an alarm is about; each has its threshold and delay in the topology's [alarms]."""

    ECC_OFFLINE = "ecc_offline"
    PROCESS_DOWN = "process_down"
    RATE_LOW = "rate_low"
    DISK_LOW = "disk_low"
    WORKFLOW_FAILED = "workflow_failed"
    # A run going longer than its planned length (plus [alarms] overdue_seconds).
    RUN_OVERDUE = "run_overdue"
    # daqflow could not stop a run at its limit, or start the next one: unattended data
    # taking has ended.
    AUTOMATION_FAILED = "automation_failed"
