"""Test harness: real processes wherever behaviour crosses a process.

The session starts its own redis-server, an ECC simulator (``daqflow simulate``)
and a Celery worker, each on free loopback ports, and stops them by PID.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SESSION_DIR = None


# CI's PostgreSQL (trust authentication); DAQFLOW_TEST_POSTGRES overrides it.
POSTGRES = os.environ.get("DAQFLOW_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432")
# Which database the whole suite runs on: sqlite (default) or postgresql (.ci/run runs both).
DATABASE = os.environ.get("DAQFLOW_TEST_DATABASE", "sqlite")
SESSION_POSTGRES_DB = None


def _postgres_admin(statement: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(f"{POSTGRES}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(statement))
    finally:
        admin.dispose()


def pytest_configure(config):
    # Before anything reads its settings: every test talks to this session's own services.
    global SESSION_DIR, SESSION_POSTGRES_DB
    import tempfile
    import uuid

    SESSION_DIR = Path(tempfile.mkdtemp(prefix="daqflow-tests-"))
    os.environ["DAQFLOW_INSTANCE"] = str(SESSION_DIR / "instance")
    if DATABASE == "postgresql":
        # A database of this session's own on the server, dropped when the session ends.
        SESSION_POSTGRES_DB = f"daqflow_tests_{uuid.uuid4().hex[:12]}"
        _postgres_admin(f'CREATE DATABASE "{SESSION_POSTGRES_DB}"')
        os.environ["DAQFLOW_DATABASE_URL"] = f"{POSTGRES}/{SESSION_POSTGRES_DB}"
    elif DATABASE == "sqlite":
        os.environ["DAQFLOW_DATABASE_URL"] = f"sqlite:///{SESSION_DIR / 'test.sqlite3'}"
    else:
        raise pytest.UsageError(f"DAQFLOW_TEST_DATABASE must be sqlite or postgresql, not {DATABASE}")
    for name in ("REDIS_URL", "DAQFLOW_BROKER_URL", "DAQFLOW_RESULT_BACKEND", "DAQFLOW_ECC_WSDL"):
        os.environ.pop(name, None)


def wait_for(condition, timeout: float = 20.0, interval: float = 0.05, message: str = ""):
    """Poll ``condition`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {message or condition}")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """Stop a process this session started: SIGTERM by its PID, SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- topology -----------------------------------------------------------------------

def toml_string(value: str) -> str:
    """A TOML basic string holding any text."""
    return json.dumps(value)


def topology_text(ports: list[int], per_source: float = 0.2, timeout: float = 3.0,
                  experiment: str = "test", shared_port: bool = False,
                  ssh=None, staging_root: Path | None = None) -> str:
    """A topology: one ECC server per port, the last one driving the MuTAnT.

    With ``ssh`` (an SshServer), the data routers live on an SSH node with
    absolute staging dirs under ``staging_root``; otherwise on the local node.
    """
    router_node = "daq-node" if ssh else "localhost"
    lines = [f'[experiment]\nname = {toml_string(experiment)}\n',
             '[[configs]]\nname = "cfg"\ndescribe = "cfg"\nprepare = "cfg"\nconfigure = "cfg"\n',
             f"[defaults]\ntransition_timeout = {timeout}\nexpected_seconds = {per_source}\n"
             'config_dir = "ecc-configs"\nbackup_dir = "config-backups"\n',
             f"[simulator]\nseconds_per_source = {per_source}\n",
             '[[nodes]]\nname = "localhost"\n']
    if ssh:
        lines.append(ssh.node_toml(router_node))
    for i, port in enumerate(ports):
        mutant = i == len(ports) - 1
        name, source = ("ecc-mutant", "Mutant[master]") if mutant else (f"ecc-cobo{i}", f"CoBo[{i}]")
        path = f"/{name}" if shared_port else "/"
        lines.append(f'[[ecc_servers]]\nname = "{name}"\nurl = "http://127.0.0.1:{port}{path}"\n'
                     f'node = "localhost"\nsources = ["{source}"]\n')
        staging = str(staging_root / str(i)) if staging_root else f"staging/{i}"
        lines.append(f'[[data_routers]]\nname = "router-{i}"\nnode = "{router_node}"\n'
                     f'source = "{source}"\nip_address = "127.0.0.1"\nport = {46005 + i}\n'
                     f'type = "{"FDT" if mutant else "TCP"}"\n'
                     f'staging_dir = {toml_string(staging)}\n')
    return "\n".join(lines)


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

    def process(self, name, running: bool):
        """Stop (or bring back) a placeholder dataRouter or getEccSoapServer process."""
        return self._call("POST", "/_sim/processes", {"name": name, "running": running})

    def set_state(self, server, state):
        return self._call("POST", "/_sim/set", {"server": server, "state": int(state)})

    def states(self):
        return self._call("GET", "/_sim/state")

    def log(self, transitions_only: bool = True):
        entries = self._call("GET", "/_sim/log")
        return [e for e in entries if not transitions_only or e["operation"] != "GetState"]


def start_simulator(directory: Path, ports: list[int], text: str) -> SimulatorHandle:
    """Run ``daqflow simulate`` on a topology and wait until every port answers."""
    from pipelines.supervisor import wait_for_port

    path = directory / "topology.toml"
    path.write_text(text)
    log = open(directory / "simulator.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "simulate", "--topology",
                             str(path)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    for port in set(ports):
        wait_for_port(port, timeout=20)
    return SimulatorHandle(proc, ports, path)


class RedisHandle:
    """The session's redis-server; tests may stop it and start it again on the same port."""

    def __init__(self):
        from pipelines import supervisor

        self.proc, self.url = supervisor.start_redis(SESSION_DIR)
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])

    def stop(self):
        stop_process(self.proc)

    def start(self):
        from pipelines import supervisor

        self.proc, _ = supervisor.start_redis(SESSION_DIR, port=self.port)


REDIS = None


@pytest.fixture(scope="session")
def redis_server():
    """A redis-server of this session's own, on a free loopback port."""
    global REDIS
    REDIS = RedisHandle()
    os.environ["REDIS_URL"] = REDIS.url
    yield REDIS
    stop_process(REDIS.proc)


@pytest.fixture(scope="session")
def redis_url(redis_server):
    """The URL of the session's own redis-server."""
    return redis_server.url


@pytest.fixture(scope="session")
def sshd():
    """A real OpenSSH server on a free loopback port; workers trust its throw-away host key."""
    from pipelines.supervisor import free_port
    from tests.sshd import start_sshd

    server = start_sshd(SESSION_DIR / "sshd", free_port())
    os.environ["DAQFLOW_SSH_KNOWN_HOSTS"] = server.known_hosts
    os.environ["DAQFLOW_SSH_HOST_KEYS"] = "reject"
    yield server
    stop_process(server.proc)


STAGING_ROOT = None


@pytest.fixture(scope="session")
def simulator(redis_url, sshd):
    """The ECC simulator for the standard test DAQ: 8 CoBos and a MuTAnT, one server each.

    Its data routers live on the SSH node, their staging dirs under the session folder.
    """
    from pipelines.supervisor import free_port

    global STAGING_ROOT
    STAGING_ROOT = SESSION_DIR / "staging"
    ports = [free_port() for _ in range(9)]
    directory = SESSION_DIR / "sim"
    directory.mkdir()
    handle = start_simulator(directory, ports,
                             topology_text(ports, ssh=sshd, staging_root=STAGING_ROOT))
    yield handle
    stop_process(handle.proc)


def clean_staging(root: Path) -> None:
    """Empty every staging dir under ``root`` (files and run folders), keeping the dirs."""
    import shutil

    for staging in root.iterdir():
        for entry in staging.iterdir():
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


class WorkerHandle:
    """The session's Celery worker process; a test may kill it and start another."""

    def __init__(self):
        self.proc = None
        self.start()

    def start(self):
        from pipelines.celery_app import app

        log = open(SESSION_DIR / "worker.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "pipelines.celery_app", "worker", "--pool",
             "threads", "--concurrency", "32", "--queues", "control,files", "--hostname",
             f"test-{os.getpid()}@%h", "--without-mingle", "--without-gossip", "--loglevel",
             "INFO"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
        proc = self.proc
        wait_for(lambda: proc.poll() is not None or app.control.ping(timeout=0.5),
                 timeout=60, message="the Celery worker to answer a ping")
        assert proc.poll() is None, (SESSION_DIR / "worker.log").read_text()

    def kill(self):
        """SIGKILL, as the OOM killer or a power cut would."""
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="session")
def worker(redis_url, simulator):
    """A real Celery worker (thread pool) on the control and files queues."""
    handle = WorkerHandle()
    yield handle
    stop_process(handle.proc)


def clear_workflow_records() -> None:
    """Delete every workflow, its audit, runs and their files, children before parents."""
    import models
    from models import AuditEntry, Run, RunFiles, Stage, Step, Workflow
    from sqlmodel import delete

    with models.session() as s:
        for table in (AuditEntry, RunFiles, Step, Stage, Workflow, Run):
            s.exec(delete(table))


@pytest.fixture
def daq(simulator, redis_url):
    """The standard test DAQ, loaded fresh: simulator reset, no workflows or runs."""
    import models
    from models import Account, Experiment
    from pipelines import lock, topology
    from sqlmodel import delete

    models.create_all()
    clear_workflow_records()
    with models.session() as s:
        for table in (Account, Experiment):
            s.exec(delete(table))
    lock.clear()  # a test that ended mid-workflow may have left it
    simulator.reset()  # from here on, no simulated router writes until a run starts
    clean_staging(STAGING_ROOT)
    topology.load(topology.read(simulator.topology_path))
    return simulator


@pytest.fixture
def staging_root(simulator) -> Path:
    """Where the standard test DAQ's routers stage their files (on the SSH node)."""
    return STAGING_ROOT


@pytest.fixture
def running_daq(daq, worker):
    """The standard DAQ with a worker serving it."""
    return daq


def wait_workflow(workflow_id: int, timeout: float = 30.0) -> dict:
    """Wait until a workflow has ended; return its progress read."""
    from pipelines import progress

    return wait_for(lambda: (lambda v: v if not v["active"] else None)(progress.read(workflow_id)),
                    timeout=timeout, message=f"workflow {workflow_id} to end")


def pytest_report_header(config):
    return f"daqflow test database: {DATABASE} ({os.environ.get('DAQFLOW_DATABASE_URL')})"


def pytest_unconfigure(config):
    if SESSION_POSTGRES_DB:
        import models.db

        models.db.reset_engine()
        _postgres_admin(f'DROP DATABASE IF EXISTS "{SESSION_POSTGRES_DB}" WITH (FORCE)')


def pytest_sessionfinish(session, exitstatus):
    # In CI nothing may be skipped: a test that cannot run there is a failure.
    if os.environ.get("CI"):
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        skipped = reporter.stats.get("skipped", []) if reporter else []
        if skipped:
            reporter.write_line(f"CI: {len(skipped)} test(s) skipped; that is a failure here",
                                red=True)
            session.exitstatus = 1
