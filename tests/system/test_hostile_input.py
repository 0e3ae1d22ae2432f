"""Hostile input: at least 150 generated requests, no 500, and no rejection changes the database.

Requests go through Flask's test client with every kind of caller (operator or
viewer session with or without the CSRF token, valid or forged bearer token,
nobody) to every endpoint that takes input, and a quarter of them are starts whose
JSON title holds raw escapes and bytes. A viewer, a forged token, nobody and a
session without its CSRF token are refused every time; an accepted start or stop
launched what was asked, and a start's title is stored as sent and rendered escaped
on its workflow page. Accepted workflows are written as usual but not sent to
Celery: this test is about the web layer's checks, and a worker running them would
change the database under the comparison. The second test runs a sample of accepted
generated starts end to end on the real worker.
"""
import json
import string

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlmodel import update

import models
from models import Workflow
from models.vocabulary import ACTIVE_STATES
from pipelines.daq.ecc.states import EccState
from pipelines.runcontrol import accounts, lock
from tests.support.daq import database_digest, set_all
from tests.support.web import account, log_in, web_app

# What it checks does not depend on the database: .ci/run's first pass only.
# Longer than the suite's 120 s per test: a browser or hundreds of requests, with fixtures.
pytestmark = [pytest.mark.database_agnostic, pytest.mark.timeout(300)]

# Enough to meet every form and route many times over (each example is one request).
EXAMPLES = 150


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                              max_size=4),
    max_leaves=12)
titles = st.one_of(st.text(max_size=250), st.sampled_from(
    ["<script>alert(1)</script>", "a\x00b", "x" * 201, "run 7 ✓", "", " \t"]))
run_classes = st.one_of(st.sampled_from(["TEST", "PROD", "BEAM", "JUNK", "PULS", "beam", ""]),
                        st.text(max_size=8))
start_fields = st.fixed_dictionaries({}, optional={
    "title": titles | json_values, "run_class": run_classes | json_values,
    "colour": json_values})
names = st.one_of(st.sampled_from(["describe", "prepare", "configure", "reset", "explode"]),
                  st.text(alphabet=string.ascii_letters + "%._-~", min_size=1, max_size=12))
workflow_ids = st.one_of(st.integers(min_value=-5, max_value=5), st.integers(),
                         st.just(2**31 - 1), st.just(2**31))
# JSON as bytes, the title holding any \uXXXX escape (lone surrogates, C1 controls,
# NUL) or any bytes (over-long UTF-8 among them): what broke a probe once.
escapes = st.integers(0, 0xFFFF).map(lambda code: f"\\u{code:04x}".encode())
title_bytes = st.lists(st.one_of(escapes, st.binary(max_size=3),
                                 st.sampled_from([b"<script>alert(1)</script>", b"\xc0\x80",
                                                  b"\\ud800", b"\\u0085", b"\\u0000", b"ok"])),
                       max_size=10).map(b"".join)
raw_json = title_bytes.map(lambda t: ("json-bytes", b'{"title": "' + t + b'"}'))
bodies = st.one_of(
    raw_json,
    st.builds(lambda d: ("json", d), start_fields),
    st.builds(lambda v: ("json", v), json_values),
    st.builds(lambda b: ("raw", b), st.binary(max_size=64)),
    st.builds(lambda b: ("raw", b), st.sampled_from([b"[" * 5000, b'{"title": "', b"\xff\xfe"])),
    st.builds(lambda d: ("form", d), st.dictionaries(
        st.sampled_from(["title", "run_class", "name", "password", "csrf_token", "next", "x"]),
        st.text(max_size=40), max_size=4)),
    st.just(("none", None)))
callers = st.sampled_from(["operator", "operator-no-csrf", "viewer", "token", "forged-token",
                           "nobody"])


@st.composite
def requests(draw):
    if draw(st.integers(0, 3)) == 0:  # a quarter: starts whose titles are raw JSON escapes
        return "POST", "/api/runs/start", draw(raw_json), draw(st.sampled_from(
            ["operator", "token"]))
    name, wid = draw(names), draw(workflow_ids)
    method, path = draw(st.sampled_from([
        ("POST", "/api/runs/start"), ("POST", "/api/runs/stop"),
        ("POST", f"/api/transitions/{name}"), ("POST", f"/api/workflows/{wid}/replay"),
        ("GET", f"/api/workflows/{wid}"), ("GET", "/api/status"), ("POST", "/actions/start"),
        ("POST", "/actions/stop"), ("POST", f"/actions/transition/{name}"),
        ("POST", f"/workflows/{wid}/replay"), ("GET", f"/workflows/{wid}"),
        ("POST", "/login"), ("POST", "/logout"), ("PUT", "/api/runs/start"),
        ("DELETE", f"/api/workflows/{wid}")]))
    return method, path, draw(bodies), draw(callers)


@pytest.fixture
def clients(daq, monkeypatch):
    from pipelines.runcontrol import launching, replay

    sent = []
    monkeypatch.setattr(launching, "dispatch", sent.append)
    monkeypatch.setattr(replay, "dispatch", sent.append)
    set_all(daq, EccState.READY)
    app = web_app()
    account("robot", "operator")
    token = accounts.issue_token("robot")
    operator = log_in(app.test_client(), "alice", account("alice", "operator"))
    viewer = log_in(app.test_client(), "victor", account("victor", "viewer"))
    return {"app": app, "operator": operator, "viewer": viewer, "token": token, "sent": sent}


CALLERS = {"operator": ("alice",), "operator-no-csrf": ("alice",), "viewer": ("victor",)}
# Callers who may change nothing: a viewer, a forged token, nobody, and an operator's
# session cookie without its CSRF token (what a forged cross-site form would send).
UNTRUSTED = ("viewer", "forged-token", "nobody", "operator-no-csrf")
# Paths a session may post to without being an operator: its own login and logout.
SESSION_PATHS = ("/login", "/logout")
# What each accepted action launches.
LAUNCHES = {"/api/runs/start": "start_run", "/actions/start": "start_run",
            "/api/runs/stop": "stop_run", "/actions/stop": "stop_run"}


def send_client(clients, caller):
    """The logged-in client of a session caller."""
    return clients["viewer" if caller == "viewer" else "operator"]


def send(clients, method, path, body, caller):
    headers = {}
    if caller in CALLERS:
        client = send_client(clients, caller)
    else:
        client = clients["app"].test_client()
        if caller == "token":
            headers["Authorization"] = f"Bearer {clients['token']}"
        elif caller == "forged-token":
            headers["Authorization"] = "Bearer dqf_" + "A" * 43
    if caller == "operator-no-csrf":
        headers["X-CSRF-Token"] = ""
    kind, payload = body
    kwargs = {"headers": headers}
    if kind == "json":
        kwargs["data"], kwargs["content_type"] = json.dumps(payload), "application/json"
    elif kind == "json-bytes":
        kwargs["data"], kwargs["content_type"] = payload, "application/json"
    elif kind in ("raw", "form"):  # bytes as they are; a dict as a urlencoded form
        kwargs["data"] = payload
    return client.open(path, method=method, **kwargs)


def newest_workflow() -> Workflow | None:
    from sqlmodel import select

    with models.session() as s:
        return s.exec(select(Workflow).order_by(Workflow.id.desc())).first()


def sent_title(body: tuple) -> str | None:
    """The title a JSON body asked for, as the server must have read it."""
    kind, payload = body
    if kind == "json-bytes":
        payload = json.loads(payload)
    elif kind != "json":
        return None
    title = payload.get("title") if isinstance(payload, dict) else None
    return title.strip() if isinstance(title, str) else None


def check_effect(clients, path: str, body: tuple) -> None:
    """An accepted start or stop launched what was asked; a start's title is stored as sent
    and shows, escaped, on its workflow page."""
    from markupsafe import escape

    workflow = newest_workflow()
    if path in LAUNCHES:
        assert workflow is not None and workflow.kind == LAUNCHES[path], (path, workflow)
    title = sent_title(body) if path == "/api/runs/start" else None
    if title:
        assert workflow.params["title"] == title
        page = clients["operator"].get(f"/workflows/{workflow.id}")
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        assert f"title “{escape(title)}”" in html
        assert "<script>alert(1)</script>" not in html


def end_accepted_workflows():
    """An accepted request leaves its workflow pending: end it so the next may be accepted."""
    with models.session() as s:
        s.exec(update(Workflow).where(Workflow.state.in_(ACTIVE_STATES))
               .values(state="failed", error="ended by the fuzz test"))
    lock.clear()


def test_generated_requests_never_500_and_rejections_change_nothing(clients):
    seen = {"requests": 0, "rejected": 0, "accepted": 0}

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(requests())
    # Always among them: a start whose title is markup, through an escape (é).
    @example(("POST", "/api/runs/start",
              ("json-bytes", b'{"title": "<script>alert(1)</script> \\u00e9"}'), "token"))
    def one(request):
        method, path, body, caller = request
        before = database_digest()
        response = send(clients, method, path, body, caller)
        seen["requests"] += 1
        assert response.status_code < 500, (request, response.get_data(as_text=True)[:500])
        if path.startswith("/api/") and response.status_code >= 400:
            assert "error" in response.get_json(), request
        if caller in UNTRUSTED and method != "GET" and path not in SESSION_PATHS:
            # Refused every time, whatever the body: never an action taken.
            assert response.status_code >= 300, (request, response.status_code)
            assert database_digest() == before, request
            seen["refused untrusted"] = seen.get("refused untrusted", 0) + 1
        if response.status_code >= 400:
            seen["rejected"] += 1
            assert database_digest() == before, (request, response.status_code)
        elif method != "GET" and response.status_code == 202:
            seen["accepted"] += 1
            if body[0] == "json-bytes":
                seen["accepted escaped titles"] = seen.get("accepted escaped titles", 0) + 1
            check_effect(clients, path, body)
            end_accepted_workflows()
        if path == "/logout" and response.status_code == 302 and caller in CALLERS:
            log_in(send_client(clients, caller), *CALLERS[caller])  # keep its session going
        seen.setdefault(response.status_code, 0)
        seen[response.status_code] += 1
        if "<script>alert(1)</script>" in repr(body):
            assert "<script>alert(1)</script>" not in response.get_data(as_text=True)

    one()
    assert seen["requests"] >= EXAMPLES
    # The generator must reach both sides of the checks, or the test proves little.
    assert seen["rejected"] > EXAMPLES // 2 and seen["accepted"] > 0, seen
    assert seen.get("refused untrusted", 0) > EXAMPLES // 10, seen
    assert seen.get("accepted escaped titles", 0) > 0, seen


def test_generated_starts_that_are_accepted_run_end_to_end_on_the_worker(running_daq):
    """A sample of accepted generated starts, really sent: the run is recorded with the
    title as sent, and a stop ends it (nothing the web layer let through breaks a run)."""
    from sqlmodel import select

    from models import Run
    from pipelines.runcontrol import launching
    from tests.support.daq import wait_workflow

    set_all(running_daq, EccState.READY)
    account("robot", "operator")
    client = web_app().test_client()
    headers = {"Authorization": f"Bearer {accounts.issue_token('robot')}"}
    ran = []

    @settings(max_examples=6, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(raw_json)
    @example(("json-bytes", b'{"title": "<script>alert(1)</script> \\u00e9 \\ud83d\\ude80"}'))
    def one(body):
        response = client.post("/api/runs/start", data=body[1], headers=headers,
                               content_type="application/json")
        assert response.status_code in (202, 400), response.get_data(as_text=True)
        if response.status_code != 202:
            return
        started = wait_workflow(response.get_json()["workflow_id"], timeout=30)
        assert started["state"] == "succeeded", started["error"]
        with models.session() as s:
            run = s.exec(select(Run).order_by(Run.id.desc())).first()
        assert run.title == sent_title(body) and run.stopped_at is None
        assert wait_workflow(launching.launch("stop_run"), timeout=30)["state"] == "succeeded"
        ran.append(run.title)

    one()
    assert ran, "no generated start was accepted"
