"""Run plans: an ordered list of runs (title, class, config, planned length, comment,
fields) that daqflow takes one after the other, each as ordinary workflows.

Nothing waits. ``advance`` looks at the record (the plan, the DAQ's state, the run
going) and launches the one workflow that comes next: a Reset down to the entry's
config, a Describe, Prepare or Configure up with it, a start with the entry's planned
length (its timer stops it, ``timed``), or nothing while that run goes. It runs after
the final callback of every workflow the plan launched (``timed.after_workflow``), and
at beat's sweep as the net under it; a Redis lock keeps two from acting at once. A plan
workflow that fails, or a run an operator stops by hand, pauses the plan (an alarm:
``automation_failed``); the operator resumes (the failed workflow is replayed, then the
plan goes on), skips the entry, or aborts the plan.
"""
from __future__ import annotations

from sqlmodel import select

from models import ECCServer, PlanEntry, Run, RunPlan, Workflow, session
from models.columns import utcnow
from models.vocabulary import (
    ACTIVE_STATES,
    REPLAYABLE_STATES,
    EntryState,
    PlanState,
    WorkflowKind,
)
from pipelines.daq.ecc.states import EccState
from pipelines.runcontrol import (
    accounts,
    configs,
    launching,
    lock,
    planfile,
    replay,
    timed,
    watch,
)
from pipelines.runcontrol.errors import Invalid, NotFound, Refused, Unavailable
from pipelines.runcontrol.planning import current_run

ADVANCE_KEY = "daqflow:plan-advance"
# The entries a plan is done with.
ENDED = (EntryState.DONE, EntryState.SKIPPED, EntryState.STOPPED)
# The collective transition that goes up from each state.
UP = {EccState.IDLE: WorkflowKind.DESCRIBE, EccState.DESCRIBED: WorkflowKind.PREPARE,
      EccState.PREPARED: WorkflowKind.CONFIGURE}


def create(data: object, actor: str | None = None) -> int:
    """Write a plan (checked) and take its first step; one plan at a time."""
    plan = planfile.check_plan(data)
    with session() as s:
        going = s.exec(select(RunPlan).where(RunPlan.state.in_(
            (PlanState.RUNNING, PlanState.PAUSED)))).first()
        if going is not None:
            raise Refused(f"run plan {going.id} ({going.name}) is {going.state}: abort it "
                          "before loading another")
        row = RunPlan(name=plan["name"], created_by=(actor or accounts.local_actor())[:80])
        s.add(row)
        s.flush()
        for position, entry in enumerate(plan["entries"], 1):
            s.add(PlanEntry(plan_id=row.id, position=position, **entry))
        accounts.record(s, actor, "plan_start", plan=row.id, name=row.name,
                        entries=len(plan["entries"]))
        plan_id = row.id
    advance(plan_id)
    return plan_id


def running_plan(s) -> RunPlan | None:
    """The plan taking runs now, if any: a manual start is refused while it runs."""
    return s.exec(select(RunPlan).where(RunPlan.state == PlanState.RUNNING)).first()


def _current(s, plan: RunPlan) -> PlanEntry | None:
    return s.exec(select(PlanEntry).where(PlanEntry.plan_id == plan.id,
                                          PlanEntry.state.not_in(ENDED))
                  .order_by(PlanEntry.position)).first()


def advance(plan_id: int) -> dict:
    """Take the plan's next step, if one is due; what it did."""
    try:
        token = lock.acquire(30, key=ADVANCE_KEY)
    except lock.Busy:
        return {"plan": plan_id, "why": "another advance is under way"}
    try:
        return _advance(plan_id)
    finally:
        lock.release(token, key=ADVANCE_KEY)


def _advance(plan_id: int) -> dict:
    with session() as s:
        plan = s.get(RunPlan, plan_id)
        if plan is None or plan.state != PlanState.RUNNING:
            return {"plan": plan_id, "why": "not running"}
        if s.exec(select(Workflow.id).where(Workflow.state.in_(ACTIVE_STATES))).first():
            return {"plan": plan_id, "why": "a workflow is active"}
        last = s.get(Workflow, plan.workflow_id) if plan.workflow_id else None
        failed = last is not None and last.state in REPLAYABLE_STATES
        reason = f"workflow {last.id} ({last.kind}) {last.state}: {last.error or ''}" \
            if failed else ""
    if failed:  # read here, under the advance lock: the plan's own workflow failed
        return pause(plan_id, reason)
    with session() as s:
        plan = s.get(RunPlan, plan_id)
        run, entry = current_run(s), _current(s, plan)
        while entry is not None and entry.run_id is not None and \
                (run is None or run.id != entry.run_id):
            entry.state, entry.finished_at = EntryState.DONE.value, utcnow()  # its run ended
            s.flush()
            entry = _current(s, plan)
        if run is not None and (entry is None or run.id != entry.run_id):
            step = ("stop", {"note": f"stopped by run plan {plan.id}"})  # a skipped entry's
        elif run is not None:
            return {"plan": plan_id, "why": f"run {run.number} goes until its limit"}
        elif entry is None:
            plan.state, plan.finished_at = PlanState.DONE.value, utcnow()
            return {"plan": plan_id, "done": True}
        else:
            step = None
        entry_id = entry.id if entry is not None else None
        fresh = entry is not None and entry.state == EntryState.PENDING
    if step is None and fresh:
        try:
            _begin(entry_id, plan_id)
        except (Invalid, Refused, NotFound) as exc:
            return pause(plan_id, f"entry {_position(entry_id)}: {exc}")
    if step is None:
        step = _next_step(entry_id)
        if isinstance(step, str):
            return pause(plan_id, f"entry {_position(entry_id)}: {step}")
    return _launch(plan_id, entry_id, *step)


def _position(entry_id: int) -> int:
    with session() as s:
        return s.get(PlanEntry, entry_id).position


def _begin(entry_id: int, plan_id: int) -> None:
    # Choose the entry's config (if it differs) and how far down the DAQ must go for it.
    with session() as s:
        entry = s.get(PlanEntry, entry_id)
        wanted = entry.config
        servers = s.exec(select(ECCServer).order_by(ECCServer.name)).all()
        active = configs.active_config(s)
        current = [configs.config_for(srv, active) for srv in servers]
    down_to = None
    if wanted is not None and any(configs.name_of(c) != wanted for c in current):
        configs.choose(wanted, actor=f"plan:{plan_id}")
        with session() as s:
            new = configs.config_for(s.exec(select(ECCServer).order_by(ECCServer.name))
                                     .first(), configs.active_config(s))
        down_to = _lowest_to_change(current[0] if current else None, new)
    with session() as s:
        entry = s.get(PlanEntry, entry_id)
        entry.state, entry.started_at, entry.down_to = (
            EntryState.CONFIGURING.value, utcnow(), down_to)


def _lowest_to_change(old: dict | None, new: dict) -> int:
    """The state to go down to for ``new``: the first sub-config that differs is redone."""
    for part, state in (("describe", EccState.IDLE), ("prepare", EccState.DESCRIBED),
                        ("configure", EccState.PREPARED)):
        if old is None or old.get(part) != new.get(part):
            return int(state)
    return int(EccState.READY)


def _next_step(entry_id: int) -> tuple[str, dict] | str:
    """The workflow that takes the DAQ towards the entry's run, or why none can."""
    with session() as s:
        unknown = None in s.exec(select(ECCServer.state)).all()
    if unknown:  # never seen yet (a fresh start): ask them now rather than give up
        watch.refresh_ecc_states()
    with session() as s:
        entry = s.get(PlanEntry, entry_id)
        states = set(s.exec(select(ECCServer.state)).all())
        if len(states) != 1 or None in states:
            return "the sources are not all in one known state; bring them together first"
        state = EccState(states.pop())
        if entry.down_to is not None and state > entry.down_to:
            return ("reset", {})
        entry.down_to = None
        if state in UP:
            return (UP[state].value, {})
        if state != EccState.READY:
            return f"the sources are {state.name} with no run going"
        entry.state = EntryState.RUNNING.value
        return ("start", {"title": entry.title, "run_class": entry.run_class,
                          "comment": entry.comment, "fields": dict(entry.fields or {}),
                          "duration_seconds": entry.duration_seconds,
                          "max_bytes": entry.max_bytes})


def _launch(plan_id: int, entry_id: int | None, what: str, request: dict) -> dict:
    kind = {"start": WorkflowKind.START_RUN, "stop": WorkflowKind.STOP_RUN}.get(
        what) or WorkflowKind(what)
    try:
        workflow_id = launching.launch(kind, actor=f"plan:{plan_id}",
                                       run_plan={"plan": plan_id, "entry": entry_id}, **request)
    except (Invalid, Refused, Unavailable, NotFound) as exc:
        return pause(plan_id, f"could not {what}: {exc}")
    with session() as s:
        s.get(RunPlan, plan_id).workflow_id = workflow_id
    return {"plan": plan_id, "launched": what, "workflow": workflow_id}


def pause(plan_id: int, reason: str) -> dict:
    """Pause a running plan, saying why (an alarm follows)."""
    with session() as s:
        plan = s.get(RunPlan, plan_id)
        if plan is not None and plan.state == PlanState.RUNNING:
            plan.state, plan.error = PlanState.PAUSED.value, reason[:2000]
            accounts.record(s, "daqflow", "plan_paused", plan=plan_id, reason=reason[:500])
    return {"plan": plan_id, "paused": reason}


def after_workflow(workflow_id: int) -> dict:
    """A workflow succeeded (its final callback): the plan's own, or the stop at its run's
    limit, advances the plan; a stop by hand of the current entry's run ends that entry
    and pauses the plan."""
    with session() as s:
        workflow = s.get(Workflow, workflow_id)
        plan = running_plan(s)
        if workflow is None or plan is None:
            return {}
        mark = workflow.params.get("plan") or {}
        entry = _current(s, plan)
        ours = entry is not None and entry.run_id is not None \
            and entry.run_id == workflow.run_id
        plan_id, by_hand = plan.id, False
        if mark.get("plan") == plan.id:
            if workflow.kind == WorkflowKind.START_RUN and mark.get("entry"):
                s.get(PlanEntry, mark["entry"]).run_id = workflow.run_id
        elif workflow.kind == WorkflowKind.STOP_RUN and ours:
            if not workflow.params.get("limit_stop"):
                entry.state, entry.finished_at = EntryState.STOPPED.value, utcnow()
                entry.error, by_hand = "its run was stopped by hand", True
        else:
            return {}
    if by_hand:
        return pause(plan_id, "its run was stopped by hand; resume to go on with the next "
                              "entry")
    return advance(plan_id)


def sweep() -> dict | None:
    """Beat: advance the running plan, which pauses it if its last workflow failed, and
    moves one that nothing moved (a lost callback)."""
    with session() as s:
        plan = running_plan(s)
        plan_id = plan.id if plan is not None else None
    return None if plan_id is None else advance(plan_id)


def resume(plan_id: int, actor: str | None = None) -> dict:
    """Go on with a paused plan: replay its failed workflow if there is one (its end
    advances the plan), else take the next step."""
    with session() as s:
        plan = _paused(s, plan_id)
        last = s.get(Workflow, plan.workflow_id) if plan.workflow_id else None
        plan.state, plan.error = PlanState.RUNNING.value, None
        accounts.record(s, actor, "plan_resume", plan=plan_id)
        failed = last.id if last is not None and last.state in REPLAYABLE_STATES else None
    if failed is not None:
        try:
            replay.replay(failed, actor=actor)
        except (Refused, Unavailable, NotFound) as exc:
            pause(plan_id, f"could not replay workflow {failed}: {exc}")
            raise
        return {"plan": plan_id, "replayed": failed}
    return advance(plan_id)


def skip(plan_id: int, actor: str | None = None) -> dict:
    """Skip a paused plan's current entry (its run, if going, is stopped) and go on."""
    with session() as s:
        plan = _paused(s, plan_id)
        entry = _current(s, plan)
        if entry is None:
            raise Refused(f"run plan {plan_id} has no entry left to skip")
        entry.state, entry.finished_at = EntryState.SKIPPED.value, utcnow()
        plan.state, plan.error, plan.workflow_id = PlanState.RUNNING.value, None, None
        accounts.record(s, actor, "plan_skip", plan=plan_id, entry=entry.position)
    return advance(plan_id)


def abort(plan_id: int, actor: str | None = None) -> dict:
    """End a plan: nothing more is launched (a run going keeps its own planned length)."""
    with session() as s:
        plan = s.get(RunPlan, plan_id)
        if plan is None:
            raise NotFound(f"no run plan {plan_id}")
        if plan.state not in (PlanState.RUNNING, PlanState.PAUSED):
            raise Refused(f"run plan {plan_id} is {plan.state} already")
        plan.state, plan.finished_at = PlanState.ABORTED.value, utcnow()
        accounts.record(s, actor, "plan_abort", plan=plan_id)
    return view(plan_id)


def _paused(s, plan_id: int) -> RunPlan:
    plan = s.get(RunPlan, plan_id)
    if plan is None:
        raise NotFound(f"no run plan {plan_id}")
    if plan.state != PlanState.PAUSED:
        raise Refused(f"run plan {plan_id} is {plan.state}, not paused")
    return plan


def view(plan_id: int | None = None) -> dict | None:
    """A plan (the latest if none is named) with its entries and their runs."""
    with session() as s:
        plan = s.get(RunPlan, plan_id) if plan_id else s.exec(
            select(RunPlan).order_by(RunPlan.id.desc())).first()
        if plan is None:
            if plan_id:
                raise NotFound(f"no run plan {plan_id}")
            return None
        entries = s.exec(select(PlanEntry).where(PlanEntry.plan_id == plan.id)
                         .order_by(PlanEntry.position)).all()
        runs = {r.id: r for r in s.exec(select(Run).where(Run.id.in_(
            [e.run_id for e in entries if e.run_id]))).all()}
        out = {"id": plan.id, "name": plan.name, "state": plan.state, "error": plan.error,
               "created_by": plan.created_by, "created_at": plan.created_at.isoformat(),
               "workflow_id": plan.workflow_id, "entries": []}
        for e in entries:
            run = runs.get(e.run_id)
            out["entries"].append({
                "position": e.position, "title": e.title, "run_class": e.run_class,
                "config": e.config, "duration_seconds": e.duration_seconds,
                "max_bytes": e.max_bytes, "state": e.state, "error": e.error,
                "run": None if run is None else run.number,
                "run_config": None if run is None else run.config_name,
                "plan": None if run is None or run.stopped_at else timed.view(s, run)})
    return out


# What an operator may do to a plan, by name (the page's buttons, the API, the CLI).
ACTIONS = {"resume": resume, "skip": skip, "abort": abort}
