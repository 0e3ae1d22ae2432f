"""The simulator's data routers, and the files an ECC server's node holds.

While a simulated ECC server is RUNNING, each data router of its sources writes
a few ``.graw`` files of some kilobytes into its staging directory, as a real
``dataRouter`` does, so that a stop has real files to organize. Placeholder
processes named ``dataRouter`` and ``getEccSoapServer`` run while the simulator
does, so that a process check on the node finds routers and ECC servers up. Each
local ECC server's config directory gets the topology's ``.xcfg`` files, so that
a stop has configs to back up.

Every router and ECC server of the topology is played, whatever its node: a
simulated DAQ lives on the machine that runs the simulator (its ECC servers are
served here too), and a node it reaches over SSH at ``127.0.0.1`` is this
machine's filesystem as well. Point the simulator only at such a topology.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from models.settings import instance_dir
from pipelines.daq.ecc.states import EccState
from pipelines.daq.nodes.files import ECC_PROCESS, ROUTER_PROCESS, config_files
from pipelines.topology.loading import ecc_dirs, staging_dirs
from pipelines.topology.schema import Topology


class Placeholder:
    """A process named like a DAQ program (a symlink to ``sleep``), for process checks."""

    def __init__(self, name: str, needed: bool):
        # needed: this simulator plays such a program (a router or an ECC server);
        # wanted: it should run now (a test may have stopped it).
        self.name, self.needed, self.wanted = name, needed, needed
        self.process: subprocess.Popen | None = None

    def ensure(self) -> None:
        # Called from the long-lived writer thread only: the parent-death signal fires
        # when the thread that forked the child ends, so a request thread would not do.
        if not self.wanted or (self.process is not None and self.process.poll() is None):
            return
        bin_dir = instance_dir() / "sim-bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        link = bin_dir / self.name
        if not link.exists():
            link.symlink_to(shutil.which("sleep") or "/bin/sleep")
        self.process = subprocess.Popen([str(link), "infinity"], preexec_fn=_die_with_parent)

    def stop(self) -> None:
        """Stop the process (the program died); it stays down until ``wanted`` again."""
        self.wanted = False
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(5)
        self.process = None


@dataclass
class SimulatedRouter:
    name: str
    server: str
    staging_dir: Path
    run_stamp: str | None = None
    written: int = 0
    # When its server started running: files are due from then on, one per interval.
    started: float = 0.0
    # False: its program hangs, it writes nothing while its server runs.
    writing: bool = True


class SimulatedRouters:
    """Writes .graw files for the routers of running servers, on a background thread."""

    def __init__(self, sim, topology: Topology, files_per_run: int = 4, interval: float = 0.5,
                 file_bytes: int = 8192):
        self.sim, self.files_per_run, self.interval = sim, files_per_run, interval
        self.file_bytes = file_bytes
        self.defaults = (files_per_run, interval, file_bytes)
        server_of = {src: srv.name for srv in topology.ecc_servers for src in srv.sources}
        staging = staging_dirs(topology)
        self.routers = [SimulatedRouter(r.name, server_of[r.source], Path(staging[r.name]))
                        for r in topology.data_routers]
        on_nodes = [srv for srv in topology.ecc_servers if srv.node is not None]
        self.processes = {ROUTER_PROCESS: Placeholder(ROUTER_PROCESS, bool(self.routers)),
                          ECC_PROCESS: Placeholder(ECC_PROCESS, bool(on_nodes))}
        self._stop = threading.Event()
        self._write_configs(topology)

    @staticmethod
    def _write_configs(topology: Topology) -> None:
        for spec in topology.ecc_servers:
            config_dir, _ = ecc_dirs(topology, spec) if spec.node else (None, None)
            if not config_dir:
                continue
            Path(config_dir).mkdir(parents=True, exist_ok=True)
            for config in topology.configs:
                for name in config_files(config.model_dump()):
                    path = Path(config_dir) / name
                    if not path.exists():
                        path.write_text(f"<!-- simulated {name} for {spec.name} -->\n"
                                        f"<Setup><Config>{config.name}</Config></Setup>\n")

    def start(self) -> None:
        """Create the staging dirs and start the writer thread (which runs the placeholders)."""
        for router in self.routers:
            router.staging_dir.mkdir(parents=True, exist_ok=True)
        threading.Thread(target=self._loop, name="sim-routers", daemon=True).start()

    def set_writes(self, files_per_run: int | None = None, interval: float | None = None,
                   file_bytes: int | None = None) -> None:
        """How every router writes while its server runs: at most ``files_per_run`` files of
        ``file_bytes``, one every ``interval`` seconds (a known rate, for the tests)."""
        if files_per_run is not None:
            self.files_per_run = int(files_per_run)
        if interval is not None:
            self.interval = float(interval)
        if file_bytes is not None:
            self.file_bytes = int(file_bytes)

    def set_writing(self, name: str, writing: bool) -> bool:
        """Stop one router writing, or let it write again; False if there is no such router."""
        for router in self.routers:
            if router.name == name:
                router.writing = writing
                return True
        return False

    def fill(self, name: str, size: int) -> bool:
        """Give one router a file of ``size`` bytes in staging (sparse: it costs no disk),
        or remove it (0); False if there is no such router."""
        for router in self.routers:
            if router.name == name:
                path = router.staging_dir / f"{router.name}_fill.graw"
                if size <= 0:
                    path.unlink(missing_ok=True)
                else:
                    with open(path, "wb") as out:
                        out.truncate(size)
                return True
        return False

    def set_process(self, name: str, running: bool) -> None:
        """Stop a placeholder process (the program died), or have it (back) up."""
        process = self.processes[name]
        if running:
            process.wanted = process.needed  # the writer thread starts it
        else:
            process.stop()

    def shutdown(self) -> None:
        self._stop.set()
        for process in self.processes.values():
            process.stop()

    def reset(self) -> None:
        """Forget the runs in progress, write as at the start, and bring the placeholder
        processes back."""
        self.files_per_run, self.interval, self.file_bytes = self.defaults
        for router in self.routers:
            server = self.sim.servers[router.server]
            with server.lock:
                router.run_stamp, router.written, router.writing = None, 0, True
        for process in self.processes.values():
            process.wanted = process.needed

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            for process in self.processes.values():
                process.ensure()
            now = time.monotonic()
            for router in self.routers:
                try:
                    self.tick(router, now)
                except OSError as exc:  # a full disk must not stop the other routers
                    print(f"simulated router {router.name}: {exc}", flush=True)

    def tick(self, router: SimulatedRouter, now: float) -> None:
        """Write the router's next file if its server is running and one is due."""
        server = self.sim.servers[router.server]
        with server.lock:  # a reset or Stop cannot slip in between the check and the write
            server.settle(now)
            if server.state != EccState.RUNNING:
                router.run_stamp, router.written = None, 0
                return
            if router.run_stamp is None:
                router.run_stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
                router.started = now
            if not router.writing:
                router.started = now - router.written * self.interval  # resumes from here
                return
            # The files due by now, so the rate is exact on average whatever the loop's lag.
            due = min(self.files_per_run, int((now - router.started) / self.interval) + 1)
            while router.written < due:
                name = f"{router.name}_{router.run_stamp}_{router.written:04d}.graw"
                router.staging_dir.mkdir(parents=True, exist_ok=True)
                (router.staging_dir / name).write_bytes(os.urandom(self.file_bytes))
                router.written += 1


def _die_with_parent() -> None:
    # Linux: the placeholder gets SIGTERM when the simulator dies, however it dies.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
