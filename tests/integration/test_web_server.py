"""`daqflow web` serves with a production WSGI server: connections that never finish their
request hold no thread and do not stop others from being served."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipelines.cli.supervisor import free_port, wait_for_port
from tests.support import ROOT
from tests.support.processes import stop_process

# What it checks does not depend on the database: .ci/run's first pass only.
pytestmark = pytest.mark.database_agnostic

HALF_OPEN = 300


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no thread count")


def test_half_open_connections_hold_no_thread_and_the_page_still_answers(tmp_path):
    port = free_port()
    env = dict(os.environ, DAQFLOW_SECRET_KEY="tests-only-secret-key-0123456789abcdef",
               DAQFLOW_WEB_THREADS="8")
    with open(tmp_path / "web.log", "wb") as log:
        web = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "web", "--port", str(port)],
                               cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    stalled = []
    try:
        wait_for_port(port, timeout=60)
        for _ in range(HALF_OPEN):  # headers begun, never ended: a stalled or hostile client
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /login HTTP/1.1\r\nHost: daqflow\r\n")
            stalled.append(sock)
        began = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=10) as page:
            assert page.status == 200 and b"password" in page.read()
        assert time.monotonic() - began < 2.0
        assert threads_of(web.pid) <= 8 + 8, "a thread per waiting connection"
    finally:
        for sock in stalled:
            sock.close()
        stop_process(web)
