"""Scale-out: nothing ties a worker to the web host. A control worker and a files worker
run as other hosts would: their own working directory and instance folder, other
hostnames, an environment holding only the Redis URL, the database URL and the SSH
known-hosts file a lab's admin would install. With the local worker stopped, a start
and a stop complete on them."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import select

import models
from models import Run, Step
from pipelines.daq.ecc.states import EccState
from pipelines.orchestration.app import app
from pipelines.runcontrol import launching
from tests.support.daq import set_all, wait_workflow
from tests.support.processes import stop_process, wait_for


def remote_worker(home: Path, hostname: str, queues: str) -> subprocess.Popen:
    """A worker started in ``home`` with nothing of this host's environment but the URLs."""
    home.mkdir(parents=True)
    known_hosts = home / "known_hosts"
    shutil.copy(os.environ["DAQFLOW_SSH_KNOWN_HOSTS"], known_hosts)
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8",
           "REDIS_URL": os.environ["REDIS_URL"],
           "DAQFLOW_DATABASE_URL": os.environ["DAQFLOW_DATABASE_URL"],
           "DAQFLOW_INSTANCE": str(home / "instance"),
           "DAQFLOW_SSH_KNOWN_HOSTS": str(known_hosts), "DAQFLOW_SSH_HOST_KEYS": "reject"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "pipelines.orchestration.app", "worker",
         "--pool", "threads", "--concurrency", "16", "--queues", queues,
         "--hostname", hostname, "--without-mingle", "--without-gossip", "--loglevel", "INFO"],
        cwd=home, env=env, stdout=open(home / "worker.log", "wb"), stderr=subprocess.STDOUT)
    wait_for(lambda: proc.poll() is not None or any(
        hostname in reply for reply in app.control.ping(timeout=0.5) or []),
        timeout=60, message=f"{hostname} to answer a ping")
    assert proc.poll() is None, (home / "worker.log").read_text()
    return proc


@pytest.mark.shared_database
def test_a_start_and_a_stop_complete_on_workers_of_other_hosts(running_daq, worker, tmp_path):
    set_all(running_daq, EccState.READY)
    worker.stop()  # the web host's own worker is gone
    remotes = []
    try:
        remotes.append(remote_worker(tmp_path / "control-host", "control@daq-control-2",
                                     "control"))
        remotes.append(remote_worker(tmp_path / "files-host", "files@daq-files-3", "files"))
        started = launching.launch("start_run", title="scaled out")
        assert wait_workflow(started, timeout=60)["state"] == "succeeded"
        stopped = launching.launch("stop_run")
        assert wait_workflow(stopped, timeout=60)["state"] == "succeeded"
    finally:
        for proc in remotes:
            stop_process(proc)
        worker.start()
    with models.session() as s:
        run = s.exec(select(Run)).one()
        steps = s.exec(select(Step)).all()
    assert run.stopped_at is not None and run.files_organized_at is not None
    assert {st.state for st in steps} == {"succeeded"}
    # Each queue's tasks ran where that queue is served, and nothing was kept locally.
    control_log = (tmp_path / "control-host" / "worker.log").read_text()
    files_log = (tmp_path / "files-host" / "worker.log").read_text()
    assert "Task daqflow.ecc.transition[" in control_log
    assert "Task daqflow.files." not in control_log
    assert "Task daqflow.files.organize[" in files_log
    assert "Task daqflow.ecc." not in files_log
    for host in ("control-host", "files-host"):
        assert not (tmp_path / host / "instance" / "daqflow.sqlite3").exists()
