"""Unit tests of planning: the order of stages the hardware needs, and the DAQ's overall state."""
from models import ECCServer
from pipelines.daq.ecc.states import EccState, Operation
from pipelines.runcontrol import planning


def _servers(states):
    out = []
    for i, state in enumerate(states):
        mutant = i == len(states) - 1
        out.append((ECCServer(id=i, name="ecc-mutant" if mutant else f"ecc-cobo{i}", url="",
                              state=state), mutant))
    return out


def test_up_puts_cobos_first_and_down_puts_the_mutant_first():
    servers = _servers([4, 4, 4])
    targets = {srv.name: (Operation.START, EccState.RUNNING) for srv, _ in servers}
    up = planning.ordered_stages(Operation.START, servers, targets)
    assert [p.name for p in up] == ["start CoBos", "start MuTAnT"]
    assert [m[0] for m in up[1].members] == ["ecc-mutant"]
    down = planning.ordered_stages(Operation.STOP, servers, targets)
    assert [p.name for p in down] == ["stop MuTAnT", "stop CoBos"]
    assert [p.name for p in planning.ordered_stages(Operation.PREPARE, servers, targets)] == ["prepare all"]


def test_empty_stages_are_skipped():
    servers = _servers([4, 4, 4])
    targets = {"ecc-cobo0": (Operation.START, EccState.RUNNING)}
    assert [p.name for p in planning.ordered_stages(Operation.START, servers, targets)] == ["start CoBos"]


def test_overall_state():
    assert planning.daq_state([4, 4]) == "READY"
    assert planning.daq_state([4, 5]) == "Mixed"
    assert planning.daq_state([4, None]) == "Unknown"
