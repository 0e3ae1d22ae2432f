"""What the ECC simulator costs a request when every worker asks every server at once.

``python -m bench.simulator_load --servers 1024 --processes 4 --rounds 2`` runs
``daqflow simulate`` with N servers on one port, then P client processes (as the control
workers are), each with a thread per server on daqflow's own ECC client, each thread
asking its server GetState R times, all at once. It prints the simulator's user and
system CPU per request (from /proc), the wall time, the requests that failed, and the
simulator's thread count. The simulator's CPU counts in the start benchmark's "all
processes", though real ECC servers run on their own boards.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.harness import ROOT, proc_cpu_split


def _client(port: int, names: list[str], rounds: int, ready, go, failures) -> None:
    """One client process: a thread per server, each asking GetState ``rounds`` times
    once every process is ready."""
    from pipelines.daq.ecc.client import EccError, client_for

    clients = [client_for(name, f"http://127.0.0.1:{port}/{name}") for name in names]
    for client in clients:  # the connections are kept alive, as a warm worker's are
        client.get_state()
    started = threading.Event()

    def ask(client):
        started.wait()
        for _ in range(rounds):
            try:
                client.get_state()
            except EccError:
                with failures.get_lock():
                    failures.value += 1

    threads = [threading.Thread(target=ask, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    ready.wait()
    go.wait()
    started.set()
    for thread in threads:
        thread.join()


def measure(servers: int, processes: int, rounds: int) -> dict:
    """The simulator's CPU per request under that load."""
    from pipelines.cli.supervisor import free_port, wait_for_port
    from pipelines.simulator.topology import simulated_topology

    port = free_port()
    directory = Path(tempfile.mkdtemp(prefix="daqflow-simload-"))
    topology = directory / "topology.toml"
    topology.write_text(simulated_topology([port] * servers, seconds_per_source=0.001,
                                           routers=False))
    simulator = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "simulate", "--topology", str(topology)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=dict(os.environ, DAQFLOW_INSTANCE=str(directory)))
    try:
        wait_for_port(port, timeout=60)
        names = [f"ecc-cobo{i}" for i in range(servers - 1)] + ["ecc-mutant"]
        ready, go = (multiprocessing.Barrier(processes + 1) for _ in range(2))
        failures = multiprocessing.Value("i", 0)
        clients = [multiprocessing.Process(target=_client,
                                           args=(port, names, rounds, ready, go, failures))
                   for _ in range(processes)]
        for client in clients:
            client.start()
        ready.wait()  # every client connected, its threads waiting for the go
        before, began = proc_cpu_split(simulator.pid), time.monotonic()
        go.wait()
        for client in clients:
            client.join()
        after, wall = proc_cpu_split(simulator.pid), time.monotonic() - began
        requests = servers * processes * rounds
        return {"servers": servers, "processes": processes, "requests": requests,
                "user_us": 1e6 * (after[0] - before[0]) / requests,
                "system_us": 1e6 * (after[1] - before[1]) / requests,
                "wall_seconds": wall, "failed": failures.value,
                "threads": len(os.listdir(f"/proc/{simulator.pid}/task"))}
    finally:
        simulator.terminate()
        simulator.wait(30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.simulator_load",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--servers", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    for servers in args.servers:
        f = measure(servers, args.processes, args.rounds)
        print(f"{f['servers']} servers x {f['processes']} processes, {f['requests']} "
              f"GetStates: simulator {f['user_us']:.0f} us user + {f['system_us']:.0f} us "
              f"system a request; {f['wall_seconds']:.2f} s; {f['failed']} failed; "
              f"{f['threads']} threads", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
