"""What workers write as a step moves: begun (with what it takes), then succeeded or failed.

Tasks stay thin: they call an external system and hand the outcome to one of
these functions. Each opens its own short session.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from sqlalchemy import bindparam, exists
from sqlalchemy.orm import aliased
from sqlmodel import select, update

from models import session
from models.columns import utcnow
from models.daq import DataRouter, DataSource, ECCServer
from models.db import transaction
from models.prepared import Prepared
from models.vocabulary import (
    ACTIVE_STATES,
    ENDED_STEP_STATES,
    UNSUCCESSFUL_STEP_STATES,
    StepState,
    WorkflowState,
)
from models.workflow import Stage, Step, Workflow
from pipelines.daq.ecc.drive import Driven
from pipelines.daq.ecc.payloads import ConfigId, DataLink
from pipelines.daq.ecc.states import EccState
from pipelines.runcontrol.errors import StepFailed


@dataclass(frozen=True)
class TransitionOrder:
    """Everything a transition task needs to drive one ECC server, read in one go."""

    server: str
    url: str
    # The lock token its workflow runs under: an abort flags it (abort.is_aborted).
    abort_key: str | None
    operation: str
    target: EccState
    config: ConfigId
    links: list[DataLink]
    deadline_seconds: float
    expected_seconds: float
    # When the step began (a redelivered step keeps its first start): its end is then
    # recorded without reading the row again.
    began_at: datetime
    # The state the server was last confirmed settled in, when a first delivery may trust
    # it to send the operation without asking first (None: ask).
    recorded_state: int | None = None


@dataclass(frozen=True)
class _Server:
    """What driving an ECC server takes from the topology: where, how long, its links."""

    url: str
    transition_timeout: float
    expected_seconds: float
    links: list[DataLink]


@cache
def _servers_statement():
    return Prepared(
        select(ECCServer.name, ECCServer.url, ECCServer.transition_timeout,
               ECCServer.expected_seconds, DataSource.name.label("source"),
               DataRouter.name.label("router"), DataRouter.ip_address, DataRouter.port,
               DataRouter.type)
        .join(DataSource, DataSource.ecc_server_id == ECCServer.id, isouter=True)
        .join(DataRouter, DataSource.data_router_id == DataRouter.id, isouter=True)
        .order_by(ECCServer.name, DataSource.name))


def _servers(c) -> dict[str, _Server]:
    """Every ECC server with the data links of its sources, in one query of plain columns
    (three ORM objects a source were a tenth of a 1024-source start's CPU), on the driver's
    cursor: through SQLAlchemy's execution this read was a third of beginning a step at
    N = 64 (py-spy), and the step threads of its process wait for it."""
    servers: dict[str, _Server] = {}
    for row in _servers_statement().all(c):
        found = servers.setdefault(row.name, _Server(
            row.url, row.transition_timeout, row.expected_seconds, []))
        if row.source is not None:
            routed = row.router is not None
            found.links.append(DataLink(
                row.source, row.router or "", row.ip_address if routed else "",
                row.port if routed else 0, row.type if routed else "TCP"))
    return servers


# The statements every step runs are built once per process, their values bound at each
# run: building them (an aliased table, its columns' proxies, coerced literals) cost more
# of a step's CPU than running them (py-spy, N = 1024: a fifth of the control workers').
@cache
def _step_row_statement():
    newer = aliased(Step)
    replaced = exists().where(newer.stage_id == Step.stage_id, newer.target == Step.target,
                              newer.attempt > Step.attempt)
    return Prepared(select(Step.id, Step.state, Step.attempt, Step.target, Step.operation,
                   Step.target_state, Step.expected_seconds, Step.stage_id, Step.worker,
                   Step.started_at,
                   Stage.state.label("stage_state"), Stage.group_id,
                   Stage.workflow_id, Workflow.state.label("workflow_state"),
                   Workflow.lock_token, Workflow.callback_task_id, Workflow.run_id,
                   replaced.label("replaced"), ECCServer.state.label("server_state"),
                   ECCServer.transition.label("server_transition"),
                   ECCServer.online.label("server_online"))
            .join(Stage, Step.stage_id == Stage.id)
            .join(Workflow, Stage.workflow_id == Workflow.id)
            .join(ECCServer, ECCServer.name == Step.target, isouter=True)
            .where(Step.id == bindparam("step_id"), Step.task_id == bindparam("task_id")))


def step_row(c, step_id: int, task_id: str):
    """What beginning a step reads of it, its stage and workflow, in one query: plain
    columns, no ORM objects (building three of them for each of N steps was a fifth of a
    start's CPU), not the workflow's params, and whether a replay made a newer attempt.

    Only the message sent for this step finds it: one from before (of a deleted row whose
    id the database gave again) acts on nothing."""
    row = _step_row_statement().first(c, {"step_id": step_id, "task_id": task_id})
    if row is None:
        raise StepFailed(f"step {step_id} does not exist, or is not the one task {task_id} "
                         "was sent for")
    return row


def refuse_ended(row) -> None:
    """StepFailed for a message delivered late (after its step was given up, its workflow
    ended, or a replay made a newer attempt): it must not touch the DAQ, the replay's
    attempt does."""
    if row.state in UNSUCCESSFUL_STEP_STATES:
        raise StepFailed(f"{row.target}: attempt {row.attempt} already ended as {row.state}; "
                         "a replay runs a new attempt")
    if row.workflow_state not in ACTIVE_STATES:
        raise StepFailed(f"{row.target}: workflow {row.workflow_id} already {row.workflow_state}")
    if row.replaced:
        raise StepFailed(f"{row.target}: attempt {row.attempt} was replaced by a replay")


# What a workflow's steps read of its params and of the topology, read once per worker
# process: a start's N steps would otherwise read N times what is the same for all (the
# params hold every server's config: decoding them for each step made a start's CPU grow
# as N squared). Params never change once written, and the topology is the one at the
# workflow's first step here. The key (the final callback's task id, a fresh uuid) is
# never another workflow's, even where the database reuses a deleted row's id.
_facts: dict[str, dict] = {}
_FACTS_KEPT = 16
_facts_lock = threading.Lock()


def _remembered(row, what: str, read):
    key = row.callback_task_id or f"workflow-{row.workflow_id}"
    facts = _facts.get(key)
    if facts is not None and what in facts:
        return facts[what]
    # Hundreds of threads begin their steps at once: one reads, the others wait for it
    # (reading all N servers in each of them cost more than it saved).
    with _facts_lock:
        if key not in _facts:
            while len(_facts) >= _FACTS_KEPT:
                del _facts[next(iter(_facts))]
            _facts[key] = {}
        facts = _facts[key]
        if what not in facts:
            facts[what] = read()
        return facts[what]


@cache
def _params_statement():
    return Prepared(select(Workflow.params).where(Workflow.id == bindparam("workflow")))


def config_of(c, row) -> dict:
    """The config a step's workflow sends its server: chosen for it, or the active one, as
    planned (``c``: a connection)."""
    params = _remembered(row, "params", lambda: _params_statement().first(
        c, {"workflow": row.workflow_id}).params)
    return (params.get("configs") or {}).get(row.target) or params.get("config") or {}


def begin_transition(step_id: int, task_id: str, worker: str | None = None,
                     group_id: str | None = None) -> TransitionOrder:
    """Mark a transition step running on ``worker`` (a Celery node name) and return what
    driving it takes. ``task_id`` is the message's own id: only its step is touched.

    ``group_id`` is the Celery group the task ran in; the stage keeps the real one.
    """
    with transaction() as c:
        row = step_row(c, step_id, task_id)
        refuse_ended(row)
        server = _remembered(row, "servers", lambda: _servers(c)).get(row.target)
        if server is None:
            raise StepFailed(f"ECC server {row.target} is not in the topology any more")
        config = config_of(c, row)
        began_at = row.started_at or utcnow()
        order = TransitionOrder(
            server=row.target, url=server.url, abort_key=row.lock_token,
            operation=row.operation,
            target=EccState(row.target_state),
            config=ConfigId(config.get("describe", ""), config.get("prepare", ""),
                            config.get("configure", "")),
            links=server.links, deadline_seconds=server.transition_timeout,
            expected_seconds=row.expected_seconds or server.expected_seconds,
            began_at=began_at, recorded_state=_trusted_state(row),
        )
        mark_running(c, row, worker, group_id, began_at)
    return order


def _trusted_state(row) -> int | None:
    # Only a first delivery trusts the record: a redelivered step may have sent its
    # operation already, and the server must then be asked where it is.
    if (row.state == StepState.PENDING.value and row.server_online
            and row.server_transition == 0):
        return row.server_state
    return None


@cache
def _begin_statement():
    return Prepared(update(Step)
                    .where(Step.id == bindparam("step"), Step.state == StepState.PENDING.value)
                    .values(state=StepState.RUNNING.value, started_at=bindparam("began"),
                            worker=bindparam("by")))


@cache
def _running_statements():
    # Conditional UPDATEs: a redelivered step keeps when it began (and names the worker
    # that has it now), and only the first steps of a stage find it (and their workflow)
    # still pending.
    pending, running = WorkflowState.PENDING.value, WorkflowState.RUNNING.value
    return dict(
        worker=Prepared(update(Step).where(Step.id == bindparam("step"))
                        .values(worker=bindparam("by"))),
        group=Prepared(update(Stage).where(Stage.id == bindparam("stage"))
                       .values(group_id=bindparam("group"))),
        stage=Prepared(update(Stage).where(Stage.id == bindparam("stage"),
                                           Stage.state == pending).values(state=running)),
        workflow=Prepared(update(Workflow).where(Workflow.id == bindparam("workflow"),
                                                 Workflow.state == pending)
                          .values(state=running)))


def mark_running(c, row, worker: str | None, group_id: str | None,
                 began_at: datetime | None = None) -> None:
    """Mark a step (read by ``step_row``) running on ``worker``, and its stage and
    workflow with it (``c``: a connection)."""
    pending = WorkflowState.PENDING.value
    statements = _running_statements()
    if row.state == StepState.PENDING.value:
        _begin_statement().run(c, dict(step=row.id, began=began_at or utcnow(), by=worker))
    elif row.worker != worker:
        statements["worker"].run(c, dict(step=row.id, by=worker))
    if group_id and row.group_id != group_id:
        statements["group"].run(c, dict(stage=row.stage_id, group=group_id))
    if row.stage_state == pending:
        statements["stage"].run(c, dict(stage=row.stage_id))
    if row.workflow_state == pending:
        statements["workflow"].run(c, dict(workflow=row.workflow_id))


def finish_step(step_id: int, task_id: str, error: str | None = None,
                ecc_state: int | None = None, note: str | None = None) -> None:
    """Record the end of the step task ``task_id`` was sent for: succeeded (in
    ``ecc_state``, with a ``note`` when it succeeded in an unusual way), or failed with the
    error the operator will read."""
    with session() as s:
        row = end_row(s, step_id, task_id)
        if row is None or row.state in ENDED_STEP_STATES:
            return  # delivered twice: counted once
        record_end(s.connection(), step_id, task_id, row.target, row.started_at, error,
                   ecc_state, note)


def finish_transition(step_id: int, task_id: str, order: TransitionOrder, ecc_state: int,
                      note: str | None = None, driven: Driven | None = None) -> None:
    """Record that the step task ``task_id`` was sent for confirmed ``ecc_state`` (as
    ``finish_step``), with what the polls saw of the transition (``driven``), from what
    its order already knows: nothing is read first."""
    with transaction() as c:
        record_end(c, step_id, task_id, order.server, order.began_at, None, ecc_state, note,
                   driven or Driven(False))


def end_row(s, step_id: int, task_id: str):
    """What recording a step's end reads, in one query: its state, when it began, its
    target, and its workflow's run; None for a message that was not sent for it."""
    return s.exec(select(Step.state, Step.started_at, Step.target, Workflow.run_id)
                  .join(Stage, Step.stage_id == Stage.id)
                  .join(Workflow, Stage.workflow_id == Workflow.id)
                  .where(Step.id == step_id, Step.task_id == task_id)).first()


@cache
def _end_statement():
    # One conditional UPDATE: a step already ended (delivered twice, aborted), or a message
    # not sent for it, is left as it is. (Not NOT IN: its list is rendered again at every
    # execution, which was a sixth of a step's own CPU.)
    return Prepared(update(Step)
                    .where(Step.id == bindparam("step"), Step.task_id == bindparam("task"),
                           *(Step.state != state for state in sorted(ENDED_STEP_STATES)))
                    .values(state=bindparam("end_state"), error=bindparam("end_error"),
                            finished_at=bindparam("now"), started_at=bindparam("began"),
                            duration=bindparam("took"), confirmed_state=bindparam("confirmed"),
                            note=bindparam("end_note"), seen_moving_after=bindparam("moving"),
                            seen_settled_after=bindparam("settled")))


@cache
def _seen_statement(running: bool):
    # What a server confirmed is its state now (and, RUNNING, when it was last seen so).
    seen = dict(state=bindparam("confirmed"), transition=0, online=True,
                last_seen_at=bindparam("now"), last_error=None)
    if running:
        seen["running_seen_at"] = bindparam("now")
    return Prepared(update(ECCServer).where(ECCServer.name == bindparam("server"))
                    .values(**seen))


def record_end(c, step_id: int, task_id: str, target: str, started_at: datetime | None,
               error: str | None = None, ecc_state: int | None = None,
               note: str | None = None, driven: Driven = Driven(False)) -> None:
    """Record a step's end (``c``: a connection), with what the polls saw of its
    transition (``driven``), then, if it was this message's to record and a state was
    confirmed, its ECC server's state."""
    now = utcnow()
    started_at = started_at or now
    ended = _end_statement().run(c, dict(
        step=step_id, task=task_id,
        end_state=StepState.FAILED.value if error else StepState.SUCCEEDED.value,
        end_error=error[:4000] if error else None, now=now, began=started_at,
        took=(now - started_at).total_seconds(), confirmed=ecc_state,
        end_note=note[:500] if note else None, moving=driven.seen_moving_after,
        settled=driven.seen_settled_after))
    if ended and ecc_state is not None:
        _seen_statement(ecc_state == EccState.RUNNING).run(
            c, dict(confirmed=ecc_state, now=now, server=target))


def latest_attempts(s, stage_id: int) -> list[Step]:
    """The newest attempt of each member of a stage."""
    return _latest(s, stage_id, Step)


def latest_outcomes(s, stage_id: int) -> list:
    """How the newest attempt of each member of a stage stands, as plain rows (target,
    state, error, note, finished_at): what callbacks read of a stage's hundreds of steps
    without building an ORM object for each (a fifth of a 1024-source start's last
    callbacks, on the path to the next stage)."""
    return _latest(s, stage_id, Step.target, Step.state, Step.error, Step.note,
                   Step.finished_at)


def latest_to_send(s, stage_id: int) -> list:
    """The newest attempt of each member of a stage as plain rows (id, stage_id, target,
    operation, task_id, state): what a canvas is built from, without an ORM object per
    step on the way to sending a workflow."""
    return _latest(s, stage_id, Step.id, Step.stage_id, Step.target, Step.operation,
                   Step.task_id, Step.state)


def _latest(s, stage_id: int, *columns) -> list:
    # Every attempt of the stage's steps, in attempt order, folded to the newest.
    return _newest_by_target(s.exec(
        select(*columns).where(Step.stage_id == stage_id).order_by(Step.attempt)).all())


def _newest_by_target(attempts) -> list:
    # Given in attempt order: the last one seen for a target is its newest.
    newest = {attempt.target: attempt for attempt in attempts}
    return [newest[target] for target in sorted(newest)]
