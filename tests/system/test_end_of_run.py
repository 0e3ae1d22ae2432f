"""The end of a run, for real: simulator, Celery worker, and data routers behind sshd.

The standard test DAQ's routers live on an SSH node (the session's sshd); the
simulator plays them, writing .graw files into their staging dirs while running.
"""
from __future__ import annotations

import pytest
from markupsafe import escape
from sqlmodel import select, update

import models
from models import (
    DaqNode,
    DataRouter,
    ECCServer,
    Experiment,
    Run,
    RunFiles,
    Step,
    Workflow,
    settings,
)
from pipelines.cli.supervisor import free_port
from pipelines.daq.ecc.states import EccState
from pipelines.runcontrol import errors, launching
from tests.support.daq import HOSTILE, ROUTERS, row_counts, set_all, wait_workflow
from tests.support.processes import wait_for
from tests.support.web import operator_client


def start_run_with_files(daq, staging_root, files_each: int = 2) -> None:
    """Start a run and wait until every simulated router has written some files."""
    set_all(daq, EccState.READY)
    start = wait_workflow(launching.launch("start_run", title="end of run"))
    assert start["state"] == "succeeded", start
    wait_for(lambda: all(len(list((staging_root / str(i)).glob("*.graw"))) >= files_each
                         for i in range(9)), timeout=20, message="every router to write files")


def test_stop_organizes_every_routers_files_and_backs_up_configs(running_daq, staging_root):
    with models.session() as s:  # an operator's experiment name, shell metacharacters and all
        s.exec(update(Experiment).where(Experiment.active == True)  # noqa: E712
               .values(name=HOSTILE))
    start_run_with_files(running_daq, staging_root)
    # router-2's run folder already holds a file, as an organize killed mid-way leaves it
    # before its replay: it counts with the rest.
    interrupted = staging_root / "2" / HOSTILE / "run_0000"
    interrupted.mkdir(parents=True)
    (interrupted / "moved_before_the_kill.graw").write_bytes(b"x" * 5000)

    stop = wait_workflow(launching.launch("stop_run"), timeout=40)

    assert stop["state"] == "succeeded", stop
    organize = next(st for st in stop["stages"] if st["name"] == "organize files")
    assert (organize["done"], organize["total"]) == (9, 9)
    with models.session() as s:
        run = s.exec(select(Run)).one()
        assert run.stopped_at is not None and run.files_organized_at is not None
        assert run.files_organized_at >= run.stopped_at  # organized only after the stop
        records = {r.target: r for r in s.exec(select(RunFiles).where(RunFiles.kind == "data"))}
        backups = s.exec(select(RunFiles).where(RunFiles.kind == "configs")).all()
    assert sorted(records) == ROUTERS
    for i, name in enumerate(ROUTERS):
        staging = staging_root / str(i)
        folder = staging / HOSTILE / "run_0000"
        moved = sorted(folder.glob("*.graw"))
        assert moved and not list(staging.glob("*.graw")), f"{name}: staging not emptied"
        assert records[name].files == len(moved)
        assert records[name].bytes == sum(p.stat().st_size for p in moved)
        assert records[name].folder == str(folder)
    assert len(backups) == 9 and sum(b.files for b in backups) == 3  # one shared config dir
    backup_folder = settings.instance_dir() / "config-backups" / HOSTILE / "run_0000"
    assert sorted(p.name for p in backup_folder.iterdir()) == [
        "configure-cfg.xcfg", "describe-cfg.xcfg", "prepare-cfg.xcfg"]

    html = operator_client().get(
        f"/workflows/{stop['id']}").get_data(as_text=True)
    for name in ROUTERS:
        row = html.split(f'data-files="{name}" data-kind="data"')[1].split("</tr>")[0]
        assert f'<td class="files-count">{records[name].files}</td>' in row
        assert f'title="{records[name].bytes} bytes"' in row
    assert "All data routers' files organized" in html
    assert str(escape(HOSTILE)) in html and HOSTILE not in html  # the name, as text


def test_a_dirty_staging_directory_refuses_a_start_and_names_the_router(running_daq,
                                                                         staging_root):
    set_all(running_daq, EccState.READY)
    (staging_root / "3" / "left_over.graw").write_bytes(b"old run")
    before = row_counts()

    try:
        launching.launch("start_run", title="on top of old files")
    except errors.Refused as refusal:
        message = str(refusal)
    else:
        raise AssertionError("a start on a dirty staging directory was not refused")

    assert "router-3" in message and "1 .graw file" in message
    assert "router-2" not in message
    assert row_counts() == before
    with models.session() as s:
        router = s.exec(select(DataRouter).where(DataRouter.name == "router-3")).one()
        assert (router.graw_files, router.clean, router.online) == (1, False, True)
    page = operator_client().get("/").get_data(as_text=True)
    assert "dirty: 1 .graw file(s)" in page


def test_an_unreachable_node_fails_its_step_while_other_routers_succeed(running_daq,
                                                                        staging_root):
    start_run_with_files(running_daq, staging_root, files_each=1)
    with models.session() as s:  # router-4's node goes away during the run
        home = s.exec(select(DataRouter.node_id).where(DataRouter.name == "router-4")).one()
        dead = DaqNode(name="dead-node", host="127.0.0.1", port=free_port(), user="daq")
        s.add(dead)
        s.flush()
        s.exec(update(DataRouter).where(DataRouter.name == "router-4").values(node_id=dead.id))

    stop = wait_workflow(launching.launch("stop_run"), timeout=40)

    assert stop["state"] == "failed"
    organize = next(st for st in stop["stages"] if st["name"] == "organize files")
    assert (organize["done"], organize["failed"]) == (8, 1)
    failed = next(step for step in organize["steps"] if step["state"] == "failed")
    assert failed["target"] == "router-4"
    assert "node dead-node: connect: daq@127.0.0.1:" in failed["error"]
    assert "router-4" in stop["error"] or "dead-node" in stop["error"]
    with models.session() as s:
        run = s.exec(select(Run)).one()
        # The sources confirmed the stop: the run is stopped, its files not all organized.
        assert run.stopped_at is not None and run.files_organized_at is None
        assert s.exec(select(Workflow).where(Workflow.id == stop["id"])).one().state == "failed"
        organized = s.exec(select(RunFiles.target).where(RunFiles.kind == "data")).all()
        steps = s.exec(select(Step).where(Step.operation == "organize")).all()
    assert sorted(organized) == [name for name in ROUTERS if name != "router-4"]
    assert len(steps) == 9
    assert list((staging_root / "4").glob("*.graw")), "router-4's files must stay in staging"

    # The node is back: a replay organizes router-4's files, and only those.
    with models.session() as s:
        s.exec(update(DataRouter).where(DataRouter.name == "router-4").values(node_id=home))
        recorded = {r.target: r.recorded_at for r in s.exec(select(RunFiles)).all()}
    waiting = len(list((staging_root / "4").glob("*.graw")))
    from pipelines.runcontrol import replay

    replay.replay(stop["id"])
    again = wait_workflow(stop["id"], timeout=40)
    assert again["state"] == "succeeded", again["error"]
    with models.session() as s:
        attempts = {(st.target, st.attempt) for st in
                    s.exec(select(Step).where(Step.operation == "organize")).all()}
        files = {r.target: r for r in s.exec(select(RunFiles).where(RunFiles.kind == "data"))}
        run = s.exec(select(Run)).one()
    assert attempts == {(name, 1) for name in ROUTERS} | {("router-4", 2)}
    assert sorted(files) == sorted(ROUTERS) and files["router-4"].files == waiting
    assert {name: files[name].recorded_at for name in ROUTERS if name != "router-4"} == {
        name: at for name, at in recorded.items() if name in ROUTERS and name != "router-4"}
    assert run.files_organized_at is not None
    assert not list((staging_root / "4").glob("*.graw"))


def test_stop_ends_a_run_whose_sources_are_no_longer_running(running_daq, staging_root):
    from pipelines.runcontrol import watch
    from tests.support.daq import SERVERS

    start_run_with_files(running_daq, staging_root)
    watch.refresh_ecc_states()  # beat sees the sources RUNNING
    with models.session() as s:
        last_running = max(s.exec(select(ECCServer.running_seen_at)).all())
    for name in SERVERS:  # a power cut: every ECC server comes back IDLE
        running_daq.set_state(name, EccState.IDLE)
    watch.refresh_ecc_states()

    page = operator_client().get("/").get_data(as_text=True)
    warning = page.split('id="run-without-sources">')[1].split("</p>")[0]
    assert warning.startswith("run 0 is recorded as going, but no source has been RUNNING since")
    refused = row_counts()
    with pytest.raises(errors.Refused, match="run 0 is going"):
        launching.launch("describe")  # the rules still hold: the run must be stopped first
    assert row_counts() == refused

    stop = wait_workflow(launching.launch("stop_run"), timeout=40)

    assert stop["state"] == "succeeded", stop["error"]
    stopped = [st for stage in stop["stages"][:2] for st in stage["steps"]]
    assert {st["note"] for st in stopped} == {"already IDLE, not RUNNING: counted as stopped"}
    assert running_daq.log() and not [e for e in running_daq.log() if e["operation"] == "Stop"]
    with models.session() as s:
        run = s.exec(select(Run)).one()
        servers = s.exec(select(ECCServer)).all()
    assert run.stopped_at == last_running  # the last time a source was seen running
    assert run.files_organized_at is not None  # its files were organized as usual
    assert not list((staging_root / "0").glob("*.graw"))
    assert {srv.state for srv in servers} == {EccState.IDLE}
    assert wait_workflow(launching.launch("describe"))["state"] == "succeeded"
