"""What a workflow sends next, read from its rows in the database: stage by stage in the
hardware's order, only what has not succeeded, then the final callback."""
from __future__ import annotations

from uuid import uuid4

import pytest
from celery.canvas import _chord
from sqlmodel import select

from models import Stage, Step, StepState, Workflow, WorkflowState, session
from pipelines.runcontrol.launching import next_canvas


@pytest.fixture
def stop_workflow():
    """A written stop: the MuTAnT first, then two CoBos (stage ids in the other order)."""
    with session() as s:
        workflow = Workflow(kind="stop_run", callback_task_id=str(uuid4()))
        s.add(workflow)
        s.flush()
        cobos = Stage(workflow_id=workflow.id, order=1, name="stop CoBos", operation="Stop",
                      group_id=str(uuid4()), callback_task_id=str(uuid4()))
        mutant = Stage(workflow_id=workflow.id, order=0, name="stop MuTAnT", operation="Stop",
                       group_id=str(uuid4()), callback_task_id=str(uuid4()))
        s.add_all([cobos, mutant])
        s.flush()
        s.add(Step(stage_id=mutant.id, target="ecc-mutant", operation="Stop",
                   task_id=str(uuid4())))
        for target in ("ecc-cobo1", "ecc-cobo0"):
            s.add(Step(stage_id=cobos.id, target=target, operation="Stop", task_id=str(uuid4())))
        return workflow.id, mutant.id, cobos.id


def _next(workflow_id: int):
    with session() as s:
        return next_canvas(s, s.get(Workflow, workflow_id))


def _succeed(stage_id: int, *targets: str) -> None:
    with session() as s:
        stage = s.get(Stage, stage_id)
        steps = s.exec(select(Step).where(Step.stage_id == stage_id)).all()
        for step in steps:
            if not targets or step.target in targets:
                step.state = StepState.SUCCEEDED.value
        if not targets:
            stage.state = WorkflowState.SUCCEEDED.value


def _members(canvas) -> list[int]:
    return [member.args[0] for member in canvas.tasks.tasks]


def test_stages_go_one_at_a_time_in_the_hardwares_order(stop_workflow):
    workflow_id, mutant, cobos = stop_workflow
    first = _next(workflow_id)
    assert isinstance(first, _chord) and first.body.args == (mutant,)
    assert len(first.tasks.tasks) == 1  # nothing of the CoBos' stage travels with it
    _succeed(mutant)
    second = _next(workflow_id)
    assert second.body.args == (cobos,) and len(second.tasks.tasks) == 2
    _succeed(cobos)
    final = _next(workflow_id)
    assert final.task == "daqflow.workflow.finish" and final.args == (workflow_id,)


def test_a_stage_sends_only_the_steps_that_have_not_succeeded(stop_workflow):
    workflow_id, mutant, cobos = stop_workflow
    _succeed(mutant)
    _succeed(cobos, "ecc-cobo0")  # as after a replay of the other one
    with session() as s:
        left = s.exec(select(Step.id).where(Step.stage_id == cobos,
                                           Step.target == "ecc-cobo1")).one()
    assert _members(_next(workflow_id)) == [left]
    _succeed(cobos, "ecc-cobo1")  # every member done, the callback had failed: it runs alone
    alone = _next(workflow_id)
    assert alone.task == "daqflow.stage.complete" and alone.args == (cobos,)
