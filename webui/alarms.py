"""The alarms: a banner on every page (with a sound for a new one), the Alarms page with
the history and what could not be delivered, and acknowledging (operators, audited)."""
from __future__ import annotations

from flask import Blueprint, render_template

from pipelines.runcontrol import alarms
from pipelines.runcontrol.errors import NotFound, Refused
from webui import auth
from webui.errors import refusal

bp = Blueprint("alarms", __name__, url_prefix="/alarms")


@bp.get("/")
def index():
    """Active alarms first, then the history: raised, cleared, acknowledged, by whom."""
    return render_template("alarms/index.html", **alarms.listing())


@bp.get("/banner")
def banner():
    """The banner every page polls: the active alarms, and the newest one's id (for the
    sound a new alarm plays)."""
    return render_template("alarms/_banner.html", active=alarms.listing(history=0)["active"])


@bp.post("/<int(max=2147483647):alarm_id>/ack")
def acknowledge(alarm_id: int):
    """An operator has seen the alarm; answers the alarms section."""
    try:
        alarms.acknowledge(alarm_id, actor=auth.actor())
    except (NotFound, Refused) as exc:
        return refusal(exc)
    return render_template("alarms/_alarms.html", **alarms.listing())
