"""The processes a benchmark runs: a private Redis, the ECC simulator, the web and workers.

Everything runs for real, as `daqflow up` would run it, on loopback and free ports,
with a private instance folder (SQLite unless ``DAQFLOW_DATABASE_URL`` is set).
The benchmark process itself reads the same database and Redis to time things.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pipelines.cli.processes import with_allocator_settings
from pipelines.simulator.topology import simulated_topology

ROOT = Path(__file__).resolve().parent.parent


class Process:
    """A child process with its log file; stopped by its PID only."""

    def __init__(self, name: str, argv: list[str], env: dict, log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU seconds this process (and its children) used so far."""
        return sum(proc_cpu_seconds(pid) for pid in [self.pid] + _children(self.pid))

    def main_thread_seconds(self) -> float:
        """CPU seconds this process's main thread has used so far (for a Celery worker: its
        consumer loop), from the scheduler's nanosecond count; 0.0 once it has exited."""
        try:
            return int(Path(f"/proc/{self.pid}/task/{self.pid}/schedstat").read_text()
                       .split()[0]) / 1e9
        except (OSError, IndexError, ValueError):
            return 0.0

    def threads(self) -> int:
        """How many threads the process has now (0 once it has exited)."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("Threads:"):
                    return int(line.split()[1])
        except (OSError, ValueError):
            pass
        return 0

    def rss_bytes(self) -> int:
        """Resident memory of the process and its children (a prefork pool's processes)."""
        pids = [self.pid] + _children(self.pid)
        total = 0
        for pid in pids:
            try:
                pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
            except (OSError, IndexError):
                continue
            total += pages * os.sysconf("SC_PAGE_SIZE")
        return total

    def stop(self, grace: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def proc_cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU seconds a process has used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    return sum(proc_cpu_split(pid))


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent not idle since boot (every core, /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _redis_pids(url: str) -> list[int]:
    import redis

    return [int(redis.Redis.from_url(url).info("server")["process_id"])]


def _children(pid: int) -> list[int]:
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(child) for child in found]


class Daq:
    """A simulated DAQ of N ECC servers with Redis, web and (swappable) control workers."""

    def __init__(self, redis_url: str, n_servers: int, seconds: float, routers: bool = False,
                 keep: bool = False, postgres: str | None = None):
        from pipelines.cli.supervisor import free_ports

        self.n_servers, self.seconds, self.keep = n_servers, seconds, keep
        self.dir = Path(tempfile.mkdtemp(prefix=f"daqflow-bench-{n_servers}-"))
        self.instance = self.dir / "instance"
        self.instance.mkdir()
        self.redis_url = redis_url
        self.redis().flushall()  # nothing of an earlier DAQ of this benchmark run
        self.sim_port, self.web_port = free_ports(2)
        self.topology = self.dir / "topology.toml"
        self.topology.write_text(simulated_topology(
            [self.sim_port] * n_servers, seconds_per_source=seconds,
            transition_timeout=max(60, 10 * seconds), experiment="bench", routers=routers))
        # Its processes run with the allocator settings `daqflow up` gives its own.
        self.env = with_allocator_settings(dict(
            os.environ, DAQFLOW_INSTANCE=str(self.instance), REDIS_URL=redis_url,
            PYTHONUNBUFFERED="1", DAQFLOW_TOPOLOGY=str(self.topology),
            DAQFLOW_SECRET_KEY=secrets.token_hex(32)))
        # The benchmark process reads the same database (its engine follows the URL).
        os.environ["DAQFLOW_INSTANCE"] = str(self.instance)
        # A lab's database: a fresh one on the given PostgreSQL server, dropped at the end.
        self.postgres, self.database = postgres, None
        if postgres:
            self.database = f"daqflow_bench_{secrets.token_hex(6)}"
            postgres_admin(postgres, f'CREATE DATABASE "{self.database}"')
            url = f"{postgres}/{self.database}"
            self.env["DAQFLOW_DATABASE_URL"] = os.environ["DAQFLOW_DATABASE_URL"] = url
        self.processes: dict[str, Process] = {}
        from models import migrate
        from models.vocabulary import Role
        from pipelines.runcontrol import accounts
        from pipelines.topology import loading, schema

        migrate.prepare()
        loading.load(schema.read(str(self.topology)))
        # The benchmark acts as a script does: an operator's API token.
        accounts.add("bench", secrets.token_hex(16), role=Role.OPERATOR)
        self.headers = {"Authorization": f"Bearer {accounts.issue_token('bench')}"}
        self.start("simulator", ["-m", "pipelines.cli", "simulate", "--topology",
                                 str(self.topology)], port=self.sim_port)
        self.start("web", ["-m", "pipelines.cli", "web", "--port", str(self.web_port)],
                   port=self.web_port)

    @staticmethod
    def app():
        """daqflow's Celery app, configured from this process's environment."""
        from pipelines.orchestration.app import app

        return app

    def redis(self):
        """A client of the benchmark's Redis."""
        import redis

        return redis.Redis.from_url(self.redis_url)

    def start(self, name: str, args: list[str], port: int | None = None,
              env: dict | None = None) -> Process:
        """Start ``python args...`` in the DAQ's environment; wait for its port if any."""
        from pipelines.cli.supervisor import wait_for_port

        process = Process(name, [sys.executable, *args], dict(self.env, **(env or {})), self.dir)
        self.processes[name] = process
        if port:
            wait_for_port(port, timeout=60)
        return process

    def start_worker(self, name: str, pool: str, concurrency: int,
                     queues: str = "control") -> Process:
        """A Celery worker; returns once it answers a ping."""
        from pipelines.orchestration.app import app

        process = self.start(name, ["-m", "celery", "-A", "pipelines.orchestration.app",
                                    "worker", "--pool", pool, "--concurrency", str(concurrency),
                                    "--queues", queues, "--hostname", f"{name}@%h",
                                    "--loglevel", "WARNING", "--without-gossip",
                                    "--without-mingle", "--include",
                                    "bench.engine,bench.task_cpu,bench.memory_probe"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            replies = app.control.ping(timeout=0.5) or []
            if any(name + "@" in host for reply in replies for host in reply):
                return process
            if process.proc.poll() is not None:
                raise RuntimeError(f"worker {name} exited: {process.log_path.read_text()[-2000:]}")
        raise TimeoutError(f"worker {name} did not answer in 60 s")

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far by each running process, and by Redis."""
        used = {name: process.cpu_seconds() for name, process in self.processes.items()}
        used["redis"] = sum(proc_cpu_seconds(pid) for pid in _redis_pids(self.redis_url))
        return used

    def quiet_cpu_seconds(self, window: float = 0.1, busy: float = 0.005,
                          timeout: float = 10.0) -> dict[str, float]:
        """``cpu_seconds()`` once the processes have all but stopped working (less than
        ``busy`` CPU seconds in ``window``): what a start still does after it is recorded
        (its last results, acknowledgements) is counted with it, not with what runs next."""
        used, deadline = self.cpu_seconds(), time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(window)
            now = self.cpu_seconds()
            if sum(now.values()) - sum(used.values()) < busy:
                return now
            used = now
        return used

    def stop_process(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is not None:
            process.stop()

    def sim(self, method: str, path: str, payload=None):
        """Call the simulator's control endpoint."""
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.sim_port}{path}", data=data,
                                         method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def api(self, method: str, path: str, payload=None) -> tuple[int, dict]:
        """Call daqflow's JSON API on the web process."""
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.web_port}{path}", data=data,
                                         method=method,
                                         headers={"Content-Type": "application/json",
                                                  **self.headers})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def close(self) -> None:
        for name in list(self.processes):
            self.stop_process(name)
        if self.database:
            import models.db

            models.db.reset_engine()
            os.environ.pop("DAQFLOW_DATABASE_URL", None)
            postgres_admin(self.postgres, f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def postgres_admin(server: str, statement: str) -> None:
    """One statement on a PostgreSQL server's maintenance database."""
    from sqlalchemy import create_engine, text

    admin = create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(statement))
    finally:
        admin.dispose()


@contextmanager
def bench_redis(prefix: str) -> Iterator[tuple[Path, str]]:
    """A benchmark's own Redis in a fresh temporary folder: (the folder, its URL). Sets
    REDIS_URL for this process (read on first use); on exit the Redis is stopped (by its
    PID) and the folder removed."""
    from pipelines.cli.supervisor import start_redis

    directory = Path(tempfile.mkdtemp(prefix=prefix))
    process, url = start_redis(directory)
    os.environ["REDIS_URL"] = url
    for key in ("DAQFLOW_BROKER_URL", "DAQFLOW_RESULT_BACKEND", "DAQFLOW_DATABASE_URL"):
        os.environ.pop(key, None)
    try:
        yield directory, url
    finally:
        process.terminate()
        process.wait(30)
        shutil.rmtree(directory, ignore_errors=True)
