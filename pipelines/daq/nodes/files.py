"""What daqflow does on a node: organize a run's data files, back up its configs, check
the data routers' staging directories and the DAQ programs' processes.

Every operation is one constant POSIX ``sh`` script whose paths and names are passed
as positional arguments, never pasted into the script: an experiment called
``x; rm -rf ~`` is only ever a folder name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath

from pipelines.daq.nodes.connection import Node, Result

# The process names a process check looks for on a node.
ROUTER_PROCESS = "dataRouter"
ECC_PROCESS = "getEccSoapServer"
# Exit status the scripts use for "a file of that name is already there".
COLLISION = 17


def run_folder(staging_dir: str, experiment: str, run_number: int) -> str:
    """``<staging>/<experiment>/run_NNNN``: where a run's files end up on a node."""
    return str(PurePosixPath(staging_dir) / experiment / f"run_{run_number:04d}")


# $1 staging dir, $2 destination. Prints one line per file in the destination, once the
# moves are done: its size in bytes. What an earlier, interrupted attempt moved counts too.
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
  mv -n -- "$f" "$dest/$f" 2>/dev/null
  if [ -e "$f" ]; then echo "$dest/$f already exists; not overwriting it" >&2; exit 17; fi
done
for f in "$dest"/*.graw; do
  [ -e "$f" ] || continue
  wc -c < "$f" || exit 2
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

# $1 how many process names follow, the names, then pairs of a staging dir and the next run's
# folder in it. Prints running|stopped per process, then per pair the dir's .graw count (or
# "missing"), their bytes, the free bytes of its filesystem, and whether the folder
# exists|absent. A name longer than the 15 characters Linux keeps of a command name
# (getEccSoapServer) is matched as argv[0] instead.
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
while [ "$#" -ge 2 ]; do
  d=$1 run=$2
  shift 2
  if [ -e "$run" ]; then taken=exists; else taken=absent; fi
  if [ ! -d "$d" ]; then echo "missing - - $taken"; continue; fi
  n=0 b=0
  for f in "$d"/*.graw; do
    [ -e "$f" ] || continue
    n=$((n+1)) b=$((b + $(wc -c < "$f")))
  done
  free=$(df -Pk -- "$d" 2>/dev/null | awk 'NR==2 {print $4 * 1024}')
  echo "$n $b ${free:--} $taken"
done
"""


@dataclass(frozen=True)
class Moved:
    """Files and bytes, and their folder: what a run folder holds after an organize, or what
    one backup copied."""

    folder: str
    files: int
    bytes: int


def _moved(folder: str, result: Result) -> Moved:
    sizes = [int(line) for line in result.stdout.split() if line.strip().isdigit()]
    return Moved(folder, len(sizes), sum(sizes))


def organize(node: Node, staging_dir: str, experiment: str, run_number: int) -> Moved:
    """Move a run's ``*.graw`` files from staging into ``<staging>/<experiment>/run_NNNN``.

    Never overwrites a file: a name already in the run folder is an error naming
    it. Safe to repeat: a second call finds nothing to move and succeeds. Counts
    every file the run folder holds afterwards, whichever call moved it.
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
    """Which processes run on a node, the .graw count of each staging dir (None: missing),
    which of the next run's folders exist already, and per staging dir the bytes of its
    .graw files and the free bytes of its filesystem (None: unknown)."""

    processes: dict[str, bool]
    graw_files: dict[str, int | None]
    taken: set[str]
    graw_bytes: dict[str, int | None] = field(default_factory=dict)
    free_bytes: dict[str, int | None] = field(default_factory=dict)


def check(node: Node, staging_dirs: list[str], processes: tuple[str, ...] = (ROUTER_PROCESS,),
          next_run: tuple[str, int] | None = None) -> NodeCheck:
    """Whether each of ``processes`` runs on the node, how many .graw files each dir holds,
    and, for ``next_run`` (experiment, number), whose run folder exists already."""
    folders = [run_folder(d, *next_run) if next_run else "" for d in staging_dirs]
    pairs = [arg for d, folder in zip(staging_dirs, folders) for arg in (d, folder)]
    result = node.script("check", CHECK, str(len(processes)), *processes, *pairs)
    words = result.stdout.split()
    if result.status != 0 or len(words) != len(processes) + 4 * len(staging_dirs):
        raise node.fail("check", result)
    running = {name: value == "running" for name, value in zip(processes, words)}
    rows = [words[len(processes) + 4 * i:len(processes) + 4 * i + 4]
            for i in range(len(staging_dirs))]

    def number(word: str) -> int | None:
        return int(word) if word.isdigit() else None

    return NodeCheck(
        running, {d: number(row[0]) for d, row in zip(staging_dirs, rows)},
        {folders[i] for i, row in enumerate(rows) if next_run and row[3] == "exists"},
        {d: number(row[1]) for d, row in zip(staging_dirs, rows)},
        {d: number(row[2]) for d, row in zip(staging_dirs, rows)})


def config_files(config: dict) -> list[str]:
    """The three .xcfg files of a config (describe-, prepare-, configure-<name>.xcfg)."""
    return [f"{step}-{config[step]}.xcfg" for step in ("describe", "prepare", "configure")]
