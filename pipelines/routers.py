"""Data router checks: is each router's process running, and is its staging directory clean.

One SSH command per node checks every router on it; nodes are checked in
parallel. The outcome is written to the DataRouter rows, which the run-control
page shows, and a start is refused while any staging directory is dirty.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlmodel import select

from models import DaqNode, DataRouter, session
from models.db import utcnow
from pipelines import nodes
from pipelines.records import node_access


@dataclass(frozen=True)
class RouterStatus:
    """One router as last checked; ``error`` says why the check could not tell."""

    name: str
    node: str
    staging_dir: str
    online: bool | None
    graw_files: int | None
    error: str | None = None

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
        return None


def _check_node(access: nodes.NodeAccess, routers: list[tuple[str, str]]) -> list[RouterStatus]:
    dirs = [staging for _, staging in routers]
    try:
        with nodes.Node(access) as node:
            found = nodes.check(node, dirs)
    except nodes.NodeError as exc:
        return [RouterStatus(name, access.name, staging, None, None, str(exc))
                for name, staging in routers]
    return [RouterStatus(name, access.name, staging, found.process_running,
                         found.graw_files[staging]) for name, staging in routers]


def check_all() -> list[RouterStatus]:
    """Check every data router of the topology and record the outcome."""
    with session() as s:
        rows = s.exec(select(DataRouter, DaqNode)
                      .join(DaqNode, DataRouter.node_id == DaqNode.id)
                      .order_by(DataRouter.name)).all()
        by_node: dict[nodes.NodeAccess, list[tuple[str, str]]] = {}
        for router, node in rows:
            by_node.setdefault(node_access(node), []).append((router.name, router.staging_dir))
    if not by_node:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(by_node))) as pool:
        outcomes = pool.map(lambda item: _check_node(*item), by_node.items())
    statuses = sorted((st for batch in outcomes for st in batch), key=lambda st: st.name)
    _record(statuses)
    return statuses


def _record(statuses: list[RouterStatus]) -> None:
    now = utcnow()
    with session() as s:
        routers = {r.name: r for r in s.exec(select(DataRouter)).all()}
        for status in statuses:
            router = routers.get(status.name)
            if router is None:
                continue
            router.online, router.graw_files = status.online, status.graw_files
            router.last_error, router.checked_at = status.error, now


def problems() -> list[str]:
    """Check now; what stops a run from starting (dirty, missing or unreachable staging)."""
    return [p for p in (st.problem() for st in check_all()) if p]
