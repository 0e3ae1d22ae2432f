"""A soak's memory samples without the saw-tooth of the heap trims.

The bench's workers load this module (``--include bench.memory_probe``). Every worker
hands its free heap pages back to the system every ``DAQFLOW_RETURN_MEMORY_SECONDS``
(``pipelines.orchestration.memory``), so its RSS between two trims climbs by a megabyte
or two and drops again. A sample taken at whatever point of that saw-tooth the soak
happens to be moves by as much, and as the soak's samples and the trims have periods
close to each other, the samples' phase drifts slowly: a fit over a few dozen samples
can take part of a slow wave for a trend. The remote control command ``trim_memory`` runs
the same trim at once, so the soak samples every worker just after one.
"""
from __future__ import annotations

from celery.worker.control import control_command

from pipelines.orchestration.memory import malloc_trim


@control_command()
def trim_memory(state) -> dict:
    """Hand the heap's whole free pages back to the system now (``malloc_trim(0)``)."""
    trim = malloc_trim()
    return {"trimmed": trim is not None and bool(trim(0))}
