"""Beat's watch of the DAQ between and during workflows, with real processes: every ECC
server's state refreshed, a dead server or program seen, and a refresh that never
overlaps a transition."""
from __future__ import annotations

import threading

import pytest
from sqlmodel import select, update

import models
from models import ECCServer
from pipelines.daq.ecc.states import EccState
from pipelines.runcontrol import launching, watch
from tests.support.daq import COBOS, set_all, start_held, wait_workflow
from tests.support.processes import wait_for
from tests.support.web import operator_client


def servers() -> dict[str, ECCServer]:
    with models.session() as s:
        return {srv.name: srv for srv in s.exec(select(ECCServer)).all()}


def test_a_refresh_leaves_the_servers_in_transition_to_their_steps(running_daq):
    sim = running_daq
    workflow_id = start_held(sim, "held")  # the CoBos' steps run; the MuTAnT waits for them
    with models.session() as s:  # what a refresh would overwrite
        s.exec(update(ECCServer).values(state=None, transition=None, last_seen_at=None))

    asked = watch.refresh_ecc_states()

    assert asked == {"ecc-mutant": "READY"}  # only the server no step is driving
    rows = servers()
    assert rows["ecc-mutant"].state == EccState.READY and rows["ecc-mutant"].last_seen_at
    assert all(rows[cobo].state is None and rows[cobo].last_seen_at is None for cobo in COBOS)
    sim.clear_faults()
    assert wait_workflow(workflow_id)["state"] == "succeeded"


def test_a_refresh_answer_older_than_a_transitions_result_is_not_written(running_daq):
    sim = running_daq
    set_all(sim, EccState.IDLE)
    # cobo0's answer to the refresh is made at once (IDLE) and arrives 2 s later, after a
    # Describe has taken it to DESCRIBED and its step recorded that.
    sim.fault("ecc-cobo0", "slow", operation="GetState", seconds=2.0, times=1)
    outcome = {}
    refresh = threading.Thread(target=lambda: outcome.update(watch.refresh_ecc_states()))
    refresh.start()
    wait_for(lambda: any(e["server"] == "ecc-cobo0" for e in sim.log(transitions_only=False)),
             message="the refresh to ask ecc-cobo0")

    workflow_id = launching.launch("describe")

    assert wait_workflow(workflow_id)["state"] == "succeeded"
    refresh.join(30)
    assert not refresh.is_alive()
    assert outcome["ecc-cobo0"] == "IDLE"  # the stale answer came back ...
    assert servers()["ecc-cobo0"].state == EccState.DESCRIBED  # ... and was not written


@pytest.mark.database_agnostic
def test_beat_marks_a_dead_ecc_server_offline_and_refreshes_the_others(running_daq, beat,
                                                                       staging_root):
    sim = running_daq
    set_all(sim, EccState.READY)
    with models.session() as s:  # the database has not seen any server yet
        for server in s.exec(select(ECCServer)).all():
            server.state, server.online = None, None
    (staging_root / "5" / "stray.graw").write_bytes(b"x")
    sim.fault("ecc-cobo2", "refuse")  # the server's port closes, as if it had died

    def watched():
        with models.session() as s:
            router = s.exec(select(models.DataRouter).where(
                models.DataRouter.name == "router-5")).one()
        rows = servers()
        dead = rows.pop("ecc-cobo2")
        return (dead.online is False and all(srv.online and srv.state == EccState.READY
                                             for srv in rows.values())
                and router.graw_files == 1 and dead)

    dead = wait_for(watched, timeout=20, message="beat to see the dead server")
    assert dead.state is None and "ecc-cobo2" in dead.last_error
    page = operator_client().get("/").get_data(as_text=True)
    assert "offline" in page and "dirty: 1 .graw file(s)" in page


def ecc_processes() -> dict[str, bool | None]:
    return {name: srv.process_running for name, srv in servers().items()}


@pytest.mark.database_agnostic
def test_beat_sees_the_ecc_server_process_die_and_come_back(running_daq, beat):
    sim = running_daq
    names = list(ecc_processes())
    wait_for(lambda: ecc_processes() == dict.fromkeys(names, True), timeout=20,
             message="beat to find getEccSoapServer running on the ECC servers' node")

    sim.process("getEccSoapServer", running=False)  # the program dies on the node
    wait_for(lambda: ecc_processes() == dict.fromkeys(names, False), timeout=20,
             message="beat to see getEccSoapServer gone")
    with models.session() as s:
        routers = s.exec(select(models.DataRouter)).all()
        assert all(router.online for router in routers)  # the routers' own process still runs
    page = operator_client().get("/").get_data(as_text=True)
    row = page.split('data-ecc-server="ecc-cobo0"')[1].split("</tr>")[0]
    assert '<td class="ecc-process"><span class="error">not running</span></td>' in row

    sim.process("getEccSoapServer", running=True)
    wait_for(lambda: ecc_processes() == dict.fromkeys(names, True), timeout=20,
             message="beat to see getEccSoapServer back")
