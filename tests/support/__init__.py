"""What the tests share: real processes started on loopback and stopped by PID (``processes``,
``services``), the standard test DAQ (``daq``), sshd (``sshd``) and web clients (``web``).

No test module imports another; they all import from here.
"""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
# CI's PostgreSQL (trust authentication); DAQFLOW_TEST_POSTGRES overrides it.
POSTGRES = os.environ.get("DAQFLOW_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432")
# Which database the whole suite runs on: sqlite (default) or postgresql (.ci/run runs both).
DATABASE = os.environ.get("DAQFLOW_TEST_DATABASE", "sqlite")


def read_celeryconfig(monkeypatch):
    """daqflow's Celery settings module, for a unit test to read.

    When nothing has imported it yet, it is read with a placeholder Redis URL, never
    connected to, and forgotten afterwards, so the app still reads the real configuration
    when it first needs it.
    """
    import importlib
    import sys

    name = "pipelines.orchestration.celeryconfig"
    if name not in sys.modules:
        monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
        monkeypatch.setitem(sys.modules, name, None)
        del sys.modules[name]
    return importlib.import_module(name)
