"""The processes `daqflow up` runs: defined in Python (they travel in the wheel), the same as
the top-level Procfile says, and several control workers on one host."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

from models import settings
from pipelines.cli import processes
from tests.support import ROOT

INSTANCE, TOPOLOGY = Path("/srv/daq/instance"), Path("/srv/daq/topology.toml")


def procfile(environment: dict[str, str]) -> dict[str, list[str]]:
    """The Procfile's lines as a shell would run them in ``environment``."""
    def expand(match: re.Match) -> str:
        name, default = match.group(1), match.group(3)
        return environment.get(name) or (default or "")

    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            entries[name.strip()] = shlex.split(
                re.sub(r"\$\{(\w+)(:-([^}]*))?\}", expand, command.strip()))
    return entries


def test_the_procfile_and_the_packaged_process_list_agree_defaults_included(monkeypatch):
    for name in list(settings.SETTINGS):
        monkeypatch.delenv(name, raising=False)
    environment = {"DAQFLOW_INSTANCE": str(INSTANCE), "DAQFLOW_TOPOLOGY": str(TOPOLOGY)}
    assert processes.processes(INSTANCE, TOPOLOGY) == procfile(environment)


def test_settings_reach_the_processes_as_the_procfile_takes_them(monkeypatch):
    environment = {"DAQFLOW_INSTANCE": str(INSTANCE), "DAQFLOW_TOPOLOGY": str(TOPOLOGY),
                   "DAQFLOW_PORT": "8123", "DAQFLOW_CONTROL_CONCURRENCY": "64",
                   "DAQFLOW_FILES_CONCURRENCY": "3", "DAQFLOW_FLOWER_PORT": "5999"}
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    listed = processes.processes(INSTANCE, TOPOLOGY)
    assert listed == procfile(environment)
    assert listed["control"][listed["control"].index("--concurrency") + 1] == "64"
    assert listed["web"][-1] == "8123"


def test_the_process_list_names_every_process_the_readme_names():
    commands = processes.processes(INSTANCE, TOPOLOGY)
    assert list(commands) == ["web", "control", "files", "simulator", "beat", "flower"]
    assert commands["control"][:3] == ["celery", "-A", "pipelines.orchestration.app"]
    assert "threads" in commands["control"] and "control" in commands["control"]


def test_scaled_control_workers_are_distinct_celery_nodes_and_nothing_else_changes():
    commands = processes.processes(INSTANCE, TOPOLOGY)
    scaled = processes.scale(commands, "control", 3)

    assert list(scaled) == ["web", "control1", "control2", "control3", "files", "simulator",
                            "beat", "flower"]
    hostnames = [scaled[f"control{i}"][scaled[f"control{i}"].index("--hostname") + 1]
                 for i in (1, 2, 3)]
    assert hostnames == ["control1@%h", "control2@%h", "control3@%h"]
    assert {name: scaled[name] for name in commands if name != "control"} == {
        name: argv for name, argv in commands.items() if name != "control"}
    assert processes.scale(commands, "control", 1) == commands


def test_processes_get_daqflows_allocator_settings_and_an_operators_own_stand():
    env = processes.with_allocator_settings({"PATH": "/usr/bin"})
    assert env == {"PATH": "/usr/bin", "MALLOC_ARENA_MAX": "2",
                   "GLIBC_TUNABLES": "glibc.malloc.tcache_count=0"}
    own = processes.with_allocator_settings(
        {"MALLOC_ARENA_MAX": "4", "GLIBC_TUNABLES": "glibc.malloc.tcache_count=3"})
    assert own == {"MALLOC_ARENA_MAX": "4", "GLIBC_TUNABLES": "glibc.malloc.tcache_count=3"}
    # Other tunables of the operator's are kept, and daqflow's added to them.
    other = processes.with_allocator_settings({"GLIBC_TUNABLES": "glibc.malloc.mxfast=0"})
    assert other["GLIBC_TUNABLES"] == "glibc.malloc.mxfast=0:glibc.malloc.tcache_count=0"


def _threads(commands: dict[str, list[str]], name: str = "control") -> int:
    return int(commands[name][commands[name].index("--concurrency") + 1])


def test_control_workers_are_sized_so_a_stage_runs_at_once_with_one_of_them_gone():
    # 64 servers on four workers: any three hold 64 transitions, and 4 spare each.
    assert processes.control_threads(64, 4) == 26
    assert processes.control_threads(1024, 4) == 346
    assert processes.control_threads(1024, 8) == 151
    # Alone, a worker holds them all; a small DAQ still gets room for a stuck watch task.
    assert processes.control_threads(40, 1) == 44
    assert processes.control_threads(9, 4) == 16
    # No topology loaded: nothing to size for.
    assert processes.control_threads(0, 4) == 256
    for servers in (1, 9, 64, 100, 257, 1024, 2000):
        for workers in (1, 2, 3, 4, 8):
            threads = processes.control_threads(servers, workers)
            assert processes.too_few_threads(servers, [threads] * workers) is None


def test_too_few_threads_says_so_and_how_many_would_do():
    assert processes.too_few_threads(64, [26, 26, 26, 26]) is None
    message = processes.too_few_threads(64, [20, 20, 20, 20])
    assert message.startswith("4 control worker(s) of 20, 20, 20, 20 threads run 60 "
                              "transitions at once with one gone, for 64 ECC servers")
    assert "DAQFLOW_CONTROL_CONCURRENCY to 26" in message
    assert "run 30 transitions at once, for 64" in processes.too_few_threads(64, [30])
    assert processes.too_few_threads(64, []) is None  # no worker answered: nothing to say


def test_daqflow_up_sizes_the_control_workers_and_an_operators_setting_stands(monkeypatch):
    monkeypatch.delenv("DAQFLOW_CONTROL_CONCURRENCY", raising=False)
    assert _threads(processes.processes(INSTANCE, TOPOLOGY, threads=26)) == 26
    assert _threads(processes.processes(INSTANCE, TOPOLOGY)) == 256  # the Procfile's too
    monkeypatch.setenv("DAQFLOW_CONTROL_CONCURRENCY", "64")
    assert _threads(processes.processes(INSTANCE, TOPOLOGY, threads=26)) == 64
