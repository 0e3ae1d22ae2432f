"""How long each step is expected to take, learned from the steps before it.

A transition's expected time is when its first GetState comes (``daq.ecc.drive``), and
what the progress bars count against.
"""
from __future__ import annotations

import statistics

from sqlalchemy import and_, or_
from sqlmodel import select

from models import Step, StepState
from pipelines.daq.ecc.drive import poll_interval

# Expected seconds of a files step until it has a history.
FILES_EXPECTED_SECONDS = 2.0
# How many of a target's latest steps the expected time is the median of.
HISTORY = 5


def learned_seconds(expected: float, seen_moving_after: float | None,
                    seen_settled_after: float) -> float:
    """What one timed transition teaches of its duration, given the ``expected`` seconds
    its polls were timed by.

    Seen under way at a poll after its expected time, it ended by the next poll, at most
    a poll interval later (``poll_interval``: 20 to 250 ms): that poll's time, an upper
    bound, so that the next first poll most often finds it done. Found settled by the
    first poll from its expected time on, it ended some time before: a poll interval
    below that poll (never below a poll that saw it under way), so that an expected time
    can fall, and the next first poll comes one interval earlier. Learned as the poll's
    time, an expected time could only grow, run after run (a 0.2 s transition was waited
    for 0.82 s after 500 runs, before 2026-12-07).
    """
    if seen_moving_after is not None and seen_moving_after >= expected:
        return seen_settled_after
    return max(seen_moving_after or 0.0, seen_settled_after - poll_interval(expected))


def expected_durations(s, operation: str, names: list[str]) -> dict[str, float]:
    """Each target's expected seconds for ``operation``: the median of what its last
    successful steps taught (timed transitions, files steps' durations); targets with no
    such step are left out."""
    rows = s.exec(
        select(Step.target, Step.duration, Step.expected_seconds, Step.seen_moving_after,
               Step.seen_settled_after)
        .where(Step.operation == operation, Step.state == StepState.SUCCEEDED.value,
               Step.target.in_(names),
               # A transition that sent nothing (found done already) taught nothing.
               or_(Step.seen_settled_after != None,  # noqa: E711
                   and_(Step.target_state == None, Step.duration != None)))  # noqa: E711
        .order_by(Step.id.desc()).limit(HISTORY * max(len(names), 1) * 2)
    ).all()
    seen: dict[str, list[float]] = {}
    for target, duration, expected, moving, settled in rows:
        if len(seen.setdefault(target, [])) < HISTORY:
            seen[target].append(duration if settled is None
                                else learned_seconds(expected or 0.0, moving, settled))
    return {name: statistics.median(values) for name, values in seen.items()}
