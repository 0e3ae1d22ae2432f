"""A normal install runs: the wheel, in a fresh venv, then `daqflow up --demo` in an empty folder.

Everything the demo needs at run time (the process list, the demo topology, the
WSDL, templates, static files, migrations) must travel inside the wheel.
"""
from __future__ import annotations

import os
import signal
import subprocess
import urllib.request
import zipfile
from pathlib import Path

import pytest

from pipelines.cli.supervisor import free_port
from tests.support.processes import wait_for

# What it checks does not depend on the database: .ci/run's first pass only.
pytestmark = pytest.mark.database_agnostic

# Settings of the test session that the demo must not inherit: it makes its own.
SESSION_SETTINGS = ("REDIS_URL", "DAQFLOW_BROKER_URL", "DAQFLOW_RESULT_BACKEND",
                    "DAQFLOW_DATABASE_URL", "DAQFLOW_INSTANCE", "DAQFLOW_SECRET_KEY",
                    "DAQFLOW_TOPOLOGY", "PYTHONPATH")


@pytest.fixture(scope="module")
def installed(request, tmp_path_factory):
    """daqflow's wheel, built from this checkout and installed into a venv of its own (the
    session started it in the background; see tests/support/wheel.py)."""
    from tests.support import wheel

    build, where = getattr(request.config, "wheel_build", (None, None))
    if build is None:  # a session that did not see these tests coming
        where = tmp_path_factory.mktemp("wheel")
        build = wheel.start_build(where)
    return wheel.finish_build(build, where)


def test_the_wheel_carries_what_the_demo_needs_and_no_checkout_files(installed):
    wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("pipelines/topology/demo.toml", "pipelines/daq/ecc/wsdl/ecc.wsdl",
                   "pipelines/cli/processes.py", "models/migrations/env.py",
                   "webui/templates/runcontrol/page.html"):
        assert needed in names, needed
    assert not [name for name in names if name.startswith("tests/")]


def test_daqflow_up_demo_serves_the_page_from_an_empty_folder(installed, tmp_path):
    _, venv = installed
    folder = tmp_path / "empty"
    folder.mkdir()
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key not in SESSION_SETTINGS}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        up = subprocess.Popen([str(venv / "bin" / "daqflow"), "up", "--demo", "--port", str(port),
                               "--control-workers", "1"], cwd=folder, env=env, stdout=log,
                              stderr=subprocess.STDOUT)

    def login_page() -> bool:
        assert up.poll() is None, log_path.read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2) as page:
                return page.status == 200 and b"password" in page.read()
        except OSError:
            return False

    try:
        wait_for(login_page, timeout=90, interval=0.25, message="the demo's login page")
        assert (folder / "instance" / "daqflow.sqlite3").exists()  # the embedded default
        assert "demo operator: name 'operator'" in log_path.read_text()
        # Its control worker is sized to the demo's 9 ECC servers (at least 16 threads).
        assert "1 control worker(s) of 16 threads, for 9 ECC servers" in log_path.read_text()
        # Its Python processes keep their memory in two malloc arenas, with no per-thread
        # cache (pipelines/cli/processes.py); the private Redis has an allocator of its own.
        pythons = [pid for pid in _children(up.pid)
                   if b"redis-server" not in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(pythons) >= 4 and all(
            {b"MALLOC_ARENA_MAX=2", b"GLIBC_TUNABLES=glibc.malloc.tcache_count=0"}
            <= set(Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"))
            for pid in pythons)
        controls = [Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") for pid in pythons]
        controls = [argv for argv in controls if b"control" in argv and b"--queues" in argv]
        assert [argv[argv.index(b"--concurrency") + 1] for argv in controls] == [b"16"]
    finally:
        up.send_signal(signal.SIGINT)  # Ctrl-C: `up` stops every process it started
        try:
            code = up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()
            raise
    assert code == 0, log_path.read_text()


def _children(pid: int) -> list[int]:
    """The PIDs of the processes ``pid`` started (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended while being read
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found
