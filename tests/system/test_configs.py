"""Configs from the servers, on a real worker and a simulator of its own: what each server
offers comes from the .xcfg files in its config directory; a config missing on one server
cannot be chosen for all; a Describe sends each server the ConfigId chosen for it; the run
records the config each server used."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlmodel import select

import models
from models import Run
from pipelines.cli.supervisor import free_port
from pipelines.daq.ecc.states import EccState
from pipelines.runcontrol import accounts, configs, lock
from pipelines.simulator.topology import simulated_topology
from pipelines.topology import loading, schema
from tests.support.daq import clear_workflow_records, database_digest, wait_workflow
from tests.support.services import start_simulator
from tests.support.web import account, web_app

BEAM = '\n[[configs]]\nname = "beam"\ndescribe = "beam"\nprepare = "beam"\nconfigure = "beam"\n'


@pytest.fixture
def own_daq(worker, redis_url, tmp_path):
    """Three servers; ecc-cobo1 keeps its .xcfg files in a config directory of its own."""
    port = free_port()
    text = simulated_topology([port] * 3, staging_root=tmp_path / "staging") + BEAM
    text = re.sub(r'(sources = \["CoBo\[1\]"\]\n)', r'\1config_dir = "cobo1-configs"\n', text)
    sim = start_simulator(tmp_path, [port] * 3, text)
    clear_workflow_records()
    lock.clear()
    topo = schema.read(sim.topology_path)
    loading.load(topo)
    cobo1 = next(spec for spec in topo.ecc_servers if spec.name == "ecc-cobo1")
    yield sim, Path(loading.ecc_dirs(topo, cobo1)[0])
    sim.stop()
    clear_workflow_records()


def test_configs_are_read_from_the_servers_chosen_and_sent_with_describe(own_daq):
    sim, cobo1_dir = own_daq
    account("robot", "operator")
    client = web_app().test_client()
    token = {"Authorization": f"Bearer {accounts.issue_token('robot')}"}

    listing = client.post("/api/configs/read", headers=token).get_json()
    assert listing["common"] == ["beam", "cfg"] and listing["active"] == "cfg"
    (cobo1_dir / "describe-beam.xcfg").unlink()  # gone from one server's directory
    listing = client.post("/api/configs/read", headers=token).get_json()
    offers = {server["name"]: server["offered"] for server in listing["servers"]}
    assert offers == {"ecc-cobo0": ["beam", "cfg"], "ecc-cobo1": ["cfg"],
                      "ecc-mutant": ["beam", "cfg"]}
    assert listing["common"] == ["cfg"]

    before = database_digest()
    refused = client.post("/api/configs/choose", headers=token, json={"config": "beam"})
    assert refused.status_code == 409
    assert refused.get_json()["error"] == "config 'beam' is not offered by ecc-cobo1"
    assert database_digest() == before

    chosen = client.post("/api/configs/choose", headers=token,
                         json={"config": "beam", "server": "ecc-cobo0"})
    assert chosen.status_code == 200
    assert {s["name"]: s["chosen"] for s in chosen.get_json()["servers"]} == {
        "ecc-cobo0": "beam", "ecc-cobo1": "cfg", "ecc-mutant": "cfg"}

    described = client.post("/api/transitions/describe", headers=token)
    assert described.status_code == 202
    view = wait_workflow(described.get_json()["workflow_id"])
    assert view["state"] == "succeeded", view
    sent = {e["server"]: e["config"] for e in sim.log() if e["operation"] == "Describe"}
    assert sent == {"ecc-cobo0": "beam", "ecc-cobo1": "cfg", "ecc-mutant": "cfg"}
    actions = client.get(f"/api/workflows/{view['id']}", headers=token).get_json()
    assert {name: c["name"] for name, c in actions["params"]["configs"].items()} == sent
    page = client.get(f"/workflows/{view['id']}", headers=token).get_data(as_text=True)
    assert "config per server: ecc-cobo0 beam, ecc-cobo1 cfg, ecc-mutant cfg" in page

    # A Describe with a config one server does not offer is refused before anything is sent.
    for name in ("ecc-cobo0", "ecc-cobo1", "ecc-mutant"):
        sim.set_state(name, EccState.IDLE)
    with models.session() as s:
        server = s.exec(select(models.ECCServer).where(
            models.ECCServer.name == "ecc-cobo1")).one()
        server.config = {"describe": "beam", "prepare": "beam", "configure": "beam"}
    sent_before = len(sim.log())
    refused = client.post("/api/transitions/describe", headers=token)
    assert refused.status_code == 409
    assert "ecc-cobo1 does not offer config 'beam'" in refused.get_json()["error"]
    assert sim.log()[sent_before:] == []

    audit = [a for a in client.get(f"/api/workflows/{view['id']}", headers=token)
             .get_json()["actions"]]
    assert audit[0]["action"] == "describe"
    with models.session() as s:
        entries = s.exec(select(models.AuditEntry.detail).where(
            models.AuditEntry.action == "choose_config")).all()
    assert entries == [{"config": "beam", "servers": "ecc-cobo0"}]


def test_a_run_records_the_config_each_server_used(own_daq):
    sim, _ = own_daq
    configs.read_offered()
    configs.choose("beam", "ecc-cobo0")
    for name in ("ecc-cobo0", "ecc-cobo1", "ecc-mutant"):
        sim.set_state(name, EccState.READY)
    with models.session() as s:
        for server in s.exec(select(models.ECCServer)).all():
            server.state = int(EccState.READY)
    from pipelines.runcontrol import launching

    assert wait_workflow(launching.launch("start_run", title="mixed"))["state"] == "succeeded"
    with models.session() as s:
        run = s.exec(select(Run)).one()
    assert run.config_name == "mixed"
    assert run.server_configs == {"ecc-cobo0": "beam", "ecc-cobo1": "cfg", "ecc-mutant": "cfg"}
    account("robot", "viewer")
    token = {"Authorization": f"Bearer {accounts.issue_token('robot')}"}
    page = web_app().test_client().get(f"/runs/{run.number}", headers=token).get_data(
        as_text=True)
    assert "mixed: ecc-cobo0 beam, ecc-cobo1 cfg, ecc-mutant cfg" in page
