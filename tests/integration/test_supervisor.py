"""`daqflow up`'s supervision, with real processes: restarts counted in a window, and one
`up` per instance folder."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from pipelines.cli import supervisor
from tests.support import ROOT
from tests.support.processes import stop_process, wait_for

# What it checks does not depend on the database: .ci/run's first pass only.
pytestmark = pytest.mark.database_agnostic


def test_a_process_that_keeps_dying_is_given_up_and_the_others_keep_serving(tmp_path):
    script = textwrap.dedent("""
        import sys
        from pipelines.cli.supervisor import run_processes
        code = run_processes({"flaky": ["sh", "-c", "exit 3"],
                              "steady": ["sh", "-c", "echo serving; exec sleep 60"]},
                             dict(__import__("os").environ), max_restarts=3, window=60,
                             delay=0.05)
        sys.exit(code)
    """)
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        up = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=out,
                              stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "not restarting it" in log.read_text(), timeout=30,
                 message="the flaky process to be given up")
        text = log.read_text()
        assert text.count("flaky exited with code 3; restarting it") == 3
        assert "flaky exited with code 3 4 times in 60 s; not restarting it" in text
        assert up.poll() is None  # still supervising the steady one
        assert text.count("serving") == 1  # never restarted
    finally:
        stop_process(up)
    assert up.returncode == 1  # what was given up shows in the exit code


def test_a_second_up_on_the_same_instance_folder_is_refused_naming_the_first(tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir()
    held = supervisor.hold_instance(instance, 5123)
    try:
        env = dict(os.environ, DAQFLOW_INSTANCE=str(instance))
        env.pop("REDIS_URL", None)
        second = subprocess.run([sys.executable, "-m", "pipelines.cli", "up", "--demo",
                                 "--port", "5124"], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=60)
    finally:
        held.close()
    assert second.returncode == 2
    assert f"another `daqflow up` (pid {os.getpid()}, web port 5123) runs on the instance " \
           f"folder {instance}" in second.stderr
    assert not (instance / "redis.url").exists()  # it started nothing
