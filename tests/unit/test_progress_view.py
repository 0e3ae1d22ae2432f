"""Unit tests of how the progress read shows one step: its record first, Redis for the live part."""
from datetime import timedelta

from models import Step
from models.columns import utcnow
from pipelines.runcontrol.progress import _step_view


def step(state: str, **fields) -> Step:
    return Step(id=1, stage_id=1, target="ecc-cobo0", operation="Start", task_id="t-1",
                attempt=1, state=state, expected_seconds=2.0, **fields)


def test_an_ended_step_shows_its_record_whatever_progress_it_left_in_redis():
    now = utcnow()
    done = step("succeeded", started_at=now - timedelta(seconds=3), finished_at=now,
                duration=3.0)
    left = {"status": "PROGRESS", "result": {"elapsed": 1.0, "expected": 2.0}}
    view = _step_view(done, left, now)
    assert (view["task_state"], view["progress"], view["elapsed"]) == ("SUCCESS", 1.0, 3.0)
    failed = _step_view(step("failed", error="CoBo[0]: clock not locked"), left, now)
    assert (failed["task_state"], failed["progress"]) == ("FAILURE", 1.0)


def test_a_running_step_shows_started_from_its_record_and_progress_from_redis():
    now = utcnow()
    running = step("running", started_at=now - timedelta(seconds=1))
    assert _step_view(running, None, now)["task_state"] == "STARTED"
    live = _step_view(running, {"status": "PROGRESS",
                                "result": {"elapsed": 1.5, "expected": 2.0}}, now)
    assert (live["task_state"], live["elapsed"], live["progress"]) == ("PROGRESS", 1.5, 0.75)
    # A worker faster than its own database write: Redis says it runs already.
    early = _step_view(step("pending"), {"status": "PROGRESS", "result": {}}, now)
    assert (early["state"], early["task_state"]) == ("running", "PROGRESS")
    assert _step_view(step("pending"), None, now)["task_state"] == "PENDING"
