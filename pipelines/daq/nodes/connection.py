"""Reaching a DAQ node: over SSH with fabric, or this machine without SSH.

A node with a host is reached over SSH (key authentication; host, port, user and
key from the topology), whatever the host, ``127.0.0.1`` included. A node without
a host is this machine, driven locally through the same interface. Commands are
argument lists: a script and its arguments, never a string pasted together.

The SSH settings (``DAQFLOW_SSH_HOST_KEYS``: ``reject`` only hosts already in the
known-hosts file, ``accept-new`` learns an unknown host's key and keeps it,
``ignore`` accepts any key, for throw-away set-ups only; the known-hosts file and
the timeouts) are read from ``models.settings`` when a connection opens.
"""
from __future__ import annotations

import os
import shlex
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from models import DaqNode, settings
from models.settings import NotConfigured


def is_this_machine(host: str | None) -> bool:
    """Whether a node is this machine: it has no host (then it has no SSH settings either).

    This machine is driven without SSH and may have relative directories (under the
    instance folder). A node with any host, even ``127.0.0.1``, is reached over SSH.
    """
    return not host


class NodeError(Exception):
    """A node could not be reached, or an operation on it failed; says which and why."""

    def __init__(self, node: str, action: str, message: str):
        super().__init__(f"node {node}: {action}: {message}")
        self.node, self.action, self.message = node, action, message


@dataclass(frozen=True)
class NodeAccess:
    """How to reach one node: over SSH at its host, or, without a host, this machine."""

    name: str
    host: str | None = None
    user: str | None = None
    port: int = 22
    key_path: str | None = None

    @property
    def is_local(self) -> bool:
        return is_this_machine(self.host)


@dataclass(frozen=True)
class Result:
    status: int
    stdout: str
    stderr: str


def access_of(node: DaqNode) -> NodeAccess:
    """How to reach a node, from its row."""
    return NodeAccess(node.name, node.host, node.user, node.port, node.key_path)


class _Local:
    def __init__(self, access: NodeAccess):
        self.access = access

    def run(self, argv: list[str], timeout: float) -> Result:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise NodeError(self.access.name, "command", f"no answer within {timeout:g} s") from None
        return Result(done.returncode, done.stdout, done.stderr)

    def close(self) -> None:
        pass


class _Remote:
    def __init__(self, access: NodeAccess):
        import paramiko
        from fabric import Config, Connection

        self.access = access
        try:
            self.policy = settings.SSH_HOST_KEYS.get()
            known_hosts = str(settings.SSH_KNOWN_HOSTS.get())
            connect_timeout = settings.SSH_CONNECT_TIMEOUT.get()
        except NotConfigured as exc:  # the step fails saying which setting is wrong
            raise NodeError(access.name, "connect", str(exc)) from None
        self.known_hosts = known_hosts
        # An empty SSH config: what the topology says is what is used, not ~/.ssh/config.
        config = Config(ssh_config=paramiko.SSHConfig())
        kwargs = {"look_for_keys": False, "allow_agent": False,
                  "banner_timeout": connect_timeout, "auth_timeout": connect_timeout}
        if access.key_path:
            kwargs["key_filename"] = [os.path.expanduser(access.key_path)]
        self.connection = Connection(access.host or "localhost", user=access.user,
                                     port=access.port, config=config,
                                     connect_timeout=max(1, round(connect_timeout)),
                                     connect_kwargs=kwargs)
        client = self.connection.client
        if os.path.exists(known_hosts):
            client.load_host_keys(known_hosts)
        if self.policy == "reject":
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        elif self.policy == "accept-new":
            Path(known_hosts).parent.mkdir(parents=True, exist_ok=True)
            Path(known_hosts).touch(exist_ok=True)
            client.load_host_keys(known_hosts)  # new keys are saved to this file
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        else:
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        self._open()

    def _where(self) -> str:
        user = f"{self.access.user}@" if self.access.user else ""
        return f"{user}{self.access.host}:{self.access.port}"

    def _open(self) -> None:
        import paramiko

        try:
            self.connection.open()
            if self.policy == "accept-new":
                self.connection.client.save_host_keys(self.known_hosts)
        except paramiko.BadHostKeyException:
            raise NodeError(self.access.name, "connect", f"{self._where()}: the host key does "
                            "not match the known-hosts file; someone may be impersonating the "
                            "node, or it was reinstalled") from None
        except paramiko.SSHException as exc:
            message = str(exc)
            if "not found in known_hosts" in message:
                message = ("host key unknown; add the node to the known-hosts file "
                           "(ssh-keyscan) or set DAQFLOW_SSH_HOST_KEYS=accept-new")
            raise NodeError(self.access.name, "connect", f"{self._where()}: {message}") from None
        except (socket.timeout, TimeoutError):
            raise NodeError(self.access.name, "connect",
                            f"{self._where()}: no answer within {self.connection.connect_timeout} s") from None
        except paramiko.ssh_exception.NoValidConnectionsError as exc:
            reasons = sorted({e.strerror or str(e) for e in exc.errors.values()})
            raise NodeError(self.access.name, "connect",
                            f"{self._where()}: {'; '.join(reasons)}") from None
        except OSError as exc:
            raise NodeError(self.access.name, "connect",
                            f"{self._where()}: {exc.strerror or exc}") from None

    def run(self, argv: list[str], timeout: float) -> Result:
        from invoke.exceptions import CommandTimedOut

        command = " ".join(shlex.quote(arg) for arg in argv)
        try:
            done = self.connection.run(command, hide=True, warn=True, timeout=timeout,
                                       in_stream=False)
        except CommandTimedOut:
            raise NodeError(self.access.name, "command", f"no answer within {timeout:g} s") from None
        except (OSError, EOFError) as exc:
            raise NodeError(self.access.name, "command", f"connection lost: {exc}") from None
        return Result(done.exited, done.stdout, done.stderr)

    def close(self) -> None:
        self.connection.close()


class Node:
    """An open connection to one node; use as a context manager."""

    def __init__(self, access: NodeAccess):
        self.access = access
        self._driver = _Local(access) if access.is_local else _Remote(access)

    def __enter__(self) -> "Node":
        return self

    def __exit__(self, *exc) -> None:
        self._driver.close()

    def script(self, action: str, script: str, *args: str) -> Result:
        """Run a constant sh script with its arguments passed as $1, $2, ..."""
        timeout = settings.SSH_COMMAND_TIMEOUT.get()
        return self._driver.run(["sh", "-c", script, "daqflow", *args], timeout)

    def fail(self, action: str, result: Result) -> NodeError:
        """The error for a script that failed, in its own words."""
        words = (result.stderr.strip() or result.stdout.strip() or f"exit status {result.status}")
        return NodeError(self.access.name, action, words.splitlines()[-1])
