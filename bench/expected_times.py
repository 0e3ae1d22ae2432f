"""How a transition's expected time, learned run after run, sets when it is confirmed.

A model, not the DAQ: one server whose transition takes T, each GetState a 5 ms round
trip on a simulated clock, driven by ``daq.ecc.drive`` and learned by
``runcontrol.expected`` as run control does. For each T it prints the GetStates a
transition costs after the operation, how late its end is confirmed (ms), both from run
20 on, and how many runs an expectation four times too long takes to come within 10 %
of T; beside it, the rule before 2026-12-07 (learn the confirming poll's time).

    python -m bench.expected_times
"""
from __future__ import annotations

import statistics

from pipelines.daq.ecc.client import StateReport
from pipelines.daq.ecc.drive import drive
from pipelines.daq.ecc.payloads import ConfigId
from pipelines.daq.ecc.states import EccState
from pipelines.runcontrol.expected import HISTORY, learned_seconds

ROUND_TRIP = 0.005


def runs(seconds: float, expected: float, count: int,
         learn=learned_seconds) -> list[tuple[float, int, float]]:
    """Run ``count`` transitions of ``seconds``, each expected as ``learn`` and the median
    of the last five make it from the ones before: per run, the expected time before it,
    the GetStates after the send, and when GetState saw it settled (s after the send)."""
    clock, taught, rows = [0.0], [], []

    class Server:
        name, ends, polls = "model", None, 0

        def transition(self, operation, config, links):
            self.ends = clock[0] + seconds

        def get_state(self):
            clock[0] += ROUND_TRIP
            if self.ends is None:
                return StateReport(EccState.PREPARED, 0)
            self.polls += 1
            if clock[0] < self.ends:
                return StateReport(EccState.PREPARED, EccState.READY)
            return StateReport(EccState.READY, 0)

    def sleep(wait):
        clock[0] += wait

    for _ in range(count):
        server = Server()
        driven = drive(server, "Configure", EccState.READY, ConfigId("a", "a", "a"), [], 600.0,
                       expected, clock=lambda: clock[0], sleep=sleep)
        rows.append((expected, server.polls, driven.seen_settled_after))
        taught.append(learn(expected, driven.seen_moving_after, driven.seen_settled_after))
        expected = statistics.median(taught[-HISTORY:])
    return rows


def main() -> None:
    print("| T (s) | rule | GetStates a transition | confirmed late (ms) "
          "| runs from 4 T to 1.1 T |")
    print("|---:|---|---:|---:|---:|")
    rules = {"learned (now)": learned_seconds,
             "the confirming poll (before)": lambda expected, moving, settled: settled}
    for seconds in (0.2, 0.5, 1.0, 3.0, 10.0):
        for name, learn in rules.items():
            steady = runs(seconds, seconds, 300, learn)[20:]
            falling = [row[0] for row in runs(seconds, 4 * seconds, 300, learn)]
            down = next((i for i, e in enumerate(falling) if e < 1.1 * seconds), None)
            print(f"| {seconds:g} | {name} | {statistics.mean(r[1] for r in steady):.2f} | "
                  f"{1000 * statistics.mean(r[2] - seconds for r in steady):.1f} | "
                  f"{'never (300 runs)' if down is None else down} |")


if __name__ == "__main__":
    main()
