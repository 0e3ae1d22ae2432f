"""Control workers sized as `daqflow up` sizes them run a stage's transitions all at once,
even with one of them gone; `daqflow topology load` warns when the workers that answer
could not."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlmodel import select

import models
from models import Stage, Step
from pipelines.cli.processes import control_threads
from pipelines.cli.supervisor import free_port
from pipelines.runcontrol import launching
from pipelines.simulator.topology import simulated_topology
from tests.support import ROOT
from tests.support.daq import load_ready, wait_workflow
from tests.support.processes import stop_process
from tests.support.services import start_simulator, start_worker

# More servers than the fewest threads a sized worker has, so that too few would show.
SERVERS = 40
# Long enough that a second wave could not hide in the first one's tail.
SECONDS = 1.0

pytestmark = pytest.mark.database_agnostic


def test_a_stage_runs_at_once_with_one_sized_control_worker_gone(redis_url, worker, tmp_path):
    port = free_port()
    sim = start_simulator(tmp_path, [port] * SERVERS,
                          simulated_topology([port] * SERVERS, seconds_per_source=SECONDS,
                                             transition_timeout=60, expected_seconds=SECONDS,
                                             staging_root=tmp_path / "staging"))
    threads = control_threads(SERVERS, 2)
    worker.stop()  # the session's worker would take steps too
    pools = []
    try:
        load_ready(sim)
        pools = [start_worker(tmp_path / f"control{i}.log", f"control{i}-{os.getpid()}",
                              concurrency=threads) for i in (1, 2)]
        stop_process(pools.pop())  # one of the two is gone before the start

        view = wait_workflow(launching.launch("start_run", title="one gone"), timeout=60)
        assert view["state"] == "succeeded", view["error"]
        with models.session() as s:
            cobos = s.exec(select(Step).join(Stage, Step.stage_id == Stage.id)
                           .where(Stage.name == "start CoBos")).all()
        assert len(cobos) == SERVERS - 1
        # One wave: every CoBo's Start began before the first of them could have ended.
        assert max(st.started_at for st in cobos) < min(st.finished_at for st in cobos), (
            "the stage ran in waves")

        # A topology with more servers than they can drive at once is loaded with a warning.
        bigger = tmp_path / "bigger.toml"
        bigger.write_text(simulated_topology([port] * (3 * threads)))
        load = subprocess.run([sys.executable, "-m", "pipelines.cli", "topology", "load",
                               str(bigger)], cwd=ROOT, capture_output=True, text=True,
                              timeout=60)
        assert load.returncode == 0, load.stderr
        assert (f"warning: 1 control worker(s) of {threads} threads run {threads} "
                f"transitions at once, for {3 * threads} ECC servers") in load.stderr
    finally:
        for proc in pools:
            stop_process(proc)
        sim.stop()
        worker.start()
