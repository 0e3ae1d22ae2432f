"""A real OpenSSH server on loopback for the tests, with throw-away keys."""
from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pipelines.cli.supervisor import wait_for_port
from pipelines.simulator.topology import SshNode


@dataclass
class SshServer:
    """A running sshd and what a client needs to reach it."""

    proc: subprocess.Popen
    host: str
    port: int
    user: str
    key_path: str
    known_hosts: str

    def node(self, name: str = "daq-node") -> SshNode:
        """This server as a topology's SSH node."""
        return SshNode(self.host, self.port, self.user, self.key_path, name)


def sshd_binary() -> str:
    """The sshd to run: an absolute path (sshd refuses to re-exec otherwise)."""
    found = shutil.which("sshd", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if not found:
        raise RuntimeError("sshd not found: install openssh-server (.ci/run does)")
    return os.path.abspath(found)


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "daqflow-test",
                    "-f", str(path)], check=True)


def start_sshd(directory: Path, port: int) -> SshServer:
    """Start sshd on 127.0.0.1:port, accepting only a fresh client key; wait for its banner."""
    directory.mkdir(parents=True, exist_ok=True)
    host_key, client_key = directory / "host_key", directory / "client_key"
    _keygen(host_key)
    _keygen(client_key)
    authorized = directory / "authorized_keys"
    shutil.copy(f"{client_key}.pub", authorized)
    authorized.chmod(0o600)
    known_hosts = directory / "known_hosts"
    host_pub = Path(f"{host_key}.pub").read_text().split()
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    config = directory / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}",
        f"AuthorizedKeysFile {authorized}", f"PidFile {directory / 'sshd.pid'}",
        "PubkeyAuthentication yes", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "UsePAM no", "PermitRootLogin prohibit-password",
        # The keys live in a temp folder whose parents are not the user's own.
        "StrictModes no", "LogLevel VERBOSE", "MaxStartups 100:30:200", "MaxSessions 100",
    ]) + "\n")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    log = open(directory / "sshd.log", "wb")
    proc = subprocess.Popen([sshd_binary(), "-D", "-e", "-f", str(config)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, timeout=20)
    except Exception:
        proc.kill()
        raise RuntimeError(f"sshd did not start: {(directory / 'sshd.log').read_text()}")
    return SshServer(proc, "127.0.0.1", port, getpass.getuser(), str(client_key),
                     str(known_hosts))
