"""Workflows on a real worker, real Redis and the simulator over HTTP."""
import subprocess
import sys
import time

import pytest
import redis
from sqlalchemy import event
from sqlmodel import select, update

import models
from models import ECCServer, Experiment, Run, Stage, Step, Workflow
from models.columns import utcnow
from pipelines.daq.ecc.states import EccState
from pipelines.orchestration import results
from pipelines.runcontrol import errors, launching, progress
from pipelines.simulator.topology import simulated_topology
from pipelines.topology import loading, schema
from tests.support import ROOT
from tests.support.daq import (
    TRANSITION_SECONDS,
    clear_workflow_records,
    cobo_steps,
    row_counts,
    set_all,
    steps_of,
    wait_workflow,
)
from tests.support.processes import wait_for
from tests.support.services import start_simulator


def test_describe_prepare_configure_then_start_and_stop_a_run(running_daq):
    sim = running_daq
    for kind, operation, mutant_first in (("describe", "Describe", False),
                                          ("prepare", "Prepare", True),
                                          ("configure", "Configure", False)):
        workflow_id = launching.launch(kind)
        view = wait_workflow(workflow_id)
        assert view["state"] == "succeeded", view
        # The order the servers were sent the operation, from the simulator's request log.
        sent = [e["server"] for e in sim.log() if e["operation"] == operation]
        assert len(sent) == 9 and (sent[0] if mutant_first else sent[-1]) == "ecc-mutant", sent
        # The first group's servers confirmed their state before the second group was sent.
        mutant_step = steps_of(workflow_id, "ecc-mutant")[-1]
        cobos = cobo_steps(workflow_id)
        if mutant_first:
            assert mutant_step.finished_at <= min(st.started_at for st in cobos)
        else:
            assert max(st.finished_at for st in cobos) <= mutant_step.started_at
    assert set(s["state"] for s in sim.states().values()) == {EccState.READY}

    sim.reset()  # a clean request log for the start
    set_all(sim, EccState.READY)
    start = wait_workflow(launching.launch("start_run", title="cosmics", run_class="PROD"))
    assert start["state"] == "succeeded", start
    assert [st["name"] for st in start["stages"]] == [
        "re-arm MuTAnT: breakup", "re-arm MuTAnT: configure", "start CoBos", "start MuTAnT"]
    # The MuTAnT is re-armed (Breakup, then Configure) before the CoBos start.
    sent = [(e["server"], e["operation"]) for e in sim.log()]
    assert sent[:2] == [("ecc-mutant", "Breakup"), ("ecc-mutant", "Configure")], sent
    assert sorted(sent[2:10]) == [(f"ecc-cobo{i}", "Start") for i in range(8)]
    assert sent[10:] == [("ecc-mutant", "Start")]
    log = sim.log(transitions_only=False)
    # Each CoBo's record, confirmed by its Configure, is trusted by a first delivery: its
    # Start goes without a GetState before it, and GetState then confirms it.
    for i in range(8):
        asked = [e["operation"] for e in log if e["server"] == f"ecc-cobo{i}"]
        assert asked[0] == "Start" and asked[1:] and set(asked[1:]) == {"GetState"}, asked
    mutant_start = next(e["time"] for e in log if e["server"] == "ecc-mutant" and e["operation"] == "Start")
    cobo_requests = [e["time"] for e in log if e["server"] != "ecc-mutant"]
    assert len([e for e in log if e["operation"] == "Start"]) == 9
    assert max(cobo_requests) < mutant_start, "a CoBo was still being driven when the MuTAnT started"
    with models.session() as s:
        run = s.exec(select(Run)).one()
        assert (run.number, run.title, run.run_class, run.config_name) == (0, "cosmics", "PROD", "cfg")
        assert run.started_at is not None and run.stopped_at is None
        assert s.exec(select(Experiment).where(Experiment.active == True)).one().last_run_number == 0  # noqa: E712

    stop = wait_workflow(launching.launch("stop_run"))
    assert stop["state"] == "succeeded", stop
    assert [st["name"] for st in stop["stages"]] == ["stop MuTAnT", "stop CoBos",
                                                     "organize files", "back up configs"]
    log = sim.log(transitions_only=False)
    first_cobo_stop = min(e["time"] for e in log if e["server"] != "ecc-mutant" and e["operation"] == "Stop")
    assert max(e["time"] for e in log if e["server"] == "ecc-mutant") < first_cobo_stop
    with models.session() as s:
        run = s.exec(select(Run)).one()
        assert run.stopped_at is not None and run.duration_seconds > 0


def test_a_failing_source_fails_its_stage_and_leaves_the_run_unrecorded(running_daq):
    sim = running_daq
    set_all(sim, EccState.READY)
    sim.fault("ecc-cobo3", "error", operation="Start", code=5, message="CoBo[3]: clock not locked")
    view = wait_workflow(launching.launch("start_run", title="beam"))
    assert view["state"] == "failed"
    assert "CoBo[3]: clock not locked" in view["error"]
    breakup, configure, cobos, mutant = view["stages"]  # the MuTAnT re-armed, then the starts
    assert breakup["state"] == configure["state"] == "succeeded"
    assert cobos["state"] == "failed" and cobos["done"] == 7 and cobos["failed"] == 1
    failed = [st for st in cobos["steps"] if st["state"] == "failed"]
    assert [st["target"] for st in failed] == ["ecc-cobo3"]
    assert "CoBo[3]: clock not locked (error code 5)" in failed[0]["error"]
    assert mutant["state"] == "pending" and mutant["done"] == 0
    assert not any(e["server"] == "ecc-mutant" and e["operation"] == "Start" for e in sim.log())
    with models.session() as s:
        assert s.exec(select(Run)).all() == []
        assert s.exec(select(Experiment)).one().last_run_number == -1
    wait_for(lambda: progress.read(view["id"])["stages"][2]["callback_state"] == "FAILURE")


@pytest.mark.database_agnostic
def test_a_transition_that_never_ends_fails_at_the_deadline_while_others_complete(running_daq):
    sim = running_daq
    sim.fault("ecc-cobo1", "hang", operation="Prepare")
    set_all(sim, EccState.DESCRIBED)
    workflow_id = launching.launch("prepare")

    def hanging_step():
        for stage in progress.read(workflow_id)["stages"]:
            for step in stage["steps"]:
                if step["target"] == "ecc-cobo1" and step["task_state"] == "PROGRESS":
                    return step

    live = wait_for(hanging_step, timeout=10, message="the hanging step's PROGRESS state")
    assert live["state"] == "running" and live["expected"] == pytest.approx(TRANSITION_SECONDS)
    assert live["elapsed"] is not None and 0 < live["progress"] <= 0.99
    view = wait_workflow(workflow_id, timeout=20)
    steps = {st["target"]: st for stage in view["stages"] for st in stage["steps"]}
    assert steps["ecc-cobo1"]["state"] == "failed"
    assert "not confirmed within its deadline of 3 s" in steps["ecc-cobo1"]["error"]
    assert all(st["state"] == "succeeded" for name, st in steps.items() if name != "ecc-cobo1")


def test_transitions_are_idempotent(running_daq):
    sim = running_daq
    set_all(sim, EccState.DESCRIBED)
    view = wait_workflow(launching.launch("describe"))
    assert view["state"] == "succeeded"
    assert sim.log() == []  # nothing was sent: every server was already DESCRIBED


def test_a_record_behind_its_server_costs_a_refusal_not_a_failure(running_daq):
    # The record says IDLE, so Describe is sent without asking first; the servers were
    # DESCRIBED already (moved by another tool), refuse it, and GetState shows it done.
    sim = running_daq
    set_all(sim, EccState.DESCRIBED)
    with models.session() as s:
        s.exec(update(ECCServer).values(state=int(EccState.IDLE), transition=0, online=True))
    view = wait_workflow(launching.launch("describe"))
    assert view["state"] == "succeeded", view
    assert len(sim.log()) == 9  # one refused Describe each, and no second one
    with models.session() as s:
        assert {server.state for server in s.exec(select(ECCServer))} == {EccState.DESCRIBED}


def test_reset_takes_one_step_back_from_the_highest_state(running_daq):
    sim = running_daq
    set_all(sim, EccState.PREPARED)
    sim.set_state("ecc-cobo2", EccState.READY)
    with models.session() as s:
        s.exec(update(ECCServer).where(ECCServer.name == "ecc-cobo2").values(state=4))
    view = wait_workflow(launching.launch("reset"))
    assert view["state"] == "succeeded"
    assert [(e["server"], e["operation"]) for e in sim.log()] == [("ecc-cobo2", "Breakup")]
    assert {s["state"] for s in sim.states().values()} == {EccState.PREPARED}


@pytest.mark.parametrize("setup, kind, message", [
    ("idle", "start_run", "a run starts only when every source is READY"),
    ("idle", "stop_run", "no run is going"),
    ("running", "start_run", "run 0 is going; stop it before starting another"),
    ("running", "configure", "run 0 is going"),
    ("busy", "describe", "is still active"),
    ("idle-known", "reset", "every source is IDLE: nothing to reset"),
])
def test_refusals_write_nothing(daq, setup, kind, message):
    with models.session() as s:
        if setup == "running":
            experiment = s.exec(select(Experiment)).one()
            s.add(Run(experiment_id=experiment.id, number=0, started_at=utcnow()))
            experiment.last_run_number = 0
        if setup == "busy":
            s.add(Workflow(kind="describe", state="running"))
        if setup == "idle-known":
            s.exec(update(ECCServer).values(state=1))
    before = row_counts()
    with pytest.raises(errors.Refused, match=message):
        launching.launch(kind)
    assert row_counts() == before


class CountingRedis(redis.Redis):
    """A Redis client that counts the commands it sends (one per round trip here)."""

    commands: list

    def execute_command(self, *args, **options):
        self.commands.append(args[0])
        return super().execute_command(*args, **options)


@pytest.fixture
def big_daq(redis_url, worker, tmp_path):
    """64 simulated ECC servers behind one port, on distinct paths."""
    from pipelines.cli.supervisor import free_port

    port = free_port()
    sim = start_simulator(tmp_path, [port] * 64,
                          simulated_topology([port] * 64, seconds_per_source=0.3))
    clear_workflow_records()
    loading.load(schema.read(sim.topology_path))
    yield sim
    sim.stop()


def read_cost(workflow_id: int, redis_url: str) -> tuple[int, list[str], dict]:
    """SQL statements and Redis commands of one progress read, and what it read."""
    client = CountingRedis.from_url(redis_url)
    client.commands = []
    statements = []
    engine = models.get_engine()
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        view = progress.read(workflow_id, redis_client=client)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    return len(statements), client.commands, view


def test_progress_read_of_64_sources_costs_one_query_and_one_redis_round_trip(big_daq, redis_url):
    workflow_id = launching.launch("describe")
    wait_for(lambda: progress.read(workflow_id)["done"] > 0, timeout=20)
    statements, commands, view = read_cost(workflow_id, redis_url)
    assert view["total"] == 64
    assert commands == ["MGET"]
    assert statements == 1
    running = [st for stage in view["stages"] for st in stage["steps"]]
    assert len(running) == 64
    final = wait_workflow(workflow_id)
    assert final["state"] == "succeeded" and final["done"] == 64


@pytest.mark.database_agnostic
def test_every_kind_of_workflow_is_read_in_one_query_and_one_mget_a_stop_in_two(
        running_daq, redis_url):
    # README: one SQL query and one Redis MGET; a stop adds one query for its run's files.
    for kind in ("describe", "prepare", "configure", "start_run", "stop_run", "reset"):
        workflow_id = launching.launch(kind)
        wait_for(lambda: progress.read(workflow_id)["done"] > 0, timeout=20)
        expected = (2 if kind == "stop_run" else 1, ["MGET"])
        assert read_cost(workflow_id, redis_url)[:2] == expected, kind
        assert wait_workflow(workflow_id)["state"] == "succeeded", kind
        assert read_cost(workflow_id, redis_url)[:2] == expected, kind


@pytest.mark.database_agnostic
def test_cli_wait_reports_success_and_refusal_by_exit_code(running_daq):
    set_all(running_daq, EccState.PREPARED)
    ok = subprocess.run([sys.executable, "-m", "pipelines.cli", "transition", "configure", "--wait"],
                        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "succeeded" in ok.stdout and "configure CoBos" in ok.stdout
    stop = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", "stop", "--wait"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert stop.returncode == 3 and "no run is going" in stop.stderr
    running_daq.fault("ecc-mutant", "error", operation="Start", message="shelf not ready")
    failed = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", "start", "--title",
                             "t", "--wait"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1 and "shelf not ready" in failed.stderr


@pytest.mark.database_agnostic
def test_a_new_workflow_deletes_the_redis_results_of_the_ones_before(running_daq):
    from pipelines.orchestration.app import app

    set_all(running_daq, EccState.READY)
    first = wait_workflow(launching.launch("start_run", title="keys"))
    with models.session() as s:
        stages = s.exec(select(Stage).where(Stage.workflow_id == first["id"])).all()
        ids = [st.callback_task_id for st in stages] + [
            step.task_id for st in stages
            for step in s.exec(select(Step).where(Step.stage_id == st.id)).all()]
        groups = [st.group_id for st in stages]
    backend = app.backend
    keys = [backend.get_key_for_task(tid) for tid in ids]
    # The 4 stage callbacks' results; the 11 steps (9 starts and the MuTAnT's re-arm) store
    # none (at most a transition's live PROGRESS): their rows say how they ended.
    assert len(keys) == 15 and backend.client.exists(*keys[:4]) == 4
    step_metas, _ = results.fetch(ids[4:])
    assert all(meta["status"] == "PROGRESS" for meta in step_metas.values())
    # Each stage's chord leaves its "done" marker under the group the steps ran in.
    markers = [backend.get_key_for_group(gid, ".c") for gid in groups]
    assert backend.client.exists(*markers) == 4

    second = wait_workflow(launching.launch("stop_run"))

    assert second["state"] == "succeeded"
    assert backend.client.exists(*keys) == 0
    assert backend.client.exists(*markers) == 0
    view = progress.read(first["id"])  # the record stays whole without them
    assert (view["state"], view["done"], view["total"]) == ("succeeded", 11, 11)
    assert [st["callback_state"] for st in view["stages"]] == ["SUCCESS"] * 4
    assert {step["task_state"] for st in view["stages"] for step in st["steps"]} == {"SUCCESS"}


@pytest.mark.database_agnostic
def test_sending_stages_keeps_no_result_objects_in_the_sending_process(running_daq):
    # Whoever sends a chord (this process for the first stage, a control worker for
    # the next) would otherwise hold every member's result until it exits: the
    # control workers grew by megabytes per start/stop cycle.
    from pipelines.orchestration.app import app

    set_all(running_daq, EccState.READY)
    for action in ("start_run", "stop_run"):
        assert wait_workflow(launching.launch(action, title="held"))["state"] == "succeeded"
    concrete, weak = app.backend._pending_results
    assert (len(concrete), len(weak)) == (0, 0)


def test_an_action_right_after_a_workflow_ended_waits_for_its_lock_instead_of_refusing(daq):
    import threading

    from pipelines.runcontrol import lock

    token = lock.acquire(60)
    with models.session() as s:
        ended = Workflow(kind="start_run", state="succeeded", lock_token=token)
        s.add(ended)
    # The final callback has recorded the end and is about to release the lock.
    releaser = threading.Timer(0.3, lock.release, args=(token,))
    releaser.start()
    taken = launching.take_lock()
    releaser.join()
    assert taken != token and lock.holder() == taken
    lock.release(taken)

    # A holder that is still running is a refusal, at once.
    token = lock.acquire(60)
    with models.session() as s:
        s.exec(update(Workflow).where(Workflow.id == ended.id).values(state="running"))
    began = time.monotonic()
    with pytest.raises(errors.Refused, match="in progress"):
        launching.take_lock()
    assert time.monotonic() - began < 1.0
    lock.release(token)
