"""The zeep ECC client against the simulator, over real HTTP."""
import time

import pytest

from pipelines import ecc
from pipelines.ecc import ConfigId, DataLink, EccState

CONFIG = ConfigId("cfg", "cfg", "cfg")


@pytest.fixture
def sim(simulator):
    simulator.reset()
    return simulator


def client(sim, index=0, **timeouts):
    return ecc.EccClient(f"ecc-cobo{index}", f"http://127.0.0.1:{sim.ports[index]}/", **timeouts)


def links(index=0):
    return [DataLink(f"CoBo[{index}]", f"router-{index}", "127.0.0.1", 46005 + index)]


def drive(c, operation, target, deadline=3.0, index=0):
    return ecc.drive(c, operation, target, CONFIG, links(index), deadline, 0.2)


def test_every_transition_up_and_down_is_confirmed(sim):
    c = client(sim)
    ladder = [("Describe", EccState.DESCRIBED), ("Prepare", EccState.PREPARED),
              ("Configure", EccState.READY), ("Start", EccState.RUNNING),
              ("Stop", EccState.READY), ("Breakup", EccState.PREPARED),
              ("Undo", EccState.DESCRIBED), ("Undo", EccState.IDLE)]
    for operation, target in ladder:
        assert drive(c, operation, target) is True
        report = c.get_state()
        assert (report.state, report.transition) == (target, 0), operation
    assert [e["operation"] for e in sim.log() if e["server"] == "ecc-cobo0"] == [
        op for op, _ in ladder]


def test_transition_is_asynchronous_like_the_hardware(sim):
    c = client(sim)
    started = time.monotonic()
    c.transition("Describe", CONFIG, links())
    assert time.monotonic() - started < 0.15
    report = c.get_state()
    assert report.transition != 0 and report.state == EccState.IDLE


def test_wrong_step_is_refused_by_the_server_with_its_message(sim):
    with pytest.raises(ecc.EccError) as info:
        client(sim).transition("Start", CONFIG, links())
    assert info.value.operation == "Start" and info.value.server == "ecc-cobo0"
    assert "Start needs state READY, server is IDLE" in str(info.value)
    assert info.value.code != 0


def test_error_code_surfaces_the_ecc_message(sim):
    sim.fault("ecc-cobo1", "error", operation="Describe", code=12,
              message="CoBo[1]: AsAd 2 not responding")
    with pytest.raises(ecc.EccError) as info:
        drive(client(sim, 1), "Describe", EccState.DESCRIBED, index=1)
    assert info.value.code == 12
    assert "CoBo[1]: AsAd 2 not responding" in str(info.value)
    assert "ecc-cobo1" in str(info.value) and "Describe" in str(info.value)


def test_a_transition_that_never_ends_fails_at_its_deadline(sim):
    sim.fault("ecc-cobo0", "hang", operation="Describe")
    started = time.monotonic()
    with pytest.raises(ecc.EccError) as info:
        drive(client(sim), "Describe", EccState.DESCRIBED, deadline=1.0)
    assert 1.0 <= time.monotonic() - started < 2.0
    assert "not confirmed within its deadline of 1 s" in str(info.value)


def test_refused_connection_fails_fast_and_clearly(sim):
    from pipelines.supervisor import free_port

    c = ecc.EccClient("ecc-gone", f"http://127.0.0.1:{free_port()}/")
    started = time.monotonic()
    with pytest.raises(ecc.EccError) as info:
        c.get_state()
    assert time.monotonic() - started < 1.0
    assert "connection refused" in str(info.value) and "ecc-gone" in str(info.value)


def test_refuse_fault_closes_the_servers_port(sim):
    sim.fault("ecc-cobo2", "refuse")
    with pytest.raises(ecc.EccError, match="connection refused"):
        client(sim, 2).get_state()


def test_slow_answer_hits_the_read_timeout(sim):
    sim.fault("ecc-cobo3", "slow", operation="GetState", seconds=1.5)
    with pytest.raises(ecc.EccError, match="no answer .* in time"):
        client(sim, 3, read_timeout=0.5).get_state()


def test_already_in_target_state_sends_nothing(sim):
    sim.set_state("ecc-cobo0", EccState.READY)
    assert drive(client(sim), "Configure", EccState.READY) is False
    assert sim.log() == []


def test_config_ids_are_listed(sim):
    assert client(sim).get_config_ids() == [CONFIG]


def test_clients_are_reused_per_server_and_built_lazily(sim):
    url = f"http://127.0.0.1:{sim.ports[0]}/"
    assert ecc.client_for("ecc-cobo0", url) is ecc.client_for("ecc-cobo0", url)
    assert ecc.client_for("ecc-cobo0", url) is not ecc.client_for("ecc-cobo1", url)


def test_a_shared_server_works_through_its_sources_in_series(tmp_path):
    from pipelines import topology
    from pipelines.ecc_simulator import Simulator
    from pipelines.supervisor import free_port
    port = free_port()
    text = (f'[experiment]\nname = "t"\n[[configs]]\nname = "cfg"\ndescribe = "cfg"\n'
            f'prepare = "cfg"\nconfigure = "cfg"\n[simulator]\nseconds_per_source = 0.15\n'
            f'[[ecc_servers]]\nname = "ecc-mutant"\nurl = "http://127.0.0.1:{port}/"\n'
            f'sources = ["CoBo[0]", "CoBo[1]", "Mutant[master]"]\n')
    sim = Simulator(topology.parse(text))
    sim.serve()
    try:
        c = ecc.EccClient("ecc-mutant", f"http://127.0.0.1:{port}/")
        shared_links = [DataLink(name, "r", "127.0.0.1", 46005)
                        for name in ("CoBo[0]", "CoBo[1]", "Mutant[master]")]
        started = time.monotonic()
        assert ecc.drive(c, "Describe", EccState.DESCRIBED, CONFIG, shared_links, 5.0, 0.45)
        assert time.monotonic() - started >= 0.45  # 3 sources x 0.15 s, one after another
    finally:
        sim.shutdown()
