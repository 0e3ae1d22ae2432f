"""When things fail, with real processes: replay, a worker killed, paused or silent, a
partly lost stage, Redis restarted, concurrent Start clicks, the run-control lock."""
from __future__ import annotations

import signal
import threading
import time
from collections import Counter

import pytest
from sqlmodel import func, select

import models
from models import Run, Workflow
from pipelines.daq.ecc.states import EccState
from pipelines.runcontrol import errors, launching, lock, progress, replay, watch
from pipelines.runcontrol.records import steps as step_records
from tests.support.daq import (
    STEP_LOST_SECONDS,
    cobo_steps,
    sends,
    set_all,
    start_held,
    steps_in,
    steps_of,
    wait_workflow,
)
from tests.support.processes import stop_process, wait_for
from tests.support.services import start_worker
from tests.support.web import operator_client


def test_replay_redoes_only_the_failed_step_then_the_rest(running_daq):
    sim = running_daq
    set_all(sim, EccState.READY)
    sim.fault("ecc-cobo3", "error", operation="Start", code=5, message="CoBo[3]: clock not locked",
              times=1)
    workflow_id = launching.launch("start_run", title="beam")
    assert wait_workflow(workflow_id)["state"] == "failed"
    before = sends(sim)
    client = operator_client()

    response = client.post(f"/api/workflows/{workflow_id}/replay")

    assert response.status_code == 202, response.get_json()
    assert response.get_json()["replayed_steps"] == ["ecc-cobo3"]
    view = wait_workflow(workflow_id)
    assert view["state"] == "succeeded", view
    new = sends(sim) - before
    assert new == Counter({("ecc-cobo3", "Start"): 1, ("ecc-mutant", "Start"): 1})
    attempts = steps_of(workflow_id, "ecc-cobo3")
    assert [(st.attempt, st.state) for st in attempts] == [(1, "failed"), (2, "succeeded")]
    assert "clock not locked" in attempts[0].error
    assert [(st.attempt, st.state) for st in steps_of(workflow_id, "ecc-cobo2")] == [(1, "succeeded")]
    cobos = view["stages"][2]  # after the MuTAnT's re-arm
    assert cobos["name"] == "start CoBos"
    assert [h["attempt"] for h in cobos["earlier_attempts"]] == [1]
    with models.session() as s:
        assert s.exec(select(Run.number)).all() == [0]
    page = client.get(f"/workflows/{workflow_id}").get_data(as_text=True)
    assert "clock not locked" in page and 'id="replay"' not in page

    again = client.post(f"/api/workflows/{workflow_id}/replay")
    assert again.status_code == 409 and "nothing failed" in again.get_json()["error"]
    assert lock.holder() is None


def test_replay_is_refused_while_the_workflow_or_another_is_active(daq):
    with models.session() as s:
        failed = Workflow(kind="describe", state="failed")
        busy = Workflow(kind="prepare", state="running")
        s.add(failed)
        s.add(busy)
        s.flush()
        failed_id, busy_id = failed.id, busy.id
    with pytest.raises(errors.Refused, match="is still active"):
        replay.replay(busy_id)
    with pytest.raises(errors.Refused, match=f"workflow {busy_id} .* is active"):
        replay.replay(failed_id)
    with pytest.raises(errors.NotFound):
        replay.replay(987654)
    assert lock.holder() is None


def test_a_failed_callback_is_replayed_alone(running_daq, staging_root):
    sim = running_daq
    set_all(sim, EccState.READY)
    assert wait_workflow(launching.launch("start_run"))["state"] == "succeeded"
    workflow_id = launching.create("stop_run")
    with models.session() as s:  # the stop callback will not find its run: it raises
        workflow = s.get(Workflow, workflow_id)
        run_id, workflow.run_id = workflow.run_id, None
    launching.dispatch(workflow_id)
    view = wait_workflow(workflow_id)
    assert view["state"] == "failed"
    cobos = next(st for st in view["stages"] if st["name"] == "stop CoBos")
    assert (cobos["state"], cobos["done"], cobos["failed"]) == ("failed", 8, 0)
    assert "not in the database" in cobos["error"]
    with models.session() as s:
        s.get(Workflow, workflow_id).run_id = run_id
    before = sends(sim)

    planned = replay.replay(workflow_id)

    assert planned["replayed_steps"] == []
    assert planned["stages"][0] == "stop CoBos"
    assert wait_workflow(workflow_id, timeout=40)["state"] == "succeeded"
    assert sends(sim) - before == Counter()  # no source was stopped twice
    with models.session() as s:
        run = s.get(Run, run_id)
        assert run.stopped_at is not None and run.files_organized_at is not None


def all_ended(task_ids: list[str], node: str) -> bool:
    """Whether the worker ``node``, which was running these tasks, answers that it runs or
    holds none of them any more (steps store no result: the worker is asked)."""
    from pipelines.orchestration.app import app

    inspect = app.control.inspect([node], timeout=1.0)
    active, reserved = inspect.active() or {}, inspect.reserved() or {}
    if node not in active or node not in reserved:
        return False  # not answering yet (resumed, busy): ask again
    held = {task["id"] for answer in (active, reserved) for task in answer[node]}
    return not held & set(task_ids)


@pytest.mark.database_agnostic
def test_a_worker_killed_mid_stage_loses_its_steps_then_replay_finishes(running_daq, worker,
                                                                        beat):
    sim = running_daq
    # Half the crate confirmed its Start, the other half is still in transition when the
    # worker dies: a partly lost stage whose chord will never call back.
    workflow_id = start_held(sim, "power cut", held=4)
    assert {st.worker for st in cobo_steps(workflow_id)} == {worker.node}

    worker.kill()
    # No worker answers: that tells nothing (all dead, or all too busy), so nothing is lost.
    assert watch.sweep_lost_steps() == [] and steps_in(workflow_id, "running") == 4
    worker.start()  # it answers again, under its name, without the killed one's tasks
    back_at = time.monotonic()
    # Beat's rounds (every second here) mark them lost once missing from every answer for
    # DAQFLOW_STEP_LOST_SECONDS (STEP_LOST_SECONDS here), not at once; at most two rounds
    # later (each waits up to 2 s for answers), with 4 s to spare for a loaded machine.
    wait_for(lambda: steps_in(workflow_id, "lost") == 4, timeout=30,
             message="steps marked lost")
    took = time.monotonic() - back_at
    assert STEP_LOST_SECONDS <= took <= STEP_LOST_SECONDS + 2 * 3 + 4, took

    # The killed tasks never report, so no chord callback comes: beat's sweep fails the
    # stage once its other steps have ended (they have).
    view = wait_workflow(workflow_id, timeout=15)
    assert view["state"] == "failed" and "lost" in view["error"]
    cobos = view["stages"][2]
    assert (cobos["name"], cobos["state"]) == ("start CoBos", "failed")
    assert Counter(st["state"] for st in cobos["steps"]) == Counter(lost=4, succeeded=4)
    assert lock.holder() is None  # the failure path released run control

    sim.clear_faults()  # the held transitions end: the servers are RUNNING
    planned = replay.replay(workflow_id)
    assert sorted(planned["replayed_steps"]) == [f"ecc-cobo{i}" for i in range(4)]
    view = wait_workflow(workflow_id, timeout=30)
    assert view["state"] == "succeeded", view
    assert [(st.attempt, st.state) for st in steps_of(workflow_id, "ecc-cobo0")] == [
        (1, "lost"), (2, "succeeded")]
    assert [(st.attempt, st.state) for st in steps_of(workflow_id, "ecc-cobo7")] == [
        (1, "succeeded")]
    with models.session() as s:
        assert s.exec(select(Run.title)).all() == ["power cut"]


@pytest.mark.database_agnostic
def test_a_worker_paused_for_seconds_keeps_its_steps_and_they_complete(running_daq, worker):
    sim = running_daq
    workflow_id = start_held(sim, "a long garbage collection")

    # It cannot answer (a long GC, a loaded host) for longer than a step may be missing,
    # even from a worker silent while others answer (3 s here for both; beat's rounds use
    # DAQFLOW_STEP_LOST_SECONDS and DAQFLOW_WORKER_GONE_SECONDS): the watch's rounds (each
    # waits its 2 s for answers) find nobody answering, which tells nothing: nothing lost.
    lost_after = 3.0
    worker.proc.send_signal(signal.SIGSTOP)
    try:
        paused_at = time.monotonic()
        while time.monotonic() - paused_at < lost_after + 2 * 2:
            assert watch.sweep_lost_steps(lost_after=lost_after, gone_after=lost_after) == []
        assert steps_in(workflow_id, "running") == 8
        sim.clear_faults()  # the servers finish their Start while the worker is paused
    finally:
        worker.proc.send_signal(signal.SIGCONT)

    view = wait_workflow(workflow_id, timeout=30)
    assert view["state"] == "succeeded", view["error"]
    assert {st["state"] for stage in view["stages"] for st in stage["steps"]} == {"succeeded"}


@pytest.mark.database_agnostic
def test_a_worker_silent_while_another_answers_is_gone_only_after_its_limit(
        running_daq, worker, beat, tmp_path):
    sim = running_daq
    workflow_id = start_held(sim, "a silent worker")
    steps = cobo_steps(workflow_id)
    # Another worker answers beat's rounds (and runs them) while the one with the steps is
    # silent: it is given DAQFLOW_WORKER_GONE_SECONDS (9 s here), not the STEP_LOST_SECONDS
    # of a worker that answers without its steps.
    gone_after = 9
    bystander = start_worker(tmp_path / "bystander.log", "bystander", concurrency=4,
                             queues="control",
                             env={"DAQFLOW_WORKER_GONE_SECONDS": str(gone_after),
                                  "DAQFLOW_STEP_LOST_SECONDS": str(STEP_LOST_SECONDS)})
    try:
        worker.proc.send_signal(signal.SIGSTOP)
        try:
            silent_at = time.monotonic()
            wait_for(lambda: steps_in(workflow_id, "lost") == 8, timeout=45,
                     message="the silent worker's steps to be lost")
            silent_for = time.monotonic() - silent_at
            sim.clear_faults()
        finally:
            worker.proc.send_signal(signal.SIGCONT)
        assert silent_for >= gone_after > STEP_LOST_SECONDS, silent_for
        view = wait_workflow(workflow_id, timeout=15)
        assert view["state"] == "failed" and "lost" in view["error"]
        # Resumed, its tasks confirm their transitions: too late, they act on nothing.
        wait_for(lambda: all_ended([st.task_id for st in steps], worker.node), timeout=30,
                 message="the resumed worker's tasks to end")
        assert {st.state for st in cobo_steps(workflow_id)} == {"lost"}

        replay.replay(workflow_id)
        assert wait_workflow(workflow_id, timeout=30)["state"] == "succeeded"
    finally:
        stop_process(bystander)


@pytest.mark.database_agnostic
def test_a_partly_lost_stage_waits_for_its_other_steps_and_late_messages_act_on_nothing(
        running_daq, worker, monkeypatch):
    sim = running_daq
    workflow_id = start_held(sim, "half a crate")
    steps = cobo_steps(workflow_id)
    # A round where the worker answered executing only four of them: the other four are
    # missing, lost once missing for DAQFLOW_STEP_LOST_SECONDS (10 s by default).
    report = watch.WorkerReport(frozenset({worker.node}),
                                frozenset(st.task_id for st in steps[4:]))
    assert watch.sweep_lost_steps(report) == []
    monkeypatch.setenv("DAQFLOW_STEP_LOST_SECONDS", "0.2")
    lost = wait_for(lambda: watch.sweep_lost_steps(report), timeout=5, message="lost steps")
    assert sorted(lost) == sorted(st.id for st in steps[:4])

    # The stage waits for its other four; nothing is failed while they run.
    watch.sweep_lost_steps(report, lost_after=0)
    cobos = next(st for st in progress.read(workflow_id)["stages"] if st["name"] == "start CoBos")
    assert cobos["state"] == "running"
    assert Counter(st["state"] for st in cobos["steps"]) == Counter(lost=4, running=4)
    # A message from before (sent for another task, e.g. of a deleted row whose id the
    # database gave again) finds no step to begin or end.
    with pytest.raises(errors.StepFailed, match="is not the one task stale-task was sent"):
        step_records.begin_transition(steps[4].id, "stale-task", worker=worker.node)
    step_records.finish_step(steps[4].id, "stale-task", error="from before")
    # Nor does a watch round that read the steps before their ids went to other rows (one
    # held up past its time, as by a paused worker): it marks lost only the task it missed.
    assert watch._mark_lost([(steps[4].id, "stale-task", worker.node)], report, 0, 0) == []
    assert (steps_of(workflow_id, "ecc-cobo4")[-1].state,
            steps_of(workflow_id, "ecc-cobo4")[-1].error) == ("running", None)

    sim.clear_faults()
    view = wait_workflow(workflow_id, timeout=30)
    assert view["state"] == "failed" and "lost" in view["error"], view
    # The lost four's tasks ended too and their servers confirmed: their ends act on nothing.
    wait_for(lambda: all_ended([st.task_id for st in steps], worker.node), timeout=30,
             message="the lost steps' tasks to end")
    assert [st.state for st in cobo_steps(workflow_id)] == ["lost"] * 4 + ["succeeded"] * 4


@pytest.mark.database_agnostic
def test_redis_restarted_mid_workflow_then_replay(running_daq, redis_server, worker):
    sim = running_daq
    workflow_id = start_held(sim, "through a Redis restart")

    redis_server.stop()
    try:
        view = progress.read(workflow_id)
        assert not view["live"] and "live progress is unavailable" in view["live_error"]
        assert view["state"] == "running" and view["total"] == 11  # the record is intact
        page = operator_client().get("/").get_data(as_text=True)
        assert "live progress is unavailable" in page
        sim.clear_faults()
        wait_for(lambda: steps_in(workflow_id, "running") == 0, timeout=20,
                 message="the transitions to end without Redis")
    finally:
        redis_server.start()
    # Celery's worker may exit when its broker goes away under running tasks (kombu fails
    # restoring their messages); `daqflow up` restarts it, and so does this test.
    from pipelines.orchestration.app import app

    def answers_ping():
        try:
            return app.control.ping(timeout=0.5)
        except Exception:  # our own connection to the old Redis: the next call reconnects
            return False

    wait_for(lambda: worker.proc.poll() is not None or answers_ping(),
             timeout=30, message="the worker to reconnect or exit")
    if worker.proc.poll() is not None:
        worker.start()

    # Redis came back empty: the stage's callback will never come. The watch's next round
    # sees that the workflow's Redis is not this one and fails it at once, not after the
    # stall rule's 60 s.
    assert watch.sweep_broker_restarts() == [workflow_id]
    view = wait_workflow(workflow_id, timeout=5)
    assert view["state"] == "failed" and "Redis restarted while this workflow ran" in view["error"]
    assert watch.sweep_broker_restarts() == []  # once

    replay.replay(workflow_id)
    assert wait_workflow(workflow_id, timeout=30)["state"] == "succeeded"


def test_concurrent_starts_give_one_workflow_and_refusals(running_daq):
    set_all(running_daq, EccState.READY)
    barrier = threading.Barrier(8)
    outcomes = []

    def press_start():
        barrier.wait()
        try:
            outcomes.append(("started", launching.launch("start_run", title="race")))
        except errors.Refused as refusal:
            outcomes.append(("refused", str(refusal)))

    threads = [threading.Thread(target=press_start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    started = [value for kind, value in outcomes if kind == "started"]
    assert len(started) == 1 and len(outcomes) == 8, outcomes
    assert wait_workflow(started[0])["state"] == "succeeded"
    with models.session() as s:
        assert s.exec(select(func.count()).select_from(Workflow)).one() == 1
    # The final callback releases the lock just after committing the workflow's end.
    wait_for(lambda: lock.holder() is None, timeout=5, message="the lock to be released")


def test_the_lock_is_released_only_by_its_owner_and_expires(redis_url):
    lock.clear()
    token = lock.acquire(1.0)
    with pytest.raises(lock.Busy):
        lock.acquire(60)
    assert not lock.release("somebody-else")
    assert lock.holder() == token
    wait_for(lambda: lock.holder() is None, timeout=5, message="the lock to expire")
    assert not lock.release(token)  # expired: nothing of ours to release
