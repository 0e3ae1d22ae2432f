"""Abort on a real worker and the simulator: a start whose one ECC server hangs is cut loose
within 2 s, its lock released, nothing recorded; late messages do not revive it; then a
Reset and a second start succeed, or a replay (previewed first) finishes it."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest
from sqlmodel import func, select

import models
from models import Run, Stage, Step, Workflow
from pipelines.daq.ecc.states import EccState
from pipelines.orchestration.app import app
from pipelines.runcontrol import accounts, lock, tasks
from tests.support import ROOT
from tests.support.daq import (
    TRANSITION_SECONDS,
    clean_staging,
    cobo_steps,
    set_all,
    steps_of,
    wait_workflow,
)
from tests.support.processes import wait_for
from tests.support.web import account, web_app


def robot():
    account("robot", "operator")
    return web_app().test_client(), {"Authorization": f"Bearer {accounts.issue_token('robot')}"}


def hung_start(sim, client, token) -> int:
    """A start whose ecc-cobo3 hangs in its Start: every other CoBo RUNNING, cobo3 waiting."""
    set_all(sim, EccState.READY)
    sim.fault("ecc-cobo3", "hang", operation="Start")
    started = client.post("/api/runs/start", headers=token, json={"title": "hung"})
    assert started.status_code == 202
    workflow_id = started.get_json()["workflow_id"]

    def others_running():
        steps = cobo_steps(workflow_id)
        return all(st.state == "succeeded" for st in steps if st.target != "ecc-cobo3") and \
            steps[3].state == "running"

    wait_for(others_running, timeout=30, message="every CoBo but the hung one to start")
    return workflow_id


def runs() -> int:
    with models.session() as s:
        return s.exec(select(func.count()).select_from(Run)).one()


def test_a_hung_start_is_aborted_within_2_s_and_nothing_revives_it(running_daq, staging_root):
    sim = running_daq
    client, token = robot()
    workflow_id = hung_start(sim, client, token)

    asked = time.monotonic()
    aborted = client.post(f"/api/workflows/{workflow_id}/abort", headers=token)
    assert aborted.status_code == 200, aborted.get_json()
    assert aborted.get_json()["running"] == ["ecc-cobo3"]
    view = client.get(f"/api/workflows/{workflow_id}", headers=token).get_json()
    assert view["state"] == "aborted" and time.monotonic() - asked < 2.0
    assert lock.holder() is None
    assert view["actions"][-1]["action"] == "abort"
    # The running step lets go at its next poll and says what GetState reported then.
    step = wait_for(lambda: (st := steps_of(workflow_id, "ecc-cobo3")[-1]).error and
                    "GetState" in st.error and st, timeout=2.0 - (time.monotonic() - asked),
                    message="the hung step to stop and report GetState")
    assert step.state == "aborted"
    assert "still in transition to RUNNING" in step.error, step.error
    # The page shows the server as GetState reports it, in transition (beat's task, sent now).
    wait_for(lambda: "(in transition to RUNNING)" in client.get("/live", headers=token)
             .get_data(as_text=True), timeout=3, message="the page to show cobo3 in transition")
    assert runs() == 0

    # Late messages: the step's, the stage callback's, the final callback's. None revives it.
    with models.session() as s:
        stages = s.exec(select(Stage).where(Stage.workflow_id == workflow_id)).all()
        old = s.get(Workflow, workflow_id)
    sent_before = len(sim.log())
    app.send_task("daqflow.ecc.transition", args=[step.id], task_id=step.task_id)
    for stage in stages:
        app.send_task("daqflow.stage.complete", args=[stage.id])
    app.send_task("daqflow.workflow.finish", args=[workflow_id])
    wait_for(lambda: app.AsyncResult(step.task_id).ready(), timeout=10,
             message="the late step message to be handled")
    with models.session() as s:
        assert s.get(Workflow, workflow_id).state == "aborted"
        assert {st.state for st in s.exec(select(Stage).where(
            Stage.workflow_id == workflow_id)).all()} <= {"succeeded", "aborted", "pending"}
        assert s.exec(select(Step).where(Step.id == step.id)).one().state == "aborted"
    assert [e for e in sim.log()[sent_before:]] == []  # nothing sent to the DAQ again
    assert runs() == 0 and old.lock_token is not None

    # The server answers again: a Reset brings every CoBo back to READY, a new start runs.
    sim.clear_faults()
    wait_for(lambda: sim.states()["ecc-cobo3"]["state"] == EccState.RUNNING, timeout=10,
             message="cobo3 to finish its Start once it answers")
    tasks.watch_ecc()  # beat's refresh: the record learns cobo3 is RUNNING, so Reset stops it
    reset = client.post("/api/transitions/reset", headers=token)
    assert reset.status_code == 202, reset.get_json()
    assert wait_workflow(reset.get_json()["workflow_id"])["state"] == "succeeded"
    # What the started sources wrote belongs to no run: the start check names it, the
    # shift clears it.
    refused = client.post("/api/runs/start", headers=token, json={"title": "second"})
    assert refused.status_code == 409 and ".graw file(s)" in refused.get_json()["error"]
    clean_staging(staging_root)
    again = client.post("/api/runs/start", headers=token, json={"title": "second"})
    assert again.status_code == 202, again.get_json()
    assert wait_workflow(again.get_json()["workflow_id"])["state"] == "succeeded"
    assert runs() == 1


@pytest.mark.database_agnostic
def test_a_worker_killed_during_the_abort_does_not_revive_it_and_a_replay_finishes(
        running_daq, worker):
    sim = running_daq
    client, token = robot()
    workflow_id = hung_start(sim, client, token)
    # The worker driving the hung step dies (OOM, power) as the operator aborts.
    worker.kill()
    assert client.post(f"/api/workflows/{workflow_id}/abort", headers=token).status_code == 200
    sim.clear_faults()
    worker.start()
    sent_before = len(sim.log())
    tasks.watch_ecc()  # beat's sweeps (lost steps, broker restarts) find nothing to change
    with models.session() as s:
        assert s.get(Workflow, workflow_id).state == "aborted"
        assert steps_of(workflow_id, "ecc-cobo3")[-1].state == "aborted"
    assert [e for e in sim.log()[sent_before:] if e["operation"] != "GetState"] == []
    assert runs() == 0

    # The command line says the same, and does nothing either.
    dry = subprocess.run([sys.executable, "-m", "pipelines.cli", "workflow", "replay",
                          str(workflow_id), "--dry-run"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert "runs again: ecc-cobo3 Start (was aborted; last: aborted by robot" in dry.stdout
    assert "(nothing done)" in dry.stdout
    preview = client.post(f"/api/workflows/{workflow_id}/replay?dry_run=1", headers=token)
    assert preview.status_code == 200
    plan = preview.get_json()
    assert [(st["target"], st["operation"], st["last_state"]) for st in plan["steps"]] == [
        ("ecc-cobo3", "Start", "aborted")]
    assert plan["then"] == ["start CoBos: callback", "start MuTAnT: callback", "final callback"]
    assert plan["left_alone"] == 9  # the MuTAnT's re-arm (2) and seven CoBos
    with models.session() as s:
        assert s.get(Workflow, workflow_id).state == "aborted"  # a dry run does nothing

    # Slow enough that the replayed steps report progress, and so read the abort flag: the
    # abort of the first attempt must not stop the replay's.
    sim.set_seconds_per_source(1.5)
    try:
        replayed = client.post(f"/api/workflows/{workflow_id}/replay", headers=token)
        assert replayed.status_code == 202
        assert replayed.get_json()["replayed_steps"] == plan["replayed_steps"]
        view = wait_workflow(workflow_id)
    finally:
        sim.set_seconds_per_source(TRANSITION_SECONDS)
    assert view["state"] == "succeeded", view
    assert runs() == 1
