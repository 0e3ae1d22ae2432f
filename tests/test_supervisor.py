"""`daqflow up`'s process list: the Procfile, and several control workers on one host."""
from __future__ import annotations

from pipelines import supervisor


def test_the_procfile_lists_every_process_the_readme_names():
    commands = supervisor.read_procfile()
    assert list(commands) == ["web", "control", "files", "simulator", "beat", "flower"]
    assert "--pool threads" in commands["control"] and "--queues control" in commands["control"]


def test_scaled_control_workers_are_distinct_celery_nodes_and_nothing_else_changes():
    commands = supervisor.read_procfile()
    scaled = supervisor.scale(commands, "control", 3)

    assert list(scaled) == ["web", "control1", "control2", "control3", "files", "simulator",
                            "beat", "flower"]
    hostnames = [scaled[f"control{i}"].split("--hostname ")[1].split()[0] for i in (1, 2, 3)]
    assert hostnames == ["control1@%h", "control2@%h", "control3@%h"]
    assert {name: scaled[name] for name in commands if name != "control"} == {
        name: command for name, command in commands.items() if name != "control"}
    assert supervisor.scale(commands, "control", 1) == commands
