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
