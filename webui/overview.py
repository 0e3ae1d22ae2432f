"""The compact view of the DAQ that a shift reads first, on one screen at 256 sources: counts
per state, a grid of sources with the troubled ones first, and the active stage's ETA."""
from __future__ import annotations

from collections import Counter

from models.vocabulary import (
    ACTIVE_STATES,
    UNFINISHED_STEP_STATES,
    UNSUCCESSFUL_STEP_STATES,
    StepState,
)

# Sources first in the grid: those that need the operator, then those running late.
_FAILED, _SLOW, _REST = 0, 1, 2


def _past_expected(step: dict) -> bool:
    """A running step that has taken longer than its server usually does."""
    return step["state"] == StepState.RUNNING and bool(step["expected"]) and \
        (step["elapsed"] or 0) > step["expected"]


def _trouble(source: dict, step: dict | None) -> int:
    if source["online"] is False or (step and step["state"] in UNSUCCESSFUL_STEP_STATES):
        return _FAILED
    if step and _past_expected(step):
        return _SLOW
    return _REST


def overview(status: dict, step_of: dict, workflow: dict | None) -> dict:
    """Counts per state, the grid's cells (troubled first) and the active stage's ETA."""
    cells = []
    for source in status["sources"]:
        step = step_of.get(source["ecc_server"])
        trouble = _trouble(source, step)
        state = "offline" if source["online"] is False else source["state"]
        cells.append({"name": source["name"], "server": source["ecc_server"], "state": state,
                      "step_state": step["state"] if step else None,
                      "progress": step["progress"] if step else 0.0,
                      "trouble": ("failed", "slow", None)[trouble],
                      "error": (step or {}).get("error") or source["error"], "order": trouble})
    cells.sort(key=lambda cell: cell["order"])
    # Whom an abort would cut loose: running steps past their expected time, longest first.
    waiting = sorted(({"server": server, "operation": step["operation"],
                       "elapsed": step["elapsed"], "expected": step["expected"]}
                      for server, step in step_of.items() if _past_expected(step)),
                     key=lambda w: -w["elapsed"])
    return {"counts": sorted(Counter(cell["state"] for cell in cells).items()),
            "troubled": sum(1 for cell in cells if cell["trouble"]),
            "cells": cells, "eta_seconds": _eta(workflow), "waiting": waiting}


def _eta(workflow: dict | None) -> float | None:
    """Seconds until the active stage should end, from its steps' expected durations."""
    if not workflow or not workflow["active"]:
        return None
    stage = next((st for st in workflow["stages"] if st["state"] in ACTIVE_STATES), None)
    if stage is None:
        return None
    left = [max((step["expected"] or 0) - (step["elapsed"] or 0), 0.0)
            for step in stage["steps"] if step["state"] in UNFINISHED_STEP_STATES]
    return max(left) if left else None
