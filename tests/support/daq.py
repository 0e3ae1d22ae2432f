"""The standard test DAQ (8 CoBos and a MuTAnT, one ECC server each) and what tests ask of it."""
from __future__ import annotations

import hashlib
import shutil
from collections import Counter
from pathlib import Path

from sqlalchemy import text
from sqlmodel import SQLModel, delete, func, select, update

import models
from models import (
    Alarm,
    AuditEntry,
    EccSample,
    ECCServer,
    PlanEntry,
    RouterSample,
    Run,
    RunField,
    RunFiles,
    RunNote,
    RunPlan,
    Stage,
    Step,
    Workflow,
)
from pipelines.daq.ecc.states import EccState
from tests.support.processes import wait_for

# A transition of the standard test DAQ's servers: short, as the suite runs hundreds of them;
# a test that must see one under way slows the simulator down or hangs it with a fault.
TRANSITION_SECONDS = 0.1
# The session worker's DAQFLOW_STEP_LOST_SECONDS: a lab's 10 s, shortened so that the tests
# of a killed worker wait less; still longer than a beat round (each waits up to 2 s).
STEP_LOST_SECONDS = 4.0
COBOS = [f"ecc-cobo{i}" for i in range(8)]
SERVERS = COBOS + ["ecc-mutant"]
ROUTERS = [f"router-{i}" for i in range(9)]
# An operator's name with every shell metacharacter: only ever a folder name on a node.
HOSTILE = "it's a \"run\"; $(touch PWNED) `touch PWNED` & | > < * ? \\ ~ #"


def set_all(sim, state: EccState) -> None:
    """Put every simulated server, and the database's view of it, in ``state``."""
    for name in SERVERS:
        sim.set_state(name, state)
    with models.session() as s:
        s.exec(update(ECCServer).values(state=int(state)))


def load_ready(sim) -> None:
    """Load ``sim``'s own topology in place of the records there, every server READY (in
    the simulator and in the database), the run-control lock free."""
    from pipelines.runcontrol import lock
    from pipelines.topology import loading, schema

    clear_workflow_records()
    lock.clear()
    loading.load(schema.read(sim.topology_path))
    for name in sim.states():
        sim.set_state(name, EccState.READY)
    with models.session() as s:
        s.exec(update(ECCServer).values(state=int(EccState.READY)))


def row_counts() -> tuple[int, ...]:
    """How many workflows, stages, steps and runs the database holds."""
    with models.session() as s:
        return tuple(s.exec(select(func.count()).select_from(t)).one()
                     for t in (Workflow, Stage, Step, Run))


def clear_workflow_records() -> None:
    """Delete every run plan, workflow, its audit, runs with their notes and files, the run
    fields, alarms and health samples, children before parents."""
    with models.session() as s:
        for table in (PlanEntry, RunPlan, AuditEntry, RunFiles, RunNote, RunField, Step, Stage,
                      Workflow, Run, Alarm, RouterSample, EccSample):
            s.exec(delete(table))


def clean_staging(root: Path) -> None:
    """Empty every staging dir under ``root`` (files and run folders), keeping the dirs."""
    if not root.exists():
        return
    for staging in root.iterdir():
        for entry in staging.iterdir():
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def wait_workflow(workflow_id: int, timeout: float = 30.0) -> dict:
    """Wait until a workflow has ended; return its progress read."""
    from pipelines.runcontrol import progress

    return wait_for(lambda: (lambda v: v if not v["active"] else None)(progress.read(workflow_id)),
                    timeout=timeout, message=f"workflow {workflow_id} to end")


def sends(sim) -> Counter:
    """How often the simulator was sent each (server, operation), GetState aside."""
    return Counter((e["server"], e["operation"]) for e in sim.log())


def steps_of(workflow_id: int, target: str) -> list[Step]:
    """Every attempt of one target's step in a workflow, oldest first."""
    with models.session() as s:
        return s.exec(select(Step).join(Stage, Step.stage_id == Stage.id)
                      .where(Stage.workflow_id == workflow_id, Step.target == target)
                      .order_by(Step.attempt)).all()


def database_digest() -> str:
    """Every row of every table, hashed: equal digests mean nothing changed.

    A refused login is recorded in the audit on purpose; those entries are left out.
    """
    digest = hashlib.sha256()
    with models.get_engine().connect() as connection:
        for table in SQLModel.metadata.sorted_tables:
            where = " WHERE action <> 'login refused'" if table.name == "auditentry" else ""
            for row in connection.execute(text(f'SELECT * FROM "{table.name}"{where} ORDER BY 1')):
                digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()


def steps_in(workflow_id: int, state: str) -> int:
    """How many of a workflow's steps (every attempt) are in ``state``."""
    with models.session() as s:
        return s.exec(select(func.count()).select_from(Step).join(Stage, Step.stage_id == Stage.id)
                      .where(Stage.workflow_id == workflow_id, Step.state == state)).one()


def cobo_steps(workflow_id: int) -> list[Step]:
    """The latest attempt of each CoBo's step, cobo0 first."""
    return [steps_of(workflow_id, cobo)[-1] for cobo in COBOS]


def start_held(sim, title: str, held: int = 8) -> int:
    """A start from READY whose first ``held`` CoBos stay in their Start until
    ``sim.clear_faults()`` (their deadline a minute away), and whose other CoBos have
    confirmed; returns the workflow's id once it is so. A test acts while those steps
    run, with no window to catch."""
    from pipelines.runcontrol import launching

    set_all(sim, EccState.READY)
    with models.session() as s:
        s.exec(update(ECCServer).values(transition_timeout=60.0))
    for cobo in COBOS[:held]:
        sim.fault(cobo, "hang", operation="Start", times=1)
    workflow_id = launching.launch("start_run", title=title)
    wait_for(lambda: [st.state for st in cobo_steps(workflow_id)]
             == ["running"] * held + ["succeeded"] * (8 - held),
             timeout=30, message=f"{held} CoBo steps held running, the others confirmed")
    return workflow_id
