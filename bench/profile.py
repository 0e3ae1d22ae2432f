"""Where a start's CPU goes: py-spy samples of daqflow's processes, by library.

py-spy (``pip install '.[bench]'``) samples each process from outside, without
pausing it, and keeps only the threads that hold the GIL: what a sample shows is
what the process was computing, not waiting for. Each sample is charged to the
library of the innermost frame that belongs to one of the groups below, so
``json.loads`` called by kombu counts as Celery, and a socket write by
urllib3 as HTTP.
"""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

# (group, path fragments of its frames), first match from the innermost frame.
GROUPS = [
    ("database (SQLAlchemy, SQLite)", ("/sqlalchemy/", "/sqlmodel/", "/sqlite3/", "/psycopg")),
    ("SOAP (zeep, lxml)", ("/zeep/", "/lxml/")),
    ("HTTP (http.client, requests, urllib3)", ("/requests/", "/urllib3/", "/http/client.py")),
    ("Redis client", ("/redis/",)),
    ("Celery, kombu", ("/celery/", "/kombu/", "/vine/", "/billiard/")),
    ("HTTP server (simulator, web)", ("/http/server.py", "/socketserver.py", "/werkzeug/",
                                      "/flask/", "/jinja2/")),
    ("daqflow", ("/pipelines/", "/models/", "/webui/")),
]
OTHER = "other (stdlib, threads)"

# What a control worker was doing, by the innermost frame naming one of these functions:
# daqflow's parts of a step and of a callback, and what Celery does around them. A sample
# none of them names is charged to its thread: the main thread is the consumer loop
# (receiving, acknowledging), a pool thread is Celery running its task.
ACTIVITIES = [
    ("begin a step", ("begin_transition (",)),
    ("end a step", ("finish_transition (", "finish_step (")),
    ("ECC operation", ("EccClient.transition (",)),
    ("ECC GetState", ("EccClient.get_state (",)),
    ("drive (between calls)", ("drive (",)),
    ("stage callback's record", ("complete_stage (",)),
    ("final callback's record", ("finish_workflow (",)),
    ("counting the chord", ("on_chord_part_return (",)),
    ("sending tasks", ("apply_async (", "send_task_message (")),
]
MAIN_THREAD, POOL_THREAD = "consumer loop (main thread)", "Celery around tasks (pool threads)"


def activity_of(stack: str) -> str:
    """The activity of one collapsed stack of a control worker (see ACTIVITIES)."""
    frames = stack.split(";")
    for frame in reversed(frames):
        for name, fragments in ACTIVITIES:
            if any(fragment in frame for fragment in fragments):
                return name
    return MAIN_THREAD if frames[0].startswith("_run_module_as_main") else POOL_THREAD


def group_of(stack: str) -> str:
    """The group of one collapsed stack ("outer;...;inner"), from its innermost frame up."""
    for frame in reversed(stack.split(";")):
        for name, fragments in GROUPS:
            if any(fragment in frame for fragment in fragments):
                return name
    return OTHER


def py_spy() -> str:
    """The py-spy executable; RuntimeError (with how to install it) when there is none."""
    # Beside this Python too: a venv's scripts are not on PATH unless it is activated.
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        raise RuntimeError("py-spy is not installed: pip install '.[bench]'")
    return spy


class Recording:
    """py-spy recording the given processes until ``stop()``; raw (collapsed) output."""

    def __init__(self, pids: dict[str, int], directory: Path, rate: int = 200):
        spy = py_spy()
        directory.mkdir(parents=True, exist_ok=True)
        self.outputs = {name: directory / f"{name}.txt" for name in pids}
        self.spies = {
            name: subprocess.Popen([spy, "record", "--pid", str(pid), "--format", "raw",
                                    "--gil", "--nonblocking", "--full-filenames",
                                    "--rate", str(rate), "--output", str(self.outputs[name])],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for name, pid in pids.items()}

    def stop(self) -> dict[str, dict]:
        """Stop sampling; per process, its samples and each group's share in percent."""
        for spy in self.spies.values():
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
        report = {}
        for name, spy in self.spies.items():
            _, err = spy.communicate(timeout=60)
            path = self.outputs[name]
            if not path.exists():
                raise RuntimeError(f"py-spy wrote nothing for {name}: {err.decode()[-500:]}")
            report[name] = summarize(path.read_text())
        return report


def summarize(raw: str) -> dict:
    """Samples per group of a raw py-spy recording, as percentages of all its samples; and
    the samples per activity (``activity_of``), for adding up over processes."""
    counts: Counter[str] = Counter()
    activities: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            counts[group_of(stack)] += int(count)
            activities[activity_of(stack)] += int(count)
    total = sum(counts.values())
    return {"samples": total,
            "percent": {name: round(100 * n / total, 1) for name, n in counts.most_common()}
            if total else {},
            "activities": dict(activities.most_common())}
