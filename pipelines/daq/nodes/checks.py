"""Node checks: is each data router's process running and its staging directory clean,
and is each ECC server's getEccSoapServer process running.

One SSH command per node checks every router and ECC server on it; nodes are
checked in parallel. The outcome is written to the DataRouter and ECCServer rows,
which the run-control page shows, and a start is refused while any staging
directory is dirty.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy import bindparam, func, tuple_, update
from sqlmodel import select

from models import DaqNode, DataRouter, ECCServer, RouterSample, session
from models.columns import utcnow
from models.daq import active_experiment
from pipelines.daq.nodes.connection import Node, NodeAccess, NodeError, access_of
from pipelines.daq.nodes.files import ECC_PROCESS, ROUTER_PROCESS, check, run_folder


@dataclass(frozen=True)
class RouterStatus:
    """One router as last checked; ``error`` says why the check could not tell."""

    name: str
    node: str
    staging_dir: str
    online: bool | None
    graw_files: int | None
    error: str | None = None
    # The next run's folder, when it exists already on the node.
    next_run_folder: str | None = None
    # The bytes of its .graw files, and the free bytes of its filesystem (None: unknown).
    graw_bytes: int | None = None
    free_bytes: int | None = None

    @property
    def clean(self) -> bool:
        return self.graw_files == 0

    def problem(self) -> str | None:
        """Why a run may not start on top of this router, or None."""
        if self.error:
            return f"{self.name}: cannot check its staging directory ({self.error})"
        if self.graw_files is None:
            return f"{self.name}: staging directory {self.staging_dir} does not exist"
        if self.graw_files:
            return (f"{self.name}: staging directory {self.staging_dir} holds "
                    f"{self.graw_files} .graw file(s) of an earlier run")
        if self.next_run_folder:
            return (f"{self.name}: the next run's folder {self.next_run_folder} exists already "
                    "on its node; its files would mix with another run's (move it away)")
        return None


@dataclass(frozen=True)
class EccProcessStatus:
    """Whether an ECC server's getEccSoapServer runs on its node (None: could not tell)."""

    name: str
    node: str
    running: bool | None
    error: str | None = None


@dataclass
class _NodeWork:
    """What one SSH session on a node checks: its routers and its ECC servers."""

    # (name, staging directory, quota in bytes or None)
    routers: list[tuple[str, str, int | None]] = field(default_factory=list)
    ecc_servers: list[str] = field(default_factory=list)


def _check_node(access: NodeAccess, work: _NodeWork, next_run: tuple[str, int] | None):
    dirs = [staging for _, staging, _ in work.routers]
    processes = ((ROUTER_PROCESS,) if work.routers else ()) + \
        ((ECC_PROCESS,) if work.ecc_servers else ())
    try:
        with Node(access) as node:
            found = check(node, dirs, processes, next_run)
    except NodeError as exc:
        return ([RouterStatus(name, access.name, staging, None, None, str(exc))
                 for name, staging, _ in work.routers],
                [EccProcessStatus(name, access.name, None, str(exc)) for name in work.ecc_servers])
    return ([RouterStatus(name, access.name, staging, found.processes[ROUTER_PROCESS],
                          found.graw_files[staging],
                          next_run_folder=_taken(found, staging, next_run),
                          graw_bytes=found.graw_bytes.get(staging),
                          free_bytes=_free(found, staging, quota))
             for name, staging, quota in work.routers],
            [EccProcessStatus(name, access.name, found.processes[ECC_PROCESS])
             for name in work.ecc_servers])


def _free(found, staging: str, quota: int | None) -> int | None:
    # A quota on a shared disk leaves less than the filesystem may have free.
    free = found.free_bytes.get(staging)
    if quota is None:
        return free
    left = max(0, quota - (found.graw_bytes.get(staging) or 0))
    return left if free is None else min(free, left)


def _taken(found, staging: str, next_run: tuple[str, int] | None) -> str | None:
    folder = run_folder(staging, *next_run) if next_run else None
    return folder if folder in found.taken else None


def check_nodes() -> tuple[list[RouterStatus], list[EccProcessStatus]]:
    """Check every node once: its data routers (process, staging clean, the next run's folder
    not there yet) and its ECC servers' processes; record it all."""
    with session() as s:
        experiment = active_experiment(s)
        next_run = (experiment.name, experiment.last_run_number + 1) if experiment else None
        routers = s.exec(select(DataRouter, DaqNode)
                         .join(DaqNode, DataRouter.node_id == DaqNode.id)
                         .order_by(DataRouter.name)).all()
        # The servers' names only, the nodes apart: an ORM object per server was most of
        # the check of a thousand-server DAQ, which every start waits for.
        nodes = {node.id: node for node in s.exec(select(DaqNode)).all()}
        servers = s.exec(select(ECCServer.name, ECCServer.node_id)
                         .where(ECCServer.node_id != None)  # noqa: E711
                         .order_by(ECCServer.name)).all()
        by_node: dict[NodeAccess, _NodeWork] = {}
        for router, node in routers:
            by_node.setdefault(access_of(node), _NodeWork()).routers.append(
                (router.name, router.staging_dir, router.staging_quota_bytes))
        for name, node_id in servers:
            by_node.setdefault(access_of(nodes[node_id]), _NodeWork()).ecc_servers.append(name)
    if not by_node:
        return [], []
    with ThreadPoolExecutor(max_workers=min(16, len(by_node))) as pool:
        outcomes = list(pool.map(lambda item: _check_node(*item, next_run), by_node.items()))
    router_statuses = sorted((st for batch, _ in outcomes for st in batch), key=lambda st: st.name)
    ecc_statuses = sorted((st for _, batch in outcomes for st in batch), key=lambda st: st.name)
    _record(router_statuses, ecc_statuses)
    return router_statuses, ecc_statuses


def check_all() -> list[RouterStatus]:
    """Check every node (routers and ECC processes); the data routers' part."""
    return check_nodes()[0]


def _record(router_statuses: list[RouterStatus], ecc_statuses: list[EccProcessStatus]) -> None:
    # One statement for all rows of a kind (executemany): an ORM object and UPDATE per row
    # was most of a 1024-server start's launch. A name removed from the topology during
    # the check matches no row.
    now = utcnow()
    routers, servers = DataRouter.__table__, ECCServer.__table__
    with session() as s:
        _sample(s, router_statuses, now)
        c = s.connection()
        if router_statuses:
            c.execute(update(routers).where(routers.c.name == bindparam("router")).values(
                online=bindparam("is_online"), graw_files=bindparam("files"),
                last_error=bindparam("error"), checked_at=now,
                next_run_folder=bindparam("folder")),
                [dict(router=st.name, is_online=st.online, files=st.graw_files,
                      error=st.error, folder=st.next_run_folder) for st in router_statuses])
        if ecc_statuses:
            c.execute(update(servers).where(servers.c.name == bindparam("server")).values(
                process_running=bindparam("running"), process_error=bindparam("error"),
                process_checked_at=now),
                [dict(server=st.name, running=st.running, error=st.error)
                 for st in ecc_statuses])


def _sample(s, statuses: list[RouterStatus], now) -> None:
    """One health sample per router checked: files, bytes, free space, and the write rate
    since its previous sample."""
    checked = [st for st in statuses if st.error is None]
    latest = s.exec(select(RouterSample.router, func.max(RouterSample.at))
                    .where(RouterSample.router.in_([st.name for st in checked]))
                    .group_by(RouterSample.router)).all()
    previous = {sample.router: sample for sample in s.exec(select(RouterSample).where(
        tuple_(RouterSample.router, RouterSample.at).in_(latest))).all()} if latest else {}
    for status in checked:
        before = previous.get(status.name)
        s.add(RouterSample(router=status.name, at=now, files=status.graw_files,
                           bytes=status.graw_bytes, free_bytes=status.free_bytes,
                           rate=write_rate(before, status.graw_bytes, now)))


def write_rate(before: RouterSample | None, now_bytes: int | None, now) -> float | None:
    """Bytes per second written since ``before``; a staging directory that was emptied
    meanwhile (a run's files organized) counts what it holds now as written since."""
    if before is None or before.bytes is None or now_bytes is None:
        return None
    seconds = (now - before.at).total_seconds()
    if seconds <= 0:
        return None
    grown = now_bytes - before.bytes if now_bytes >= before.bytes else now_bytes
    return grown / seconds


def problems() -> list[str]:
    """Check now; what stops a run from starting (dirty, missing or unreachable staging, the
    next run's folder already there)."""
    return [p for p in (st.problem() for st in check_all()) if p]
