"""DAQ nodes: the hosts where data routers and ECC servers keep their files.

A node is reached over SSH with fabric (key authentication, host, port and user
from the topology), or, when the topology gives it no SSH settings, driven
locally through the same interface. Every operation is one constant POSIX ``sh``
script whose paths and names are passed as positional arguments, never pasted
into the script: an experiment called ``x; rm -rf ~`` is only ever a folder name.

Settings (read when a connection opens):

- ``DAQFLOW_SSH_HOST_KEYS``: ``reject`` (default: only hosts already in the
  known-hosts file), ``accept-new`` (learn an unknown host's key and keep it),
  or ``ignore`` (accept any key; for throw-away test set-ups only)
- ``DAQFLOW_SSH_KNOWN_HOSTS``: the known-hosts file (default ``~/.ssh/known_hosts``)
- ``DAQFLOW_SSH_CONNECT_TIMEOUT`` (10 s) and ``DAQFLOW_SSH_COMMAND_TIMEOUT`` (120 s)
"""
from __future__ import annotations

import os
import shlex
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pipelines.settings import float_env

LOCAL_HOSTS = (None, "", "localhost")
HOST_KEY_POLICIES = ("reject", "accept-new", "ignore")
# The process names a process check looks for on a node.
ROUTER_PROCESS = "dataRouter"
ECC_PROCESS = "getEccSoapServer"
# Exit status the scripts use for "a file of that name is already there".
COLLISION = 17


class NodeError(Exception):
    """A node could not be reached, or an operation on it failed; says which and why."""

    def __init__(self, node: str, action: str, message: str):
        super().__init__(f"node {node}: {action}: {message}")
        self.node, self.action, self.message = node, action, message


@dataclass(frozen=True)
class NodeAccess:
    """How to reach one node: no host (or ``localhost`` without a port or key) is local."""

    name: str
    host: str | None = None
    user: str | None = None
    port: int = 22
    key_path: str | None = None

    @property
    def is_local(self) -> bool:
        return self.host in LOCAL_HOSTS and not self.user and not self.key_path


@dataclass(frozen=True)
class Result:
    status: int
    stdout: str
    stderr: str


def run_folder(staging_dir: str, experiment: str, run_number: int) -> str:
    """``<staging>/<experiment>/run_NNNN``: where a run's files end up on a node."""
    return str(PurePosixPath(staging_dir) / experiment / f"run_{run_number:04d}")


# --- running a command on a node ----------------------------------------------------

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
        policy = os.environ.get("DAQFLOW_SSH_HOST_KEYS", "reject")
        if policy not in HOST_KEY_POLICIES:
            raise NodeError(access.name, "connect", f"DAQFLOW_SSH_HOST_KEYS must be one of "
                            f"{', '.join(HOST_KEY_POLICIES)}, not {policy!r}")
        known_hosts = os.path.expanduser(
            os.environ.get("DAQFLOW_SSH_KNOWN_HOSTS", "~/.ssh/known_hosts"))
        connect_timeout = float_env("DAQFLOW_SSH_CONNECT_TIMEOUT", 10.0)
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
        if policy == "reject":
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        elif policy == "accept-new":
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
            if os.environ.get("DAQFLOW_SSH_HOST_KEYS") == "accept-new":
                self.connection.client.save_host_keys(os.path.expanduser(
                    os.environ.get("DAQFLOW_SSH_KNOWN_HOSTS", "~/.ssh/known_hosts")))
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
        timeout = float_env("DAQFLOW_SSH_COMMAND_TIMEOUT", 120.0)
        return self._driver.run(["sh", "-c", script, "daqflow", *args], timeout)

    def fail(self, action: str, result: Result) -> NodeError:
        """The error for a script that failed, in its own words."""
        words = (result.stderr.strip() or result.stdout.strip() or f"exit status {result.status}")
        return NodeError(self.access.name, action, words.splitlines()[-1])


# --- what daqflow does on nodes -----------------------------------------------------

# $1 staging dir, $2 destination. Prints one line per moved file: its size in bytes.
ORGANIZE = r"""
set -u
staging=$1 dest=$2
[ -d "$staging" ] || { echo "staging directory $staging does not exist" >&2; exit 2; }
cd -- "$staging" || exit 2
for f in *.graw; do
  [ -e "$f" ] || continue
  [ -e "$dest/$f" ] && { echo "$dest/$f already exists; not overwriting it" >&2; exit 17; }
done
mkdir -p -- "$dest" || exit 2
for f in *.graw; do
  [ -e "$f" ] || continue
  size=$(wc -c < "$f") || exit 2
  mv -n -- "$f" "$dest/$f" 2>/dev/null
  if [ -e "$f" ]; then echo "$dest/$f already exists; not overwriting it" >&2; exit 17; fi
  echo "$size"
done
"""

# $1 config dir, $2 destination, then the file names. Prints the size of each copied file.
# Several ECC servers may share a config dir and back up into one folder at the same time:
# each copies to a private temporary name, then hard-links it into place, which fails
# (atomically) if the file is already there; then identical contents are fine.
BACKUP = r"""
set -u
src=$1 dest=$2
shift 2
for f in "$@"; do
  [ -f "$src/$f" ] || { echo "config file $src/$f does not exist" >&2; exit 2; }
done
mkdir -p -- "$dest" || exit 2
for f in "$@"; do
  [ -e "$dest/$f" ] && cmp -s -- "$src/$f" "$dest/$f" && continue
  tmp="$dest/.$f.daqflow-$$"
  cp -p -- "$src/$f" "$tmp" || { rm -f -- "$tmp"; exit 2; }
  if ln -- "$tmp" "$dest/$f" 2>/dev/null; then
    rm -f -- "$tmp"
    wc -c < "$dest/$f"
  else
    rm -f -- "$tmp"
    cmp -s -- "$src/$f" "$dest/$f" && continue
    echo "$dest/$f already exists with other contents; not overwriting it" >&2; exit 17
  fi
done
"""

# $1 how many process names follow, the names, then staging dirs. Prints running|stopped
# per process, then per dir its .graw count (or "missing"). A name longer than the 15
# characters Linux keeps of a command name (getEccSoapServer) is matched as argv[0] instead.
CHECK = r"""
set -u
count=$1
shift
while [ "$count" -gt 0 ]; do
  name=$1
  shift
  count=$((count-1))
  if { [ ${#name} -le 15 ] && pgrep -x -- "$name"; } >/dev/null 2>&1 ||
     pgrep -f -- "^([^ ]*/)?$name"'( |$)' >/dev/null 2>&1
  then echo running; else echo stopped; fi
done
for d in "$@"; do
  if [ ! -d "$d" ]; then echo missing; continue; fi
  n=0
  for f in "$d"/*.graw; do [ -e "$f" ] && n=$((n+1)); done
  echo "$n"
done
"""


@dataclass(frozen=True)
class Moved:
    """What one organize or backup did: files and bytes, and where they went."""

    folder: str
    files: int
    bytes: int


def _moved(folder: str, result: Result) -> Moved:
    sizes = [int(line) for line in result.stdout.split() if line.strip().isdigit()]
    return Moved(folder, len(sizes), sum(sizes))


def organize(node: Node, staging_dir: str, experiment: str, run_number: int) -> Moved:
    """Move a run's ``*.graw`` files from staging into ``<staging>/<experiment>/run_NNNN``.

    Never overwrites a file: a name already in the run folder is an error naming
    it. Safe to repeat: a second call finds nothing to move and succeeds.
    """
    folder = run_folder(staging_dir, experiment, run_number)
    result = node.script("organize files", ORGANIZE, staging_dir, folder)
    if result.status != 0:
        raise node.fail("organize files", result)
    return _moved(folder, result)


def backup_configs(node: Node, config_dir: str, backup_root: str, experiment: str,
                   run_number: int, files: list[str]) -> Moved:
    """Copy a run's config files into ``<backup root>/<experiment>/run_NNNN`` (idempotent)."""
    folder = run_folder(backup_root, experiment, run_number)
    result = node.script("back up configs", BACKUP, config_dir, folder, *files)
    if result.status != 0:
        raise node.fail("back up configs", result)
    return _moved(folder, result)


@dataclass(frozen=True)
class NodeCheck:
    """Which processes run on a node, and the .graw count of each staging dir (None: missing)."""

    processes: dict[str, bool]
    graw_files: dict[str, int | None]


def check(node: Node, staging_dirs: list[str],
          processes: tuple[str, ...] = (ROUTER_PROCESS,)) -> NodeCheck:
    """Whether each of ``processes`` runs on the node, and how many .graw files each dir holds."""
    result = node.script("check", CHECK, str(len(processes)), *processes, *staging_dirs)
    lines = result.stdout.split()
    if result.status != 0 or len(lines) != len(processes) + len(staging_dirs):
        raise node.fail("check", result)
    running = {name: value == "running" for name, value in zip(processes, lines)}
    counts = {d: (None if value == "missing" else int(value))
              for d, value in zip(staging_dirs, lines[len(processes):])}
    return NodeCheck(running, counts)


def config_files(config: dict) -> list[str]:
    """The three .xcfg files of a config (describe-, prepare-, configure-<name>.xcfg)."""
    return [f"{step}-{config[step]}.xcfg" for step in ("describe", "prepare", "configure")]
