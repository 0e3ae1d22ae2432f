"""The data routers' health over time: write rate and free disk, as series for the page's
sparklines and ``GET /api/health/routers``, and their retention."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import delete, select

from models import RouterSample, session, settings
from models.columns import utcnow


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
    """Delete samples older than DAQFLOW_HEALTH_RETENTION_DAYS; how many went."""
    cutoff = (now or utcnow()) - timedelta(days=settings.HEALTH_RETENTION_DAYS.get())
    with session() as s:
        result = s.exec(delete(RouterSample).where(RouterSample.at < cutoff))
        return result.rowcount or 0
