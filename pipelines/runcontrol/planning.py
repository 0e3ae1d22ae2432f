"""Planning a workflow: the run-control rules, and the stages in the order the hardware needs.

Pure reads of the database: a plan writes nothing, and a refusal says which rule
the request breaks.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlmodel import select

from models import (
    DataRouter,
    DataSource,
    ECCServer,
    Experiment,
    Run,
    Workflow,
)
from models.daq import active_experiment, names_the_mutant
from models.vocabulary import (
    ACTIVE_STATES,
    SERVER_OPERATIONS,
    FilesOperation,
    RunClass,
    WorkflowKind,
)
from pipelines.daq.ecc.states import (
    TRANSITIONS,
    UNDO_FROM,
    EccState,
    Operation,
    state_name,
    step_back,
)
from pipelines.runcontrol import configs
from pipelines.runcontrol.errors import NotFound, Refused

# Operations that need the CoBos before the MuTAnT (its Configure needs every CoBo READY,
# it reports "shelf not ready" otherwise), and those that need the MuTAnT first: a CoBo's
# Prepare needs the MuTAnT PREPARED already; going down, the trigger stops first.
MUTANT_LAST = {Operation.DESCRIBE, Operation.CONFIGURE, Operation.START}
MUTANT_FIRST = {Operation.PREPARE, Operation.STOP, Operation.BREAKUP}
# The collective transitions that take every server one named step up.
COLLECTIVE = {WorkflowKind.DESCRIBE: Operation.DESCRIBE, WorkflowKind.PREPARE: Operation.PREPARE,
              WorkflowKind.CONFIGURE: Operation.CONFIGURE}


@dataclass
class StagePlan:
    name: str
    operation: str
    # (ECC server or data router name, operation, target ECC state or None) per member
    members: list[tuple[str, str, int | None]] = field(default_factory=list)


def _servers(s) -> list[tuple[ECCServer, bool]]:
    """Every ECC server (a read-only row with ECCServer's columns), and whether it drives
    the MuTAnT."""
    # Rows, not ORM objects: a plan reads them only, and a thousand ORM objects were
    # most of the time a large DAQ's start took to plan.
    servers = s.exec(select(*ECCServer.__table__.columns).order_by(ECCServer.name)).all()
    mutant_servers = {server_id for server_id, name
                      in s.exec(select(DataSource.ecc_server_id, DataSource.name)).all()
                      if names_the_mutant(name)}
    return [(server, server.id in mutant_servers) for server in servers]


def ordered_stages(operation: str, servers: list[tuple[ECCServer, bool]],
                   targets: dict[str, tuple[str, int]]) -> list[StagePlan]:
    """Stages for one operation across servers, in the order the hardware needs.

    Describe, Configure and Start: the CoBos first and the MuTAnT last; Prepare, Stop
    and Breakup: the MuTAnT first. Undo runs in one stage. ``targets`` maps the servers
    taking part to (operation, target state).
    Stages with no members are left out.
    """
    verb = operation.lower()
    cobos = [srv.name for srv, mutant in servers if not mutant and srv.name in targets]
    mutants = [srv.name for srv, mutant in servers if mutant and srv.name in targets]
    if operation in MUTANT_LAST:
        plans = [StagePlan(f"{verb} CoBos", operation), StagePlan(f"{verb} MuTAnT", operation)]
        groups = [cobos, mutants]
    elif operation in MUTANT_FIRST:
        plans = [StagePlan(f"{verb} MuTAnT", operation), StagePlan(f"{verb} CoBos", operation)]
        groups = [mutants, cobos]
    else:
        plans, groups = [StagePlan(f"{verb} all", operation)], [cobos + mutants]
    for plan, names in zip(plans, groups):
        plan.members = [(name, *targets[name]) for name in names]
    return [plan for plan in plans if plan.members]


def daq_state(states: list[int | None]) -> str:
    """The DAQ's overall state: the common state's name, Mixed, or Unknown."""
    if not states:
        return "Unknown"
    if any(state is None for state in states):
        return "Unknown"
    if len(set(states)) > 1:
        return "Mixed"
    return EccState(states[0]).name


def _refuse_if_busy(s) -> None:
    active = s.exec(select(Workflow).where(Workflow.state.in_(ACTIVE_STATES))).first()
    if active is not None:
        raise Refused(f"workflow {active.id} ({active.kind}) is still active; "
                      "wait for it to end")


def current_run(s) -> Run | None:
    """The run that has started and not stopped, in the active experiment."""
    return s.exec(
        select(Run).join(Experiment, Run.experiment_id == Experiment.id)
        .where(Experiment.active == True, Run.started_at != None, Run.stopped_at == None)  # noqa: E711,E712
        .order_by(Run.number.desc())
    ).first()


def _active_config(s) -> dict:
    config = configs.active_config(s)
    if config is None:
        raise Refused("no config is active: load a topology first")
    return config


def _refuse_unoffered(s, servers: list[ECCServer], active: dict) -> None:
    problems = configs.not_offered(s, servers, active)
    if problems:
        raise Refused("a Describe sends each server its config, and " + "; ".join(problems)
                      + " (read the configs again, or choose another)")


def _not_in(servers, state: EccState) -> list[str]:
    return [f"{srv.name} is {state_name(srv.state)}" for srv, _ in servers if srv.state != state]


@dataclass
class WorkflowPlan:
    """What a workflow will do: its stages, parameters, run, and per-server expected times."""

    stages: list[StagePlan]
    params: dict
    run_id: int | None
    expected_seconds: dict[str, float]


def plan(s, kind: str, title: str = "", run_class: str = RunClass.TEST,
         server: str | None = None, operation: str | None = None,
         force: bool = False) -> WorkflowPlan:
    """A workflow's plan, or Refused with the rule it breaks. A server step names its
    ``server`` and ``operation`` (one of SERVER_OPERATIONS) and may be ``force``d during
    a run."""
    servers = _servers(s)
    if not servers:
        raise Refused("no ECC servers: load a topology first")
    _refuse_if_busy(s)
    active = _active_config(s)
    # Every transition sends each server its config: the one chosen for it, or the active one.
    params = {"config": active, "configs": {
        srv.name: configs.config_for(srv, active) for srv, _ in servers}}
    running = current_run(s)
    if kind == WorkflowKind.SERVER_STEP:
        params.update(server=server, operation=operation, force=force)
        stage = server_step(servers, server, operation, running, force)
        if stage.operation == Operation.DESCRIBE:
            _refuse_unoffered(s, [srv for srv, _ in servers if srv.name == server], active)
        return WorkflowPlan([stage], params, None,
                            {srv.name: srv.expected_seconds for srv, _ in servers})
    if kind == WorkflowKind.START_RUN:
        if running is not None:
            raise Refused(f"run {running.number} is going; stop it before starting another")
        not_ready = _not_in(servers, EccState.READY)
        if not_ready:
            raise Refused("a run starts only when every source is READY: " + "; ".join(not_ready))
        _experiment(s)
        params.update(title=title, run_class=run_class)
        operation = Operation.START
        targets = {srv.name: (operation, EccState.RUNNING) for srv, _ in servers}
    elif kind == WorkflowKind.STOP_RUN:
        if running is None:
            raise Refused("no run is going")
        params["run_number"] = running.number
        operation = Operation.STOP
        targets = {srv.name: (operation, EccState.READY) for srv, _ in servers}
    elif kind in COLLECTIVE:
        operation = COLLECTIVE[kind]
        if running is not None:
            raise Refused(f"run {running.number} is going; stop it first")
        if operation == Operation.DESCRIBE:
            _refuse_unoffered(s, [srv for srv, _ in servers], active)
        targets = {srv.name: (operation, TRANSITIONS[operation][1]) for srv, _ in servers}
    elif kind == WorkflowKind.RESET:
        if running is not None:
            raise Refused(f"run {running.number} is going; stop it before a reset")
        operation, targets = _reset_targets(servers)
    else:
        raise Refused(f"unknown workflow {kind!r}")
    stopping = kind == WorkflowKind.STOP_RUN
    stages = ordered_stages(operation, servers, targets)
    if kind == WorkflowKind.START_RUN and _experiment(s).rearm_mutant_on_start:
        stages = rearm_mutant(servers) + stages
    stages += _end_of_run(s, servers) if stopping else []
    return WorkflowPlan(stages, params, running.id if stopping else None,
                        {srv.name: srv.expected_seconds for srv, _ in servers})


def rearm_mutant(servers: list[tuple[ECCServer, bool]]) -> list[StagePlan]:
    """Before a start, the MuTAnT one step down and up again (Breakup, Configure), as
    attpc_envoy does: event numbers and timestamps restart with every run."""
    mutants = [srv.name for srv, mutant in servers if mutant]
    if not mutants:
        return []
    return [StagePlan("re-arm MuTAnT: breakup", Operation.BREAKUP,
                      [(name, Operation.BREAKUP, EccState.PREPARED) for name in mutants]),
            StagePlan("re-arm MuTAnT: configure", Operation.CONFIGURE,
                      [(name, Operation.CONFIGURE, EccState.READY) for name in mutants])]


def server_step(servers: list[tuple[ECCServer, bool]], name: str | None, operation: str | None,
                running: Run | None, force: bool) -> StagePlan:
    """The one-member stage that moves one ECC server one step, or Refused with the rule."""
    found = next(((srv, mutant) for srv, mutant in servers if srv.name == name), None)
    if found is None:
        raise NotFound(f"no ECC server named {name!r}")
    server, is_mutant = found
    if running is not None and not force:
        raise Refused(f"run {running.number} is going: moving {name} alone during a run "
                      "needs force")
    if server.transition:
        raise Refused(f"{name} is still in transition to {state_name(server.transition)}; "
                      "wait until it has settled (GetState)")
    soap, target = one_step(name, server.state, is_mutant, operation, _others(servers))
    return StagePlan(f"{soap.lower()} {name}", soap, [(name, soap, target)])


def _others(servers: list[tuple[ECCServer, bool]]) -> tuple[list[int], int]:
    """The MuTAnTs' states and the lowest CoBo state: what the ordering rules look at."""
    mutants = [srv.state or 0 for srv, mutant in servers if mutant]
    cobos = [srv.state or 0 for srv, mutant in servers if not mutant]
    return mutants, min(cobos, default=EccState.RUNNING)


def one_step(name: str, state: int | None, is_mutant: bool, operation: str | None,
             others: tuple[list[int], int]) -> tuple[Operation, EccState]:
    """The SOAP operation and target state of one server's step, or Refused naming the
    state or ordering rule it breaks."""
    if state is None:
        raise Refused(f"{name}'s state is unknown; wait for a refresh")
    state = EccState(state)
    if operation == "reset":
        back = step_back(state)
        if back is None:
            raise Refused(f"{name} is IDLE: nothing to reset")
        soap, target = back
    elif operation == "undo":
        if state not in UNDO_FROM:
            raise Refused(f"Undo takes a server from PREPARED or DESCRIBED; {name} is "
                          f"{state.name}")
        soap, target = Operation.UNDO, UNDO_FROM[state]
    else:
        soap = Operation(str(operation).capitalize())
        start, target = TRANSITIONS[soap]
        if state != start:
            raise Refused(f"{soap} takes a server from {start.name}; {name} is {state.name}")
    broken = ordering_rule(is_mutant, soap, *others)
    if broken:
        raise Refused(f"{soap} of {name} alone would break the ordering rule: {broken}")
    return soap, target


def ordering_rule(is_mutant: bool, operation: str, mutant_states: list[int],
                  lowest_cobo: int) -> str | None:
    """The ordering rule one server's ``operation`` would break, given the MuTAnTs' states
    and the lowest CoBo state; None when it breaks none."""
    if not is_mutant:
        if operation == Operation.PREPARE and any(st < EccState.PREPARED for st in mutant_states):
            return "a CoBo's Prepare needs the MuTAnT PREPARED first"
        if operation == Operation.STOP and EccState.RUNNING in mutant_states:
            return "the MuTAnT stops before the CoBos"
        if operation == Operation.BREAKUP and any(st >= EccState.READY for st in mutant_states):
            return "the MuTAnT breaks up before the CoBos"
        return None
    needs = {Operation.DESCRIBE: EccState.DESCRIBED, Operation.CONFIGURE: EccState.READY,
             Operation.START: EccState.RUNNING}.get(operation)
    if needs is not None and lowest_cobo < needs:
        return f"the MuTAnT's {operation} comes after every CoBo's (each CoBo {needs.name} first)"
    return None


def server_operations(servers: list[tuple[ECCServer, bool]]) -> dict[str, list[str]]:
    """What each server may be asked to do alone now, by its state and the ordering rules."""
    others = _others(servers)
    legal: dict[str, list[str]] = {}
    for server, is_mutant in servers:
        legal[server.name] = []
        if server.transition:
            continue  # still moving: nothing until GetState says it has settled
        for operation in SERVER_OPERATIONS:
            try:
                one_step(server.name, server.state, is_mutant, operation, others)
            except Refused:
                continue
            legal[server.name].append(operation)
    return legal


def _experiment(s) -> Experiment:
    experiment = active_experiment(s)
    if experiment is None:
        raise Refused("no active experiment: load a topology first")
    return experiment


def _end_of_run(s, servers) -> list[StagePlan]:
    """After the stop: organize every router's files, then back up every ECC's configs."""
    names = s.exec(select(DataRouter.name).order_by(DataRouter.name)).all()
    stages = []
    if names:
        stages.append(StagePlan("organize files", FilesOperation.ORGANIZE,
                                [(name, FilesOperation.ORGANIZE, None) for name in names]))
    backed_up = [srv.name for srv, _ in servers if srv.config_dir and srv.backup_dir]
    if backed_up:
        stages.append(StagePlan("back up configs", FilesOperation.BACKUP,
                                [(name, FilesOperation.BACKUP, None) for name in backed_up]))
    return stages


def _reset_targets(servers) -> tuple[str, dict]:
    # One step back, taken by the servers in the highest state, so a Mixed DAQ converges.
    unknown = [srv.name for srv, _ in servers if srv.state is None]
    if unknown:
        raise Refused("state unknown for " + ", ".join(unknown) + "; wait for a refresh")
    highest = EccState(max(srv.state for srv, _ in servers))
    back = step_back(highest)
    if back is None:
        raise Refused("every source is IDLE: nothing to reset")
    operation, target = back
    return operation, {srv.name: back for srv, _ in servers if srv.state == highest}
