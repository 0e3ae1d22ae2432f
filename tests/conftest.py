"""The test session: its own folder and database, and the real servers several layers share.

Three layers: ``unit`` (pure, no server), ``integration`` (one real part: the
simulator over HTTP, sshd, a database), ``system`` (real Redis, workers, the
simulator, sshd, Chromium). Servers are started on 127.0.0.1 and free ports by
the fixtures that need them and stopped by their PID; unit tests start none.
"""
from __future__ import annotations

import os
import socket
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.support import DATABASE, POSTGRES
from tests.support.processes import stop_process

# This session's folder, and its own database on the PostgreSQL server (made on first use).
SESSION_DIR = Path(tempfile.mkdtemp(prefix="daqflow-tests-"))
SESSION_POSTGRES_DB = f"daqflow_tests_{uuid.uuid4().hex[:12]}"


def postgres_admin(statement: str) -> None:
    """Run one statement on the PostgreSQL server's maintenance database."""
    from sqlalchemy import create_engine, text

    admin = create_engine(f"{POSTGRES}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(statement))
    finally:
        admin.dispose()


def pytest_configure(config):
    # Before anything reads its settings: every test talks to this session's own services.
    os.environ["DAQFLOW_INSTANCE"] = str(SESSION_DIR / "instance")
    if DATABASE == "postgresql":
        os.environ["DAQFLOW_DATABASE_URL"] = f"{POSTGRES}/{SESSION_POSTGRES_DB}"
    elif DATABASE == "sqlite":
        os.environ["DAQFLOW_DATABASE_URL"] = f"sqlite:///{SESSION_DIR / 'test.sqlite3'}"
    else:
        raise pytest.UsageError(f"DAQFLOW_TEST_DATABASE must be sqlite or postgresql, not {DATABASE}")
    for name in ("REDIS_URL", "DAQFLOW_BROKER_URL", "DAQFLOW_RESULT_BACKEND", "DAQFLOW_ECC_WSDL"):
        os.environ.pop(name, None)


@pytest.fixture(scope="session")
def session_dir() -> Path:
    """This test session's own folder."""
    return SESSION_DIR


@pytest.fixture(scope="session")
def database():
    """The session's database with daqflow's schema (on PostgreSQL, a database of its own)."""
    from models import migrate

    created = DATABASE == "postgresql"
    if created:
        postgres_admin(f'CREATE DATABASE "{SESSION_POSTGRES_DB}"')
    migrate.prepare()
    yield os.environ["DAQFLOW_DATABASE_URL"]
    if created:
        import models.db

        models.db.reset_engine()
        postgres_admin(f'DROP DATABASE IF EXISTS "{SESSION_POSTGRES_DB}" WITH (FORCE)')


@pytest.fixture(autouse=True, scope="session")
def _quick_password_hashes():
    """Accounts made in this process hash their passwords with scrypt at a cost of 2^10,
    not werkzeug's 2^15: a hash took 0.15 s here, and every logged-in test client hashes
    twice, its account then its login (Django's advice for tests). A stored hash is still
    salted scrypt, and checking one reads its cost from it; the servers the tests start
    keep the real cost."""
    from functools import partial

    from werkzeug.security import generate_password_hash

    from pipelines.runcontrol import accounts

    patch = pytest.MonkeyPatch()
    patch.setattr(accounts, "generate_password_hash",
                  partial(generate_password_hash, method="scrypt:1024:8:1"))
    yield
    patch.undo()


@pytest.fixture(scope="session")
def sshd(session_dir):
    """A real OpenSSH server on a free loopback port; clients trust its throw-away host key."""
    from pipelines.cli.supervisor import free_port
    from tests.support.sshd import start_sshd

    server = start_sshd(session_dir / "sshd", free_port())
    os.environ["DAQFLOW_SSH_KNOWN_HOSTS"] = server.known_hosts
    os.environ["DAQFLOW_SSH_HOST_KEYS"] = "reject"
    yield server
    stop_process(server.proc)


@pytest.fixture
def no_network(monkeypatch):
    """Any connection to a non-loopback address fails, and is recorded."""
    attempts = []
    real_connect = socket.socket.connect

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (host.startswith("127.") or host in ("::1", "localhost")):
            attempts.append(address)
            raise OSError(101, "Network is unreachable")
        return real_connect(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1"):
            attempts.append(host)
            raise socket.gaierror(-3, "Temporary failure in name resolution")
        return real_getaddrinfo(host, *args, **kwargs)

    real_getaddrinfo = socket.getaddrinfo
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return attempts


def pytest_collection_finish(session):
    # The wheel's tests need it built and installed: started now, in the background.
    if any(item.nodeid.startswith("tests/integration/test_wheel.py") for item in session.items):
        from tests.support import wheel

        where = SESSION_DIR / "wheel"
        session.config.wheel_build = (wheel.start_build(where), where)


def pytest_unconfigure(config):
    # A build the session did not wait for (its tests deselected on the way, or failed).
    build, _ = getattr(config, "wheel_build", (None, None))
    if build is not None:
        from tests.support import wheel

        wheel.stop_build(build)


def pytest_report_header(config):
    return f"daqflow test database: {DATABASE} ({os.environ.get('DAQFLOW_DATABASE_URL')})"


def pytest_sessionfinish(session, exitstatus):
    # In CI nothing may be skipped: a test that cannot run there is a failure.
    if os.environ.get("CI"):
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        skipped = reporter.stats.get("skipped", []) if reporter else []
        if skipped:
            reporter.write_line(f"CI: {len(skipped)} test(s) skipped; that is a failure here",
                                red=True)
            session.exitstatus = 1
