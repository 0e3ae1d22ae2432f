"""Where a control worker's CPU goes, counted by the worker itself: per task, and the rest.

The bench's workers load this module (``--include bench.task_cpu``). It adds up, per
task name, the CPU time of the thread that ran each task from ``task_prerun`` to
``task_postrun`` (the task's body and what Celery's tracer does around it: storing its
states, counting the chord, sending the next stage); and it answers the remote control
command ``task_cpu`` with those sums. The bench reads the main thread's CPU (the
consumer loop: receiving, handing messages to the pool) and the process's from ``/proc``.

Unlike py-spy samples holding the GIL, which a thread preempted mid-sample blurs, these
are the kernel's own per-thread counters: a thread is charged what it ran. What is
left once tasks and the main thread are taken away runs in pool threads outside a
task's window (acknowledging messages) and in Celery's and kombu's own threads.
"""
from __future__ import annotations

import threading
import time

from celery import signals
from celery.worker.control import control_command

_lock = threading.Lock()
_started: dict[str, float] = {}  # task id -> its thread's CPU time at prerun
_sums: dict[str, list] = {}      # task name -> [count, CPU seconds]


@signals.task_prerun.connect(weak=False)
def _prerun(task_id=None, **_):
    _started[task_id] = time.thread_time()


@signals.task_postrun.connect(weak=False)
def _postrun(task_id=None, task=None, **_):
    began = _started.pop(task_id, None)
    if began is None or task is None:
        return
    used = time.thread_time() - began
    with _lock:
        found = _sums.setdefault(task.name, [0, 0.0])
        found[0] += 1
        found[1] += used


@control_command(args=[("reset", bool)], signature="[reset=False]")
def task_cpu(state, reset: bool = False) -> dict:
    """Per task name, [count, CPU seconds] so far; with ``reset``, the sums start again
    from zero after this answer."""
    with _lock:
        tasks = {name: list(found) for name, found in _sums.items()}
        if reset:
            _sums.clear()
    return {"tasks": tasks}
