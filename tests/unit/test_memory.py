"""A worker hands the heap memory its threads freed back to the system, on Celery's timer."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipelines.orchestration.app import app
from pipelines.orchestration.memory import ReturnFreeMemory, malloc_trim


def resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Timer:
    """A worker's timer that only records what is asked of it."""

    def __init__(self):
        self.repeating = []

    def call_repeatedly(self, seconds, function, args=(), kwargs=None, priority=0):
        self.repeating.append((seconds, function))
        return self


class Worker:
    def __init__(self):
        self.timer = Timer()


def test_every_worker_runs_the_step():
    assert ReturnFreeMemory in app.steps["worker"]


def test_the_step_trims_on_the_workers_timer_at_the_set_interval(monkeypatch):
    monkeypatch.setenv("DAQFLOW_RETURN_MEMORY_SECONDS", "45")
    worker = Worker()
    step = ReturnFreeMemory(worker)
    step.start(worker)
    assert worker.timer.repeating == [(45.0, step.return_free_memory)]


def test_freed_heap_pages_go_back_to_the_system():
    if malloc_trim() is None:
        pytest.fail("this C library has no malloc_trim: daqflow's hosts run glibc")
    # 4 kB blocks come from glibc's heap, not Python's arenas or their own mappings;
    # the last one keeps the freed ones from being the heap's top, which free() trims.
    blocks = [bytearray(4000) for _ in range(10_000)]
    for block in blocks:
        block[::512] = b"x" * len(block[::512])  # touch every page
    keep = bytearray(4000)
    before = resident_bytes()
    del blocks
    freed = resident_bytes()
    worker = Worker()
    step = ReturnFreeMemory(worker)
    step.start(worker)
    step.return_free_memory()
    after = resident_bytes()
    assert before - freed < 4 * 2**20, "glibc returned the freed pages by itself"
    assert freed - after > 30 * 2**20, (before, freed, after)
    assert keep
