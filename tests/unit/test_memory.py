"""A worker hands the heap memory its threads freed back to the system, on Celery's timer."""
from __future__ import annotations

import os
import weakref
from pathlib import Path
from types import SimpleNamespace

import pytest
from kombu import Connection, Exchange, Queue

from pipelines.orchestration.app import app
from pipelines.orchestration.memory import ReturnFreeMemory, malloc_trim, release_acknowledged


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
    def __init__(self, consumer=None):
        self.timer = Timer()
        self.consumer = consumer


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


def acknowledged_messages(count: int):
    """A kombu consumer (in-memory transport) that received and acknowledged ``count``
    messages, and weak references to them."""
    connection = Connection("memory://")
    queue = Queue("steps", Exchange("steps"), "steps")
    channel = connection.channel()
    producer = connection.Producer(channel)
    for i in range(count):
        producer.publish({"step": i, "canvas": "x" * 40_000}, exchange=queue.exchange,
                         routing_key="steps", declare=[queue])
    received = []
    consumer = connection.Consumer(queue, channel=channel, callbacks=[
        lambda body, message: received.append(message)])
    consumer.consume()
    while len(received) < count:
        connection.drain_events(timeout=1)
    for message in received:
        message.ack()
    acknowledged = [weakref.ref(message) for message in received]
    received.clear()  # the callback's list: only kombu holds them now
    return connection, consumer, acknowledged


def test_acknowledged_messages_are_let_go_before_the_trim():
    connection, consumer, messages = acknowledged_messages(16)
    try:
        # kombu keeps them until another message arrives: hours, between two runs.
        assert all(message() is not None for message in messages)
        worker = Worker(SimpleNamespace(task_consumer=consumer))
        step = ReturnFreeMemory(worker)
        step.start(worker)
        step.return_free_memory()
        assert [message() for message in messages] == [None] * 16
        assert release_acknowledged(worker.consumer) == 0
    finally:
        connection.release()


def test_a_worker_not_yet_consuming_has_nothing_to_let_go():
    assert release_acknowledged(None) == 0
    assert release_acknowledged(SimpleNamespace(task_consumer=None)) == 0
