"""daqflow's web interface: a Flask app factory with one blueprint per feature."""
from __future__ import annotations

import os

from flask import Flask
from htmx_flask import Htmx

import models
from models.db import instance_dir

htmx = Htmx()


def create_app(config: dict | None = None) -> Flask:
    """Build the web app; ``config`` overrides settings (tests pass theirs here)."""
    app = Flask(__name__, instance_path=str(instance_dir()))
    app.config.update(
        SECRET_KEY=os.environ.get("DAQFLOW_SECRET_KEY", "daqflow-demo-only"),
        # Seconds between polls of the live run-control section while a workflow is active.
        POLL_SECONDS=1,
        # Every poller of the live section within this many seconds gets the same render:
        # twenty screens polling a 256-source page otherwise cost the web a whole core.
        LIVE_CACHE_SECONDS=0.5,
    )
    if config:
        app.config.update(config)
    htmx.init_app(app)
    models.create_all()

    from webui import api, history, runcontrol
    from webui.views import register_filters

    register_filters(app)
    app.register_blueprint(runcontrol.bp)
    app.register_blueprint(history.bp)
    app.register_blueprint(api.bp)
    api.register_json_errors(app)
    return app
