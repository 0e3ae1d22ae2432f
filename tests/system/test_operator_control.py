"""Operator control on a real worker, the simulator and sshd: one ECC server moved alone,
with the ordering rules and force during a run; a start refused while the next run's
folder exists on a data router's node."""
from __future__ import annotations

from pipelines.daq.ecc.states import EccState
from pipelines.runcontrol import accounts
from tests.support.daq import database_digest, set_all, wait_workflow
from tests.support.web import account, web_app


def robot():
    account("robot", "operator")
    return web_app().test_client(), {"Authorization": f"Bearer {accounts.issue_token('robot')}"}


def test_one_server_is_configured_alone_as_a_workflow_with_its_bar(running_daq):
    sim = running_daq
    client, token = robot()
    set_all(sim, EccState.PREPARED)
    before = len(sim.log())
    response = client.post("/api/ecc-servers/ecc-cobo3/transitions/configure", headers=token)
    assert response.status_code == 202, response.get_json()
    view = wait_workflow(response.get_json()["workflow_id"])
    assert view["state"] == "succeeded" and view["kind"] == "server_step"
    assert [(st["name"], st["total"], st["done"]) for st in view["stages"]] == [
        ("configure ecc-cobo3", 1, 1)]
    assert [(e["server"], e["operation"]) for e in sim.log()[before:]] == [
        ("ecc-cobo3", "Configure")]
    states = {name: report["state"] for name, report in sim.states().items()}
    assert states["ecc-cobo3"] == EccState.READY
    assert {name for name, state in states.items() if state == EccState.PREPARED} == \
        {f"ecc-cobo{i}" for i in range(8) if i != 3} | {"ecc-mutant"}
    actions = client.get(f"/api/workflows/{view['id']}", headers=token).get_json()["actions"]
    assert actions[0]["detail"] == {"server": "ecc-cobo3", "operation": "configure"}

    # The MuTAnT's Configure waits for every CoBo: refused, naming the rule; nothing written.
    digest = database_digest()
    refused = client.post("/api/ecc-servers/ecc-mutant/transitions/configure", headers=token)
    assert refused.status_code == 409
    assert "ordering rule" in refused.get_json()["error"]
    missing = client.post("/api/ecc-servers/ecc-nope/transitions/reset", headers=token)
    assert missing.status_code == 404
    bad = client.post("/api/ecc-servers/ecc-cobo3/transitions/reset", headers=token,
                      json={"force": "yes"})
    assert bad.status_code == 400 and "force must be true or false" in bad.get_json()["error"]
    assert database_digest() == digest


def test_moving_one_server_during_a_run_needs_force(running_daq):
    sim = running_daq
    client, token = robot()
    set_all(sim, EccState.READY)
    start = client.post("/api/runs/start", headers=token, json={"title": "forced"})
    assert wait_workflow(start.get_json()["workflow_id"])["state"] == "succeeded"
    refused = client.post("/api/ecc-servers/ecc-mutant/transitions/stop", headers=token)
    assert refused.status_code == 409 and "needs force" in refused.get_json()["error"]
    forced = client.post("/api/ecc-servers/ecc-mutant/transitions/stop", headers=token,
                         json={"force": True})
    assert forced.status_code == 202
    view = wait_workflow(forced.get_json()["workflow_id"])
    assert view["state"] == "succeeded" and sim.states()["ecc-mutant"]["state"] == EccState.READY
    actions = client.get(f"/api/workflows/{view['id']}", headers=token).get_json()["actions"]
    assert actions[0]["detail"]["force"] is True
    # The run is still going: a server step records no run start or stop.
    assert client.get("/api/status", headers=token).get_json()["run"]["number"] == 0


def test_a_start_is_refused_while_the_next_runs_folder_exists_on_a_node(running_daq,
                                                                        staging_root):
    from pipelines.daq.nodes import checks

    sim = running_daq
    client, token = robot()
    set_all(sim, EccState.READY)
    taken = staging_root / "4" / "test" / "run_0000"
    taken.mkdir(parents=True)
    digest = database_digest()
    refused = client.post("/api/runs/start", headers=token, json={"title": "again"})
    assert refused.status_code == 409
    assert (f"router-4: the next run's folder {taken} exists already"
            in refused.get_json()["error"])
    routers = {st.name: st for st in checks.check_all()}
    assert routers["router-4"].next_run_folder == str(taken)
    assert routers["router-3"].next_run_folder is None
    html = web_app().test_client().get("/live", headers=token).get_data(as_text=True)
    assert "the next run's folder exists already: <code>" + str(taken) in html
    taken.rmdir()
    started = client.post("/api/runs/start", headers=token, json={"title": "again"})
    assert started.status_code == 202, started.get_json()
    wait_workflow(started.get_json()["workflow_id"])
    assert database_digest() != digest
