"""Where a transition step's CPU goes, alone: its phases, against an engine member's.

``python -m bench.step_phases --sources 64 --starts 5`` brings up a simulated DAQ of N
ECC servers (the simulator over HTTP, a fresh SQLite database, a private Redis; no
worker), then, in this process and one thread, runs every step of a start in stage
order as a worker would run it (Celery's tracer, ``apply``), and times each phase with
the thread's own CPU clock: beginning the step (its row read and marked running), the
server's client, the operation, GetState, the step's end (its row and the server's
state), and the rest (Celery's tracer, the order's bookkeeping). Beside it, start by
start, an engine member (``bench.engine.member``, which only sleeps) run the same way.
No other thread competes for the interpreter lock, so this is what a step costs before
the hundreds of threads of a real start share the cores.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter

# The phases timed, in a step's order (what performs each is wrapped in ``measure``).
PHASES = ["begin", "client", "operation", "GetState", "end"]


class PhaseClock:
    """Thread CPU spent inside the wrapped callables, by phase, until ``reset()``."""

    def __init__(self):
        self.spent, self.calls = Counter(), Counter()

    def wrap(self, owner, name: str, phase: str) -> None:
        """Replace ``owner.name`` by a wrapper that charges its CPU to ``phase``."""
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            began = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                self.spent[phase] += time.thread_time() - began
                self.calls[phase] += 1

        setattr(owner, name, timed)

    def reset(self) -> None:
        self.spent.clear()
        self.calls.clear()


def measure(sources: int, starts: int, seconds: float) -> dict:
    """Per start: a step's CPU (µs) in all and by phase, and an engine member's."""
    from bench.harness import bench_redis

    with bench_redis("daqflow-phases-") as (_, url):
        return _measure(url, sources, starts, seconds)


def _measure(url: str, sources: int, starts: int, seconds: float) -> dict:
    from bench.harness import Daq

    daq = Daq(url, sources, seconds)
    try:
        from sqlmodel import select

        from bench import engine
        from bench.run import set_ready
        from models import Stage, Workflow, session
        from models.vocabulary import WorkflowKind, WorkflowState
        from pipelines.daq.ecc.client import EccClient
        from pipelines.runcontrol import launching, lock, tasks
        from pipelines.runcontrol.records import steps as step_records
        from pipelines.runcontrol.records.workflows import end_workflow

        clock = PhaseClock()
        clock.wrap(step_records, "begin_transition", "begin")
        clock.wrap(tasks, "client_for", "client")
        clock.wrap(EccClient, "transition", "operation")
        clock.wrap(EccClient, "get_state", "GetState")
        clock.wrap(step_records, "finish_transition", "end")
        rows = []
        for number in range(starts):
            set_ready(daq)
            workflow_id = launching.create(WorkflowKind.START_RUN, title="bench")
            with session() as s:
                stages = s.exec(select(Stage).where(Stage.workflow_id == workflow_id)
                                .order_by(Stage.order)).all()
                steps = [step_records.latest_to_send(s, stage.id) for stage in stages]
            clock.reset()
            step_cpu = []
            for members in steps:  # stage by stage, as the hardware needs
                for step in members:
                    began = time.thread_time()
                    result = tasks.transition.apply(args=(step.id,), task_id=step.task_id)
                    step_cpu.append(time.thread_time() - began)
                    if not result.successful():
                        raise RuntimeError(f"step {step.id} failed: {result.result}")
            member_cpu = []
            for _ in step_cpu:
                began = time.thread_time()
                engine.member.apply(args=(seconds,))
                member_cpu.append(time.thread_time() - began)
            # The callbacks are not run here: end the workflow as its final callback would.
            with session() as s:
                token = end_workflow(s.get(Workflow, workflow_id), WorkflowState.SUCCEEDED)
            lock.release(token)
            count = len(step_cpu)
            phases = {phase: 1e6 * clock.spent[phase] / count for phase in PHASES}
            step_us = 1e6 * sum(step_cpu) / count
            phases["the rest"] = step_us - sum(phases.values())
            rows.append({"start": number + 1, "steps": count, "step_us": step_us,
                         "member_us": 1e6 * sum(member_cpu) / count, "phases_us": phases,
                         "getstate_calls": clock.calls["GetState"] / count})
        return {"sources": sources, "seconds": seconds, "starts": rows}
    finally:
        daq.close()


def summary(found: dict) -> str:
    """The table: medians over the starts but the first (clients and statements built)."""
    rows = found["starts"][1:] or found["starts"]
    step = statistics.median(r["step_us"] for r in rows)
    member = statistics.median(r["member_us"] for r in rows)
    lines = [f"N = {found['sources']}, T = {found['seconds']:g} s, medians of {len(rows)} "
             f"starts (first start: step {found['starts'][0]['step_us']:.0f} us):",
             "| phase | CPU a step (us) | share |", "|---|---:|---:|"]
    for phase in [*PHASES, "the rest"]:
        value = statistics.median(r["phases_us"][phase] for r in rows)
        lines.append(f"| {phase} | {value:.0f} | {100 * value / step:.0f} % |")
    lines += [f"| a step, all | {step:.0f} | 100 % |",
              f"| an engine member, all | {member:.0f} | |", "",
              f"a step / an engine member: {step / member:.1f}; GetState calls a step: "
              f"{statistics.median(r['getstate_calls'] for r in rows):.2f}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.step_phases",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--sources", type=int, default=64)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.02,
                        help="each transition's time (the simulator's T)")
    args = parser.parse_args(argv)
    print(summary(measure(args.sources, args.starts, args.seconds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
