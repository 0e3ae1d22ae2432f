"""Promises of the web layer against a real database: a body over 64 KiB is refused with
413 and changes nothing; the session cookie is Secure behind HTTPS and lasts 12 hours;
what the command line does is audited as ``cli:<login>``."""
from __future__ import annotations

import getpass
import re
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from click.testing import CliRunner
from sqlmodel import select

import models
from models import AuditEntry
from pipelines.cli import main
from pipelines.runcontrol import accounts
from tests.support.daq import database_digest
from tests.support.web import PASSWORD, account, web_app


def test_a_body_over_64_kib_is_refused_with_413_and_changes_nothing():
    account("robot", "operator")
    token = {"Authorization": f"Bearer {accounts.issue_token('robot')}"}
    before = database_digest()
    client = web_app().test_client()
    flood = client.post("/api/runs/start", headers=token,
                        json={"title": "x", "comment": "y" * (64 * 1024)})
    assert flood.status_code == 413 and "error" in flood.get_json()
    # Just under the limit, the same body is read and refused for what it asks (a title
    # must be text), not for its size.
    just_under = client.post("/api/runs/start", headers=token,
                             json={"title": 7, "comment": "y" * 60_000})
    assert just_under.status_code == 400 and "title must be text" in just_under.get_json()["error"]
    assert database_digest() == before


def test_the_session_cookie_is_secure_behind_https_and_lasts_12_hours(monkeypatch):
    account("alice", "operator")
    monkeypatch.setenv("DAQFLOW_SECURE_COOKIE", "1")
    client = web_app().test_client()
    page = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    answer = client.post("/login", data={"name": "alice", "password": PASSWORD,
                                         "csrf_token": csrf})
    cookie = next(value for value in answer.headers.getlist("Set-Cookie")
                  if value.startswith("daqflow_session="))
    assert "; Secure" in cookie and "; HttpOnly" in cookie and "SameSite=Lax" in cookie
    expires = parsedate_to_datetime(re.search(r"Expires=([^;]+)", cookie).group(1))
    assert abs((expires - datetime.now(timezone.utc)).total_seconds() - 12 * 3600) < 60


def test_what_the_command_line_does_is_audited_as_cli_and_the_login():
    account("robot", "viewer")
    issued = CliRunner().invoke(main, ["user", "token", "robot"])
    assert issued.exit_code == 0, issued.output
    with models.session() as s:
        entry = s.exec(select(AuditEntry).where(AuditEntry.action == "token")
                       .order_by(AuditEntry.id.desc())).first()
    assert entry.actor == f"cli:{getpass.getuser()}" and entry.detail == {"account": "robot"}
