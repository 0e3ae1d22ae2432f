"""The DAQ at a glance, for the page, ``daqflow status`` and ``GET /api/status``."""
from __future__ import annotations

from sqlmodel import select

from models import DaqNode, DataRouter, DataSource, ECCServer, Workflow, session
from models.columns import utcnow
from models.daq import active_experiment
from models.vocabulary import ACTIVE_STATES, WorkflowKind
from pipelines.daq.ecc.states import EccState, state_name
from pipelines.runcontrol import timed
from pipelines.runcontrol.planning import current_run, daq_state, server_operations
from pipelines.runcontrol.progress import iso


def _no_source_running(servers: list[ECCServer]) -> dict:
    """Whether a run recorded as going has lost every source (rebooted, powered off), and
    since when none was seen RUNNING. Unknown states (offline servers) claim nothing."""
    known = [srv for srv in servers if srv.state is not None]
    lost = bool(known) and len(known) == len(servers) and all(
        srv.state < EccState.RUNNING for srv in known)
    seen = [srv.running_seen_at for srv in servers if srv.running_seen_at]
    return {"no_source_running": lost,
            "running_seen_at": iso(max(seen)) if lost and seen else None}


# The action that cuts an active workflow loose (the page's Abort button).
ABORT = "abort"
# Which collective transition is legal when every server is in one state.
_NEXT_UP = {EccState.IDLE: WorkflowKind.DESCRIBE, EccState.DESCRIBED: WorkflowKind.PREPARE,
            EccState.PREPARED: WorkflowKind.CONFIGURE}


def legal_now(states: list[int | None], run_going: bool, workflow_active: bool) -> list[str]:
    """The actions the rules allow now, for the page's buttons (the server checks again).

    Only Abort while a workflow is active; Stop only while a run is going; Start only when
    every source is READY; each collective transition only from the state it starts from;
    Reset when a known state is above IDLE.
    """
    if workflow_active:
        return [ABORT]
    if run_going:
        return [WorkflowKind.STOP_RUN]
    if not states or any(state is None for state in states):
        return []
    legal = []
    if len(set(states)) == 1:
        state = EccState(states[0])
        if state == EccState.READY:
            legal.append(WorkflowKind.START_RUN)
        if state in _NEXT_UP:
            legal.append(_NEXT_UP[state])
    if max(states) > EccState.IDLE:
        legal.append(WorkflowKind.RESET)
    return [str(kind) for kind in legal]


def status() -> dict:
    """The DAQ at a glance: experiment, current run, overall state, sources, active workflow."""
    with session() as s:
        experiment = active_experiment(s)
        server_rows = s.exec(select(ECCServer, DaqNode)
                             .join(DaqNode, ECCServer.node_id == DaqNode.id, isouter=True)
                             .order_by(ECCServer.name)).all()
        sources = s.exec(select(DataSource).order_by(DataSource.name)).all()
        run = current_run(s)
        plan = timed.view(s, run) if run is not None else None
        active = s.exec(select(Workflow).where(Workflow.state.in_(ACTIVE_STATES))
                        .order_by(Workflow.id.desc())).first()
        last = s.exec(select(Workflow).order_by(Workflow.id.desc())).first()
        routers = s.exec(select(DataRouter, DaqNode)
                         .join(DaqNode, DataRouter.node_id == DaqNode.id, isouter=True)
                         .order_by(DataRouter.name)).all()
    servers = [srv for srv, _ in server_rows]
    by_id = {srv.id: srv for srv in servers}
    mutant_ids = {src.ecc_server_id for src in sources if src.is_mutant}
    # What each server may do alone: nothing while a workflow is active.
    alone = {} if active else server_operations([(srv, srv.id in mutant_ids) for srv in servers])
    now = utcnow()
    return {
        "experiment": experiment.name if experiment else None,
        "next_run_number": experiment.last_run_number + 1 if experiment else None,
        "state": daq_state([srv.state for srv in servers]),
        "run": None if run is None else {
            "number": run.number, "title": run.title, "run_class": run.run_class,
            "config": run.config_name, "started_at": iso(run.started_at),
            "running_seconds": round((now - run.started_at).total_seconds(), 1),
            # Its planned length and automatic restart (daqflow stops it at the limit).
            "plan": plan,
            **_no_source_running(servers),
        },
        # When beat last read an ECC state, and last checked a node: the page counts from them.
        "ecc_states_read_at": iso(max((srv.last_seen_at for srv in servers
                                       if srv.last_seen_at), default=None)),
        "nodes_checked_at": iso(max([r.checked_at for r, _ in routers if r.checked_at]
                                    + [srv.process_checked_at for srv in servers
                                       if srv.process_checked_at], default=None)),
        "active_workflow": active.id if active else None,
        "legal": legal_now([srv.state for srv in servers], run is not None, active is not None),
        "last_workflow": last.id if last else None,
        "servers": [{"name": srv.name, "url": srv.url, "state": state_name(srv.state),
                     "online": srv.online, "last_seen_at": iso(srv.last_seen_at),
                     "transition": state_name(srv.transition) if srv.transition else None,
                     "error": srv.last_error, "node": node.name if node else None,
                     "process_running": srv.process_running,
                     "process_checked_at": iso(srv.process_checked_at),
                     "process_error": srv.process_error,
                     "operations": alone.get(srv.name, [])} for srv, node in server_rows],
        "sources": [{"name": src.name, "ecc_server": by_id[src.ecc_server_id].name,
                     "state": state_name(by_id[src.ecc_server_id].state),
                     "online": by_id[src.ecc_server_id].online,
                     "last_seen_at": iso(by_id[src.ecc_server_id].last_seen_at),
                     "error": by_id[src.ecc_server_id].last_error} for src in sources],
        "routers": [{"name": r.name, "node": node.name if node else None,
                     "staging_dir": r.staging_dir, "online": r.online, "clean": r.clean,
                     "graw_files": r.graw_files, "checked_at": iso(r.checked_at),
                     "next_run_folder": r.next_run_folder,
                     "error": r.last_error} for r, node in routers],
    }
