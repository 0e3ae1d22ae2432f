"""A 256-source start with hundreds of worker threads writing steps at once, on either database."""
import os

from sqlmodel import select

import models
from models import Run, Step
from pipelines.daq.ecc.states import EccState
from pipelines.runcontrol import launching
from pipelines.simulator.topology import simulated_topology
from tests.support.daq import load_ready, wait_workflow
from tests.support.processes import stop_process
from tests.support.services import start_simulator, start_worker

SOURCES = 256


def test_a_256_source_start_loses_no_update_and_never_finds_the_database_locked(
        redis_url, tmp_path):
    from pipelines.cli.supervisor import free_port

    port = free_port()
    sim = start_simulator(tmp_path, [port] * SOURCES,
                          simulated_topology([port] * SOURCES, seconds_per_source=0.5,
                                             transition_timeout=60,
                                             staging_root=tmp_path / "staging"))
    log_path, worker = tmp_path / "worker-256.log", None
    try:
        load_ready(sim)
        worker = start_worker(log_path, f"threads256-{os.getpid()}", concurrency=SOURCES)

        view = wait_workflow(launching.launch("start_run", title="256 at once"), timeout=120)

        assert view["state"] == "succeeded", view["error"]
        # Every source's Start, and the MuTAnT's re-arm before them (Breakup, Configure).
        assert (view["done"], view["total"]) == (SOURCES + 2, SOURCES + 2)
        with models.session() as s:
            steps = s.exec(select(Step)).all()
            run = s.exec(select(Run)).one()
        # Every step's own writes (running, then its outcome) survived the others'.
        assert len(steps) == SOURCES + 2
        assert all(st.state == "succeeded" and st.started_at and st.finished_at
                   and st.duration is not None for st in steps)
        # Each sent its operation, and recorded when GetState saw it settled: what the next
        # start's expected times are learned from.
        assert all(st.seen_settled_after is not None
                   and st.seen_settled_after > (st.seen_moving_after or 0.0) for st in steps)
        assert run.title == "256 at once" and run.started_at is not None
        assert all(v["state"] == int(EccState.RUNNING) for v in sim.states().values())
        log = log_path.read_text()
        assert "database is locked" not in log and "too many clients" not in log
    finally:
        if worker is not None:
            stop_process(worker)
        sim.stop()
