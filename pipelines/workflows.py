"""Starting workflows: plan the stages, apply the rules, write the record, dispatch.

The Workflow, Stage and Step rows are written, with every Celery id, before
anything is sent; a refused request writes nothing.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from uuid import uuid4

from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlmodel import select

from models import (
    Config,
    DataRouter,
    DataSource,
    ECCServer,
    Experiment,
    Run,
    Stage,
    Step,
    StepState,
    Workflow,
    WorkflowState,
    session,
)
from models.workflow import ACTIVE_STATES
from pipelines import accounts, canvases, lock, records, results, routers
from pipelines.ecc import TRANSITIONS, EccState, state_name, step_back

RUN_CLASSES = ("TEST", "PROD", "BEAM", "JUNK", "PULS")
# Operations that need the CoBos before the MuTAnT going up, or the MuTAnT first going down.
UP_ORDERED = {"Describe", "Configure", "Start"}
DOWN_ORDERED = {"Stop", "Breakup"}
COLLECTIVE = {"describe": "Describe", "prepare": "Prepare", "configure": "Configure"}


class Refused(Exception):
    """The request breaks a run-control rule; nothing was written (HTTP 409)."""


class NotFound(Exception):
    """No such workflow (HTTP 404)."""


class Unavailable(Exception):
    """The broker could not be reached; the workflow is recorded as failed (HTTP 503)."""


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


def plan(s, kind: str, title: str = "", run_class: str = "TEST") -> WorkflowPlan:
    """A workflow's plan, or Refused with the rule it breaks."""
    servers = _servers(s)
    if not servers:
        raise Refused("no ECC servers: load a topology first")
    _refuse_if_busy(s)
    params = {"config": _active_config(s)}
    running = current_run(s)
    if kind == "start_run":
        if running is not None:
            raise Refused(f"run {running.number} is going; stop it before starting another")
        not_ready = _not_in(servers, EccState.READY)
        if not_ready:
            raise Refused("a run starts only when every source is READY: " + "; ".join(not_ready))
        if s.exec(select(Experiment).where(Experiment.active == True)).first() is None:  # noqa: E712
            raise Refused("no active experiment: load a topology first")
        params.update(title=title, run_class=run_class)
        operation, targets = "Start", {srv.name: ("Start", EccState.RUNNING) for srv, _ in servers}
    elif kind == "stop_run":
        if running is None:
            raise Refused("no run is going")
        params["run_number"] = running.number
        operation, targets = "Stop", {srv.name: ("Stop", EccState.READY) for srv, _ in servers}
    elif kind in COLLECTIVE:
        operation = COLLECTIVE[kind]
        if running is not None:
            raise Refused(f"run {running.number} is going; stop it first")
        targets = {srv.name: (operation, TRANSITIONS[operation][1]) for srv, _ in servers}
    elif kind == "reset":
        if running is not None:
            raise Refused(f"run {running.number} is going; stop it before a reset")
        operation, targets = _reset_targets(servers)
    else:
        raise Refused(f"unknown workflow {kind!r}")
    stopping = kind == "stop_run"
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
        stages.append(StagePlan("organize files", "organize",
                                [(name, "organize", None) for name in names]))
    backed_up = [srv.name for srv, _ in servers if srv.config_dir and srv.backup_dir]
    if backed_up:
        stages.append(StagePlan("back up configs", "backup",
                                [(name, "backup", None) for name in backed_up]))
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


# A workflow is recorded as ended just before its lock is released: an operator who presses
# Stop the moment the run shows started waits this long for the lock instead of a refusal.
LOCK_HANDOVER_SECONDS = 3.0


def take_lock() -> str:
    """The run-control lock for one workflow, or Refused / Unavailable; returns its token.

    It expires on its own after the longest a workflow can take, should the
    process that would release it die.
    """
    with session() as s:
        deadlines = s.exec(select(ECCServer.transition_timeout)).all()
    seconds = 4 * (max(deadlines, default=120.0) + 30) + 600  # transitions, then files
    handover = time.monotonic() + LOCK_HANDOVER_SECONDS
    while True:
        try:
            return lock.acquire(seconds)
        except lock.Busy as exc:
            if time.monotonic() > handover or not _holder_has_ended():
                raise Refused(str(exc)) from None
            time.sleep(0.02)
        except (RedisConnectionError, OSError) as exc:
            raise Unavailable(f"Redis is unreachable ({exc}); nothing was started") from exc


def _holder_has_ended() -> bool:
    """Whether the lock's holder is a workflow already recorded as ended (about to release)."""
    token = lock.holder()
    if token is None:
        return True  # released meanwhile: try again
    with session() as s:
        state = s.exec(select(Workflow.state).where(Workflow.lock_token == token)).first()
    return state is not None and state not in ACTIVE_STATES


def create(kind: str, title: str = "", run_class: str = "TEST", actor: str | None = None) -> int:
    """Take the lock, plan a workflow, write its rows with all Celery ids; its id.

    Raises Refused (nothing written, lock released) when a rule forbids it. A start
    also checks every data router's staging directory first, over SSH, outside any
    session. ``actor`` (default: the command line's user) goes in the audit.
    """
    token = take_lock()
    try:
        return _create(kind, title, run_class, token, actor)
    except BaseException:
        lock.release(token)
        raise


def _create(kind: str, title: str, run_class: str, token: str, actor: str | None) -> int:
    if kind == "start_run":
        with session() as s:
            plan(s, kind, title=title, run_class=run_class)  # the cheap rules first
        dirty = routers.problems()
        if dirty:
            raise Refused("a run may not start on top of an earlier run's files: "
                          + "; ".join(dirty))
    with session() as s:
        planned = plan(s, kind, title=title, run_class=run_class)
        workflow = Workflow(kind=kind, params=planned.params, callback_task_id=str(uuid4()),
                            run_id=planned.run_id, lock_token=token)
        s.add(workflow)
        s.flush()
        accounts.record(s, actor, kind, workflow.id, **{
            key: planned.params[key] for key in ("title", "run_class", "run_number")
            if key in planned.params})
        for order, stage_plan in enumerate(planned.stages):
            stage = Stage(workflow_id=workflow.id, order=order, name=stage_plan.name,
                          operation=stage_plan.operation, group_id=str(uuid4()),
                          callback_task_id=str(uuid4()))
            s.add(stage)
            s.flush()
            history = expected_durations(s, stage_plan.operation,
                                         [name for name, _, _ in stage_plan.members])
            files = stage_plan.operation in canvases.STEP_TASKS
            default = {} if files else planned.expected_seconds
            for target, operation, target_state in stage_plan.members:
                s.add(Step(stage_id=stage.id, target=target, operation=operation,
                           target_state=None if target_state is None else int(target_state),
                           task_id=str(uuid4()),
                           expected_seconds=history.get(target, default.get(
                               target, FILES_EXPECTED_SECONDS))))
        return workflow.id


def dispatch(workflow_id: int) -> None:
    """Send a written workflow's canvas to the broker.

    It runs the stages that have not succeeded, and in them the latest attempts
    that have not: everything for a new workflow, only what is left for a replay.
    """
    with session() as s:
        workflow = s.get(Workflow, workflow_id)
        stages = [st for st in s.exec(select(Stage).where(Stage.workflow_id == workflow_id)).all()
                  if st.state != WorkflowState.SUCCEEDED.value]
        steps = [step for stage in stages for step in records.latest_attempts(s, stage.id)
                 if step.state != StepState.SUCCEEDED.value]
    canvas = canvases.workflow_canvas(workflow, stages, steps)
    try:
        canvas.apply_async()
    except (OperationalError, RedisConnectionError, OSError) as exc:
        records.fail_workflow(workflow_id, f"could not send the workflow to the broker: {exc}")
        raise Unavailable(f"the broker is unreachable ({exc}); nothing was started") from exc


def launch(kind: str, title: str = "", run_class: str = "TEST", actor: str | None = None) -> int:
    """Create and dispatch a workflow on behalf of ``actor``; returns its id."""
    workflow_id = create(kind, title=title, run_class=run_class, actor=actor)
    dispatch(workflow_id)
    forget_earlier_results(workflow_id)
    return workflow_id


# How many workflows before a new one have their Redis results deleted. More than one:
# a final callback stores its own result just after its workflow released the lock.
FORGET_WINDOW = 5


def forget_earlier_results(workflow_id: int) -> int:
    """Delete the Redis results of the workflows before this one; their record is in the database.

    Keeps Redis bounded over thousands of runs: at any time it holds the results
    of the last few workflows only. Returns how many keys went.
    """
    with session() as s:
        stage_rows = s.exec(select(Stage.id, Stage.callback_task_id, Stage.group_id).where(
            Stage.workflow_id < workflow_id,
            Stage.workflow_id >= workflow_id - FORGET_WINDOW)).all()
        step_ids = s.exec(select(Step.task_id).where(
            Step.stage_id.in_([stage_id for stage_id, _, _ in stage_rows]))).all()
        callbacks = s.exec(select(Workflow.callback_task_id).where(
            Workflow.id < workflow_id, Workflow.id >= workflow_id - FORGET_WINDOW)).all()
    ids = list(step_ids) + [cb for _, cb, _ in stage_rows] + list(callbacks)
    return results.forget([tid for tid in ids if tid], [gid for _, _, gid in stage_rows if gid])


def get(workflow_id: int) -> Workflow:
    """A workflow by id, or NotFound."""
    with session() as s:
        workflow = s.get(Workflow, workflow_id)
    if workflow is None:
        raise NotFound(f"no workflow {workflow_id}")
    return workflow


__all__ = ["RUN_CLASSES", "Refused", "NotFound", "Unavailable", "launch", "create",
           "dispatch", "plan", "ordered_stages", "daq_state", "current_run", "get",
           "WorkflowState"]
