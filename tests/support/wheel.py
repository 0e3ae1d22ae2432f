"""daqflow's wheel, built from this checkout and installed into a venv of its own.

The build runs in the background from the session's start (``tests/conftest.py``) when
the wheel's tests are selected: half a minute of pip that would otherwise hold up the
session, while the tests before them mostly wait on their servers.
"""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT


def start_build(where: Path) -> subprocess.Popen:
    """Build the wheel into ``where`` and install it into ``where/venv``, in the background."""
    where.mkdir(parents=True, exist_ok=True)
    python, venv = shlex.quote(sys.executable), shlex.quote(str(where / "venv"))
    script = (f"set -e; {python} -m pip wheel --no-deps -q -w {shlex.quote(str(where))} "
              f"{shlex.quote(str(ROOT))}; {python} -m venv {venv}; "
              # No byte-compiling of every dependency: a third of the install's time.
              f"{venv}/bin/pip install -q --no-compile {shlex.quote(str(where))}/daqflow-*.whl")
    with open(where / "build.log", "wb") as log:
        # A session of its own: stopping the build stops the pip it is running too.
        return subprocess.Popen(["bash", "-c", script], stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop_build(build: subprocess.Popen, grace: float = 10.0) -> None:
    """Stop a build the session did not wait for: its process group (the bash this session
    started, and the pip it runs), SIGTERM, then SIGKILL if it lingers."""
    if build.poll() is not None:
        return
    os.killpg(build.pid, signal.SIGTERM)
    try:
        build.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(build.pid, signal.SIGKILL)
        build.wait()


def finish_build(build: subprocess.Popen, where: Path, timeout: float = 600) -> tuple[Path, Path]:
    """Wait for ``start_build``; (the wheel, the venv), or AssertionError with pip's words."""
    status = build.wait(timeout=timeout)
    assert status == 0, (where / "build.log").read_text()[-3000:]
    return next(where.glob("daqflow-*.whl")), where / "venv"
