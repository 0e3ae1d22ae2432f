"""Who is asking: login and logout, the session cookie, API tokens, roles and CSRF.

Every request but the login page and static files needs an account: a browser
logs in and carries the session cookie; a script sends ``Authorization: Bearer
<token>``. Viewers read everything; only operators change the DAQ. A request
that changes something with the session cookie must carry the session's CSRF
token (htmx sends it as ``X-CSRF-Token``, forms as ``csrf_token``): another
site's page can make the browser send the cookie, but cannot read the token.
"""
from __future__ import annotations

import hmac
import re
import secrets
from urllib.parse import urlsplit

from flask import Blueprint, current_app, g, jsonify, redirect, render_template, session, url_for
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from htmx_flask import make_response, request

from models.vocabulary import Role
from pipelines.runcontrol import accounts
from webui.errors import refusal_message

bp = Blueprint("auth", __name__)

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

PUBLIC_ENDPOINTS = {"auth.login", "static"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"


def csrf_token() -> str:
    """The session's CSRF token (made on first use); pages put it in every request."""
    if CSRF_FIELD not in session:
        session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return session[CSRF_FIELD]


def _csrf_ok() -> bool:
    expected = session.get(CSRF_FIELD)
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD) or ""
    return bool(expected) and hmac.compare_digest(sent.encode("utf-8", "replace"),
                                                  expected.encode())


def _is_api() -> bool:
    return request.path.startswith("/api/")


def _deny(status: int, message: str):
    """A refusal in the form the asker reads: JSON, an htmx message, or a page."""
    if _is_api() or g.get("via") == "token":
        return jsonify(error=message), status
    if status == 401:
        if request.htmx:
            return make_response(jsonify(error=message), 401, redirect=url_for("auth.login"))
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    return refusal_message(message, status)


def _identify():
    """Set ``g.account`` and ``g.via`` from the bearer token or the session; a refusal or None."""
    g.account = g.via = None
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        account = accounts.by_token(token.strip()) if scheme.lower() == "bearer" else None
        if account is None:
            return jsonify(error="invalid API token (send 'Authorization: Bearer <token>')"), 401
        g.account, g.via = account, "token"
        return None
    if "login" in session:
        account = accounts.by_session(session["login"], current_app.permanent_session_lifetime
                                      .total_seconds())
        if account is None or session.get("password") != _fingerprint(account):
            # Logged out (this cookie may be a copy), expired, deleted, or its password
            # changed since it logged in.
            session.clear()
            account = None
        g.account, g.via = account, "session" if account else None
    return None


def _fingerprint(account) -> str:
    # The end of the salted hash: a new password (`user add --replace`) ends old sessions.
    return account.password_hash[-16:]


def guard():
    """Before every request: identify, then require login, CSRF and the operator role."""
    refused = _identify()
    if refused is not None:
        return refused
    public = request.endpoint in PUBLIC_ENDPOINTS
    if g.account is None and not public:
        return _deny(401, "log in first (scripts: send 'Authorization: Bearer <token>')")
    changes = request.method not in SAFE_METHODS
    # The cookie is sent by the browser on its own; the token proves the page sent it.
    if changes and g.via != "token" and not _csrf_ok():
        return _deny(400, "missing or wrong CSRF token: reload the page and try again")
    if public:
        return None
    if changes and request.endpoint != "auth.logout" and g.account.role != Role.OPERATOR:
        return _deny(403, f"{g.account.name} is a viewer: only operators change the DAQ")
    return None


def actor() -> str:
    """The name the audit records for this request's account."""
    return g.account.name


# Whitespace, controls and backslashes: browsers drop tabs and newlines from a URL and read
# a backslash as a slash, so "/\t/evil.example/" would go to //evil.example/.
_NOT_IN_A_SAFE_PATH = re.compile(r"[\x00-\x20\x7f-\x9f\\\\]")


def _safe_next(target: str | None) -> str:
    # Only a path on this site, whatever its encoding: never send a fresh login elsewhere.
    if (target and target.startswith("/") and not target.startswith("//")
            and not _NOT_IN_A_SAFE_PATH.search(target)):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("runcontrol.page")


# Refused logins are counted per client address and per account name, in Redis (shared by
# every web process); past either limit a login is refused at once, before any password
# hash is computed, so guessing costs the control host almost nothing.
limiter = Limiter(key_func=get_remote_address)
REFUSED_LOGINS_PER_ADDRESS = "20 per 10 minutes"
REFUSED_LOGINS_PER_ACCOUNT = "10 per 10 minutes"


def _account_tried() -> str:
    return "account:" + request.form.get("name", "")[:64]


def _was_refused(response) -> bool:
    return response.status_code == 401


def _refuse_login(reason: str, status: int):
    """The login page with ``reason``; the refusal goes in the audit, with the address."""
    name = request.form.get("name", "")
    accounts.note(f"web:{request.remote_addr or '?'}"[:80], "login refused", reason=reason,
                  name=name if accounts.NAME_PATTERN.match(name) else "?")
    return make_response(render_template("auth/login.html", next=request.form.get("next", ""),
                                         error=reason), status)


def _too_many(limit):
    return _refuse_login("too many refused logins: wait a few minutes, then try again", 429)


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(REFUSED_LOGINS_PER_ADDRESS, methods=["POST"], deduct_when=_was_refused,
               on_breach=_too_many)
@limiter.limit(REFUSED_LOGINS_PER_ACCOUNT, key_func=_account_tried, methods=["POST"],
               deduct_when=_was_refused, on_breach=_too_many)
def login():
    """The login page; a right name and password start a session."""
    if request.method == "GET":
        return render_template("auth/login.html", next=request.args.get("next", ""))
    name, password = request.form.get("name", ""), request.form.get("password", "")
    account = None
    # Only a well-formed name reaches the database (PostgreSQL refuses NUL characters).
    if accounts.NAME_PATTERN.match(name) and len(password) <= accounts.PASSWORD_MAX:
        account = accounts.authenticate(name, password)
    if account is None:
        return _refuse_login("wrong name or password", 401)
    session.clear()  # a fresh session (and CSRF token) for the new login
    session.permanent = True
    session["login"] = accounts.open_session(account.id)
    session["password"] = _fingerprint(account)
    csrf_token()
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/logout")
def logout():
    """End the session, on the server too: a copy of its cookie no longer logs anyone in."""
    accounts.end_session(session.get("login"))
    session.clear()
    return redirect(url_for("auth.login"))


def init_app(app) -> None:
    """Install the guard, the login pages and their limits, and ``csrf_token()`` /
    ``account`` in templates."""
    app.before_request(guard)
    limiter.init_app(app)
    app.register_blueprint(bp)

    @app.context_processor
    def _template_globals():
        return {"csrf_token": csrf_token, "account": g.get("account")}
