"""Every setting is read in one module, with a clear error naming it, and the README's
configuration table lists exactly those settings with their defaults."""
from __future__ import annotations

import ast
import re

import pytest

from models import settings
from models.settings import NotConfigured
from tests.support import ROOT


def readme_settings() -> dict[str, str]:
    """The README's configuration table: variable -> its default cell."""
    section = (ROOT / "README.md").read_text().split("## Configuration (environment)")[1]
    lines = section.split("\n### ")[0].splitlines()
    table = [line for line in lines if line.startswith("|")]
    rows = {}
    for line in table[2:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[1]
    return rows


def test_the_readme_table_lists_every_setting_with_its_default():
    documented = readme_settings()
    assert sorted(documented) == sorted(settings.SETTINGS)
    for name, setting in settings.SETTINGS.items():
        assert documented[name].startswith(setting.shown), name


def test_every_setting_has_a_reason():
    assert all(len(setting.reason) > 10 for setting in settings.SETTINGS.values())


@pytest.mark.parametrize("name, value, message", [
    ("DAQFLOW_STALL_SECONDS", "soon", "must be a number of seconds"),
    ("DAQFLOW_ECC_READ_TIMEOUT", "-3", "must be more than 0 seconds"),
    ("DAQFLOW_DB_POOL_SIZE", "five", "must be a whole number"),
    ("DAQFLOW_PORT", "70000", "must be a TCP port"),
    ("DAQFLOW_SECURE_COOKIE", "maybe", "must be 1 (on) or 0 (off)"),
    ("DAQFLOW_SSH_HOST_KEYS", "trust", "must be one of reject, accept-new, ignore"),
])
def test_a_bad_value_fails_naming_the_variable(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(NotConfigured) as info:
        settings.SETTINGS[name].get()
    assert str(info.value).startswith(f"{name}={value!r}: ") and message in str(info.value)


def test_defaults_apply_when_unset_or_empty(monkeypatch):
    monkeypatch.delenv("DAQFLOW_WATCH_ECC_SECONDS", raising=False)
    assert settings.WATCH_ECC_SECONDS.get() == 5.0
    monkeypatch.setenv("DAQFLOW_WATCH_ECC_SECONDS", "")
    assert settings.WATCH_ECC_SECONDS.get() == 5.0
    monkeypatch.setenv("DAQFLOW_SECURE_COOKIE", "1")
    assert settings.SECURE_COOKIE.get() is True


def test_nothing_but_the_settings_module_reads_the_environment():
    readers = []
    for package in ("models", "pipelines", "webui"):
        for path in (ROOT / package).rglob("*.py"):
            if path == ROOT / "models" / "settings.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv") \
                        and isinstance(node.value, ast.Name) and node.value.id == "os":
                    readers.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    # `up` hands its whole environment on to the processes it starts; it reads no setting.
    assert [reader.split(":")[0] for reader in readers] == ["pipelines/cli/up.py"], readers
    for name in re.findall(r"DAQFLOW_[A-Z_]+", (ROOT / "Procfile").read_text()):
        assert name in settings.SETTINGS, name


def test_beat_watches_at_the_periods_the_readme_gives_and_never_piles_up(monkeypatch):
    import importlib
    import sys

    for name in ("DAQFLOW_WATCH_ECC_SECONDS", "DAQFLOW_WATCH_ROUTERS_SECONDS",
                 "DAQFLOW_WATCH_CONFIGS_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # read, never connected to
    name = "pipelines.orchestration.celeryconfig"
    sys.modules.pop(name, None)  # imported afresh, with this environment
    try:
        schedule = importlib.import_module(name).beat_schedule
    finally:  # and so is the next import
        sys.modules.pop(name, None)
    periods = {entry["task"]: (entry["schedule"], entry["options"]["expires"])
               for entry in schedule.values()}
    # README: ECC states and lost steps every 5 s, routers every 10 s, configs every minute;
    # a check nobody took within its period expires instead of queueing behind the next.
    assert periods == {
        "daqflow.watch.ecc": (5.0, 5.0), "daqflow.files.check_routers": (10.0, 10.0),
        "daqflow.watch.runs": (5.0, 5.0), "daqflow.watch.configs": (60.0, 60.0),
        "daqflow.watch.retention": (3600, 3600)}
