"""Simulated DAQs of any size, as topology files: the tests' and the benchmarks' one builder."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SshNode:
    """A node reached over SSH (a test's or a benchmark's own sshd on loopback)."""

    host: str
    port: int
    user: str
    key: str
    name: str = "daq-node"

    def toml(self) -> str:
        return (f"[[nodes]]\nname = {toml_string(self.name)}\nhost = {toml_string(self.host)}\n"
                f"port = {self.port}\nuser = {toml_string(self.user)}\n"
                f"key = {toml_string(self.key)}\n")


def toml_string(value: str) -> str:
    """A TOML basic string holding any text."""
    return json.dumps(value)


def simulated_topology(ports: list[int], *, seconds_per_source: float = 0.2,
                       transition_timeout: float = 3.0, expected_seconds: float | None = None,
                       experiment: str = "test", routers: bool = True,
                       ssh: SshNode | None = None, staging_root: Path | None = None) -> str:
    """One single-source ECC server per entry of ``ports``, the last one driving the MuTAnT.

    Servers that share a port get a URL path each (one simulator process plays them
    all). With ``routers``, every source has a data router and every stop backs up
    the servers' configs; the routers live on this machine (staging directories
    under the instance folder) or, with ``ssh``, on that node, under
    ``staging_root``.
    """
    shared = len(set(ports)) < len(ports)
    defaults = (f"[defaults]\ntransition_timeout = {transition_timeout}\n"
                f"expected_seconds = {expected_seconds or seconds_per_source}\n")
    if routers:
        defaults += 'config_dir = "ecc-configs"\nbackup_dir = "config-backups"\n'
    lines = [f"[experiment]\nname = {toml_string(experiment)}\n",
             '[[configs]]\nname = "cfg"\ndescribe = "cfg"\nprepare = "cfg"\nconfigure = "cfg"\n',
             defaults, f"[simulator]\nseconds_per_source = {seconds_per_source}\n",
             '[[nodes]]\nname = "localhost"\n']
    if ssh:
        lines.append(ssh.toml())
    router_node = ssh.name if ssh else "localhost"
    for i, port in enumerate(ports):
        mutant = i == len(ports) - 1
        name, source = ("ecc-mutant", "Mutant[master]") if mutant else (f"ecc-cobo{i}", f"CoBo[{i}]")
        path = f"/{name}" if shared else "/"
        lines.append(f'[[ecc_servers]]\nname = "{name}"\nurl = "http://127.0.0.1:{port}{path}"\n'
                     f'node = "localhost"\nsources = ["{source}"]\n')
        if routers:
            staging = str(staging_root / str(i)) if staging_root else f"staging/{i}"
            lines.append(f'[[data_routers]]\nname = "router-{i}"\nnode = "{router_node}"\n'
                         f'source = "{source}"\nip_address = "127.0.0.1"\nport = {46005 + i}\n'
                         f'type = "{"FDT" if mutant else "TCP"}"\n'
                         f"staging_dir = {toml_string(staging)}\n")
    return "\n".join(lines)
