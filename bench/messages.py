"""How large a step's task message is, by the number of sources: daqflow's stage by stage
against one Celery chain of the same chords (how daqflow sent a workflow before).

A stop of N sources, shaped as the soak's: N - 1 CoBos stop, the MuTAnT stops, then one
files step per data router and one per ECC server. Both canvases are sent for real to a
private Redis (nothing consumes them) and every message is read back; for each N it
prints the largest and the mean step message of the first stage, the Python objects one
of them decodes into (tracemalloc), and the bytes of all that stage's messages.

    python -m bench.messages --sizes 64 256 1024
"""
from __future__ import annotations

import argparse
import json
import statistics
import tracemalloc
from uuid import uuid4

from bench.harness import bench_redis

# The stop's stages: (name, operation, how many steps for N sources).
STOP_SHAPE = [("stop CoBos", "Stop", lambda n: n - 1), ("stop MuTAnT", "Stop", lambda n: 1),
              ("organize files", "organize", lambda n: n), ("back up configs", "backup",
                                                               lambda n: n)]


def stop_rows(n: int):
    """In-memory rows of a stop of ``n`` sources: (workflow, stages, steps by stage id)."""
    from models import Stage, Step, Workflow

    workflow = Workflow(id=1, kind="stop_run", callback_task_id=str(uuid4()))
    stages, steps, step_id = [], {}, 0
    for order, (name, operation, count) in enumerate(STOP_SHAPE):
        stage = Stage(id=order + 1, workflow_id=1, name=name, order=order, operation=operation,
                      group_id=str(uuid4()), callback_task_id=str(uuid4()))
        stages.append(stage)
        steps[stage.id] = []
        for i in range(count(n)):
            step_id += 1
            steps[stage.id].append(Step(id=step_id, stage_id=stage.id, target=f"t{i:04d}",
                                        operation=operation, task_id=str(uuid4())))
    return workflow, stages, steps


def canvases_for(n: int) -> dict:
    """The first stage as daqflow sends it, and the whole stop as one chain of chords."""
    from celery import chain

    from pipelines.orchestration import canvases
    from pipelines.orchestration.app import app

    workflow, stages, steps = stop_rows(n)
    one_chain = chain(*[canvases.stage_signature(stage, steps[stage.id]) for stage in stages],
                      canvases.final_signature(workflow), app=app)
    return {"stage by stage": canvases.next_canvas(workflow, stages[0], steps[stages[0].id]),
            "one chain": one_chain}


def measure(n: int) -> dict:
    """Send both canvases of an ``n``-source stop; the first stage's step messages."""
    from pipelines.orchestration.app import app

    out = {}
    for label, canvas in canvases_for(n).items():
        sent: list[bytes] = []
        send = app.amqp.send_task_message

        def capture(producer, name, message, **options):
            if name == "daqflow.ecc.transition":
                sent.append(json.dumps(message.body).encode())
            return send(producer, name, message, **options)

        app.amqp.send_task_message = capture
        try:
            canvas.apply_async()
        finally:
            app.amqp.send_task_message = send
        tracemalloc.start()
        before, _ = tracemalloc.get_traced_memory()
        decoded = json.loads(max(sent, key=len))
        after, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del decoded
        sizes = [len(body) for body in sent]
        out[label] = {"messages": len(sizes), "largest_bytes": max(sizes),
                      "mean_bytes": statistics.mean(sizes), "stage_bytes": sum(sizes),
                      "decoded_python_bytes": after - before}
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024])
    args = parser.parse_args(argv)
    with bench_redis("daqflow-bench-messages-"):
        for n in args.sizes:
            figures = measure(n)
            for label, f in figures.items():
                print(f"N = {n:5d}  {label:15s} {f['messages']:5d} step messages: largest "
                      f"{f['largest_bytes']:>10,d} B, mean {f['mean_bytes']:>12,.0f} B, "
                      f"decoded {f['decoded_python_bytes']:>11,d} B; the stage "
                      f"{f['stage_bytes'] / 1e6:9.2f} MB", flush=True)
            chain, staged = figures["one chain"], figures["stage by stage"]
            ratio = chain["largest_bytes"] / staged["largest_bytes"]
            print(f"N = {n:5d}  one chain / stage by stage: {ratio:.0f}", flush=True)


if __name__ == "__main__":
    main()
