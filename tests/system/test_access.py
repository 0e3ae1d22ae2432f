"""Who may press Start: login, roles, CSRF, API tokens, the secret key and the audit."""
import os
import subprocess
import sys

import pytest
from sqlmodel import func, select

import models
from models import Account, AuditEntry
from pipelines.daq.ecc.states import EccState
from tests.support import ROOT
from tests.support.daq import row_counts, set_all, wait_workflow
from tests.support.web import PASSWORD, SECRET_KEY, account, log_in, page_csrf, web_app


def audit_count() -> int:
    with models.session() as s:
        return s.exec(select(func.count()).select_from(AuditEntry)).one()


def cli(*args, stdin: str | None = None, **env):
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=60, env=dict(os.environ, **env))


def test_without_login_pages_redirect_and_the_api_answers_401(daq):
    client = web_app().test_client()
    before = row_counts()
    page = client.get("/workflows/")
    assert page.status_code == 302 and page.headers["Location"].endswith("/login?next=/workflows/")
    assert client.get("/api/status").status_code == 401
    refused = client.post("/api/runs/start", json={"title": "x"})
    assert refused.status_code == 401 and "log in" in refused.get_json()["error"]
    polled = client.get("/live", headers={"HX-Request": "true"})
    assert polled.status_code == 401 and polled.headers["HX-Redirect"] == "/login"
    assert client.get("/static/htmx-2.0.11.min.js").status_code == 200
    assert row_counts() == before


def test_login_sets_an_httponly_samesite_cookie_and_wrong_passwords_get_nothing(daq):
    account("alice", "operator")
    client = web_app().test_client()
    token = page_csrf(client.get("/login").get_data(as_text=True))
    wrong = client.post("/login", data={"name": "alice", "password": "not it!!", "csrf_token": token})
    assert wrong.status_code == 401 and "wrong name or password" in wrong.get_data(as_text=True)
    unknown = client.post("/login", data={"name": "mallory", "password": PASSWORD,
                                          "csrf_token": token})
    assert unknown.status_code == 401
    assert client.get("/").status_code == 302
    no_csrf = client.post("/login", data={"name": "alice", "password": PASSWORD})
    assert no_csrf.status_code == 400
    right = client.post("/login", data={"name": "alice", "password": PASSWORD,
                                        "csrf_token": token, "next": "//evil.example/"})
    assert right.status_code == 302 and right.headers["Location"] == "/"  # never off-site
    # As /login?next=/%09/evil.example/ hands it to the form: decoded.
    for off_site in ("/\t/evil.example/", "/\n/", "/\\evil.example", "/ /evil.example"):
        client.post("/logout", data={"csrf_token": page_csrf(client.get("/").get_data(
            as_text=True))})
        token = page_csrf(client.get("/login").get_data(as_text=True))
        again = client.post("/login", data={"name": "alice", "password": PASSWORD,
                                            "csrf_token": token, "next": off_site})
        assert again.status_code == 302 and again.headers["Location"] == "/", off_site
    on_site = client.get("/login?next=/workflows/%3Fx")  # a path of this site is kept
    assert 'value="/workflows/?x"' in on_site.get_data(as_text=True)
    cookie = right.headers["Set-Cookie"]
    assert "daqflow_session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    html = client.get("/").get_data(as_text=True)
    assert "alice (operator)" in html and "Start run" in html
    with models.session() as s:
        stored = s.exec(select(Account).where(Account.name == "alice")).one().password_hash
    assert PASSWORD not in stored and stored.startswith("scrypt:")
    # A new password ends the sessions opened with the old one.
    account("alice", "operator")
    assert client.get("/").status_code == 302
    log_in(client, "alice")
    html = client.get("/").get_data(as_text=True)
    # Logging out needs the token too, then the session is gone, on the server as well: a
    # copy of the cookie taken before the logout logs nobody in.
    copied = client.get_cookie("daqflow_session").value
    assert client.post("/logout", headers={"X-CSRF-Token": ""}).status_code == 400
    assert client.post("/logout", data={"csrf_token": page_csrf(html)}).status_code == 302
    assert client.get("/").status_code == 302
    thief = web_app().test_client()
    thief.set_cookie("daqflow_session", copied)
    assert thief.get("/").status_code == 302
    assert thief.get("/api/status").status_code == 401


def test_viewers_see_everything_and_change_nothing(daq):
    set_all(daq, EccState.READY)
    client = log_in(web_app().test_client(), "victor", account("victor", "viewer"))
    html = client.get("/").get_data(as_text=True)
    assert "victor (viewer)" in html and "CoBo[7]" in html
    assert "Start run" not in html and "only operators" in html
    before, audited = row_counts(), audit_count()
    for url in ("/actions/start", "/actions/stop", "/actions/transition/describe",
                "/actions/check-routers", "/api/runs/start", "/workflows/1/replay"):
        response = client.post(url)
        assert response.status_code == 403, url
        assert "only operators" in response.get_data(as_text=True)
    assert (row_counts(), audit_count()) == (before, audited)


@pytest.mark.parametrize("header", [None, "wrong-token"])
def test_a_page_post_without_the_csrf_token_gets_400_and_changes_nothing(daq, header):
    set_all(daq, EccState.READY)
    account("alice", "operator")
    client = log_in(web_app().test_client(), "alice")
    if header is None:
        del client.environ_base["HTTP_X_CSRF_TOKEN"]
    else:
        client.environ_base["HTTP_X_CSRF_TOKEN"] = header
    before, audited = row_counts(), audit_count()
    for url, form in (("/actions/start", {"title": "forged", "run_class": "BEAM"}),
                      ("/api/runs/start", None), ("/actions/transition/reset", None)):
        response = client.post(url, data=form)
        assert response.status_code == 400, url
        assert "CSRF" in response.get_data(as_text=True)
    assert (row_counts(), audit_count()) == (before, audited)


@pytest.mark.database_agnostic
def test_scripts_use_a_bearer_token_from_the_cli(running_daq):
    set_all(running_daq, EccState.READY)
    added = cli("user", "add", "robot", "--role", "operator", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    again = cli("user", "add", "robot", stdin=PASSWORD + "\n")
    assert again.returncode == 2 and "exists already" in again.stderr
    bad = cli("user", "add", "Robot Two", stdin=PASSWORD + "\n")
    assert bad.returncode == 2 and "account names" in bad.stderr
    short = cli("user", "add", "tiny", stdin="short\n")
    assert short.returncode == 2 and "passwords are 8" in short.stderr
    first = cli("user", "token", "robot").stdout.strip()
    token = cli("user", "token", "robot").stdout.strip()
    assert token.startswith("dqf_") and token != first
    client = web_app().test_client()
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/status", headers={"Authorization": f"Bearer {first}"}).status_code == 401
    assert client.get("/api/status", headers={"Authorization": "Basic abc"}).status_code == 401
    assert client.get("/api/status", headers=bearer).get_json()["state"] == "READY"
    # No CSRF token: a bearer header is not something a browser sends by itself.
    started = client.post("/api/runs/start", json={"title": "scripted"}, headers=bearer)
    assert started.status_code == 202
    workflow_id = started.get_json()["workflow_id"]
    assert wait_workflow(workflow_id)["state"] == "succeeded"
    view = client.get(f"/api/workflows/{workflow_id}", headers=bearer).get_json()
    assert [(a["actor"], a["action"]) for a in view["actions"]] == [("robot", "start_run")]
    with models.session() as s:
        stored = s.exec(select(Account).where(Account.name == "robot")).one()
    assert token not in (stored.token_hash or "") and len(stored.token_hash) == 64


def test_the_workflow_page_shows_who_did_what(running_daq):
    daq = running_daq
    set_all(daq, EccState.PREPARED)
    daq.fault("ecc-cobo2", "error", operation="Configure", message="CoBo[2]: no clock")
    alice = log_in(web_app().test_client(), "alice", account("alice", "operator"))
    assert alice.post("/actions/transition/configure").status_code == 202
    workflow_id = alice.get("/api/status").get_json()["last_workflow"]
    assert wait_workflow(workflow_id)["state"] == "failed"
    daq.reset()
    set_all(daq, EccState.PREPARED)
    bob = log_in(web_app().test_client(), "bob", account("bob", "operator"))
    assert bob.post(f"/workflows/{workflow_id}/replay").status_code == 202
    assert wait_workflow(workflow_id)["state"] == "succeeded"
    html = bob.get(f"/workflows/{workflow_id}").get_data(as_text=True)
    rows = html.split('id="actions"')[1].split("</table>")[0]
    assert rows.index(">alice<") < rows.index(">configure<") < rows.index(">bob<") \
        < rows.index(">replay<") and "steps: ecc-cobo2" in rows


@pytest.mark.database_agnostic
def test_the_app_refuses_to_start_without_a_secret_key(daq, tmp_path):
    from webui import create_app
    from webui.auth import MissingSecretKey

    with pytest.raises(MissingSecretKey, match="DAQFLOW_SECRET_KEY"):
        create_app({"TESTING": True})
    with pytest.raises(MissingSecretKey):
        create_app({"TESTING": True, "SECRET_KEY": "short"})
    env = {"DAQFLOW_SECRET_KEY": ""}
    web = cli("web", "--port", "1", **env)
    assert web.returncode == 2 and "DAQFLOW_SECRET_KEY must be set" in web.stderr
    up = cli("up", "--port", "1", **env)
    assert up.returncode == 2 and "DAQFLOW_SECRET_KEY must be set" in up.stderr
    assert web_app().config["SECRET_KEY"] == SECRET_KEY


def test_refused_logins_are_throttled_per_account_and_address_and_audited(daq, monkeypatch):
    import uuid

    from pipelines.runcontrol import accounts

    account("alice", "operator")
    account("bob", "viewer")
    app = web_app(RATELIMIT_ENABLED=True, RATELIMIT_KEY_PREFIX=f"test-{uuid.uuid4().hex}")
    checked = []
    real_authenticate = accounts.authenticate
    monkeypatch.setattr(accounts, "authenticate",
                        lambda *args: checked.append(args[0]) or real_authenticate(*args))
    client = app.test_client()

    def attempt(name, password):
        token = page_csrf(client.get("/login").get_data(as_text=True))
        return client.post("/login", data={"name": name, "password": password,
                                           "csrf_token": token})

    for _ in range(10):
        assert attempt("alice", "guess guess").status_code == 401
    throttled = attempt("alice", PASSWORD)  # even the right password, for a while
    assert throttled.status_code == 429
    assert "too many refused logins" in throttled.get_data(as_text=True)
    assert client.get("/").status_code == 302  # not logged in
    assert checked.count("alice") == 10  # a throttled attempt costs no password hash
    assert attempt("bob", PASSWORD).status_code == 302  # another account is not locked out

    other = app.test_client()  # the address's own limit: 20 refused, whatever the names
    for i in range(10):
        token = page_csrf(other.get("/login").get_data(as_text=True))
        assert other.post("/login", data={"name": f"nobody{i}", "password": "x" * 8,
                                          "csrf_token": token}).status_code == 401
    token = page_csrf(other.get("/login").get_data(as_text=True))
    assert other.post("/login", data={"name": "bob", "password": PASSWORD,
                                      "csrf_token": token}).status_code == 429
    with models.session() as s:
        refused = s.exec(select(AuditEntry).where(AuditEntry.action == "login refused")).all()
    reasons = [entry.detail["reason"] for entry in refused]
    assert reasons.count("wrong name or password") == 20 and len(reasons) == 22
    assert all(entry.actor == "web:127.0.0.1" for entry in refused)
    assert {entry.detail["name"] for entry in refused} >= {"alice", "nobody0"}

