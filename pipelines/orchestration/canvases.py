"""Celery canvases for workflows: pure functions from database rows to signatures.

A workflow is a chain of stages. Each stage is a chord: a group of per-target
steps (one ECC server's transition, or one data router's files) and a callback
that completes the stage from the database. The chain ends with the workflow's
final callback. Every task id was assigned when the rows were written, so the
progress read can find every result before anything has run.

Nothing here sends anything; the signatures can be inspected as they are.
"""
from __future__ import annotations

from typing import Iterable

from celery import chain, chord, group
from celery.canvas import Signature

from models import Stage, Step, Workflow
from models.vocabulary import FilesOperation
from pipelines.orchestration.app import app

# Which task performs a step, by the step's operation; ECC transitions by default.
STEP_TASKS = {FilesOperation.ORGANIZE: "daqflow.files.organize",
              FilesOperation.BACKUP: "daqflow.files.backup"}
TRANSITION_TASK = "daqflow.ecc.transition"
STAGE_CALLBACK = "daqflow.stage.complete"
STAGE_FAILED = "daqflow.stage.failed"
WORKFLOW_CALLBACK = "daqflow.workflow.finish"
WORKFLOW_FAILED = "daqflow.workflow.failed"


def signature(name: str, args: tuple, **options) -> Signature:
    """An immutable signature of a daqflow task, bound to daqflow's app (no import of tasks)."""
    # How the message shows its arguments (to Flower, to logs), said here: Celery's own
    # safe repr of them was a tenth of the CPU of sending a stage's hundreds of steps.
    return app.signature(name, args=args, immutable=True, argsrepr=repr(tuple(args)),
                         kwargsrepr="{}", **options)


def step_signature(step: Step) -> Signature:
    """The task that performs one step, with the step's pre-assigned task id."""
    name = STEP_TASKS.get(step.operation, TRANSITION_TASK)
    return signature(name, args=(step.id,), task_id=step.task_id)


def stage_signature(stage: Stage, steps: Iterable[Step]) -> Signature:
    """A chord: the group of the given steps, then the stage's callback.

    If the callback fails (a member failed, or the callback itself raised), the
    errback marks the stage and its workflow failed and the chain goes no further.
    """
    body = signature(STAGE_CALLBACK, args=(stage.id,), task_id=stage.callback_task_id)
    # The errback names the callback it belongs to, so one from before a replay is ignored.
    body.link_error(signature(STAGE_FAILED, args=(stage.id, stage.callback_task_id)))
    steps = list(steps)
    if not steps:
        return body  # a replay of a stage whose members all succeeded: its callback alone
    header = group([step_signature(step) for step in steps], task_id=stage.group_id, app=app)
    stage_chord = chord(header, body, app=app)
    # chord() keeps only the header's tasks; put the group back so it keeps its id.
    # (A chord sent on from a worker gets a fresh group id; steps record the real one.)
    stage_chord.tasks = header
    return stage_chord


def final_signature(workflow: Workflow) -> Signature:
    """The workflow's final callback (records the run), with its errback."""
    final = signature(WORKFLOW_CALLBACK, args=(workflow.id,),
                      task_id=workflow.callback_task_id)
    final.link_error(signature(WORKFLOW_FAILED, args=(workflow.id, workflow.callback_task_id)))
    return final


def workflow_canvas(workflow: Workflow, stages: list[Stage], steps: list[Step]) -> Signature:
    """The given stages' chords in order, then the final callback.

    ``stages`` are the stages still to run and ``steps`` the steps to run in them:
    a replay passes only the steps to redo, and a stage with none runs its callback
    alone (it completes from the database).
    """
    by_stage: dict[int, list[Step]] = {}
    for step in steps:
        by_stage.setdefault(step.stage_id, []).append(step)
    parts = [stage_signature(stage, sorted(by_stage.get(stage.id, []), key=lambda st: st.target))
             for stage in sorted(stages, key=lambda st: st.order)]
    return chain(*parts, final_signature(workflow), app=app)
