"""Unattended data taking with real workers, Redis and the simulator: timed runs stop
themselves at their limit through Celery's ETA timer (or beat's sweep when the timer's
worker died), automatic restart chains runs, and a timer acts on its own run only."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

import models
from models import Alarm, Experiment, Run, Workflow
from models.vocabulary import WorkflowKind
from pipelines.daq.ecc.states import EccState
from pipelines.daq.nodes.files import run_folder
from pipelines.orchestration import results
from pipelines.runcontrol import launching, tasks, timed
from tests.support.daq import set_all, wait_workflow
from tests.support.processes import wait_for

# The planned length of the tests' runs, and how late after it a run may be recorded
# stopped: the ETA timer fires within a second of its time, then a stop workflow
# (Stop to every source, organize, back up) takes about a second on the simulator.
PLANNED = 1.0
LATE_AT_MOST = 4.0


# Waits of up to 60 s for chained runs, with their fixtures: longer than the
# suite's 120 s per test.
pytestmark = pytest.mark.timeout(300)


def runs() -> list[Run]:
    with models.session() as s:
        return s.exec(select(Run).order_by(Run.number)).all()


def _stopped_count(n: int):
    done = [run for run in runs() if run.stopped_at is not None]
    return len(done) >= n and done


def timer_message(run_id: int) -> dict:
    """Send the run's timer message to the worker, as a duplicate or late one would come;
    what the worker's task answered."""
    task_id = tasks.run_limit.delay(run_id).id
    meta = wait_for(lambda: (lambda m: m.get(task_id, {}).get("status") == "SUCCESS" and m)(
        results.fetch([task_id])[0]), timeout=10, message="the timer task's result")
    return meta[task_id]["result"]


def _idle():
    with models.session() as s:
        active = s.exec(select(Workflow).where(Workflow.state.in_(("pending", "running")))).all()
    return not active


@pytest.mark.database_agnostic
def test_a_timed_run_restarts_itself_three_times_each_recorded_with_its_settings(running_daq):
    set_all(running_daq, EccState.READY)
    first = launching.launch(WorkflowKind.START_RUN, title="night", run_class="BEAM",
                             comment="overnight beam", duration_seconds=PLANNED,
                             auto_restart=True)
    assert wait_workflow(first)["state"] == "succeeded"
    [run0] = runs()
    # A duplicate of run 0's timer before its limit: nothing yet.
    assert timer_message(run0.id) == {"run": run0.id, "stopped": False,
                                      "why": "limit not reached"}
    # Once run 1 goes, a late timer of run 0 stops nothing; run 1 stops at its own limit.
    wait_for(lambda: len(runs()) >= 2 and runs()[1].started_at, timeout=30,
             message="the second run to start")
    assert timer_message(run0.id) == {"run": run0.id, "stopped": False,
                                      "why": "not the run going"}
    # The third run is the last: its automatic restart is cancelled while it goes (audited).
    third = wait_for(lambda: len(runs()) >= 3 and runs()[2].started_at and runs()[2],
                     timeout=60, message="the third run to start")
    plan = timed.set_limits(third.number, {"auto_restart": False}, actor="shift-leader")
    assert plan["auto_restart"] is False and plan["planned_seconds"] == PLANNED
    wait_for(lambda: _stopped_count(3), timeout=30, message="the third run to stop")
    wait_for(_idle, timeout=30, message="the last stop to end")
    chain = runs()
    assert [run.title for run in chain] == ["night", "night (2)", "night (3)"]
    for run in chain:
        assert (run.run_class, run.comment, run.planned_seconds) == ("BEAM", "overnight beam",
                                                                     PLANNED)
        overshoot = (run.stopped_at - run.started_at).total_seconds() - PLANNED
        assert 0 <= overshoot <= LATE_AT_MOST, (run.number, overshoot)
        assert run.stopped_by.startswith("daqflow for ") and run.limit_reached_at
        assert run.files_organized_at is not None
    assert chain[1].started_by == chain[0].stopped_by  # daqflow, for whoever started run 0
    assert [run.auto_restart for run in chain] == [True, True, False]
    assert chain[2].restarted_at is None  # nothing after the cancelled restart
    # Each run starts only once the one before has stopped and its files are organized.
    for before, after in zip(chain, chain[1:]):
        assert before.files_organized_at <= after.started_at
    # Run 0's timer once more, redelivered after all this: it did its work already.
    assert timer_message(run0.id)["stopped"] is False
    with models.session() as s:
        stops = s.exec(select(Workflow).where(Workflow.kind == WorkflowKind.STOP_RUN)).all()
    assert len(stops) == 3


@pytest.mark.database_agnostic
def test_a_control_worker_killed_while_the_timer_waits_still_stops_the_run(running_daq,
                                                                         worker, beat):
    set_all(running_daq, EccState.READY)
    start = launching.launch(WorkflowKind.START_RUN, title="orphan timer",
                             duration_seconds=PLANNED)
    assert wait_workflow(start)["state"] == "succeeded"
    [run] = runs()
    end = run.started_at + timedelta(seconds=PLANNED)
    worker.kill()  # SIGKILL: the ETA message it held waits for the visibility timeout
    try:
        wait_for(lambda: models.columns.utcnow() > end + timedelta(seconds=1), timeout=10,
                 message="the limit to pass while no worker runs")
        assert runs()[0].stopped_at is None
    finally:
        worker.start()
    back = models.columns.utcnow()
    # Beat's sweep (every second here, 5 s by default) stops it once a worker is back.
    stopped = wait_for(lambda: _stopped_count(1), timeout=30, message="the sweep's stop")
    assert stopped[0].stopped_by.startswith("daqflow for ")
    assert (stopped[0].stopped_at - back).total_seconds() <= LATE_AT_MOST + 1
    wait_for(_idle, timeout=30, message="the stop to end")


def test_an_automatic_restart_that_is_refused_ends_the_chain_with_an_alarm(running_daq,
                                                                           staging_root):
    set_all(running_daq, EccState.READY)
    with models.session() as s:
        experiment = s.exec(select(Experiment).where(Experiment.active == True)).one()  # noqa: E712
        name = experiment.name
    # Run 1's folder is there already on router-0's node: its start must be refused.
    Path(run_folder(str(staging_root / "0"), name, 1)).mkdir(parents=True)
    start = launching.launch(WorkflowKind.START_RUN, title="chain", duration_seconds=PLANNED,
                             auto_restart=True)
    assert wait_workflow(start)["state"] == "succeeded"
    failed = wait_for(lambda: runs()[0].automation_error and runs()[0], timeout=30,
                      message="the chain to end")
    assert "could not start the run after run 0" in failed.automation_error
    assert "run_0001" in failed.automation_error and len(runs()) == 1
    tasks.check_routers()
    with models.session() as s:
        [alarm] = s.exec(select(Alarm).where(Alarm.kind == "automation_failed")).all()
    assert alarm.subject == "run 0" and "unattended data taking ended" in alarm.message
    # A second restart message (redelivered) claims nothing more.
    assert timed.restart(failed.id) == {"started": False, "why": "restarted already"}


def test_a_run_past_its_planned_length_raises_the_overdue_alarm(running_daq):
    set_all(running_daq, EccState.READY)
    with models.session() as s:
        experiment = s.exec(select(Experiment).where(Experiment.active == True)).one()  # noqa: E712
        experiment.alarm_settings = {"overdue_seconds": 0.1}
    start = launching.launch(WorkflowKind.START_RUN, title="overdue")
    assert wait_workflow(start)["state"] == "succeeded"
    # Its planned length set behind daqflow's back: no timer, no sweep (no beat here).
    with models.session() as s:
        run = s.exec(select(Run)).one()
        run.planned_seconds = 0.5
    wait_for(lambda: tasks.check_routers() and alarms_of("run_overdue"), timeout=10,
             message="the overdue alarm")
    [alarm] = alarms_of("run_overdue")
    assert alarm.subject == f"run {run.number}" and "no stop was started" in alarm.message
    assert wait_workflow(launching.launch(WorkflowKind.STOP_RUN))["state"] == "succeeded"
    tasks.check_routers()
    assert alarms_of("run_overdue")[0].cleared_at is not None


def alarms_of(kind: str) -> list[Alarm]:
    with models.session() as s:
        return s.exec(select(Alarm).where(Alarm.kind == kind).order_by(Alarm.id)).all()
