"""The compact view: counts per state, troubled sources first, the active stage's ETA."""
from webui.overview import overview


def source(name, server, state="READY", online=True):
    return {"name": name, "ecc_server": server, "state": state, "online": online,
            "error": None if online else "connection refused"}


def step(state, expected=2.0, elapsed=None, error=None):
    return {"state": state, "expected": expected, "elapsed": elapsed, "progress": 0.5,
            "error": error, "operation": "Configure"}


def test_failed_then_slow_sources_come_first_and_states_are_counted():
    status = {"sources": [source("CoBo[0]", "e0", "RUNNING"), source("CoBo[1]", "e1", "READY"),
                          source("CoBo[2]", "e2", online=False),
                          source("CoBo[3]", "e3", "READY")]}
    steps = {"e0": step("succeeded"), "e1": step("running", expected=2.0, elapsed=5.0),
             "e3": step("failed", error="CoBo[3]: clock not locked")}
    view = overview(status, steps, None)
    assert [cell["name"] for cell in view["cells"]] == ["CoBo[2]", "CoBo[3]", "CoBo[1]",
                                                        "CoBo[0]"]
    assert [cell["trouble"] for cell in view["cells"]] == ["failed", "failed", "slow", None]
    assert view["cells"][1]["error"] == "CoBo[3]: clock not locked"
    assert view["counts"] == [("READY", 2), ("RUNNING", 1), ("offline", 1)]
    assert view["troubled"] == 3 and view["eta_seconds"] is None
    # Whom an abort would cut loose: the step past its expected time.
    assert view["waiting"] == [{"server": "e1", "operation": "Configure", "elapsed": 5.0,
                                "expected": 2.0}]


def test_the_eta_of_the_active_stage_is_its_slowest_remaining_step():
    workflow = {"active": True, "stages": [
        {"state": "succeeded", "steps": [step("succeeded")]},
        {"state": "running", "steps": [step("running", expected=10.0, elapsed=4.0),
                                       step("pending", expected=3.0),
                                       step("succeeded", expected=9.0, elapsed=9.0)]}]}
    assert overview({"sources": []}, {}, workflow)["eta_seconds"] == 6.0
