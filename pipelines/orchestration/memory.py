"""A worker gives the heap memory its threads have freed back to the system.

glibc keeps the pages of freed heap blocks resident until it is told otherwise, so
a worker's RSS follows the most its threads ever held at once and, over a shift of
starts and stops, creeps up by the pages freed blocks leave scattered in its heap.
``malloc_trim(0)`` hands every whole free page back. It runs from the worker's own
Celery timer (the consumer's event loop with Redis), never from a thread of ours.

Before it, the worker lets go of the task messages it has acknowledged. kombu's Redis
channel keeps each delivered message until the next one arrives on the channel, even
once acknowledged: after a stage, a worker held the messages of its last burst of
steps until the next run (16 messages of 91 kB each in a 64-source soak, when a step's
message still carried the rest of the workflow), and a sample of its RSS found it
1.4 MB higher or not depending on which worker had taken the stage's last messages.
"""
from __future__ import annotations

import ctypes
from typing import Callable

from celery import bootsteps

from models import settings


def release_acknowledged(consumer) -> int:
    """Drop the acknowledged task messages the worker's channel still holds; returns how
    many it held.

    kombu drops them itself when the next message arrives (``QoS._flush``): this does the
    same now. Run it from the event loop's thread, the one that receives the messages.
    """
    channel = getattr(getattr(consumer, "task_consumer", None), "channel", None)
    qos = getattr(channel, "qos", None)
    flush = getattr(qos, "_flush", None)
    if flush is None:  # not connected yet, or a transport that keeps no such state
        return 0
    held = len(getattr(qos, "_dirty", ()))
    flush()
    return held


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS)."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


def free_memory(consumer, trim: Callable[[int], int] | None) -> tuple[int, bool]:
    """Drop the acknowledged messages, then hand the heap's whole free pages back to the
    system (``trim``: ``malloc_trim``, or None where the C library has none). Returns how
    many messages were dropped and whether any pages went back."""
    released = release_acknowledged(consumer)
    return released, trim is not None and bool(trim(0))


class ReturnFreeMemory(bootsteps.StartStopStep):
    """Every ``DAQFLOW_RETURN_MEMORY_SECONDS``, the worker drops the messages it has
    acknowledged and returns its free heap pages.

    A trim costs a control worker about 0.4 ms of CPU (a soak's four workers, 64
    sources); it holds each malloc arena's lock only while it walks that arena.
    """

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.entry = None
        self.trim = None
        self.worker = worker

    def start(self, worker) -> None:
        self.trim = malloc_trim()
        self.entry = worker.timer.call_repeatedly(
            settings.RETURN_MEMORY_SECONDS.get(), self.return_free_memory, priority=10)

    def return_free_memory(self) -> None:
        """Drop the acknowledged messages, then hand the heap's whole free pages back to
        the system (``malloc_trim(0)``, where the C library has it)."""
        free_memory(getattr(self.worker, "consumer", None), self.trim)

    def stop(self, worker) -> None:
        if self.entry is not None:
            self.entry.cancel()
            self.entry = None
