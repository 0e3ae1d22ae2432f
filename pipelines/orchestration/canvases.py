"""Celery canvases for workflows: pure functions from database rows to signatures.

A workflow is a sequence of stages in the order the hardware needs. Each stage is a
chord: a group of per-target steps (one ECC server's transition, or one data router's
files) and a callback that completes the stage from the database and then sends what
follows, the next stage's chord or, after the last, the workflow's final callback.
Every task id was assigned when the rows were written, so the progress read can find
every result before anything has run.

Why not one Celery chain of the whole workflow: Celery puts a chord's callback in every
member's message, and in a chain the callback carries the rest of the chain. Each step
of a stage then carried every later stage's steps: a 64-source stop's ECC step messages
were 40 kB (123 kB of Python objects in the worker while it ran), and they grow with the
number of sources times the later stages' steps. Sent by the callback, a step's message
carries its own stage's callback only.

Nothing here sends anything; the signatures can be inspected as they are.
"""
from __future__ import annotations

from typing import Iterable

from celery import chord, group
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
    errback marks the stage and its workflow failed and nothing more is sent.
    """
    body = signature(STAGE_CALLBACK, args=(stage.id,), task_id=stage.callback_task_id)
    # The errback names the callback it belongs to, so one from before a replay is ignored.
    body.link_error(signature(STAGE_FAILED, args=(stage.id, stage.callback_task_id)))
    steps = list(steps)
    if not steps:
        return body  # a replay of a stage whose members all succeeded: its callback alone
    header = group([step_signature(step) for step in steps], task_id=stage.group_id, app=app)
    stage_chord = chord(header, body, app=app)
    # chord() keeps only the header's tasks; put the group back so it keeps its id. Sent
    # on its own (not as a chain's link, which gave it a fresh id), the id is kept.
    stage_chord.tasks = header
    return stage_chord


def final_signature(workflow: Workflow) -> Signature:
    """The workflow's final callback (records the run), with its errback."""
    final = signature(WORKFLOW_CALLBACK, args=(workflow.id,),
                      task_id=workflow.callback_task_id)
    final.link_error(signature(WORKFLOW_FAILED, args=(workflow.id, workflow.callback_task_id)))
    return final


def next_canvas(workflow: Workflow, stage: Stage | None, steps: Iterable[Step]) -> Signature:
    """What a workflow sends next: ``stage``'s chord with the given steps (its callback
    sends what follows), or the final callback when no stage is left (``stage`` None).

    ``steps`` are the stage's steps still to run: all of them the first time, what is
    left for a replay; with none, the stage's callback runs alone (it completes from the
    database).
    """
    if stage is None:
        return final_signature(workflow)
    return stage_signature(stage, sorted(steps, key=lambda st: st.target))
