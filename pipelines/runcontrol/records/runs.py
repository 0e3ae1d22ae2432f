"""Recording a run: started when every source confirmed the start, stopped when every
source confirmed the stop, at the time the last source confirmed it."""
from __future__ import annotations

from sqlmodel import select

from models import AuditEntry, ECCServer, Run, Stage, Workflow
from models.columns import utcnow
from models.daq import active_experiment
from models.runlog import RunNote
from models.vocabulary import RunClass
from pipelines.daq.ecc.states import Operation
from pipelines.runcontrol.errors import StepFailed
from pipelines.runcontrol.records.steps import latest_outcomes


def confirmed_at(s, stages: list[Stage]):
    # The run starts when the last source confirmed, not when the callback ran.
    times = [st.finished_at for stage in stages for st in latest_outcomes(s, stage.id)
             if st.finished_at is not None]
    return max(times) if times else utcnow()


def record_run_started(s, workflow: Workflow, stages: list[Stage]) -> int:
    if workflow.run_id is not None:  # already recorded: the callback ran twice
        return s.get(Run, workflow.run_id).number
    experiment = active_experiment(s)
    if experiment is None:
        raise StepFailed("no active experiment to record the run in")
    number = experiment.last_run_number + 1
    params = workflow.params
    run = Run(experiment_id=experiment.id, number=number, title=params.get("title", ""),
              run_class=params.get("run_class", RunClass.TEST),
              config_name=_one_name(params),
              server_configs={server: (config or {}).get("name", "") for server, config
                              in (params.get("configs") or {}).items()},
              started_at=confirmed_at(s, stages), started_by=asked_by(s, workflow),
              comment=params.get("comment", ""), fields=dict(params.get("fields") or {}),
              planned_seconds=params.get("duration_seconds"),
              planned_bytes=params.get("max_bytes"),
              auto_restart=bool(params.get("auto_restart")))
    s.add(run)
    experiment.last_run_number = number
    s.flush()
    workflow.run_id = run.id
    return number


def _one_name(params: dict) -> str:
    # The run's config: the one every server used, or "mixed" (server_configs says which).
    names = {(c or {}).get("name", "") for c in (params.get("configs") or {}).values()}
    if len(names) > 1:
        return "mixed"
    return names.pop() if names else (params.get("config") or {}).get("name", "")


def record_run_stopped(s, workflow: Workflow, stages: list[Stage]) -> int:
    run = s.get(Run, workflow.run_id) if workflow.run_id else None
    if run is None:
        raise StepFailed("the run this stop belongs to is not in the database")
    if run.stopped_at is None:
        run.stopped_at = _stopped_at(s, run, [st for st in stages
                                              if st.operation == Operation.STOP])
        run.stopped_by = asked_by(s, workflow)
        # The stop form's fields join the start's (a new dict: the column sees the change).
        run.fields = {**run.fields, **(workflow.params.get("fields") or {})}
        if workflow.params.get("note"):
            add_note_version(s, run, workflow.params["note"], run.stopped_by)
    return run.number


def add_note_version(s, run: Run, text: str, author: str) -> None:
    """Make ``text`` the run's note, keeping it as one more version (in the caller's session)."""
    run.note = text
    s.add(RunNote(run_id=run.id, text=text, author=author[:80], written_at=utcnow()))


def asked_by(s, workflow: Workflow) -> str:
    """Who asked for a workflow, as its first audit entry says."""
    actor = s.exec(select(AuditEntry.actor).where(AuditEntry.workflow_id == workflow.id)
                   .order_by(AuditEntry.id)).first()
    return actor or ""


def _stopped_at(s, run: Run, stages: list[Stage]):
    """When the last source stopped: its Stop's confirmation, or, for a source found already
    below RUNNING (a reboot, a power cut), the last time it was seen running."""
    steps = [st for stage in stages for st in latest_outcomes(s, stage.id)]
    times = [st.finished_at for st in steps if not st.note and st.finished_at]
    found_stopped = [st.target for st in steps if st.note]
    if not found_stopped:
        return max(times) if times else utcnow()
    times += [t for t in s.exec(select(ECCServer.running_seen_at).where(
        ECCServer.name.in_(found_stopped))).all() if t is not None]
    return max(times) if times else run.started_at
