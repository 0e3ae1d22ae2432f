"""The DAQ's health over time: the data routers' write rate and free disk (the page's
sparklines, ``GET /api/health/routers``), the ECC servers' reachability and state
(``GET /api/health/ecc``), and their retention."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import delete, func, or_, select

from models import EccSample, RouterSample, session, settings
from models.columns import utcnow
from pipelines.daq.ecc.states import state_name


def series(since: datetime, router: str | None = None,
           until: datetime | None = None) -> dict[str, list[dict]]:
    """Each router's samples since ``since`` (and up to ``until``), oldest first: time,
    files, bytes, rate, free."""
    with session() as s:
        query = select(RouterSample).where(RouterSample.at >= since)
        if until is not None:
            query = query.where(RouterSample.at <= until)
        if router is not None:
            query = query.where(RouterSample.router == router)
        rows = s.exec(query.order_by(RouterSample.router, RouterSample.at)).all()
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(row.router, []).append({
            "at": row.at.isoformat(), "files": row.files, "bytes": row.bytes,
            "rate": row.rate, "free_bytes": row.free_bytes})
    return out


def latest(series_of: dict[str, list[dict]]) -> dict[str, dict]:
    """The last sample of each router's series."""
    return {router: points[-1] for router, points in series_of.items() if points}


def sparkline(points: list[dict], width: int = 120, height: int = 24) -> str:
    """An SVG polyline's points for a rate series (drawn on the server: no script, no CDN)."""
    rates = [p["rate"] for p in points if p["rate"] is not None]
    if len(rates) < 2:
        return ""
    top = max(rates) or 1.0
    step = width / (len(rates) - 1)
    return " ".join(f"{i * step:.1f},{height - 1 - (rate / top) * (height - 2):.1f}"
                    for i, rate in enumerate(rates))


def forget_old_samples(now: datetime | None = None) -> int:
    """Delete router and ECC samples older than DAQFLOW_HEALTH_RETENTION_DAYS; how many went.

    An ECC server's newest sample stays, however old: it says the state that still holds.
    """
    cutoff = (now or utcnow()) - timedelta(days=settings.HEALTH_RETENTION_DAYS.get())
    with session() as s:
        routers = s.exec(delete(RouterSample).where(RouterSample.at < cutoff)).rowcount or 0
        newest = select(func.max(EccSample.id)).group_by(EccSample.server)
        servers = s.exec(delete(EccSample).where(EccSample.at < cutoff,
                                                 EccSample.id.not_in(newest))).rowcount or 0
        return routers + servers


def ecc_series(since: datetime, until: datetime | None = None) -> dict[str, list[dict]]:
    """Each ECC server's reachability and state changes since ``since`` (and up to
    ``until``), oldest first, starting with the state that held at ``since``."""
    with session() as s:
        before = select(func.max(EccSample.id)).where(EccSample.at < since) \
            .group_by(EccSample.server)
        query = select(EccSample).where(or_(EccSample.at >= since, EccSample.id.in_(before)))
        if until is not None:
            query = query.where(EccSample.at <= until)
        rows = s.exec(query.order_by(EccSample.server, EccSample.at)).all()
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(row.server, []).append({
            "at": row.at.isoformat(), "online": row.online,
            "state": None if row.state is None else state_name(row.state),
            "transition": state_name(row.transition) if row.transition else None,
            "error": row.error})
    return out
