"""Unit tests of planning: the order of stages the hardware needs, and the DAQ's overall state."""
import re

import pytest

from models import ECCServer, Run
from pipelines.daq.ecc.states import EccState, Operation
from pipelines.runcontrol import planning
from pipelines.runcontrol.errors import NotFound, Refused


def _servers(states):
    out = []
    for i, state in enumerate(states):
        mutant = i == len(states) - 1
        out.append((ECCServer(id=i, name="ecc-mutant" if mutant else f"ecc-cobo{i}", url="",
                              state=state), mutant))
    return out


# Every transition's stages, in the order the field runs them (DOMAIN.md, "Ordering").
ORDER = {
    Operation.DESCRIBE: ["describe CoBos", "describe MuTAnT"],
    Operation.PREPARE: ["prepare MuTAnT", "prepare CoBos"],
    Operation.CONFIGURE: ["configure CoBos", "configure MuTAnT"],
    Operation.START: ["start CoBos", "start MuTAnT"],
    Operation.STOP: ["stop MuTAnT", "stop CoBos"],
    Operation.BREAKUP: ["breakup MuTAnT", "breakup CoBos"],
    Operation.UNDO: ["undo all"],
}


@pytest.mark.parametrize("operation", list(ORDER))
def test_every_transition_goes_in_the_order_the_hardware_needs(operation):
    servers = _servers([4, 4, 4])
    targets = {srv.name: (operation, EccState.READY) for srv, _ in servers}
    stages = planning.ordered_stages(operation, servers, targets)
    assert [p.name for p in stages] == ORDER[operation]
    mutant_stage = next((p for p in stages if "MuTAnT" in p.name), None)
    if mutant_stage:
        assert [m[0] for m in mutant_stage.members] == ["ecc-mutant"]
    assert sorted(m[0] for p in stages for m in p.members) == sorted(targets)


def test_a_start_re_arms_the_mutant_first_breakup_then_configure():
    servers = _servers([4, 4, 4])
    rearm = planning.rearm_mutant(servers)
    assert [(p.name, p.members) for p in rearm] == [
        ("re-arm MuTAnT: breakup", [("ecc-mutant", Operation.BREAKUP, EccState.PREPARED)]),
        ("re-arm MuTAnT: configure", [("ecc-mutant", Operation.CONFIGURE, EccState.READY)])]
    assert planning.rearm_mutant(_servers([4, 4])[:1]) == []  # no MuTAnT: nothing to re-arm


def test_empty_stages_are_skipped():
    servers = _servers([4, 4, 4])
    targets = {"ecc-cobo0": (Operation.START, EccState.RUNNING)}
    stages = planning.ordered_stages(Operation.START, servers, targets)
    assert [p.name for p in stages] == ["start CoBos"]


def test_overall_state():
    assert planning.daq_state([4, 4]) == "READY"
    assert planning.daq_state([4, 5]) == "Mixed"
    assert planning.daq_state([4, None]) == "Unknown"


def _alone(states):
    servers = _servers(states)
    return planning.server_operations(servers), servers


def test_one_server_may_take_only_the_steps_its_state_and_the_ordering_rules_allow():
    # CoBos DESCRIBED, MuTAnT DESCRIBED: no CoBo may Prepare before the MuTAnT is PREPARED.
    legal, _ = _alone([2, 2, 2])
    assert legal["ecc-cobo0"] == ["undo", "reset"]
    assert legal["ecc-mutant"] == ["prepare", "undo", "reset"]
    # The MuTAnT PREPARED: now a CoBo may Prepare; the MuTAnT may not Configure before them.
    legal, _ = _alone([2, 3, 3])
    assert legal["ecc-cobo0"] == ["prepare", "undo", "reset"]
    assert legal["ecc-mutant"] == ["undo", "reset"]
    # Running: the MuTAnT stops first.
    legal, _ = _alone([5, 5, 5])
    assert legal["ecc-cobo0"] == [] and legal["ecc-mutant"] == ["stop", "reset"]


@pytest.mark.parametrize("states, name, operation, message", [
    ([2, 2, 2], "ecc-cobo0", "prepare", "a CoBo's Prepare needs the MuTAnT PREPARED first"),
    ([3, 4, 3], "ecc-mutant", "configure", "each CoBo READY first"),
    ([5, 5, 5], "ecc-cobo1", "stop", "the MuTAnT stops before the CoBos"),
    ([4, 4, 4], "ecc-cobo0", "configure", "Configure takes a server from PREPARED; "
                                          "ecc-cobo0 is READY"),
    ([1, 1, 1], "ecc-cobo0", "reset", "ecc-cobo0 is IDLE: nothing to reset"),
    ([4, 4, 4], "ecc-cobo0", "undo", "Undo takes a server from PREPARED or DESCRIBED"),
    ([None, 4, 4], "ecc-cobo0", "start", "state is unknown"),
])
def test_a_step_that_breaks_a_rule_is_refused_with_the_rule(states, name, operation, message):
    servers = _servers(states)
    with pytest.raises(Refused, match=re.escape(message)):
        planning.server_step(servers, name, operation, None, False)


def test_one_server_during_a_run_needs_force_and_an_unknown_one_is_not_found():
    servers = _servers([5, 5, 5])
    with pytest.raises(Refused, match="run 3 is going: moving ecc-mutant alone during a run "
                                      "needs force"):
        planning.server_step(servers, "ecc-mutant", "stop", Run(number=3), False)
    stage = planning.server_step(servers, "ecc-mutant", "stop", Run(number=3), True)
    assert (stage.name, stage.members) == ("stop ecc-mutant",
                                           [("ecc-mutant", Operation.STOP, EccState.READY)])
    with pytest.raises(NotFound):
        planning.server_step(servers, "ecc-nope", "stop", None, False)
