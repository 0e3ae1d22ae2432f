"""Which buttons the run-control page enables: what the rules allow now."""
import pytest

from pipelines.daq.ecc.states import EccState
from pipelines.runcontrol.status import legal_now

IDLE, DESCRIBED, PREPARED, READY, RUNNING = (int(state) for state in EccState)


@pytest.mark.parametrize("states, run_going, active, legal", [
    ([IDLE, IDLE], False, False, ["describe"]),
    ([DESCRIBED, DESCRIBED], False, False, ["prepare", "reset"]),
    ([PREPARED, PREPARED], False, False, ["configure", "reset"]),
    ([READY, READY], False, False, ["start_run", "reset"]),
    ([READY, PREPARED], False, False, ["reset"]),  # Mixed: only the way down converges
    ([RUNNING, RUNNING], True, False, ["stop_run"]),
    ([IDLE, IDLE], True, False, ["stop_run"]),  # a run whose sources were lost: Stop ends it
    ([READY, None], False, False, []),  # an offline server: nothing is known to be legal
    ([READY, READY], False, True, ["abort"]),  # a workflow is active: wait, or abort it
    ([], False, False, []),
])
def test_the_buttons_offer_only_what_the_rules_allow(states, run_going, active, legal):
    assert legal_now(states, run_going, active) == legal
