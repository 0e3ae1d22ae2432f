"""What recording a step costs alone: beginning and ending each CoBo step of a start.

``python -m bench.step_records --sizes 64 1024`` writes a start workflow for N sources
(as ``daqflow up`` would: a fresh SQLite database in a temporary instance folder, a
private Redis for the run-control lock), then, in one thread, begins and ends each step of
its CoBo stage as a transition task does (``records.steps.begin_transition`` and
``finish_transition``), and prints the CPU of each per step. No Celery, no SOAP, no other
process: what the database work of a step costs, without the machine's other load.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time


def measure(n: int) -> dict:
    """CPU microseconds per step of beginning and ending a start's CoBo steps, N sources."""
    from bench.harness import bench_redis

    with bench_redis(f"daqflow-steps-{n}-") as (directory, _url):
        (directory / "instance").mkdir()
        os.environ["DAQFLOW_INSTANCE"] = str(directory / "instance")
        from sqlmodel import select, update

        from models import ECCServer, Stage, Step, migrate, session
        from models.vocabulary import WorkflowKind
        from pipelines.daq.ecc.states import EccState
        from pipelines.runcontrol import launching
        from pipelines.runcontrol.records import steps
        from pipelines.simulator.topology import simulated_topology
        from pipelines.topology import loading, schema

        topology = directory / "topology.toml"
        topology.write_text(simulated_topology([9] * n, routers=False, seconds_per_source=1.0))
        os.environ["DAQFLOW_TOPOLOGY"] = str(topology)
        migrate.prepare()
        loading.load(schema.read(str(topology)))
        with session() as s:
            s.exec(update(ECCServer).values(state=int(EccState.READY), transition=0,
                                            online=True))
        workflow_id = launching.create(WorkflowKind.START_RUN, title="bench")
        with session() as s:
            cobos = s.exec(select(Stage).where(Stage.workflow_id == workflow_id)
                           .order_by(Stage.order)).all()[2]
            members = s.exec(select(Step.id, Step.task_id)
                             .where(Step.stage_id == cobos.id)).all()
        began = ended = 0.0
        for step_id, task_id in members:
            t0 = time.process_time()
            order = steps.begin_transition(step_id, task_id, worker="bench",
                                           group_id=cobos.group_id)
            t1 = time.process_time()
            steps.finish_transition(step_id, task_id, order, int(EccState.RUNNING))
            t2 = time.process_time()
            began, ended = began + t1 - t0, ended + t2 - t1
        return {"sources": n, "steps": len(members),
                "begin_us": 1e6 * began / len(members), "end_us": 1e6 * ended / len(members)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.step_records",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 1024])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one is None:
        # Each size in a process of its own: its database, Redis and run-control lock.
        for n in args.sizes:
            subprocess.run([sys.executable, "-m", "bench.step_records", "--one", str(n)],
                           check=True)
        return 0
    f = measure(args.one)
    print(f"N = {f['sources']}: {f['steps']} CoBo steps, beginning {f['begin_us']:.0f} us, "
          f"ending {f['end_us']:.0f} us of CPU a step", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
