"""daqflow's web interface: a Flask app factory with one blueprint per feature."""
from __future__ import annotations

import os

from flask import Flask
from htmx_flask import Htmx

import models
from models.db import instance_dir

htmx = Htmx()


SECRET_KEY_MIN = 32


class MissingSecretKey(RuntimeError):
    """No (or too short a) secret key: sessions could be forged; the message says what to do."""


def check_secret_key(secret: str | None) -> None:
    """Raise MissingSecretKey unless ``secret`` can sign login cookies (32+ characters)."""
    if not secret or len(secret) < SECRET_KEY_MIN:
        raise MissingSecretKey(
            f"DAQFLOW_SECRET_KEY must be set to at least {SECRET_KEY_MIN} random characters "
            "(it signs the login cookies); make one with: python3 -c 'import secrets; "
            "print(secrets.token_hex(32))'. `daqflow up --demo` makes its own.")


def create_app(config: dict | None = None) -> Flask:
    """Build the web app; ``config`` overrides settings (tests pass theirs here).

    The secret key that signs session cookies comes from ``DAQFLOW_SECRET_KEY``
    (or ``config``); without one the app refuses to start (``up --demo`` makes one).
    """
    app = Flask(__name__, instance_path=str(instance_dir()))
    app.config.update(
        SECRET_KEY=os.environ.get("DAQFLOW_SECRET_KEY"),
        SESSION_COOKIE_NAME="daqflow_session",
        # Scripts on the page cannot read the cookie, and other sites' forms don't send it.
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # Behind HTTPS (a lab's reverse proxy), the cookie must never travel in clear.
        SESSION_COOKIE_SECURE=os.environ.get("DAQFLOW_SECURE_COOKIE", "") == "1",
        # A shift: an operator logs in once per night, not once per run.
        PERMANENT_SESSION_LIFETIME=12 * 3600,
        # Every form and JSON body daqflow takes is a few fields: refuse floods (413).
        MAX_CONTENT_LENGTH=64 * 1024,
        # Seconds between polls of the live run-control section while a workflow is active.
        POLL_SECONDS=1,
        # Every poller of the live section within this many seconds gets the same render:
        # twenty screens polling a 256-source page otherwise cost the web a whole core.
        LIVE_CACHE_SECONDS=0.5,
    )
    if config:
        app.config.update(config)
    check_secret_key(app.config["SECRET_KEY"])
    htmx.init_app(app)
    models.create_all()

    from webui import api, auth, history, runcontrol
    from webui.views import register_filters

    register_filters(app)
    auth.init_app(app)
    app.register_blueprint(runcontrol.bp)
    app.register_blueprint(history.bp)
    app.register_blueprint(api.bp)
    api.register_json_errors(app)
    return app
