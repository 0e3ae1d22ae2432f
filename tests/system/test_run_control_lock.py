"""The run-control lock and the broker, as the README promises them: the lock's expiry,
`daqflow unlock --yes`, the 3 s handover, and a broker that cannot be reached."""
import os
import subprocess
import sys
import time

import pytest
import redis
from sqlmodel import select

import models
from models import ECCServer, Workflow
from pipelines.cli.supervisor import free_port
from pipelines.runcontrol import errors, launching, lock
from tests.support import ROOT
from tests.support.daq import row_counts
from tests.support.web import account, log_in, web_app


def cli(*args, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, **env))


@pytest.mark.database_agnostic
def test_the_lock_expires_after_the_longest_a_workflow_can_take_and_unlock_yes_frees_it(daq):
    with models.session() as s:
        longest = max(s.exec(select(ECCServer.transition_timeout)).all())
    token = launching.take_lock()
    # README: 4 x (longest transition timeout + 30 s) + 10 min.
    expected_ms = (4 * (longest + 30) + 600) * 1000
    remaining_ms = redis.Redis.from_url(os.environ["REDIS_URL"]).pttl(lock.KEY)
    assert expected_ms - 5000 < remaining_ms <= expected_ms

    asked = cli("unlock")
    assert asked.returncode == 2 and "repeat with --yes" in asked.stderr
    assert lock.holder() == token  # without --yes nothing is freed

    freed = cli("unlock", "--yes")
    assert freed.returncode == 0 and "released" in freed.stdout
    assert lock.holder() is None
    launching.take_lock()  # run control is free again
    lock.clear()


@pytest.mark.database_agnostic
def test_an_ended_workflow_that_never_lets_go_of_the_lock_is_refused_after_3_s(daq):
    token = lock.acquire(60)
    with models.session() as s:
        s.add(Workflow(kind="start_run", state="succeeded", lock_token=token))
    began = time.monotonic()
    with pytest.raises(errors.Refused, match="in progress"):
        launching.take_lock()
    waited = time.monotonic() - began
    # README: it waits up to 3 s; the margin above is for a loaded machine's polling.
    assert 3.0 <= waited < 5.0
    assert lock.holder() == token
    lock.release(token)


@pytest.mark.database_agnostic
def test_an_unreachable_broker_is_503_from_the_api_and_exit_4_from_the_cli(daq, monkeypatch):
    account("alice", "operator")
    client = web_app().test_client()
    log_in(client, "alice")
    before = row_counts()
    dead = f"redis://127.0.0.1:{free_port()}/0"
    monkeypatch.setenv("REDIS_URL", dead)

    answer = client.post("/api/runs/start", json={"title": "no broker"})
    assert answer.status_code == 503
    assert "Redis is unreachable" in answer.get_json()["error"]

    refused = cli("run", "start", "--title", "no broker", REDIS_URL=dead)
    assert refused.returncode == 4, refused.stderr
    assert "Redis is unreachable" in refused.stderr and "nothing was started" in refused.stderr
    assert row_counts() == before
