"""The run log against a real database: the Runs page and API (filters, pages, CSV and
JSON), a run's page, notes with their history, field edits, the run fields page, the
``daqflow runs`` commands; bad input is 400 and changes nothing."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from sqlmodel import delete, select

import models
from models import Account, AuditEntry, Experiment, LoginSession, Run, RunFiles
from models.runlog import RunNote
from pipelines.cli import main
from pipelines.runcontrol import accounts
from pipelines.simulator.topology import simulated_topology
from pipelines.topology import loading, schema
from tests.support.daq import clear_workflow_records, database_digest
from tests.support.web import account, log_in, web_app

FIELDS_TOML = """
[[run_fields]]
name = "gas pressure"
type = "number"
unit = "Torr"
required = true

[[run_fields]]
name = "target"
type = "choice"
choices = ["none", "CD2"]

[[run_fields]]
name = "beam on target"
type = "choice"
choices = ["yes", "no"]
asked_at = "stop"
required = true
"""
DAY = datetime(2026, 11, 20, 22, 0, tzinfo=timezone.utc)
# (number, class, title, comment, hours after DAY, gas pressure)
RUNS = [(0, "TEST", "pedestals", "", 0, 150.0),
        (1, "BEAM", "first beam", "Beam tuned by MCR", 3, 151.0),
        (2, "BEAM", "beam, CD2", "", 26, 149.5),
        (3, "JUNK", "junk", "trigger rate wrong", 27, None),
        (4, "BEAM", "=SUM(A1)", "", 50, 150.0)]


@pytest.fixture
def run_log():
    """An experiment with run fields and five runs (the last one going); run 1 has files."""
    clear_workflow_records()
    with models.session() as s:
        for table in (LoginSession, Account, Experiment):
            s.exec(delete(table))
    loading.load(schema.parse(simulated_topology([18001, 18002], routers=False) + FIELDS_TOML))
    with models.session() as s:
        experiment = s.exec(select(Experiment)).one()
        for number, run_class, title, comment, hours, pressure in RUNS:
            started = DAY + timedelta(hours=hours)
            run = Run(experiment_id=experiment.id, number=number, title=title,
                      run_class=run_class, config_name="cfg", started_at=started,
                      stopped_at=None if number == 4 else started + timedelta(minutes=30),
                      files_organized_at=None if number in (3, 4) else started + timedelta(hours=1),
                      started_by="alice", comment=comment,
                      fields={} if pressure is None else {"gas pressure": pressure})
            s.add(run)
            s.flush()
            if number == 1:
                # 5 GB on one router: more than a 32-bit column holds.
                for router, files, size in (("router-0", 3, 5_000_003_000),
                                            ("router-1", 2, 1000)):
                    s.add(RunFiles(run_id=run.id, kind="data", target=router, node="localhost",
                                   folder=f"/data/run_0001/{router}", files=files, bytes=size))
        experiment.last_run_number = 4
    app = web_app()
    operator = log_in(app.test_client(), "alice", account("alice", "operator"))
    viewer = log_in(app.test_client(), "victor", account("victor", "viewer"))
    return {"operator": operator, "viewer": viewer}


def numbers(response) -> list[int]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return [run["number"] for run in response.get_json()["runs"]]


def test_the_runs_api_lists_newest_first_in_pages_and_filters(run_log):
    client = run_log["viewer"]
    listing = client.get("/api/runs").get_json()
    assert [run["number"] for run in listing["runs"]] == [4, 3, 2, 1, 0]
    assert listing["total"] == 5
    assert [field["name"] for field in listing["fields"]] == [
        "gas pressure", "target", "beam on target"]
    first_beam = listing["runs"][3]
    assert first_beam | {"fields": None} == first_beam | {
        "title": "first beam", "run_class": "BEAM", "config": "cfg", "started_by": "alice",
        "comment": "Beam tuned by MCR", "files": 5, "bytes": 5_000_004_000, "outcome": "complete",
        "duration_seconds": 1800.0, "fields": None}
    assert [run["outcome"] for run in listing["runs"][:2]] == ["going", "files not organized"]

    assert numbers(client.get("/api/runs?per_page=2")) == [4, 3]
    assert numbers(client.get("/api/runs?per_page=2&page=3")) == [0]
    assert numbers(client.get("/api/runs?run_class=BEAM")) == [4, 2, 1]
    assert numbers(client.get("/api/runs?since=2026-11-21&until=2026-11-22")) == [3, 2, 1]
    assert numbers(client.get("/api/runs?until=2026-11-20")) == [0]
    assert numbers(client.get("/api/runs?q=mcr")) == [1]  # comments too, any case
    assert numbers(client.get("/api/runs?q=%25")) == []  # a LIKE wildcard is a character


@pytest.mark.parametrize("query, message", [
    ("per_page=0", "per_page must be between 1 and 500"),
    ("page=x", "page must be a whole number"),
    ("since=yesterday", "since must be a date"),
    ("run_class=beam", "run_class must be one of"),
    ("colour=red", "unknown parameter(s): colour"),
    ("q=" + "x" * 201, "q is longer than 200"),
])
def test_bad_filters_are_400_naming_the_parameter(run_log, query, message):
    response = run_log["viewer"].get(f"/api/runs?{query}")
    assert response.status_code == 400
    assert message in response.get_json()["error"]
    page = run_log["viewer"].get(f"/runs/?{query}")
    assert page.status_code == 400 and message in page.get_data(as_text=True)


def test_the_csv_export_holds_every_matching_run_with_a_column_per_field(run_log):
    response = run_log["viewer"].get("/api/runs.csv?run_class=BEAM&per_page=1")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [row["number"] for row in rows] == ["4", "2", "1"]  # no pages in an export
    assert rows[0]["title"] == "'=SUM(A1)"  # never a formula in a spreadsheet
    assert rows[2]["gas pressure"] == "151.0" and rows[2]["bytes"] == "5000004000"
    assert "beam on target" in rows[0]


def test_the_runs_page_shows_the_log_with_its_filters_and_export_links(run_log):
    html = run_log["viewer"].get("/runs/?run_class=BEAM").get_data(as_text=True)
    assert 'data-run="2"' in html and 'data-run="0"' not in html
    assert "Beam tuned by MCR" in html and "gas pressure (Torr)" in html
    assert "/api/runs.csv?run_class=BEAM" in html
    assert run_log["viewer"].get("/runs/99").status_code == 404


def test_a_note_edited_after_the_stop_keeps_its_history_and_is_audited(run_log):
    client = run_log["operator"]
    first = client.patch("/api/runs/1", json={"note": "beam lost at 03:10 for 5 min"})
    assert first.status_code == 200, first.get_data(as_text=True)
    second = client.patch("/api/runs/1", json={"note": "beam lost at 03:10 for 7 min",
                                               "fields": {"beam on target": "no",
                                                          "target": "CD2"}})
    run = second.get_json()
    assert run["note"] == "beam lost at 03:10 for 7 min"
    assert [note["text"] for note in run["notes"]] == [
        "beam lost at 03:10 for 7 min", "beam lost at 03:10 for 5 min"]
    assert {note["author"] for note in run["notes"]} == {"alice"}
    assert run["fields"] == {"gas pressure": 151.0, "beam on target": "no", "target": "CD2"}
    assert [entry["action"] for entry in run["audit"]] == ["run_edit", "run_edit"]
    assert run["audit"][1]["detail"]["fields"] == {"beam on target": "no", "target": "CD2"}

    html = client.get("/runs/1").get_data(as_text=True)
    assert "for 5 min" in html and "for 7 min" in html and 'id="note-history"' in html

    edited = client.post("/runs/1", data={"note": "final words", "field:target": ""})
    assert edited.status_code == 200 and "final words" in edited.get_data(as_text=True)
    assert client.get("/api/runs/1").get_json()["fields"] == {"gas pressure": 151.0,
                                                              "beam on target": "no"}


@pytest.mark.parametrize("body, message", [
    ({"note": "x", "colour": "red"}, "unknown field(s): colour"),
    ({"fields": {"gas pressure": "high"}}, "field 'gas pressure' must be a number"),
    ({"fields": {"magnet": 1.2}}, "no run field named 'magnet'"),
    ({"fields": {"target": "gold"}}, "field 'target' must be one of: none, CD2"),
    ({"fields": ["gas pressure", 1]}, "fields must be an object"),
    ({"note": "x" * 4001}, "note is longer than 4000"),
    ({"note": 7}, "note must be text"),
    ([1], "the body must be a JSON object"),
])
def test_bad_edits_are_400_and_change_nothing(run_log, body, message):
    before = database_digest()
    response = run_log["operator"].patch("/api/runs/1", data=json.dumps(body),
                                         content_type="application/json")
    assert response.status_code == 400, response.get_data(as_text=True)
    assert message in response.get_json()["error"]
    assert database_digest() == before


def test_viewers_read_the_log_but_do_not_edit_it(run_log):
    before = database_digest()
    assert run_log["viewer"].patch("/api/runs/1", json={"note": "x"}).status_code == 403
    assert run_log["operator"].patch("/api/runs/77", json={"note": "x"}).status_code == 404
    assert database_digest() == before


def test_operators_define_run_fields_on_a_page_audited(run_log):
    client = run_log["operator"]
    added = client.post("/runs/fields", data={"name": "magnet", "type": "number", "unit": "T",
                                              "asked_at": "start"})
    assert added.status_code == 200 and "magnet" in added.get_data(as_text=True)
    client.post("/runs/fields", data={"previous_name": "target", "name": "target",
                                      "type": "choice", "choices": "none, CD2, C",
                                      "asked_at": "start", "required": "on"})
    client.post("/runs/fields", data={"previous_name": "beam on target", "remove": "1"})
    listed = client.get("/api/runs").get_json()["fields"]
    assert [(f["name"], f["choices"], f["required"]) for f in listed] == [
        ("gas pressure", [], True), ("target", ["none", "CD2", "C"], True),
        ("magnet", [], False)]
    with models.session() as s:
        actions = s.exec(select(AuditEntry.action).where(AuditEntry.action.startswith("run_"))
                         .order_by(AuditEntry.id)).all()
    assert actions == ["run_field", "run_field", "run_field_removed"]

    before = database_digest()
    refused = client.post("/runs/fields", data={"name": "colour", "type": "choice"})
    assert refused.status_code == 400 and "needs its choices" in refused.get_data(as_text=True)
    duplicate = client.post("/runs/fields", data={"name": "magnet", "type": "text"})
    assert duplicate.status_code == 400
    assert run_log["viewer"].post("/runs/fields", data={"name": "x"}).status_code == 403
    assert database_digest() == before


def test_the_runs_commands_list_show_and_note(run_log):
    runner = CliRunner()
    listed = runner.invoke(main, ["runs", "list", "--class", "BEAM"])
    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines()[-1] == "3 run(s)"
    as_csv = runner.invoke(main, ["runs", "list", "--csv"])
    assert [row["number"] for row in csv.DictReader(io.StringIO(as_csv.output))] == [
        "4", "3", "2", "1", "0"]
    as_json = json.loads(runner.invoke(main, ["runs", "list", "--json", "--per-page", "2"]).output)
    assert as_json["total"] == 5 and len(as_json["runs"]) == 2

    noted = runner.invoke(main, ["runs", "note", "3", "trigger fixed for run 4",
                                 "--field", "target=none"])
    assert noted.exit_code == 0, noted.output
    shown = runner.invoke(main, ["runs", "show", "3"])
    assert "trigger fixed for run 4" in shown.output and "target" in shown.output
    with models.session() as s:
        note = s.exec(select(RunNote)).one()
    assert note.author == accounts.local_actor()

    refused = runner.invoke(main, ["runs", "note", "3", "x", "--field", "target=gold"])
    assert refused.exit_code == 2 and "must be one of" in refused.output
    missing = runner.invoke(main, ["runs", "show", "99"])
    assert missing.exit_code == 2 and "no run 99" in missing.output


@pytest.mark.parametrize("path, body, message", [
    ("/api/runs/start", {"title": "t", "fields": {"gas pressure": 1}, "colour": "red"},
     "unknown field(s): colour"),
    ("/api/runs/start", {"fields": {"gas pressure": "high"}},
     "field 'gas pressure' must be a number"),
    ("/api/runs/start", {"fields": {"gas pressure": 1, "magnet": 2}},
     "no run field named 'magnet'"),
    ("/api/runs/start", {"fields": {"target": "CD2"}}, "needs field(s): gas pressure"),
    ("/api/runs/start", {"fields": {"gas pressure": 1, "beam on target": "yes"}},
     "asked at the run's stop"),
    ("/api/runs/start", {"comment": "x" * 1001, "fields": {"gas pressure": 1}},
     "comment is longer than 1000"),
    ("/api/runs/start", {"comment": 5, "fields": {"gas pressure": 1}}, "comment must be text"),
    ("/api/runs/stop", {"note": "x" * 4001, "fields": {"beam on target": "no"}},
     "note is longer than 4000"),
    ("/api/runs/stop", {"note": "n"}, "the run's stop needs field(s): beam on target"),
    ("/api/runs/stop", {"fields": {"beam on target": "maybe"}}, "must be one of: yes, no"),
    ("/api/runs/stop", {"comment": "c", "fields": {"beam on target": "no"}},
     "unknown field(s): comment"),
    ("/actions/start", {"title": "t", "field:gas pressure": "lots"},
     "field &#39;gas pressure&#39; must be a number"),
    ("/actions/stop", {"note": "n", "field:magnet": "1"}, "no run field named"),
])
def test_bad_run_sheets_are_400_and_change_nothing(run_log, path, body, message):
    before = database_digest()
    client = run_log["operator"]
    if path.startswith("/api/"):
        response = client.post(path, json=body)
        text = response.get_json()["error"]
    else:
        response = client.post(path, data=body)
        text = response.get_data(as_text=True)
    assert response.status_code == 400, text
    assert message in text
    assert database_digest() == before
