"""A 256-source start with hundreds of worker threads writing steps at once, on either database."""
import os
import subprocess
import sys

from sqlmodel import select

import models
from models import ECCServer, Run, Step
from pipelines import lock, topology, workflows
from pipelines.ecc import EccState
from tests.conftest import (ROOT, clear_workflow_records, start_simulator, stop_process,
                            topology_text, wait_for, wait_workflow)

SOURCES = 256


def test_a_256_source_start_loses_no_update_and_never_finds_the_database_locked(
        redis_url, tmp_path):
    from pipelines.celery_app import app
    from pipelines.supervisor import free_port

    port = free_port()
    sim = start_simulator(tmp_path, [port] * SOURCES,
                          topology_text([port] * SOURCES, per_source=0.5, timeout=60,
                                        shared_port=True, staging_root=tmp_path / "staging"))
    log_path, worker = tmp_path / "worker-256.log", None
    try:
        models.create_all()
        clear_workflow_records()
        lock.clear()
        topology.load(topology.read(sim.topology_path))
        for name in sim.states():
            sim.set_state(name, EccState.READY)
        with models.session() as s:
            for server in s.exec(select(ECCServer)).all():
                server.state = int(EccState.READY)
                s.add(server)
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "pipelines.celery_app", "worker", "--pool",
             "threads", "--concurrency", str(SOURCES), "--queues", "control,files",
             "--hostname", f"threads256-{os.getpid()}@%h", "--without-mingle",
             "--without-gossip", "--loglevel", "INFO"],
            cwd=ROOT, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT, env=dict(os.environ))
        wait_for(lambda: any(f"threads256-{os.getpid()}@" in host
                             for reply in app.control.ping(timeout=0.5) or [] for host in reply),
                 timeout=60, message="the 256-thread worker")

        view = wait_workflow(workflows.launch("start_run", title="256 at once"), timeout=120)

        assert view["state"] == "succeeded", view["error"]
        assert (view["done"], view["total"]) == (SOURCES, SOURCES)
        with models.session() as s:
            steps = s.exec(select(Step)).all()
            run = s.exec(select(Run)).one()
        # Every step's own writes (running, then its outcome) survived the others'.
        assert len(steps) == SOURCES
        assert all(st.state == "succeeded" and st.started_at and st.finished_at
                   and st.duration is not None for st in steps)
        assert run.title == "256 at once" and run.started_at is not None
        assert all(v["state"] == int(EccState.RUNNING) for v in sim.states().values())
        log = log_path.read_text()
        assert "database is locked" not in log and "too many clients" not in log
    finally:
        if worker is not None:
            stop_process(worker)
        stop_process(sim.proc)
