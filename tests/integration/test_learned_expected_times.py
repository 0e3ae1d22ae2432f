"""Expected times read from the database: what each target's last successful steps taught."""
from __future__ import annotations

from uuid import uuid4

import pytest

from models import Stage, Step, StepState, Workflow, session
from pipelines.runcontrol.expected import expected_durations


def _steps(operation: str, rows: list[dict]) -> None:
    with session() as s:
        workflow = Workflow(kind="start_run", callback_task_id=str(uuid4()))
        s.add(workflow)
        s.flush()
        stage = Stage(workflow_id=workflow.id, order=0, name=operation, operation=operation,
                      group_id=str(uuid4()), callback_task_id=str(uuid4()))
        s.add(stage)
        s.flush()
        for row in rows:
            s.add(Step(stage_id=stage.id, operation=operation, task_id=str(uuid4()),
                       state=row.pop("state", StepState.SUCCEEDED.value), **row))


def test_each_target_expects_the_median_of_what_its_last_five_transitions_taught():
    cobo, mutant, fresh = (f"ecc-{uuid4().hex[:8]}" for _ in range(3))
    timed = {"target_state": 4, "expected_seconds": 1.0}
    _steps("Configure", [
        # Older than the last five: not counted.
        *({"target": cobo, **timed, "seen_moving_after": 9.0, "seen_settled_after": 9.1}
          for _ in range(3)),
        # Seen under way after its expected time: it ended by the poll that saw it settled.
        *({"target": cobo, **timed, "seen_moving_after": 1.2, "seen_settled_after": 1.3}
          for _ in range(3)),
        # Found done by its first poll, at the expected time: a poll interval below.
        *({"target": cobo, **timed, "seen_settled_after": 1.0, "duration": 1.0}
          for _ in range(2)),
        # Nothing sent (already READY), or failed: nothing taught.
        {"target": cobo, **timed, "duration": 0.01},
        {"target": cobo, **timed, "state": StepState.FAILED.value, "duration": 0.5,
         "seen_moving_after": 0.5},
        # Before the polls were recorded: only a duration, which taught nothing.
        {"target": mutant, **timed, "duration": 3.0},
    ])
    expected = expected_durations_now("Configure", [cobo, mutant, fresh])
    assert expected == {cobo: pytest.approx(1.3)}  # of 1.3, 1.3, 1.3, 0.95 and 0.95
    _steps("Configure", [{"target": cobo, **timed, "seen_settled_after": 1.02}
                         for _ in range(3)])
    assert expected_durations_now("Configure", [cobo]) == {cobo: pytest.approx(0.97)}


def test_a_files_step_teaches_its_duration():
    router = f"router-{uuid4().hex[:8]}"
    _steps("organize", [{"target": router, "duration": seconds} for seconds in (4.0, 2.0, 3.0)])
    assert expected_durations_now("organize", [router]) == {router: 3.0}


def expected_durations_now(operation: str, names: list[str]) -> dict[str, float]:
    with session() as s:
        return expected_durations(s, operation, names)
