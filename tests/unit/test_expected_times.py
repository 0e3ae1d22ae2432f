"""A transition's expected time, learned run after run, follows the transition's real
duration both ways: it neither creeps up while every run is the same nor stays high when
the hardware gets faster."""
from __future__ import annotations

import statistics

import pytest

from pipelines.daq.ecc import drive
from pipelines.daq.ecc.client import StateReport
from pipelines.daq.ecc.payloads import ConfigId
from pipelines.daq.ecc.states import EccState
from pipelines.runcontrol.expected import HISTORY, learned_seconds

# Each GetState takes this long (a round trip and the server's own work).
ROUND_TRIP = 0.005


class TimedServer:
    """An ECC server whose Configure takes ``seconds``, on a clock only waits advance."""

    name = "fake"

    def __init__(self, clock: list[float], seconds: float):
        self.clock, self.seconds, self.ends = clock, seconds, None

    def transition(self, operation, config, links):
        self.ends = self.clock[0] + self.seconds

    def get_state(self):
        self.clock[0] += ROUND_TRIP
        if self.ends is None:
            return StateReport(EccState.PREPARED, 0)
        if self.clock[0] < self.ends:
            return StateReport(EccState.PREPARED, EccState.READY)
        return StateReport(EccState.READY, 0)


def runs(seconds: float, expected: float, count: int) -> tuple[list[float], list[float]]:
    """Run ``count`` transitions of ``seconds``, each expected as run control learns it from
    the ones before: the expected time before each, and when each was confirmed."""
    clock, taught, expectations, confirmed = [0.0], [], [], []
    for _ in range(count):
        expectations.append(expected)
        def sleep(wait):
            clock[0] += wait
        driven = drive.drive(TimedServer(clock, seconds), "Configure", EccState.READY,
                             ConfigId("a", "a", "a"), [], 60.0, expected,
                             clock=lambda: clock[0], sleep=sleep)
        confirmed.append(driven.seen_settled_after)
        taught.append(learned_seconds(expected, driven.seen_moving_after,
                                      driven.seen_settled_after))
        expected = statistics.median(taught[-HISTORY:])
    return expectations, confirmed


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
