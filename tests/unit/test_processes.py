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
