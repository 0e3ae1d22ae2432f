"""Writing a validated topology to the database, and resolving its directories.

Relative directories are allowed on this machine only, under the instance folder
(the demo); on a node reached over SSH they must be absolute.
"""
from __future__ import annotations

from pathlib import Path

from sqlmodel import delete, func, select

from models import session
from models.daq import Config, DaqNode, DataRouter, DataSource, ECCServer, Experiment, Run
from models.runlog import RunField
from models.settings import instance_dir
from models.vocabulary import ACTIVE_STATES
from models.workflow import Workflow
from pipelines.daq.nodes.connection import is_this_machine
from pipelines.topology.schema import (
    EccServerSpec,
    NodeSpec,
    RunFieldSpec,
    Topology,
    TopologyError,
)


def node_dir(path: str, node: NodeSpec | None, where: str) -> str:
    """A directory on a node; a relative one is under the instance folder (local nodes only)."""
    if Path(path).is_absolute():
        return path
    if node is None or not is_this_machine(node.host):
        raise TopologyError(f"{where}: {path!r} must be an absolute path on a node reached "
                            "over SSH (relative ones are for this machine, under the instance "
                            "folder)")
    return str(instance_dir() / path)


def ecc_dirs(topo: Topology, server: EccServerSpec) -> tuple[str | None, str | None]:
    """An ECC server's config and backup directories, resolved (None: no config backup)."""
    config_dir = server.config_dir or topo.defaults.config_dir
    backup_dir = server.backup_dir or topo.defaults.backup_dir
    if not (config_dir and backup_dir):
        return None, None
    node = next((n for n in topo.nodes if n.name == server.node), None)
    if node is None:
        raise TopologyError(f"ecc_servers: {server.name}: config backup needs the server's node")
    where = f"ecc_servers: {server.name}"
    return node_dir(config_dir, node, where), node_dir(backup_dir, node, where)


def staging_dirs(topo: Topology) -> dict[str, str]:
    """Each data router's staging directory, resolved."""
    nodes = {n.name: n for n in topo.nodes}
    return {r.name: node_dir(r.staging_dir, nodes[r.node], f"data_routers: {r.name}: staging_dir")
            for r in topo.data_routers}


def load(topo: Topology) -> None:
    """Write a validated topology to the database, replacing the previous one.

    Refused while a workflow is active. Run history and workflows are kept: steps
    name their targets, so they survive a reload.
    """
    staging = staging_dirs(topo)
    backups = {spec.name: ecc_dirs(topo, spec) for spec in topo.ecc_servers}
    with session() as s:
        if s.exec(select(Workflow.id).where(Workflow.state.in_(ACTIVE_STATES))).first():
            raise TopologyError("a workflow is active; load the topology when it has ended")
        for table in (DataSource, DataRouter, ECCServer, DaqNode, Config):
            s.exec(delete(table))
        node_ids = {}
        for spec in topo.nodes:
            node = DaqNode(name=spec.name, host=spec.host, user=spec.user,
                           port=spec.port or 22, key_path=spec.key)
            s.add(node)
            s.flush()
            node_ids[spec.name] = node.id
        active = topo.active_config().name
        for spec in topo.configs:
            s.add(Config(name=spec.name, describe=spec.describe, prepare=spec.prepare,
                         configure=spec.configure, active=spec.name == active))
        router_ids = {}
        for spec in topo.data_routers:
            router = DataRouter(name=spec.name, node_id=node_ids[spec.node],
                                ip_address=spec.ip_address, port=spec.port, type=spec.type,
                                staging_dir=staging[spec.name],
                                staging_quota_bytes=None if spec.staging_quota_gb is None
                                else int(spec.staging_quota_gb * 1e9))
            s.add(router)
            s.flush()
            router_ids[spec.source] = router.id
        for spec in topo.ecc_servers:
            server = ECCServer(
                name=spec.name, url=spec.url, node_id=node_ids.get(spec.node),
                transition_timeout=spec.transition_timeout or topo.defaults.transition_timeout,
                expected_seconds=spec.expected_seconds or topo.defaults.expected_seconds,
                config_dir=backups[spec.name][0], backup_dir=backups[spec.name][1],
            )
            s.add(server)
            s.flush()
            for name in spec.sources:
                s.add(DataSource(name=name, ecc_server_id=server.id,
                                 data_router_id=router_ids.get(name)))
        for experiment in s.exec(select(Experiment)).all():
            experiment.active = experiment.name == topo.experiment.name
        experiment = s.exec(select(Experiment).where(
            Experiment.name == topo.experiment.name)).first()
        if experiment is None:
            experiment = Experiment(name=topo.experiment.name, active=True)
            s.add(experiment)
            s.flush()
        experiment.rearm_mutant_on_start = topo.experiment.rearm_mutant_on_start
        experiment.alarm_settings = topo.alarms.model_dump()
        if topo.experiment.next_run is not None:
            set_next_run(s, experiment, topo.experiment.next_run)
        write_run_fields(s, experiment.id, topo.run_fields)


def set_next_run(s, experiment: Experiment, number: int) -> None:
    """Make ``number`` the experiment's next run; TopologyError if that would reuse one."""
    recorded = s.exec(select(func.max(Run.number)).where(
        Run.experiment_id == experiment.id)).one()
    last = max(experiment.last_run_number, -1 if recorded is None else recorded)
    if number <= last:
        raise TopologyError(f"experiment.next_run: run {last} of {experiment.name!r} is "
                            f"recorded already; the next run is {last + 1} or later (a run "
                            "number is never used twice)")
    experiment.last_run_number = number - 1


def write_run_fields(s, experiment_id: int, specs: list[RunFieldSpec]) -> None:
    """Make an experiment's custom run fields those of ``specs``, in their order.

    Runs keep the values they were given, even of a field defined no more.
    """
    s.exec(delete(RunField).where(RunField.experiment_id == experiment_id))
    for position, spec in enumerate(specs):
        s.add(RunField(experiment_id=experiment_id, position=position, **spec.model_dump()))
