"""daqflow's benchmarks: ``python -m bench.run`` prints a table and writes JSON.

1. start-run wall time / floor, N simulated ECC servers, daqflow's thread-pool
   control worker against the same canvas on a prefork worker with 10 processes
2. progress read of a 256-source workflow: p50/p95 and Redis round trips per read,
   against the usual way (restore the group, one GET per member)
3. chord callback latency: last member's end to the callback's start (Celery events)
4. polling load: 20 clients polling the run-control page every second during starts
5. soak: start/stop cycles on 64 sources with data routers and config backups

Everything is real (Redis, simulator over HTTP, web, Celery workers); the machine
is shared, so each figure is a median of repetitions taken in the same run.
"""
from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import threading
import time
import urllib.request
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from bench import engine
from bench.harness import Daq, bench_redis, busy_cpu_seconds
from bench.profile import Recording, py_spy

FINISHED = ("succeeded", "failed")


# The control workers' shape: as `daqflow up` runs them unless --processes or --pool
# ask for another, to measure what Celery offers beside it.
CONTROL = {"processes": None, "pool": "threads", "threads": None}


def control_workers() -> int:
    """As many control worker processes as `daqflow up` runs here: two per core, up to 8."""
    import os

    return CONTROL["processes"] or min(2 * (os.cpu_count() or 1), 8)


def start_control(daq: Daq, n: int) -> int:
    """daqflow's control workers, as `daqflow up` runs them, with threads for N sources
    (sized as `daqflow up` sizes them, unless --control-threads says)."""
    workers = control_workers()
    threads = CONTROL["threads"]
    if threads is None:
        from pipelines.cli.processes import control_threads

        threads = control_threads(n, workers)
    for i in range(1, workers + 1):
        daq.start_worker(f"control{i}", CONTROL["pool"], threads)
    return threads


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# --- driving the DAQ ----------------------------------------------------------------

def set_ready(daq: Daq) -> None:
    """Every server READY and no run going: simulator and database, without a workflow."""
    from sqlmodel import update

    import models
    from models import ECCServer, Run
    from models.columns import utcnow
    from pipelines.daq.ecc.states import EccState

    daq.sim("POST", "/_sim/set", {"server": "*", "state": int(EccState.READY)})
    with models.session() as s:
        s.exec(update(ECCServer).values(state=int(EccState.READY), transition=0, online=True))
        s.exec(update(Run).where(Run.stopped_at == None).values(stopped_at=utcnow()))  # noqa: E711


def wait_workflow(workflow_id: int, timeout: float) -> dict:
    """Poll the database until the workflow has ended; its row as a dict."""
    import models
    from models import Workflow

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with models.session() as s:
            workflow = s.get(Workflow, workflow_id)
            if workflow.state in FINISHED:
                return {"state": workflow.state, "error": workflow.error,
                        "run_id": workflow.run_id}
        time.sleep(0.02)
    raise TimeoutError(f"workflow {workflow_id} did not end within {timeout:g} s")


def launch(daq: Daq, path: str, timeout: float) -> tuple[int, dict, float]:
    """POST an API action and wait for its workflow; (id, outcome, time of the call)."""
    called = time.time()
    status, body = daq.api("POST", path, {"title": "bench"} if path.endswith("start") else None)
    if status != 202:
        raise RuntimeError(f"{path} answered {status}: {body}")
    outcome = wait_workflow(body["workflow_id"], timeout)
    if outcome["state"] != "succeeded":
        raise RuntimeError(f"workflow {body['workflow_id']} {outcome['state']}: {outcome['error']}")
    return body["workflow_id"], outcome, called


def timed_start(daq: Daq, timeout: float) -> tuple[int, float]:
    """Start a run from READY: (workflow id, seconds from the API call to the run recorded)."""
    import models
    from models import Run

    set_ready(daq)
    workflow_id, outcome, called = launch(daq, "/api/runs/start", timeout)
    with models.session() as s:
        started_at = s.get(Run, outcome["run_id"]).started_at
    return workflow_id, started_at.timestamp() - called


def stage_timeline(workflow_id: int) -> list[dict]:
    """When each stage's steps began and ended, and the stage completed (s after the call)."""
    from sqlmodel import select

    import models
    from models import Stage, Step, Workflow

    with models.session() as s:
        t0 = s.get(Workflow, workflow_id).created_at.timestamp()
        stages = s.exec(select(Stage).where(Stage.workflow_id == workflow_id)
                        .order_by(Stage.order)).all()
        timeline = []
        for stage in stages:
            steps = s.exec(select(Step).where(Step.stage_id == stage.id)).all()
            began = sorted(step.started_at.timestamp() - t0 for step in steps)
            ended = sorted(step.finished_at.timestamp() - t0 for step in steps)
            timeline.append({"steps": len(steps), "first_began": round(began[0], 2),
                             "median_began": round(statistics.median(began), 2),
                             "last_began": round(began[-1], 2),
                             "median_ended": round(statistics.median(ended), 2),
                             "last_ended": round(ended[-1], 2),
                             "completed": round(stage.finished_at.timestamp() - t0, 2)})
    return timeline


def expected_by_stage(workflow_id: int | None) -> dict[str, float]:
    """The median expected seconds of each stage's steps, by stage name."""
    from sqlmodel import select

    import models
    from models import Stage, Step

    if workflow_id is None:
        return {}
    with models.session() as s:
        rows = s.exec(select(Stage.name, Step.expected_seconds)
                      .join(Step, Step.stage_id == Stage.id)
                      .where(Stage.workflow_id == workflow_id)).all()
    by_stage: dict[str, list[float]] = {}
    for name, expected in rows:
        by_stage.setdefault(name, []).append(expected or 0.0)
    return {name: round(statistics.median(values), 3) for name, values in by_stage.items()}


# --- Celery events: chord callback latency ------------------------------------------

class TaskEvents:
    """Captures the workers' task-started events, in a thread."""

    def __init__(self):
        from pipelines.orchestration.app import app

        self.app, self.tasks = app, {}
        self.receiver = None
        self.thread = threading.Thread(target=self._capture, daemon=True)
        self.thread.start()

    def _on_event(self, event: dict) -> None:
        entry = self.tasks.setdefault(event["uuid"], {})
        if event["type"] == "task-started":
            entry["started"] = event["timestamp"]

    def _capture(self) -> None:
        with self.app.connection() as connection:
            self.receiver = self.app.events.Receiver(connection, handlers={
                "task-started": self._on_event})
            self.receiver.capture(limit=None, timeout=None, wakeup=False)

    def callback_latencies(self, workflow_id: int) -> list[float]:
        """Per stage: the callback's start minus the last member's recorded success."""
        from sqlmodel import func, select

        import models
        from models import Stage, Step

        with models.session() as s:
            stages = s.exec(select(Stage).where(Stage.workflow_id == workflow_id)).all()
            last_success = {st.id: s.exec(select(func.max(Step.finished_at))
                                          .where(Step.stage_id == st.id)).one()
                            for st in stages}
        latencies = []
        for stage in stages:
            started = self.tasks.get(stage.callback_task_id, {}).get("started")
            if last_success[stage.id] is not None and started is not None:
                latencies.append(started - last_success[stage.id].timestamp())
        return latencies

    def stop(self) -> None:
        if self.receiver is not None:
            self.receiver.should_stop = True


# --- the measurements ---------------------------------------------------------------

def measure_starts(redis_url: str, sizes: list[int], reps: int, seconds: float,
                   baseline_reps: int, events_out: list, profile: Path | None = None,
                   postgres: str | None = None) -> list[dict]:
    """(1) and (3): start-run wall time per N, thread pool vs prefork 10.

    With ``profile``, two more starts per N run under py-spy (after the timed ones,
    which it would slow down) and the row gets where each process spent its CPU.
    """
    rows = []
    for n in sizes:
        daq = Daq(redis_url, n, seconds, postgres=postgres)
        try:
            row = {"sources": n, "seconds_per_transition": seconds,
                   "database": "PostgreSQL" if postgres else "SQLite"}
            timeout = 60 + 2 * n * seconds  # a start's deadline, generous for large N
            threads = start_control(daq, n)
            # One start first, not timed, on the fresh workers: it pays once what a control
            # host pays once after `daqflow up` (the pools' threads, a kept-alive connection
            # from each worker process to each ECC server, the servers' SOAP requests).
            # The engine's own first run follows, untimed too: both sides are measured on
            # warm workers. The first start's wall time is reported apart.
            first_id, row["first_start_seconds"] = timed_start(daq, timeout)
            # The engine alone on the same workers: the same chain of chords (its shape read
            # off that first start), members that only sleep T, callbacks that do nothing.
            shape = [stage["steps"] for stage in stage_timeline(first_id)]
            engine.run(shape, seconds, timeout)  # its own first run, not timed either
            # Then daqflow and the engine in turn, start by start: a machine that is slower
            # for a while (a neighbour on the host) weighs on both alike.
            used = {"daqflow": {}, "engine": {}}
            main_threads = {"daqflow": 0.0, "engine": 0.0}
            starts, engine_walls, busy, busy_wall = [], [], 0.0, 0.0
            task_cpu(daq, reset=True)
            for _ in range(reps):
                before, before_main = daq.quiet_cpu_seconds(), control_main_seconds(daq)
                busy_before, began = busy_cpu_seconds(), time.time()
                starts.append(timed_start(daq, timeout))
                # How loaded the whole machine was (2.0 = both cores busy all along).
                busy += busy_cpu_seconds() - busy_before
                busy_wall += time.time() - began
                between, between_main = daq.quiet_cpu_seconds(), control_main_seconds(daq)
                engine_walls.append(engine.run(shape, seconds, timeout))
                after, after_main = daq.quiet_cpu_seconds(), control_main_seconds(daq)
                for side, (start, end) in (("daqflow", (before, between)),
                                           ("engine", (between, after))):
                    for name, seconds_used in end.items():
                        used[side][name] = (used[side].get(name, 0.0) + seconds_used
                                            - start.get(name, 0.0))
                main_threads["daqflow"] += between_main - before_main
                main_threads["engine"] += after_main - between_main
            row["control_cpu"] = control_breakdown(task_cpu(daq), main_threads, used, reps * n)
            walls = [wall for _, wall in starts]
            row["busy_cores"] = round(busy / busy_wall, 2)
            # The stages of the median start: when steps began, ended, and the stage completed.
            row["timeline"] = stage_timeline(sorted(starts, key=lambda st: st[1])[reps // 2][0])
            # The floor: one transition time per stage (re-arm the MuTAnT: Breakup and
            # Configure; the CoBos in parallel; the MuTAnT).
            floor = len(shape) * seconds
            row.update(floor_seconds=floor, stages=shape)
            # Where the time goes: CPU milliseconds per source, per process.
            row["cpu_ms_per_source"] = {name: round(1000 * cpu / (reps * n), 2)
                                        for name, cpu in used["daqflow"].items()}
            row["engine"] = {"walls": engine_walls, "median": statistics.median(engine_walls),
                             "ratio": statistics.median(engine_walls) / floor,
                             "cpu_ms_per_source": {
                                 name: round(1000 * cpu / (reps * n), 2)
                                 for name, cpu in used["engine"].items()}}
            if profile is not None:
                row["profile"] = profiled_starts(daq, profile / f"n{n}", timeout)
            # Callback latency from Celery's task events, switched on only now: they cost
            # three messages per step, which the timed starts above did not pay.
            events = TaskEvents()
            daq.app().control.enable_events()
            for _ in range(2):
                workflow_id, _wall = timed_start(daq, timeout)
                time.sleep(0.5)  # the last events still on their way
                events_out.extend(events.callback_latencies(workflow_id))
            events.stop()
            for name in [name for name in daq.processes if name.startswith("control")]:
                daq.stop_process(name)
            row["threads"] = {"processes": control_workers(), "pool": CONTROL["pool"],
                              "threads_per_process": threads,
                              "walls": walls,
                              "median": statistics.median(walls),
                              "ratio": statistics.median(walls) / floor}
            row["over_engine"] = row["threads"]["median"] / row["engine"]["median"]
            baseline = ""
            if baseline_reps:  # 0 skips the prefork baseline (minutes at large N)
                daq.start_worker("prefork10", "prefork", 10)
                walls = [timed_start(daq, timeout=120 + 2 * n * seconds)[1]
                         for _ in range(baseline_reps)]
                daq.stop_process("prefork10")
                row["prefork10"] = {"processes": 10, "walls": walls,
                                    "median": statistics.median(walls),
                                    "ratio": statistics.median(walls) / floor}
                row["speedup"] = row["prefork10"]["median"] / row["threads"]["median"]
                baseline = (f", prefork10 {row['prefork10']['median']:.2f} s "
                            f"({row['prefork10']['ratio']:.2f} x floor)")
            print(f"  N={n:5d}: threads {row['threads']['median']:.2f} s "
                  f"({row['threads']['ratio']:.2f} x floor, {row['over_engine']:.2f} x engine "
                  f"{row['engine']['median']:.2f} s){baseline}; first start on fresh "
                  f"workers {row['first_start_seconds']:.2f} s", flush=True)
            rows.append(row)
        finally:
            daq.close()
    return rows


def task_cpu(daq: Daq, reset: bool = False) -> dict[str, list]:
    """Per task name, [count, CPU seconds] summed over the control workers since the last
    reset (``bench.task_cpu``, asked with a remote control command)."""
    replies = daq.app().control.broadcast("task_cpu", arguments={"reset": reset}, reply=True,
                                          timeout=2.0) or []
    workers = [name for name in daq.processes if name.startswith("control")]
    answered = [answer for reply in replies for host, answer in reply.items()
                if any(host.startswith(name + "@") for name in workers)]
    if len(answered) != len(workers):
        raise RuntimeError(f"task CPU: {len(answered)} of {len(workers)} control workers "
                           "answered")
    sums: dict[str, list] = {}
    for answer in answered:
        for name, (count, cpu) in answer["tasks"].items():
            found = sums.setdefault(name, [0, 0.0])
            found[0] += count
            found[1] += cpu
    return sums


def control_main_seconds(daq: Daq) -> float:
    """CPU seconds the control workers' main threads (their consumer loops) used so far."""
    return sum(process.main_thread_seconds() for name, process in daq.processes.items()
               if name.startswith("control"))


def control_breakdown(tasks: dict[str, list], main_threads: dict[str, float],
                      used: dict[str, dict], sources: int) -> dict:
    """The control workers' CPU per source, per side: each task (count and CPU per call),
    the main threads, and the rest (pool threads outside a task, other threads)."""
    breakdown = {}
    for side in ("daqflow", "engine"):
        mine = {name: found for name, found in tasks.items()
                if name.startswith("bench.engine.") == (side == "engine")}
        in_tasks = sum(cpu for _, cpu in mine.values())
        control = sum(cpu for name, cpu in used[side].items() if name.startswith("control"))
        breakdown[side] = {
            "tasks": {name: {"count": count, "ms_per_call": round(1000 * cpu / count, 3),
                             "ms_per_source": round(1000 * cpu / sources, 3)}
                      for name, (count, cpu) in sorted(mine.items()) if count},
            "tasks_ms_per_source": round(1000 * in_tasks / sources, 3),
            "main_threads_ms_per_source": round(1000 * main_threads[side] / sources, 3),
            "rest_ms_per_source": round(1000 * (control - in_tasks - main_threads[side])
                                        / sources, 3)}
    return breakdown


def control_activities(n: int, profile: dict) -> str:
    """The control workers' py-spy samples added up, by activity (``bench.profile``)."""
    counts: Counter[str] = Counter()
    for process, found in profile.items():
        if process.startswith("control"):
            counts.update(found.get("activities", {}))
    total = sum(counts.values())
    return (f"N = {n}, the control workers by activity ({total} samples): "
            + ", ".join(f"{activity} {100 * samples / total:.1f} %"
                        for activity, samples in counts.most_common()))


def profiled_starts(daq: Daq, directory: Path, timeout: float) -> dict:
    """Two starts under py-spy: per process, where its CPU went (percent of samples)."""
    pids = {name: process.pid for name, process in daq.processes.items()}
    recording = Recording(pids, directory)
    try:
        for _ in range(2):
            timed_start(daq, timeout)
    finally:
        report = recording.stop()
    return report


class RoundTrips:
    """Counts Redis round trips (commands or pipelines sent) made by this process."""

    def __init__(self):
        from redis.connection import Connection

        self.count, self._original = 0, Connection.send_packed_command
        counter = self

        def counted(connection, command, check_health=True):
            counter.count += 1
            return counter._original(connection, command, check_health)

        Connection.send_packed_command = counted

    def close(self) -> None:
        from redis.connection import Connection

        Connection.send_packed_command = self._original


def measure_progress_reads(redis_url: str, n: int, seconds: float, reads: int) -> dict:
    """(2): daqflow's progress read against the usual GroupResult way, same workflow."""
    from sqlmodel import select

    import models
    from models import Stage, Step
    from pipelines.orchestration.app import app
    from pipelines.runcontrol import progress

    daq = Daq(redis_url, n, seconds)
    try:
        start_control(daq, n)
        workflow_id, _ = timed_start(daq, timeout=120)
        progress.read(workflow_id)  # connections open before timing

        def usual_way():
            with models.session() as s:
                stages = s.exec(select(Stage).where(Stage.workflow_id == workflow_id)).all()
                ids = {st.group_id: [step.task_id for step in s.exec(
                    select(Step).where(Step.stage_id == st.id)).all()] for st in stages}
            states = []
            for group_id, task_ids in ids.items():
                group = app.GroupResult.restore(group_id, app=app) or app.GroupResult(
                    group_id, [app.AsyncResult(tid) for tid in task_ids])
                states += [result.state for result in group.results]
            return states

        figures = {}
        for name, read in (("daqflow", lambda: progress.read(workflow_id)),
                           ("group_result", usual_way)):
            counter, times = RoundTrips(), []
            try:
                for _ in range(reads):
                    began = time.perf_counter()
                    read()
                    times.append(time.perf_counter() - began)
            finally:
                counter.close()
            figures[name] = {"p50_ms": 1000 * percentile(times, 0.5),
                             "p95_ms": 1000 * percentile(times, 0.95),
                             "redis_round_trips": counter.count / reads}
        http_times = []
        for _ in range(min(reads, 100)):
            began = time.perf_counter()
            status, _body = daq.api("GET", f"/api/workflows/{workflow_id}")
            http_times.append(time.perf_counter() - began)
        figures["daqflow_http"] = {"p50_ms": 1000 * percentile(http_times, 0.5),
                                   "p95_ms": 1000 * percentile(http_times, 0.95)}
        figures["sources"] = n
        print(f"  progress read, N={n}: daqflow p50 {figures['daqflow']['p50_ms']:.1f} ms, "
              f"{figures['daqflow']['redis_round_trips']:.0f} round trip(s); group result p50 "
              f"{figures['group_result']['p50_ms']:.1f} ms, "
              f"{figures['group_result']['redis_round_trips']:.0f} round trips", flush=True)
        return figures
    finally:
        daq.close()


def measure_polling(redis_url: str, n: int, seconds: float, reps: int, clients: int) -> dict:
    """(4): web CPU per minute with ``clients`` polling /live: every 3 s on an idle DAQ, every
    second during starts; and the start ratio."""
    daq = Daq(redis_url, n, seconds)
    try:
        start_control(daq, n)
        web = daq.processes["web"]
        floor = 2 * seconds

        def pollers(stop: threading.Event, count: int, every: float) -> list[threading.Thread]:
            def poll():
                url = f"http://127.0.0.1:{daq.web_port}/live"
                while not stop.is_set():
                    began = time.monotonic()
                    request = urllib.request.Request(url, headers=daq.headers)
                    with urllib.request.urlopen(request, timeout=30) as response:
                        response.read()
                    stop.wait(max(0.0, every - (time.monotonic() - began)))

            return [threading.Thread(target=poll, daemon=True) for _ in range(count)]

        def idle_window(duration: float = 30.0, every: float = 3.0) -> dict:
            # No workflow: the page still polls, every DAQFLOW_IDLE_POLL_SECONDS (3 s).
            stop = threading.Event()
            threads = pollers(stop, clients, every)
            cpu0, t0 = web.cpu_seconds(), time.monotonic()
            for thread in threads:
                thread.start()
            stop.wait(duration)
            stop.set()
            for thread in threads:
                thread.join()
            cpu, elapsed = web.cpu_seconds() - cpu0, time.monotonic() - t0
            return {"web_cpu_seconds_per_minute": 60 * cpu / elapsed, "window_seconds": elapsed,
                    "poll_seconds": every}

        def window(polled: bool) -> dict:
            stop = threading.Event()
            pollers_ = pollers(stop, clients if polled else 0, 1.0)
            cpu0, t0 = web.cpu_seconds(), time.monotonic()
            for thread in pollers_:
                thread.start()
            walls = [timed_start(daq, timeout=120)[1] for _ in range(reps)]
            stop.set()
            for thread in pollers_:
                thread.join()
            cpu, elapsed = web.cpu_seconds() - cpu0, time.monotonic() - t0
            return {"walls": walls, "ratio": statistics.median(walls) / floor,
                    "web_cpu_seconds_per_minute": 60 * cpu / elapsed, "window_seconds": elapsed}

        figures = {"sources": n, "clients": clients, "idle": idle_window(),
                   "quiet": window(False), "polled": window(True)}
        print(f"  polling: web {figures['polled']['web_cpu_seconds_per_minute']:.1f} CPU s/min "
              f"polled during starts ({figures['quiet']['web_cpu_seconds_per_minute']:.1f} "
              f"quiet, {figures['idle']['web_cpu_seconds_per_minute']:.1f} with {clients} idle "
              f"pollers every {figures['idle']['poll_seconds']:g} s); start ratio "
              f"{figures['polled']['ratio']:.2f} polled, {figures['quiet']['ratio']:.2f} quiet",
              flush=True)
        return figures
    finally:
        daq.close()


def trim_workers(daq: Daq) -> dict[str, dict]:
    """Once the processes are quiet, every worker hands its free heap pages back
    (``bench.memory_probe``): the soak samples RSS just after a trim, not wherever the
    workers' own 30 s trims left it. Returns each worker's answer by node name."""
    workers = [name for name in daq.processes if name.startswith(("control", "files"))]
    daq.quiet_cpu_seconds()
    replies = daq.app().control.broadcast("trim_memory", reply=True, timeout=5.0,
                                          limit=len(workers)) or []
    if len(replies) != len(workers):
        raise RuntimeError(f"trim: {len(replies)} of {len(workers)} workers answered")
    return {node: answer for reply in replies for node, answer in reply.items()}


def control_allocators(answers: dict[str, dict], names: list[str]) -> dict:
    """The control workers' SQLite memory (MB) and Python arenas, summed and worker by
    worker (in the order of ``names``, the bench's names of its control workers), from
    their ``trim_memory`` answers: the parts of RSS each allocator holds."""
    by_name = {node.split("@", 1)[0]: answer for node, answer in answers.items()}
    control = [by_name[name] for name in names]
    sqlite = [a.get("sqlite_bytes") for a in control]
    arenas = [a.get("pymalloc_arenas") for a in control]
    return {"control_sqlite_mb": None if None in sqlite else sum(sqlite) / 2**20,
            "control_arenas_mb": None if None in arenas else sum(arenas),
            "control_sqlite_each_mb": [None if b is None else round(b / 2**20, 3)
                                       for b in sqlite],
            # Acknowledged messages kombu still held, dropped just before the trim.
            "control_released": [a.get("released") for a in control],
            "control_arenas_each": arenas}


def measure_soak(redis_url: str, n: int, seconds: float, cycles: int,
                 postgres: str | None = None) -> dict:
    """(5): start/stop cycles with routers and backups: successes, Redis keys, memory."""
    daq = Daq(redis_url, n, seconds, routers=True, postgres=postgres)
    try:
        start_control(daq, n)
        names = [name for name in daq.processes if name.startswith("control")]
        control = [daq.processes[name] for name in names]
        files = daq.start_worker("files", "threads", 8, queues="files")
        web, redis = daq.processes["web"], daq.redis()
        set_ready(daq)
        samples, failures = [], []
        began = time.monotonic()
        for cycle in range(cycles):
            cycle_began, stop_id = time.monotonic(), None
            for path in ("/api/runs/start", "/api/runs/stop"):
                try:
                    stop_id = launch(daq, path, timeout=120)[0]
                except RuntimeError as exc:
                    failures.append(f"cycle {cycle} {path}: {exc}")
                    set_ready(daq)
            cycle_seconds = time.monotonic() - cycle_began
            if cycle in (0, cycles - 1) or cycle % 10 == 9:
                allocators = control_allocators(trim_workers(daq), names)
                each = [p.rss_bytes() / 2**20 for p in control]  # read once, summed below
                rss = sum(each)
                samples.append({"cycle": cycle + 1, "redis_keys": redis.dbsize(),
                                # A start and a stop, and what the stop's stages expected
                                # of their steps (median s): neither should creep up.
                                "cycle_seconds": round(cycle_seconds, 2),
                                "stop_expected_s": expected_by_stage(stop_id),
                                "control_rss_mb": rss,
                                # An arena is 1 MiB: what RSS holds beside Python's objects.
                                "control_outside_arenas_mb":
                                    None if allocators["control_arenas_mb"] is None
                                    else rss - allocators["control_arenas_mb"],
                                "control_rss_each_mb": [round(mb, 2) for mb in each],
                                **allocators,
                                # A pool thread starts only when every other one is busy:
                                # its stack is memory that stays.
                                "control_threads": [p.threads() for p in control],
                                "files_rss_mb": files.rss_bytes() / 2**20,
                                "web_rss_mb": web.rss_bytes() / 2**20})
                print(f"  soak cycle {cycle + 1}: {samples[-1]}", flush=True)
        return {"sources": n, "seconds_per_transition": seconds, "cycles": cycles,
                "database": "PostgreSQL" if postgres else "SQLite", "pool": CONTROL["pool"],
                "failures": failures,
                "samples": samples, "minutes": (time.monotonic() - began) / 60,
                # From cycle 100 (once warm), and over the soak's second half.
                "trends": {key: [rss_trend(samples, key, since)
                                 for since in sorted({100, cycles // 2})]
                           for key in SOAK_MEMORY}}
    finally:
        daq.close()


# The soak's memory figures, each a process or a group of them, in MB (an arena is 1 MiB),
# and how the report names them.
SOAK_MEMORY = {"control_rss_mb": "RSS, control", "files_rss_mb": "RSS, files",
               "web_rss_mb": "RSS, web", "control_arenas_mb": "Python's arenas, control",
               "control_outside_arenas_mb": "RSS outside Python's arenas, control",
               "control_sqlite_mb": "SQLite's memory, control"}


def rss_trend(samples: list[dict], key: str, since: int = 100) -> dict:
    """Whether a soak's RSS still moves once warm: the least-squares slope, in MB per 100
    cycles, with its standard error, over the samples from cycle ``since`` on, beside
    their lowest and highest.

    Two samples say little: each moves with what the workers did just before it (by 0.5
    MB or so, sampled just after a trim as ``trim_workers`` does; by one or two where it
    fell anywhere between the workers' own trims, as the soaks before 0fcf369 were). A
    slope over every sample of a window tells a trend from that scatter; with fewer than
    three samples there is none to tell (None).
    """
    window = [(s["cycle"], s[key]) for s in samples
              if s["cycle"] >= since and s.get(key) is not None]
    if len(window) < 3:
        return {"from_cycle": since, "slope_mb_per_100_cycles": None}
    cycles, values = zip(*window)
    fit = statistics.linear_regression(cycles, values)
    residuals = sum((v - fit.intercept - fit.slope * c) ** 2 for c, v in window)
    mean_cycle = statistics.fmean(cycles)
    spread = sum((c - mean_cycle) ** 2 for c in cycles)
    error = (residuals / (len(window) - 2) / spread) ** 0.5
    return {"from_cycle": since, "samples": len(window),
            "slope_mb_per_100_cycles": round(100 * fit.slope, 3),
            "standard_error": round(100 * error, 3),
            "low_mb": round(min(values), 2), "high_mb": round(max(values), 2)}


# --- the report ---------------------------------------------------------------------

def table(results: dict) -> str:
    """The figures as a Markdown table (pasted into the README's Performance section)."""
    out = ["| N sources | stages | floor (s) | engine (s) | daqflow (s) | daqflow / engine | "
           "daqflow / floor | prefork 10 (s) | prefork 10 / floor | speed-up | "
           "first start, fresh workers (s) |",
           "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in results.get("start", []):
        out.append(f"| {row['sources']} | {'+'.join(map(str, row['stages']))} | "
                   f"{row['floor_seconds']:.1f} | {row['engine']['median']:.2f} | "
                   f"{row['threads']['median']:.2f} | {row['over_engine']:.2f} | "
                   f"{row['threads']['ratio']:.2f} | " + (
                       f"{row['prefork10']['median']:.2f} | {row['prefork10']['ratio']:.2f} | "
                       f"{row['speedup']:.1f}x |" if "prefork10" in row else "| | |")
                   + (f" {row['first_start_seconds']:.2f} |" if "first_start_seconds" in row
                      else " |"))
    if "progress" in results:
        p = results["progress"]
        out += ["", f"| progress read, {p['sources']} sources | p50 (ms) | p95 (ms) | "
                "Redis round trips |", "|---|---:|---:|---:|"]
        for name, label in (("daqflow", "daqflow (1 SQL query + 1 MGET)"),
                            ("group_result", "GroupResult, one GET per member")):
            f = p[name]
            out.append(f"| {label} | {f['p50_ms']:.1f} | {f['p95_ms']:.1f} | "
                       f"{f['redis_round_trips']:.0f} |")
        out.append(f"| daqflow over HTTP (`GET /api/workflows/<id>`) | "
                   f"{p['daqflow_http']['p50_ms']:.1f} | {p['daqflow_http']['p95_ms']:.1f} | |")
    rows = results.get("start", [])
    if rows and "cpu_ms_per_source" in rows[0]:
        names = sorted({name for row in rows for name in row["cpu_ms_per_source"]})
        out += ["", "| CPU ms per source during daqflow's starts | " + " | ".join(names) + " |",
                "|---:|" + "---:|" * len(names)]
        for row in rows:
            out.append(f"| N = {row['sources']} | " + " | ".join(
                f"{row['cpu_ms_per_source'].get(name, 0):.1f}" for name in names) + " |")
            out.append(f"| engine, N = {row['sources']} | " + " | ".join(
                f"{row['engine']['cpu_ms_per_source'].get(name, 0):.1f}" for name in names)
                + " |")
    for row in rows:
        for side, found in row.get("control_cpu", {}).items():
            out += ["", f"N = {row['sources']}, {side}, control workers' CPU ms per source: "
                    f"tasks {found['tasks_ms_per_source']:.2f} (" + ", ".join(
                        f"{name} {task['ms_per_call']:.2f} ms x {task['count']}"
                        for name, task in found["tasks"].items())
                    + f"), main threads {found['main_threads_ms_per_source']:.2f}, rest "
                    f"{found['rest_ms_per_source']:.2f}"]
        if "timeline" in row:
            out += ["", f"N = {row['sources']}, median start, machine {row['busy_cores']:.2f} "
                    "cores busy; stage: steps, began first/median/last, ended median/last, "
                    "completed (s after the call): " + "; ".join(
                        f"{st['steps']}, {st['first_began']:.2f}/{st['median_began']:.2f}/"
                        f"{st['last_began']:.2f}, {st['median_ended']:.2f}/{st['last_ended']:.2f}, "
                        f"{st['completed']:.2f}" for st in row["timeline"])]
        for process, found in sorted(row.get("profile", {}).items()):
            out += ["", f"N = {row['sources']}, {process} ({found['samples']} samples holding "
                    "the GIL): " + ", ".join(f"{group} {share:.0f} %"
                                             for group, share in found["percent"].items())]
        if row.get("profile"):
            out += ["", control_activities(row["sources"], row["profile"])]
    if results.get("callback_latency_ms"):
        c = results["callback_latency_ms"]
        out += ["", f"Chord callback latency ({c['count']} stages): median {c['median']:.1f} ms,"
                f" p95 {c['p95']:.1f} ms"]
    if "polling" in results:
        p = results["polling"]
        out += ["", f"Polling ({p['clients']} clients, {p['sources']} sources): web "
                f"{p['polled']['web_cpu_seconds_per_minute']:.1f} CPU s/min during starts (quiet "
                f"{p['quiet']['web_cpu_seconds_per_minute']:.1f}; idle DAQ, polled every "
                f"{p['idle']['poll_seconds']:g} s: {p['idle']['web_cpu_seconds_per_minute']:.1f}); "
                "start ratio "
                f"{p['polled']['ratio']:.2f} polled, {p['quiet']['ratio']:.2f} quiet"]
    if "soak" in results:
        s = results["soak"]
        first, last = s["samples"][0], s["samples"][-1]
        out += ["", f"Soak: {s['cycles']} start/stop cycles on {s['sources']} sources "
                f"({s.get('database', 'SQLite')}, control pool {s.get('pool', 'threads')}) in "
                f"{s['minutes']:.1f} min, {len(s['failures'])} failed; Redis keys "
                f"{first['redis_keys']} -> {last['redis_keys']}; RSS (MB) control "
                f"{first['control_rss_mb']:.0f} -> {last['control_rss_mb']:.0f}, files "
                f"{first['files_rss_mb']:.0f} -> {last['files_rss_mb']:.0f}, web "
                f"{first['web_rss_mb']:.0f} -> {last['web_rss_mb']:.0f}"
                + (f"; control threads {first['control_threads']} -> {last['control_threads']}"
                   if "control_threads" in first else "")]
        for key, windows in s.get("trends", {}).items():
            shown = [f"from cycle {t['from_cycle']} {t['slope_mb_per_100_cycles']:+.2f} "
                     f"± {t['standard_error']:.2f} ({t['low_mb']:.1f} to {t['high_mb']:.1f})"
                     for t in windows if t["slope_mb_per_100_cycles"] is not None]
            if shown:
                out.append(f"{SOAK_MEMORY.get(key, key)}: trend, MB per 100 cycles "
                           "(least squares ± one standard error; lowest to highest sample): "
                           + "; ".join(shown))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 256, 1024])
    parser.add_argument("--reps", type=int, default=5, help="daqflow starts per size")
    parser.add_argument("--baseline-reps", type=int, default=3, help="prefork starts per size")
    parser.add_argument("--seconds", type=float, default=1.0, help="transition time T")
    parser.add_argument("--reads", type=int, default=200, help="progress reads per way")
    parser.add_argument("--soak-cycles", type=int, default=200)
    parser.add_argument("--soak-seconds", type=float, default=0.2)
    parser.add_argument("--only", nargs="+", default=["start", "progress", "polling", "soak"],
                        choices=["start", "progress", "polling", "soak"])
    parser.add_argument("--profile", metavar="DIR", type=Path,
                        help="also profile two starts per N with py-spy; raw stacks in DIR")
    parser.add_argument("--postgres", metavar="URL",
                        help="measure starts on a fresh database on this PostgreSQL server "
                             "(e.g. postgresql+psycopg://postgres@127.0.0.1:5432), not SQLite")
    parser.add_argument("--processes", type=int,
                        help="control worker processes (default: as `daqflow up`, two per core)")
    parser.add_argument("--pool", choices=["threads", "gevent"], default="threads",
                        help="the control workers' pool (gevent: pip install '.[bench]')")
    parser.add_argument("--control-threads", type=int,
                        help="threads per control worker process (default: as `daqflow up` "
                             "sizes them for N servers)")
    parser.add_argument("--out", default="bench/results.json")
    args = parser.parse_args(argv)
    CONTROL.update(processes=args.processes, pool=args.pool, threads=args.control_threads)
    if args.profile and "start" in args.only:
        try:
            py_spy()  # now, not after every timed start has run
        except RuntimeError as exc:
            parser.error(str(exc))
    # A benchmark stopped with kill still stops every process it started (finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    results: dict = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     "argv": sys.argv[1:]}
    latencies: list[float] = []
    with bench_redis("daqflow-bench-redis-") as (_, redis_url):
        if "start" in args.only:
            print("start-run wall time", flush=True)
            results["start"] = measure_starts(redis_url, args.sizes, args.reps, args.seconds,
                                              args.baseline_reps, latencies, args.profile,
                                              args.postgres)
            if latencies:
                ms = [1000 * x for x in latencies]
                results["callback_latency_ms"] = {"count": len(ms),
                                                  "median": statistics.median(ms),
                                                  "p95": percentile(ms, 0.95)}
        if "progress" in args.only:
            results["progress"] = measure_progress_reads(redis_url, 256, args.seconds, args.reads)
        if "polling" in args.only:
            results["polling"] = measure_polling(redis_url, 256, args.seconds, args.reps, 20)
        if "soak" in args.only:
            results["soak"] = measure_soak(redis_url, 64, args.soak_seconds, args.soak_cycles,
                                           args.postgres)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(table(results))
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
