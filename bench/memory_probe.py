"""A soak's memory samples without the saw-tooth of the heap trims, and where the memory is.

The bench's workers load this module (``--include bench.memory_probe``). Every worker
hands its free heap pages back to the system every ``DAQFLOW_RETURN_MEMORY_SECONDS``
(``pipelines.orchestration.memory``), so its RSS between two trims climbs by a megabyte
or two and drops again. A sample taken at whatever point of that saw-tooth the soak
happens to be moves by as much, and as the soak's samples and the trims have periods
close to each other, the samples' phase drifts slowly: a fit over a few dozen samples
can take part of a slow wave for a trend. The remote control command ``trim_memory`` does
what the worker's timer does (drop the acknowledged messages, trim) at once, so the soak
samples every worker just after it, and answers what two allocators RSS does not tell
apart hold: SQLite's (its page caches, in glibc's heap) and Python's small-object arenas.
"""
from __future__ import annotations

import ctypes
import os
import re
import sys
import tempfile

from celery.worker.control import control_command

from pipelines.orchestration.memory import free_memory, malloc_trim


def sqlite_bytes() -> int | None:
    """Bytes SQLite holds in this process, every connection's page cache included."""
    try:
        used = ctypes.CDLL("libsqlite3.so.0").sqlite3_memory_used
    except (OSError, AttributeError):
        return None
    used.restype = ctypes.c_int64
    return used()


def pymalloc_arenas() -> int | None:
    """Python's small-object arenas (1 MiB each) now allocated.

    Only ``sys._debugmallocstats`` tells, and it writes to the C stderr: the worker is
    quiet when the bench asks, so its log loses nothing while fd 2 points elsewhere.
    """
    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        found = re.search(rb"# arenas allocated current\s*=\s*([\d,]+)", out.read())
    return int(found.group(1).replace(b",", b"")) if found else None


@control_command()
def trim_memory(state) -> dict:
    """Drop the acknowledged messages and hand the heap's whole free pages back to the
    system now (``malloc_trim(0)``), as the worker's timer does; say how many messages
    were dropped, and what SQLite and Python's arenas hold."""
    released, trimmed = free_memory(state.consumer, malloc_trim())
    return {"released": released, "trimmed": trimmed,
            "sqlite_bytes": sqlite_bytes(), "pymalloc_arenas": pymalloc_arenas()}
