"""A transition's expected time, learned run after run, follows the transition's real
duration both ways: it neither creeps up while every run is the same nor stays high when
the hardware gets faster."""
from __future__ import annotations

import pytest

from bench.expected_times import ROUND_TRIP
from bench.expected_times import runs as model_runs
from pipelines.runcontrol.expected import learned_seconds


def runs(seconds: float, expected: float, count: int) -> tuple[list[float], list[float]]:
    """Run ``count`` transitions of ``seconds`` against a simulated server, through the real
    ``drive``, each expected as run control learns it from the ones before
    (``bench.expected_times``, each GetState a 5 ms round trip): the expected time before
    each, and when each was confirmed."""
    rows = model_runs(seconds, expected, count)
    return [row[0] for row in rows], [row[2] for row in rows]


@pytest.mark.parametrize("seconds", [0.2, 1.0, 30.0])
def test_an_expected_time_does_not_creep_up_while_every_run_is_the_same(seconds):
    expectations, confirmed = runs(seconds, seconds, 500)
    # Confirmed within two polls (expected / 20 apart, at most a quarter of a second, and
    # a round trip each) of the transition's end, run after run; expected no later.
    poll = min(seconds / 20, 0.25) + ROUND_TRIP
    assert all(seconds <= at <= seconds + 2 * poll for at in confirmed[-400:])
    assert seconds - 2 * poll <= min(expectations[-400:])
    assert max(expectations[-400:]) <= seconds + 2 * poll
    # The last hundred runs no later than the hundred after warming up.
    # (Give or take 0.1 ms: the fake clock's sums lose precision as it grows.)
    assert max(confirmed[-100:]) <= max(confirmed[100:200]) + 1e-4


def test_an_expected_time_falls_when_the_hardware_gets_faster():
    # Expected in 0.8 s (an older firmware, a config with more channels); it takes 0.2 s.
    # Each first poll that finds it done brings the next one a poll interval earlier,
    # once such runs are most of the five the median is taken over.
    expectations, confirmed = runs(0.2, 0.8, 120)
    poll = 0.02 + ROUND_TRIP
    assert expectations[10] < 0.7
    assert max(expectations[-20:]) <= 0.2 + 2 * poll and max(confirmed[-20:]) <= 0.2 + 2 * poll
    # A long one is seen done by a progress poll (once a second): it falls at once.
    expectations, _ = runs(2.0, 8.0, 3)
    assert expectations[1] < 2.1


def test_an_expected_time_rises_when_the_hardware_gets_slower():
    # Progress polls come every second before the expected time: none of them counts.
    expectations, _ = runs(2.0, 0.5, 6)
    assert all(1.9 < expected < 2.1 for expected in expectations[1:])


def test_what_a_transition_teaches():
    # Seen under way after its expected time: it ended by the poll that found it settled.
    assert learned_seconds(1.0, 1.05, 1.1) == 1.1
    # Found done by the first poll from the expected time on: it ended before, maybe
    # well before; a poll interval (expected / 20, 20 to 250 ms) below that poll.
    assert learned_seconds(1.0, None, 1.0) == pytest.approx(0.95)
    assert learned_seconds(2.0, 1.0, 2.0) == pytest.approx(1.9)
    assert learned_seconds(30.0, 29.0, 30.0) == pytest.approx(29.75)
    # ... but not before a poll saw it still under way.
    assert learned_seconds(1.0, 0.97, 1.0) == 0.97
