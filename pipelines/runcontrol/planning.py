"""Planning a workflow: the run-control rules, and the stages in the order the hardware needs.

Pure reads of the database: a plan writes nothing, and a refusal says which rule
the request breaks.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from sqlmodel import select

from models import (
    Config,
    DataRouter,
    DataSource,
    ECCServer,
    Experiment,
    Run,
    Step,
    StepState,
    Workflow,
)
from models.vocabulary import ACTIVE_STATES, FilesOperation, RunClass, WorkflowKind
from pipelines.daq.ecc.states import TRANSITIONS, EccState, Operation, state_name, step_back
from pipelines.runcontrol.errors import Refused

# Operations that need the CoBos before the MuTAnT going up, or the MuTAnT first going down.
UP_ORDERED = {Operation.DESCRIBE, Operation.CONFIGURE, Operation.START}
DOWN_ORDERED = {Operation.STOP, Operation.BREAKUP}
# The collective transitions that take every server one named step up.
COLLECTIVE = {WorkflowKind.DESCRIBE: Operation.DESCRIBE, WorkflowKind.PREPARE: Operation.PREPARE,
              WorkflowKind.CONFIGURE: Operation.CONFIGURE}


@dataclass
class StagePlan:
    name: str
    operation: str
    # (ECC server or data router name, operation, target ECC state or None) per member
    members: list[tuple[str, str, int | None]] = field(default_factory=list)


def _servers(s) -> list[tuple[ECCServer, bool]]:
    """Every ECC server, and whether it drives the MuTAnT."""
    servers = s.exec(select(ECCServer).order_by(ECCServer.name)).all()
    mutant_servers = {src.ecc_server_id for src in s.exec(select(DataSource)).all() if src.is_mutant}
    return [(server, server.id in mutant_servers) for server in servers]


def ordered_stages(operation: str, servers: list[tuple[ECCServer, bool]],
                   targets: dict[str, tuple[str, int]]) -> list[StagePlan]:
    """Stages for one operation across servers, in the order the hardware needs.

    Going up (Describe, Configure, Start) the CoBos go first and the MuTAnT last;
    going down (Stop, Breakup) the MuTAnT goes first. Other operations run in one
    stage. ``targets`` maps the servers taking part to (operation, target state).
    Stages with no members are left out.
    """
    verb = operation.lower()
    cobos = [srv.name for srv, mutant in servers if not mutant and srv.name in targets]
    mutants = [srv.name for srv, mutant in servers if mutant and srv.name in targets]
    if operation in UP_ORDERED:
        plans = [StagePlan(f"{verb} CoBos", operation), StagePlan(f"{verb} MuTAnT", operation)]
        groups = [cobos, mutants]
    elif operation in DOWN_ORDERED:
        plans = [StagePlan(f"{verb} MuTAnT", operation), StagePlan(f"{verb} CoBos", operation)]
        groups = [mutants, cobos]
    else:
        plans, groups = [StagePlan(f"{verb} all", operation)], [cobos + mutants]
    for plan, names in zip(plans, groups):
        plan.members = [(name, *targets[name]) for name in names]
    return [plan for plan in plans if plan.members]


def daq_state(states: list[int | None]) -> str:
    """The DAQ's overall state: the common state's name, Mixed, or Unknown."""
    if not states:
        return "Unknown"
    if any(state is None for state in states):
        return "Unknown"
    if len(set(states)) > 1:
        return "Mixed"
    return EccState(states[0]).name


def _refuse_if_busy(s) -> None:
    active = s.exec(select(Workflow).where(Workflow.state.in_(ACTIVE_STATES))).first()
    if active is not None:
        raise Refused(f"workflow {active.id} ({active.kind}) is still active; "
                      "wait for it to end")


def current_run(s) -> Run | None:
    """The run that has started and not stopped, in the active experiment."""
    return s.exec(
        select(Run).join(Experiment, Run.experiment_id == Experiment.id)
        .where(Experiment.active == True, Run.started_at != None, Run.stopped_at == None)  # noqa: E711,E712
        .order_by(Run.number.desc())
    ).first()


def _active_config(s) -> dict:
    config = s.exec(select(Config).where(Config.active == True)).first()  # noqa: E712
    if config is None:
        raise Refused("no config is active: load a topology first")
    return {"name": config.name, "describe": config.describe, "prepare": config.prepare,
            "configure": config.configure}


def _not_in(servers, state: EccState) -> list[str]:
    return [f"{srv.name} is {state_name(srv.state)}" for srv, _ in servers if srv.state != state]


@dataclass
class WorkflowPlan:
    """What a workflow will do: its stages, parameters, run, and per-server expected times."""

    stages: list[StagePlan]
    params: dict
    run_id: int | None
    expected_seconds: dict[str, float]


def plan(s, kind: str, title: str = "", run_class: str = RunClass.TEST) -> WorkflowPlan:
    """A workflow's plan, or Refused with the rule it breaks."""
    servers = _servers(s)
    if not servers:
        raise Refused("no ECC servers: load a topology first")
    _refuse_if_busy(s)
    params = {"config": _active_config(s)}
    running = current_run(s)
    if kind == WorkflowKind.START_RUN:
        if running is not None:
            raise Refused(f"run {running.number} is going; stop it before starting another")
        not_ready = _not_in(servers, EccState.READY)
        if not_ready:
            raise Refused("a run starts only when every source is READY: " + "; ".join(not_ready))
        if s.exec(select(Experiment).where(Experiment.active == True)).first() is None:  # noqa: E712
            raise Refused("no active experiment: load a topology first")
        params.update(title=title, run_class=run_class)
        operation = Operation.START
        targets = {srv.name: (operation, EccState.RUNNING) for srv, _ in servers}
    elif kind == WorkflowKind.STOP_RUN:
        if running is None:
            raise Refused("no run is going")
        params["run_number"] = running.number
        operation = Operation.STOP
        targets = {srv.name: (operation, EccState.READY) for srv, _ in servers}
    elif kind in COLLECTIVE:
        operation = COLLECTIVE[kind]
        if running is not None:
            raise Refused(f"run {running.number} is going; stop it first")
        targets = {srv.name: (operation, TRANSITIONS[operation][1]) for srv, _ in servers}
    elif kind == WorkflowKind.RESET:
        if running is not None:
            raise Refused(f"run {running.number} is going; stop it before a reset")
        operation, targets = _reset_targets(servers)
    else:
        raise Refused(f"unknown workflow {kind!r}")
    stopping = kind == WorkflowKind.STOP_RUN
    stages = ordered_stages(operation, servers, targets)
    stages += _end_of_run(s, servers) if stopping else []
    return WorkflowPlan(stages, params, running.id if stopping else None,
                        {srv.name: srv.expected_seconds for srv, _ in servers})


# Expected seconds of a files step until it has a history.
FILES_EXPECTED_SECONDS = 2.0


def _end_of_run(s, servers) -> list[StagePlan]:
    """After the stop: organize every router's files, then back up every ECC's configs."""
    names = s.exec(select(DataRouter.name).order_by(DataRouter.name)).all()
    stages = []
    if names:
        stages.append(StagePlan("organize files", FilesOperation.ORGANIZE,
                                [(name, FilesOperation.ORGANIZE, None) for name in names]))
    backed_up = [srv.name for srv, _ in servers if srv.config_dir and srv.backup_dir]
    if backed_up:
        stages.append(StagePlan("back up configs", FilesOperation.BACKUP,
                                [(name, FilesOperation.BACKUP, None) for name in backed_up]))
    return stages


def _reset_targets(servers) -> tuple[str, dict]:
    # One step back, taken by the servers in the highest state, so a Mixed DAQ converges.
    unknown = [srv.name for srv, _ in servers if srv.state is None]
    if unknown:
        raise Refused("state unknown for " + ", ".join(unknown) + "; wait for a refresh")
    highest = EccState(max(srv.state for srv, _ in servers))
    back = step_back(highest)
    if back is None:
        raise Refused("every source is IDLE: nothing to reset")
    operation, target = back
    return operation, {srv.name: back for srv, _ in servers if srv.state == highest}


def expected_durations(s, operation: str, names: list[str], history: int = 5) -> dict[str, float]:
    """Median of each server's last successful durations of ``operation``."""
    rows = s.exec(
        select(Step.target, Step.duration)
        .where(Step.operation == operation, Step.state == StepState.SUCCEEDED.value,
               Step.target.in_(names), Step.duration != None)  # noqa: E711
        .order_by(Step.id.desc()).limit(history * max(len(names), 1) * 2)
    ).all()
    seen: dict[str, list[float]] = {}
    for target, duration in rows:
        if len(seen.setdefault(target, [])) < history:
            seen[target].append(duration)
    return {name: statistics.median(values) for name, values in seen.items()}
