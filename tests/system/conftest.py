"""System tests: real Redis, a real Celery worker, the simulator and sshd, as a lab runs them."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipelines.simulator.topology import simulated_topology
from tests.support import ROOT
from tests.support.daq import (
    STEP_LOST_SECONDS,
    TRANSITION_SECONDS,
    clean_staging,
    clear_workflow_records,
)
from tests.support.processes import stop_process, wait_for
from tests.support.services import RedisHandle, WorkerHandle, start_simulator


@pytest.fixture(autouse=True, scope="session")
def _database(database):
    """Every system test uses the session's database; it is made once."""
    return database


@pytest.fixture(scope="session")
def redis_server(session_dir):
    """A redis-server of this session's own, on a free loopback port; every process uses it."""
    handle = RedisHandle(session_dir)
    os.environ["REDIS_URL"] = handle.url
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server) -> str:
    """The URL of the session's own redis-server."""
    return redis_server.url


@pytest.fixture(scope="session")
def staging_root(session_dir):
    """Where the standard test DAQ's routers stage their files (on the SSH node)."""
    return session_dir / "staging"


@pytest.fixture(scope="session")
def simulator(redis_url, sshd, staging_root, session_dir):
    """The ECC simulator for the standard test DAQ: 8 CoBos and a MuTAnT, one server each.

    Its data routers live on the SSH node, their staging dirs under the session folder.
    """
    from pipelines.cli.supervisor import free_ports

    ports = free_ports(9)
    directory = session_dir / "sim"
    directory.mkdir()
    handle = start_simulator(directory, ports, simulated_topology(
        ports, ssh=sshd.node(), staging_root=staging_root,
        seconds_per_source=TRANSITION_SECONDS))
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def worker(redis_url, simulator, session_dir):
    """A real Celery worker (thread pool) on the control and files queues; its steps are
    lost STEP_LOST_SECONDS after it answers without them."""
    handle = WorkerHandle(session_dir / "worker.log",
                          env={"DAQFLOW_STEP_LOST_SECONDS": str(STEP_LOST_SECONDS)})
    yield handle
    handle.stop()


@pytest.fixture
def daq(simulator, redis_url, staging_root):
    """The standard test DAQ, loaded fresh: simulator reset, no workflows or runs."""
    from sqlmodel import delete

    import models
    from models import Account, Experiment, LoginSession
    from pipelines.runcontrol import lock
    from pipelines.topology import loading, schema

    clear_workflow_records()
    with models.session() as s:
        for table in (LoginSession, Account, Experiment):
            s.exec(delete(table))
    lock.clear()  # a test that ended mid-workflow may have left it
    simulator.reset()  # from here on, no simulated router writes until a run starts
    clean_staging(staging_root)
    loading.load(schema.read(simulator.topology_path))
    return simulator


@pytest.fixture
def running_daq(daq, worker):
    """The standard DAQ with a worker serving it; at the end, every workflow the test
    started has ended, so that none of its tasks runs into the next test's rows."""
    from sqlmodel import select

    import models
    from models import Workflow
    from models.vocabulary import ACTIVE_STATES

    yield daq

    def all_ended():
        with models.session() as s:
            return s.exec(select(Workflow.id)
                          .where(Workflow.state.in_(ACTIVE_STATES))).first() is None

    wait_for(all_ended, timeout=60, message="the workflows this test started to end")


@pytest.fixture
def beat(running_daq, tmp_path):
    """A real celery beat with a 1 s ECC watch period."""
    log = open(tmp_path / "beat.log", "wb")
    env = dict(os.environ, DAQFLOW_WATCH_ECC_SECONDS="1", DAQFLOW_WATCH_ROUTERS_SECONDS="2")
    proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "pipelines.orchestration.app",
                             "beat", "--schedule", str(tmp_path / "beat-schedule"),
                             "--loglevel", "INFO"],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    yield proc
    stop_process(proc)
