"""The engine's floor: what Celery alone takes for a start's canvas.

The same chain of chords as a daqflow start (one chord per stage, as many members as
that stage's steps), on the same workers, whose members only sleep T and whose
callbacks do nothing: no SOAP, no database, no progress. daqflow / engine is then
what daqflow's own work costs on top of Celery's. The bench's workers load this module
(``--include bench.engine``), so both run side by side in one run.
"""
from __future__ import annotations

import time

from celery import chain, chord, group

from pipelines.orchestration.app import app

POLL_SECONDS = 0.02  # as often as the bench polls the database for daqflow's workflows


# As daqflow's steps: no STARTED, no result stored (their rows say they run, and how they
# ended); the chord counts them all the same.
@app.task(name="bench.engine.member", track_started=False, ignore_result=True)
def member(seconds: float) -> None:
    """A stage member that only waits, as a transition waits for the ECC server."""
    time.sleep(seconds)


@app.task(name="bench.engine.callback")
def callback() -> None:
    """A chord callback that does nothing."""


def canvas(shape: list[int], seconds: float):
    """A chain of chords: per stage, ``shape[i]`` members sleeping ``seconds``, then a
    callback."""
    return chain(*[chord(group(member.si(seconds) for _ in range(n)), callback.si())
                   for n in shape])


def run(shape: list[int], seconds: float, timeout: float) -> float:
    """Send the canvas; seconds from the call to its last callback's result."""
    from pipelines.orchestration import results

    signature = canvas(shape, seconds)
    last = signature.freeze()
    began = time.time()
    signature.apply_async()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metas, _ = results.fetch([last.id])
        meta = metas.get(last.id)
        if meta is not None and meta["status"] in ("SUCCESS", "FAILURE"):
            if meta["status"] != "SUCCESS":
                raise RuntimeError(f"the engine's canvas failed: {meta.get('result')}")
            return time.time() - began
        time.sleep(POLL_SECONDS)
    raise TimeoutError(f"the engine's canvas did not end within {timeout:g} s")
