"""Unit tests of canvas structure: pure functions, nothing sent."""
import json

from celery.canvas import _chord

from models import Stage, Step, Workflow
from pipelines.orchestration import canvases
from tests.support import read_celeryconfig


def _rows():
    workflow = Workflow(id=7, kind="start_run", callback_task_id="wf-cb")
    stages = [Stage(id=2, workflow_id=7, order=1, name="start MuTAnT", operation="Start",
                    group_id="g2", callback_task_id="cb2"),
              Stage(id=1, workflow_id=7, order=0, name="start CoBos", operation="Start",
                    group_id="g1", callback_task_id="cb1")]
    steps = [Step(id=10 + i, stage_id=1, target=f"ecc-cobo{i}", operation="Start",
                  task_id=f"t{i}") for i in range(3)]
    steps.append(Step(id=20, stage_id=2, target="ecc-mutant", operation="Start", task_id="tm"))
    return workflow, stages, steps


def _stage(stages, stage_id):
    return next(stage for stage in stages if stage.id == stage_id)


def test_a_stage_is_a_chord_of_its_steps_then_its_callback():
    workflow, stages, steps = _rows()
    canvas = canvases.next_canvas(workflow, _stage(stages, 1),
                                  [s for s in reversed(steps) if s.stage_id == 1])
    assert isinstance(canvas, _chord)
    assert canvas.tasks.options["task_id"] == "g1"
    assert [t.options["task_id"] for t in canvas.tasks.tasks] == ["t0", "t1", "t2"]  # by target
    assert [t.args for t in canvas.tasks.tasks] == [(10,), (11,), (12,)]
    assert {t.task for t in canvas.tasks.tasks} == {"daqflow.ecc.transition"}
    assert all(t.immutable for t in canvas.tasks.tasks)
    assert canvas.body.task == "daqflow.stage.complete" and canvas.body.args == (1,)
    assert canvas.body.options["task_id"] == "cb1"
    assert canvas.body.options["link_error"][0]["task"] == "daqflow.stage.failed"


def test_a_step_carries_its_own_stage_only():
    # Celery puts the chord's callback in every member's message: a callback linked to
    # the later stages would put every later step in each step's message.
    workflow, stages, steps = _rows()
    canvas = canvases.next_canvas(workflow, _stage(stages, 1),
                                  [s for s in steps if s.stage_id == 1])
    assert "link" not in canvas.body.options
    sent = json.dumps(dict(canvas.body))
    assert "tm" not in sent and "wf-cb" not in sent and "g2" not in sent


def test_after_the_last_stage_the_final_callback():
    workflow, _, _ = _rows()
    final = canvases.next_canvas(workflow, None, [])
    assert final.task == "daqflow.workflow.finish" and final.options["task_id"] == "wf-cb"
    assert list(final.options["link_error"][0]["args"]) == [7, "wf-cb"]


def test_a_replay_runs_only_the_given_steps():
    workflow, stages, steps = _rows()
    canvas = canvases.next_canvas(workflow, _stage(stages, 2),
                                  [s for s in steps if s.stage_id == 2])
    assert canvas.body.args == (2,)
    assert [t.options["task_id"] for t in canvas.tasks.tasks] == ["tm"]


def test_a_stage_with_no_step_to_run_is_its_callback_alone():
    workflow, stages, _ = _rows()
    callback_only = canvases.next_canvas(workflow, _stage(stages, 1), [])
    assert callback_only.task == "daqflow.stage.complete" and callback_only.args == (1,)
    assert callback_only.options["task_id"] == "cb1"
    errback = callback_only.options["link_error"][0]
    assert errback["task"] == "daqflow.stage.failed" and list(errback["args"]) == [1, "cb1"]


def test_file_steps_run_their_own_tasks_on_the_files_queue(monkeypatch):
    from celery.app.routes import MapRoute

    celeryconfig = read_celeryconfig(monkeypatch)

    workflow = Workflow(id=8, kind="stop_run", callback_task_id="wf")
    stages = [Stage(id=3, workflow_id=8, order=2, name="organize files", operation="organize",
                    group_id="g3", callback_task_id="cb3"),
              Stage(id=4, workflow_id=8, order=3, name="back up configs", operation="backup",
                    group_id="g4", callback_task_id="cb4")]
    steps = [Step(id=30, stage_id=3, target="router-0", operation="organize", task_id="o0"),
             Step(id=40, stage_id=4, target="ecc-cobo0", operation="backup", task_id="b0")]
    organize, backup = (canvases.next_canvas(workflow, stage,
                                             [s for s in steps if s.stage_id == stage.id])
                        for stage in stages)
    assert [t.task for t in organize.tasks.tasks] == ["daqflow.files.organize"]
    assert [t.task for t in backup.tasks.tasks] == ["daqflow.files.backup"]
    routes = MapRoute(celeryconfig.task_routes)
    assert routes("daqflow.files.organize") == routes("daqflow.files.backup") == {"queue": "files"}
    assert routes("daqflow.ecc.transition") is None  # the default queue: control
    assert celeryconfig.task_default_queue == "control"


def test_the_threads_of_a_worker_share_one_result_backend(monkeypatch):
    # Hundreds of step threads a process: one backend and its few pooled Redis connections,
    # not a backend and a connection each.
    import threading

    from celery import Celery

    own = Celery("celeryconfig-test", set_as_current=False)
    own.config_from_object(read_celeryconfig(monkeypatch))
    seen = []
    thread = threading.Thread(target=lambda: seen.append(own.backend))
    thread.start()
    thread.join()
    assert seen == [own.backend]
    assert type(own.backend).__name__ == "RunControlRedisBackend"
