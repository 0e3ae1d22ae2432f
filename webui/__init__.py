"""daqflow's web interface: the Flask app factory. One blueprint per feature
(``runcontrol``, ``runlog``, ``alarms``, ``plans``, ``history``, ``api``, ``auth``); input checks
(``inputs``), error answers (``errors``) and template filters (``filters``) in modules
named for them."""
from __future__ import annotations

from flask import Flask
from htmx_flask import Htmx

from models import settings


def create_app(config: dict | None = None) -> Flask:
    """Build the web app; ``config`` overrides settings (tests pass theirs here).

    The secret key that signs session cookies comes from ``DAQFLOW_SECRET_KEY``
    (or ``config``); without one the app refuses to start (``up --demo`` makes one).
    The database's schema is a command's business (``daqflow web`` and ``up``
    prepare it), not the factory's.
    """
    from webui import alarms, api, auth, headers, history, plans, runcontrol, runlog
    from webui.errors import register_json_errors
    from webui.filters import register_filters

    app = Flask(__name__, instance_path=str(settings.instance_dir()))
    app.config.update(
        SECRET_KEY=settings.SECRET_KEY.get(),
        SESSION_COOKIE_NAME="daqflow_session",
        # Scripts on the page cannot read the cookie, and other sites' forms don't send it.
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # Behind HTTPS (a lab's reverse proxy), the cookie must never travel in clear.
        SESSION_COOKIE_SECURE=settings.SECURE_COOKIE.get(),
        # A shift: an operator logs in once per night, not once per run.
        PERMANENT_SESSION_LIFETIME=12 * 3600,
        # Every form and JSON body daqflow takes is a few fields: refuse floods (413).
        MAX_CONTENT_LENGTH=64 * 1024,
        # Seconds between polls of the live run-control section while a workflow is active,
        # and while none is: the page never goes stale.
        POLL_SECONDS=1,
        IDLE_POLL_SECONDS=settings.IDLE_POLL_SECONDS.get(),
        # Every poller of the live section within this many seconds gets the same render:
        # twenty screens polling a 256-source page otherwise cost the web a whole core.
        LIVE_CACHE_SECONDS=0.5,
    )
    try:  # refused logins are counted where every web process sees them
        login_counts = settings.result_backend()
    except settings.NotConfigured:  # no Redis (a test's app): counted in this process
        login_counts = "memory://"
    app.config.update(
        RATELIMIT_STORAGE_URI=login_counts,
        RATELIMIT_KEY_PREFIX="daqflow-logins",
        # Redis away: logins still work, uncounted, rather than nobody logging in.
        RATELIMIT_SWALLOW_ERRORS=True,
    )
    if config:
        app.config.update(config)
    auth.check_secret_key(app.config["SECRET_KEY"])
    # request.htmx tells htmx's requests apart; htmx_flask.make_response sets HX-* headers.
    Htmx(app)
    register_filters(app)
    headers.init_app(app)
    auth.init_app(app)
    app.register_blueprint(runcontrol.bp)
    app.register_blueprint(history.bp)
    app.register_blueprint(runlog.bp)
    app.register_blueprint(alarms.bp)
    app.register_blueprint(plans.bp)
    app.register_blueprint(api.bp)
    register_json_errors(app)
    return app
