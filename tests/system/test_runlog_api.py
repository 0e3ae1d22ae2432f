"""The run log on a real worker: a run's sheet travels from the start and stop requests to
the record the workers write; and the JSON API, fuzzed from its own OpenAPI description
by schemathesis with an operator's token: no 500, and a rejected request changes nothing."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlmodel import select, update

import models
from models import Experiment, Run, Workflow
from models.vocabulary import ACTIVE_STATES
from pipelines.daq.ecc.states import EccState
from pipelines.runcontrol import accounts, lock
from pipelines.topology import loading
from pipelines.topology.schema import RunFieldSpec
from tests.support.daq import database_digest, set_all, wait_workflow
from tests.support.web import account, web_app
from webui.openapi import description

FIELDS = [RunFieldSpec(name="gas pressure", type="number", unit="Torr", required=True),
          RunFieldSpec(name="target", type="choice", choices=["none", "CD2"]),
          RunFieldSpec(name="beam on target", type="choice", choices=["yes", "no"],
                       asked_at="stop", required=True)]


def define_fields() -> None:
    with models.session() as s:
        experiment = s.exec(select(Experiment).where(Experiment.active == True)).one()  # noqa: E712
        loading.write_run_fields(s, experiment.id, FIELDS)


@pytest.fixture
def robot():
    """A test client of the web app and an operator's API token."""
    account("robot", "operator")
    return web_app().test_client(), {"Authorization": f"Bearer {accounts.issue_token('robot')}"}


def test_a_runs_comment_fields_and_note_reach_its_record_through_the_workers(running_daq, robot):
    client, token = robot
    define_fields()
    set_all(running_daq, EccState.READY)
    before = database_digest()
    missing = client.post("/api/runs/start", headers=token, json={"title": "cosmics"})
    assert missing.status_code == 400
    assert "needs field(s): gas pressure" in missing.get_json()["error"]
    assert database_digest() == before

    started = client.post("/api/runs/start", headers=token, json={
        "title": "cosmics", "run_class": "PROD", "comment": "after the gas change",
        "fields": {"gas pressure": "150", "target": "CD2"}})
    assert started.status_code == 202, started.get_json()
    assert wait_workflow(started.get_json()["workflow_id"])["state"] == "succeeded"
    going = client.get("/api/runs/0", headers=token).get_json()
    assert (going["comment"], going["fields"], going["started_by"], going["outcome"]) == (
        "after the gas change", {"gas pressure": 150.0, "target": "CD2"}, "robot", "going")

    refused = client.post("/api/runs/stop", headers=token, json={"note": "quiet night"})
    assert refused.status_code == 400 and "beam on target" in refused.get_json()["error"]
    stopped = client.post("/api/runs/stop", headers=token, json={
        "note": "quiet night", "fields": {"beam on target": "yes"}})
    assert stopped.status_code == 202
    assert wait_workflow(stopped.get_json()["workflow_id"], timeout=60)["state"] == "succeeded"
    run = client.get("/api/runs/0", headers=token).get_json()
    assert run["fields"] == {"gas pressure": 150.0, "target": "CD2", "beam on target": "yes"}
    assert (run["note"], run["stopped_by"], run["outcome"]) == ("quiet night", "robot",
                                                                "complete")
    assert [note["author"] for note in run["notes"]] == ["robot"]
    assert [w["kind"] for w in run["workflows"]] == ["start_run", "stop_run"]
    assert run["files"] > 0 and len(run["data"]) == 9 and len(run["config_backups"]) == 9
    assert [entry["action"] for entry in run["audit"]] == ["start_run", "stop_run"]


# Examples per operation and generation mode (valid, then invalid requests).
EXAMPLES = 8


def end_accepted_workflows():
    """An accepted request leaves its workflow pending: end it so the next may be accepted."""
    with models.session() as s:
        s.exec(update(Workflow).where(Workflow.state.in_(ACTIVE_STATES))
               .values(state="failed", error="ended by the fuzz test"))
    lock.clear()


@pytest.mark.database_agnostic
def test_the_json_api_fuzzed_from_its_openapi_description(daq, robot, monkeypatch):
    from pipelines.runcontrol import launching, replay

    # Accepted workflows are written but not sent: a worker would change the database
    # under the comparison, and this test is about the API's checks.
    monkeypatch.setattr(launching, "dispatch", lambda workflow_id: None)
    monkeypatch.setattr(replay, "dispatch", lambda workflow_id: None)
    define_fields()
    set_all(daq, EccState.READY)
    with models.session() as s:
        experiment = s.exec(select(Experiment)).one()
        s.add(Run(experiment_id=experiment.id, number=0, title="earlier"))
        experiment.last_run_number = 0
    # Half the requests name a run and a workflow that exist: random ids would all be 404s.
    existing = {"number": 0, "workflow_id": launching.create("describe")}
    end_accepted_workflows()
    client, token = robot
    api = schemathesis.openapi.from_wsgi("/api/openapi.json", client.application,
                                         headers=token)
    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_schema_conformance]
    seen: dict = {}
    operations = [result.ok() for result in api.get_all_operations()]
    # Every operation but the description itself, which schemathesis leaves out.
    assert {op.label for op in operations} == {
        f"{method.upper()} {path}" for path, item in description()["paths"].items()
        for method in item} - {"GET /api/openapi.json"}
    for operation in operations:
        pinned = {p.name: existing[p.name] for p in operation.path_parameters
                  if p.name in existing}
        strategies = [operation.as_strategy(generation_mode=mode, path_parameters=ids)
                      for mode in schemathesis.GenerationMode
                      for ids in ([None, pinned] if pinned else [None])]
        for strategy in strategies:
            @settings(max_examples=EXAMPLES, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=strategy)
            def one(case):
                before = database_digest()
                response = case.call(headers=token)
                case.validate_response(response, checks=checks, headers=token)
                status = response.status_code
                seen[status // 100] = seen.get(status // 100, 0) + 1
                if status >= 400:
                    assert database_digest() == before, (case.as_curl_command(), status)
                elif status == 202:
                    end_accepted_workflows()

            one()
    # Both sides of the checks were reached, or the fuzzing proved little.
    assert seen.get(2, 0) > 50 and seen.get(4, 0) > 50, seen
