"""The run plan page: load a plan (TOML), watch its entries advance, and resume, skip or
abort it (operators, audited)."""
from __future__ import annotations

from flask import Blueprint, render_template, request
from htmx_flask import make_response

from pipelines.runcontrol import planfile, plans
from pipelines.runcontrol.errors import Invalid, NotFound, Refused, Unavailable
from webui import auth
from webui.errors import refusal

bp = Blueprint("plans", __name__, url_prefix="/plans")

EXAMPLE = '''name = "calibration"

[[entries]]
title = "pulser, low gain"
run_class = "PULS"
config = "cfg"
duration = "10m"

[[entries]]
title = "pulser, high gain"
run_class = "PULS"
config = "beam"
duration = "10m"
max_size = "5GB"
'''


@bp.get("/")
def index():
    """The current (or last) plan, and the form that loads a new one."""
    return render_template("plans/index.html", plan=plans.view(), example=EXAMPLE)


@bp.get("/live")
def live():
    """The plan section alone; it polls itself."""
    return render_template("plans/_plan.html", plan=plans.view())


def _plan_section(status_code: int = 200):
    return make_response(render_template("plans/_plan.html", plan=plans.view()), status_code,
                         trigger="daqflow-clear-message")


@bp.post("/load")
def load():
    """Load a plan written in the page's text box (TOML) and take its first step."""
    try:
        plans.create(planfile.read_toml(request.form.get("plan", "")), actor=auth.actor())
    except (Invalid, Refused) as exc:
        return refusal(exc)
    return _plan_section()


@bp.post("/<int(max=2147483647):plan_id>/<action>")
def act(plan_id: int, action: str):
    """Resume, skip the current entry of, or abort a plan."""
    handler = plans.ACTIONS.get(action)
    if handler is None:
        return refusal(NotFound(f"no plan action {action!r}"))
    try:
        handler(plan_id, actor=auth.actor())
    except (Invalid, Refused, NotFound, Unavailable) as exc:
        return refusal(exc)
    return _plan_section()
