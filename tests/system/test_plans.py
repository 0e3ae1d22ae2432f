"""Run plans with a real worker and a simulator of their own offering two configs: the
entries run as ordinary workflows, the DAQ is taken down and up for a new config, each
run is recorded with its config, and a failed entry pauses the plan until "resume"."""
from __future__ import annotations

import pytest
from sqlmodel import select

import models
from models import Alarm, Run, Workflow
from models.vocabulary import WorkflowKind
from pipelines.cli.supervisor import free_port
from pipelines.runcontrol import configs, launching, lock, plans, tasks
from pipelines.runcontrol.errors import Refused
from pipelines.simulator.topology import simulated_topology
from pipelines.topology import loading, schema
from tests.support.daq import clear_workflow_records
from tests.support.processes import wait_for
from tests.support.services import start_simulator
from tests.support.web import operator_client

BEAM = '\n[[configs]]\nname = "beam"\ndescribe = "beam"\nprepare = "beam"\nconfigure = "beam"\n'
PLAN = {"name": "calibration", "entries": [
    {"title": "pulser cfg", "run_class": "PULS", "config": "cfg", "duration": "1s"},
    {"title": "beam one", "run_class": "BEAM", "config": "beam", "duration_seconds": 1},
    {"title": "beam two", "run_class": "BEAM", "config": "beam", "duration": "1s",
     "comment": "same config: no reconfiguration"}]}


# Waits of up to 90 s for chained runs and plans, with fixtures: longer than the
# suite's 120 s per test.
pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def plan_daq(worker, redis_url, tmp_path):
    """Three servers offering the configs cfg and beam, from IDLE."""
    port = free_port()
    text = simulated_topology([port] * 3, staging_root=tmp_path / "staging") + BEAM
    sim = start_simulator(tmp_path, [port] * 3, text)
    clear_workflow_records()
    lock.clear()
    loading.load(schema.read(sim.topology_path))
    configs.read_offered()
    yield sim
    sim.stop()
    clear_workflow_records()


def _ended(plan_id: int, state: str = "done"):
    view = plans.view(plan_id)
    return view["state"] == state and view


def kinds() -> list[str]:
    with models.session() as s:
        return [w.kind for w in s.exec(select(Workflow).order_by(Workflow.id)).all()]


@pytest.mark.database_agnostic
def test_a_three_entry_plan_with_two_configs_runs_to_the_end(plan_daq):
    plan_id = plans.create(PLAN, actor="shift")
    # A manual start is refused while the plan runs, naming it.
    with pytest.raises(Refused, match=f"run plan {plan_id} \\(calibration\\) is running"):
        launching.create(WorkflowKind.START_RUN, title="mine")
    view = wait_for(lambda: _ended(plan_id), timeout=90, message="the plan to end")
    assert [e["state"] for e in view["entries"]] == ["done"] * 3
    with models.session() as s:
        runs = s.exec(select(Run).order_by(Run.number)).all()
    assert [(r.title, r.run_class, r.config_name) for r in runs] == [
        ("pulser cfg", "PULS", "cfg"), ("beam one", "BEAM", "beam"), ("beam two", "BEAM", "beam")]
    assert [e["run"] for e in view["entries"]] == [r.number for r in runs]
    assert all(r.stopped_at and r.planned_seconds == 1 and r.files_organized_at for r in runs)
    assert runs[2].comment == "same config: no reconfiguration"
    # From IDLE up with cfg; cfg to beam goes down to IDLE (every sub-config differs) and
    # up again; beam to beam changes nothing.
    up = ["describe", "prepare", "configure"]
    assert kinds() == up + ["start_run", "stop_run"] + ["reset"] * 3 + up + \
        ["start_run", "stop_run"] * 2
    page = operator_client().get("/plans/").get_data(as_text=True)
    assert 'id="plan-state" class="state state-done"' in page
    assert f"run {runs[2].number}</a> (beam)" in page


def test_a_failing_entry_pauses_the_plan_with_an_alarm_and_resume_finishes_it(plan_daq):
    sim = plan_daq
    sim.fault("ecc-cobo1", "error", operation="Start", code=5, message="clock not locked",
              times=1)
    plan_id = plans.create({"name": "short", "entries": PLAN["entries"][:1]}, actor="shift")
    failed = wait_for(lambda: tasks.watch_runs()["plan"] and _ended(plan_id, "paused"),
                      timeout=60, message="the plan to pause")
    assert "clock not locked" in failed["error"] and failed["entries"][0]["state"] == "running"
    tasks.check_routers()
    with models.session() as s:
        [alarm] = s.exec(select(Alarm).where(Alarm.kind == "automation_failed")).all()
    assert alarm.subject == f"plan {plan_id}" and "clock not locked" in alarm.message
    # The operator resumes from the plan page: the failed start is replayed, then the rest.
    client = operator_client()
    resumed = client.post(f"/plans/{plan_id}/resume")
    assert resumed.status_code == 200
    view = wait_for(lambda: _ended(plan_id), timeout=90, message="the resumed plan to end")
    assert [e["state"] for e in view["entries"]] == ["done"]
    with models.session() as s:
        runs = s.exec(select(Run).order_by(Run.number)).all()
        starts = s.exec(select(Workflow).where(
            Workflow.kind == WorkflowKind.START_RUN)).all()
    assert [(r.title, r.config_name) for r in runs] == [("pulser cfg", "cfg")]
    assert len(starts) == 1  # the failed start was replayed, not started again
    assert client.post(f"/plans/{plan_id}/skip").status_code == 409  # ended: nothing to skip


def test_a_run_stopped_by_hand_ends_its_entry_and_pauses_the_plan(plan_daq):
    plan = {"name": "long", "entries": [
        {"title": "long one", "config": "cfg", "duration": "1h"},
        {"title": "after", "config": "cfg", "duration": "1s"}]}
    plan_id = plans.create(plan)
    wait_for(lambda: plans.view(plan_id)["entries"][0]["run"] is not None, timeout=60,
             message="the first run to start")
    client = operator_client()
    countdown = client.get("/plans/live").get_data(as_text=True)
    assert 'class="ticking plan-countdown"' in countdown
    # The run's length is the operator's to change from the run-control page (audited).
    page = client.post("/actions/run-limits", data={"duration": "2h", "auto_restart": "1"})
    assert page.status_code == 200 and "auto-restart on" in page.get_data(as_text=True)
    assert 'id="run-countdown"' in page.get_data(as_text=True)
    with models.session() as s:
        run = s.exec(select(Run).order_by(Run.id.desc())).first()
        audit = s.exec(select(models.AuditEntry).where(
            models.AuditEntry.action == "run_limits")).one()
    assert (run.planned_seconds, run.auto_restart) == (7200, True)
    assert audit.actor == "alice" and audit.detail["duration_seconds"] == 7200
    page = client.post("/actions/run-limits", data={"cancel": "1"}).get_data(as_text=True)
    assert "no planned length" in page and "auto-restart off" in page
    stop = launching.launch(WorkflowKind.STOP_RUN, note="beam lost")
    view = wait_for(lambda: _ended(plan_id, "paused"), timeout=60, message="the pause")
    assert view["entries"][0]["state"] == "stopped" and "by hand" in view["error"]
    with models.session() as s:
        assert s.get(Workflow, stop).state == "succeeded"
    plans.resume(plan_id)
    view = wait_for(lambda: _ended(plan_id), timeout=60, message="the plan to end")
    assert [e["state"] for e in view["entries"]] == ["stopped", "done"]
