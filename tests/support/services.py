"""The real parts the tests talk to: the ECC simulator, redis-server and a Celery worker."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from pipelines.cli.supervisor import start_redis, wait_for_port
from tests.support import ROOT
from tests.support.processes import stop_process, wait_for


class SimulatorHandle:
    """A running ``daqflow simulate`` process and its control endpoints."""

    def __init__(self, proc, ports, topology_path):
        self.proc, self.ports, self.topology_path = proc, ports, topology_path
        self.control_port = ports[0]

    def _call(self, method: str, path: str, payload=None):
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.control_port}{path}",
                                         data=data, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def reset(self):
        return self._call("POST", "/_sim/reset", {})

    def fault(self, server, kind, operation="*", **fields):
        return self._call("POST", "/_sim/faults",
                          dict(server=server, kind=kind, operation=operation, **fields))

    def clear_faults(self):
        """Every injected fault gone: a hung server finishes its transition, a closed port
        opens again."""
        return self._call("DELETE", "/_sim/faults")

    def router_writes(self, **how):
        """How every simulated router writes while running: files_per_run, interval, file_bytes."""
        return self._call("POST", "/_sim/set", {"router_writes": how})

    def router_fill(self, name: str, size: int):
        """Put a file of ``size`` bytes in one router's staging (0: remove it)."""
        return self._call("POST", "/_sim/set", {"router_fill": {name: size}})

    def router_writing(self, name: str, writing: bool):
        """Stop one simulated router writing (its program hangs), or let it write again."""
        return self._call("POST", "/_sim/set", {"router_writing": {name: writing}})

    def process(self, name, running: bool):
        """Stop (or bring back) a placeholder dataRouter or getEccSoapServer process."""
        return self._call("POST", "/_sim/processes", {"name": name, "running": running})

    def set_state(self, server, state):
        return self._call("POST", "/_sim/set", {"server": server, "state": int(state)})

    def set_seconds_per_source(self, seconds: float, servers: list[str] | None = None):
        """How long a transition takes a source: on every server, or on ``servers``."""
        payload = {"seconds_per_source": seconds}
        if servers is not None:
            payload["servers"] = servers
        return self._call("POST", "/_sim/set", payload)

    def states(self):
        return self._call("GET", "/_sim/state")

    def log(self, transitions_only: bool = True):
        entries = self._call("GET", "/_sim/log")
        return [e for e in entries if not transitions_only or e["operation"] != "GetState"]

    def stop(self):
        stop_process(self.proc)


def start_simulator(directory: Path, ports: list[int], text: str) -> SimulatorHandle:
    """Run ``daqflow simulate`` on a topology and wait until every port answers."""
    path = directory / "topology.toml"
    path.write_text(text)
    log = open(directory / "simulator.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "simulate", "--topology",
                             str(path)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    for port in set(ports):
        wait_for_port(port, timeout=20)
    return SimulatorHandle(proc, ports, path)


class RedisHandle:
    """A redis-server of the session's own; tests may stop it and start it again on its port."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.proc, self.url = start_redis(directory)
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])

    def stop(self):
        stop_process(self.proc)

    def start(self):
        self.proc, _ = start_redis(self.directory, port=self.port)


def start_worker(log_path: Path, hostname: str, concurrency: int = 32,
                 queues: str = "control,files", env: dict | None = None) -> subprocess.Popen:
    """A real Celery worker (thread pool) on ``queues``, with ``env`` added to this process's
    environment; waits for its ping. Alarm notifications (the notify queue) are for a
    worker a test starts with its own SMTP and webhook settings."""
    from pipelines.orchestration.app import app

    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "pipelines.orchestration.app", "worker", "--pool",
         "threads", "--concurrency", str(concurrency), "--queues", queues,
         "--hostname", f"{hostname}@%h", "--without-mingle", "--without-gossip",
         "--loglevel", "INFO"],
        cwd=ROOT, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})})
    wait_for(lambda: proc.poll() is not None or any(
        f"{hostname}@" in host for reply in app.control.ping(timeout=0.5) or [] for host in reply),
        timeout=60, message=f"the Celery worker {hostname} to answer a ping")
    assert proc.poll() is None, log_path.read_text()
    return proc


class WorkerHandle:
    """The session's Celery worker process; a test may kill it and start another."""

    def __init__(self, log_path: Path, env: dict | None = None):
        self.log_path, self.env = log_path, env
        self.proc = None
        self.start()

    @property
    def node(self) -> str:
        """Its Celery node name, as steps record the worker that runs them."""
        return f"test-{os.getpid()}@{socket.gethostname()}"

    def start(self):
        self.proc = start_worker(self.log_path, f"test-{os.getpid()}", env=self.env)

    def kill(self):
        """SIGKILL, as the OOM killer or a power cut would."""
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        stop_process(self.proc)
