"""The run-control page and the JSON API, through Flask's test client."""
import re
import subprocess
import sys

import pytest

from pipelines.daq.ecc.states import EccState
from tests.support import ROOT
from tests.support.daq import row_counts, set_all, wait_workflow
from tests.support.web import operator_client, web_app


@pytest.fixture
def client(daq):
    # Logged in as an operator; every poll sees the database as it is now (the shared
    # render has its own test).
    return operator_client()


def bars(html: str) -> list[str]:
    return re.findall(r'role="progressbar"[^>]*aria-valuenow="(\d+)"', html)


def test_page_shows_sources_state_and_one_bar_each(client):
    html = client.get("/").get_data(as_text=True)
    assert "Run control" in html and "no run is going" in html
    assert len(bars(html)) == 9
    assert "CoBo[7]" in html and "Mutant[master]" in html
    assert "htmx-2.0.11.min.js" in html and "//cdn" not in html
    assert 'hx-trigger="every 3s"' in html  # nothing active: it still polls, less often


def test_live_section_polls_every_second_while_active_then_every_few(client, worker, daq):
    set_all(daq, EccState.READY)
    response = client.post("/actions/start", data={"title": "<script>alert(1)</script>",
                                                   "run_class": "BEAM"})
    assert response.status_code == 202
    html = response.get_data(as_text=True)
    assert 'hx-trigger="every 1s"' in html
    assert "start CoBos" in html
    workflow_id = client.get("/api/status").get_json()["active_workflow"] or \
        client.get("/api/status").get_json()["last_workflow"]
    wait_workflow(workflow_id)
    html = client.get("/live").get_data(as_text=True)
    assert 'hx-trigger="every 3s"' in html  # the page stays live between workflows
    assert 'id="run-clock" class="ticking" data-since="' in html  # the browser ticks it
    assert bars(html) == ["100"] * 13  # four stage bars (the re-arm, then the starts), nine sources
    assert "run 0: &lt;script&gt;alert(1)&lt;/script&gt; (BEAM)" in html
    assert "<script>alert(1)" not in html


def test_workflow_page_shows_the_failed_sources_message(client, worker, daq):
    set_all(daq, EccState.PREPARED)
    daq.fault("ecc-cobo5", "error", operation="Configure", message="CoBo[5]: AGET 3 timeout")
    response = client.post("/api/transitions/configure")
    assert response.status_code == 202
    workflow_id = response.get_json()["workflow_id"]
    wait_workflow(workflow_id)
    html = client.get(f"/workflows/{workflow_id}").get_data(as_text=True)
    assert "CoBo[5]: AGET 3 timeout" in html
    assert re.search(r'data-state="failed"', html)
    assert "not run" in html  # the MuTAnT stage never ran
    history = client.get("/workflows/").get_data(as_text=True)
    assert f">{workflow_id}<" in history and "failed" in history
    # The compact view puts the failed source first, and counts the sources per state.
    live = client.get("/live").get_data(as_text=True)
    grid = live.split('id="source-grid"')[1].split("</div>")[0]
    cells = re.findall(r'<span class="cell ([^"]+)" data-source="([^"]+)"', grid)
    assert len(cells) == 9 and cells[0][1] == "CoBo[5]" and "cell-failed" in cells[0][0]
    assert "CoBo[5]: AGET 3 timeout" in grid.split("</span>")[0]
    assert "need a look (first in the grid)" in live


def test_api_start_and_progress(client, worker, daq):
    set_all(daq, EccState.READY)
    response = client.post("/api/runs/start", json={"title": "api run", "run_class": "PULS"})
    assert response.status_code == 202
    workflow_id = response.get_json()["workflow_id"]
    view = client.get(f"/api/workflows/{workflow_id}").get_json()
    assert view["total"] == 11 and [s["name"] for s in view["stages"]] == [
        "re-arm MuTAnT: breakup", "re-arm MuTAnT: configure", "start CoBos", "start MuTAnT"]
    wait_workflow(workflow_id)
    status = client.get("/api/status").get_json()
    assert status["state"] == "RUNNING" and status["run"]["number"] == 0
    assert status["run"]["title"] == "api run" and status["active_workflow"] is None
    stop = client.post("/api/runs/stop")
    assert stop.status_code == 202
    # Ended before the next test clears the records (on PostgreSQL its writes would deadlock
    # with that clearing).
    assert wait_workflow(stop.get_json()["workflow_id"], timeout=40)["state"] == "succeeded"


@pytest.mark.parametrize("method, url, body, code, message", [
    ("post", "/api/runs/start", "not json", 400, "JSON object"),
    ("post", "/api/runs/start", {"title": 5}, 400, "title must be text"),
    ("post", "/api/runs/start", {"title": "x", "run_class": "FUN"}, 400, "run_class"),
    ("post", "/api/runs/start", {"title": "x", "colour": "red"}, 400, "unknown field(s): colour"),
    ("post", "/api/runs/start", {"title": "x" * 201}, 400, "longer than 200"),
    ("post", "/api/runs/start", {"title": "a\x00b"}, 400, "control characters"),
    ("post", "/api/runs/start", {"title": "x"}, 409, "every source is READY"),
    ("post", "/api/runs/stop", None, 409, "no run is going"),
    ("post", "/api/transitions/explode", None, 404, "no transition"),
    ("get", "/api/workflows/999999", None, 404, "no workflow 999999"),
    ("get", "/api/nothing-here", None, 404, ""),
])
def test_api_errors_are_json_and_change_nothing(client, method, url, body, code, message):
    before = row_counts()
    kwargs = {"json": body} if isinstance(body, dict) else ({"data": body} if body else {})
    response = getattr(client, method)(url, **kwargs)
    assert response.status_code == code
    assert message in response.get_json()["error"]
    assert row_counts() == before


def test_page_refusal_goes_to_the_message_box(client):
    response = client.post("/actions/start", data={"title": "t", "run_class": "TEST"})
    assert response.status_code == 409
    assert response.headers["HX-Retarget"] == "#message"
    assert "every source is READY" in response.get_data(as_text=True)


def test_pollers_share_one_render_of_the_live_section_for_a_short_while(daq):
    from sqlmodel import update

    import models
    from models import Experiment

    client = operator_client(LIVE_CACHE_SECONDS=60)
    first = client.get("/live").get_data(as_text=True)
    with models.session() as s:
        s.exec(update(Experiment).values(name="renamed-meanwhile"))
    assert "renamed-meanwhile" not in first
    assert client.get("/live").get_data(as_text=True) == first  # shared, not re-rendered
    # An action's answer is always fresh, and the polls after it get that render.
    checked = client.post("/actions/check-routers").get_data(as_text=True)
    assert "renamed-meanwhile" in checked
    assert client.get("/live").get_data(as_text=True) == checked
    uncached = operator_client()
    assert "renamed-meanwhile" in uncached.get("/live").get_data(as_text=True)


def test_a_title_that_is_not_valid_unicode_is_refused_before_anything_is_sent(client, daq):
    set_all(daq, EccState.READY)  # every rule would let the run start
    before = row_counts()
    lone_surrogate = b'{"title": "beam \\ud800 test"}'
    response = client.post("/api/runs/start", data=lone_surrogate,
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "title is not valid Unicode text" in response.get_json()["error"]
    latin1 = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", "start", "--title",
                             b"Run \xe0"], cwd=ROOT, capture_output=True, timeout=60)
    assert latin1.returncode == 2, latin1.stderr
    assert b"title is not valid Unicode text" in latin1.stderr
    assert row_counts() == before and daq.log() == []


def test_every_answer_carries_the_security_headers(client):
    from webui.headers import HEADERS

    anonymous = web_app().test_client()
    answers = [client.get("/"), client.get("/live"), client.get("/api/status"),
               client.post("/api/runs/stop"), client.get("/static/daqflow.js"),
               anonymous.get("/login"), anonymous.get("/api/status")]
    for answer in answers:
        for name, value in HEADERS.items():
            assert answer.headers.get(name) == value, (answer.request.path, name)
    policy = HEADERS["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy
    html = answers[0].get_data(as_text=True)
    assert "<script>" not in html and "<style>" not in html and "hx-on" not in html


def test_the_live_section_says_when_the_database_does_not_answer(client, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from pipelines.runcontrol import status

    def unreachable():
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(status, "status", unreachable)
    answer = client.get("/live", headers={"HX-Request": "true"})
    assert answer.status_code == 503 and answer.headers["HX-Reswap"] == "none"

