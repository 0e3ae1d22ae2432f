"""Accounts, API tokens and the audit of actions: who may press Start, and who did.

Passwords are kept as werkzeug's salted scrypt hashes; API tokens are random
and kept as their SHA-256, so the database never holds either in the clear.
"""
from __future__ import annotations

import getpass
import hashlib
import re
import secrets
from datetime import timedelta

from sqlalchemy import or_
from sqlmodel import delete, select, update
from werkzeug.security import check_password_hash, generate_password_hash

from models import Account, AuditEntry, LoginSession, session
from models.columns import utcnow
from models.vocabulary import Role

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_.-]{0,31}$")
PASSWORD_MIN, PASSWORD_MAX = 8, 256
TOKEN_PREFIX = "dqf_"
# Checked against when a name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash("daqflow-no-such-account")


class AccountError(ValueError):
    """An account cannot be created or changed as asked; the message says why."""


def check_name(name: str) -> str:
    """An account name: lower-case letters, digits, ``_.-``, starting with a letter."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise AccountError("account names are 1-32 characters: a lower-case letter, then "
                           "lower-case letters, digits, '_', '.' or '-'")
    return name


def check_password(password: str) -> str:
    """A password of 8 to 256 characters."""
    if not isinstance(password, str) or not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise AccountError(f"passwords are {PASSWORD_MIN} to {PASSWORD_MAX} characters")
    try:
        password.encode("utf-8")  # a byte from a non-UTF-8 terminal arrives as a surrogate
    except UnicodeEncodeError:
        raise AccountError("the password is not valid UTF-8 text (check the terminal's "
                           "encoding)") from None
    return password


def add(name: str, password: str, role: str = Role.VIEWER, replace: bool = False) -> Account:
    """Create an account (or, with ``replace``, set an existing one's password and role)."""
    check_name(name)
    check_password(password)
    if role not in tuple(Role):
        raise AccountError(f"role must be one of {', '.join(Role)}")
    with session() as s:
        account = s.exec(select(Account).where(Account.name == name)).first()
        if account is not None and not replace:
            raise AccountError(f"account {name!r} exists already")
        account = account or Account(name=name, password_hash="")
        account.password_hash, account.role = generate_password_hash(password), role
        s.add(account)
        record(s, local_actor(), "account", account=name, role=role)
        s.flush()
        return account


def authenticate(name: str, password: str) -> Account | None:
    """The account if ``password`` is its password, else None."""
    with session() as s:
        account = s.exec(select(Account).where(Account.name == name)).first()
    if account is None:
        check_password_hash(_DUMMY_HASH, password)
        return None
    return account if check_password_hash(account.password_hash, password) else None


def open_session(account_id: int) -> str:
    """Record a new login of the account; returns the id its session cookie will carry."""
    session_id = secrets.token_urlsafe(32)
    with session() as s:
        # Ended or day-old logins are of no use any more: the table stays small.
        s.exec(delete(LoginSession).where(or_(
            LoginSession.ended_at != None,  # noqa: E711
            LoginSession.created_at < utcnow() - timedelta(days=1))))
        s.add(LoginSession(id=session_id, account_id=account_id))
    return session_id


def by_session(session_id: object, max_age_seconds: float) -> Account | None:
    """The account of a login that has not ended and is younger than ``max_age_seconds``."""
    if not isinstance(session_id, str) or len(session_id) > 64:
        return None
    with session() as s:
        return s.exec(select(Account).join(LoginSession, LoginSession.account_id == Account.id)
                      .where(LoginSession.id == session_id,
                             LoginSession.ended_at == None,  # noqa: E711
                             LoginSession.created_at > utcnow() - timedelta(
                                 seconds=max_age_seconds))).first()


def end_session(session_id: object) -> None:
    """End a login: its cookie, even a copy of it, is refused from now on."""
    if isinstance(session_id, str):
        with session() as s:
            s.exec(update(LoginSession).where(LoginSession.id == session_id,
                                              LoginSession.ended_at == None)  # noqa: E711
                   .values(ended_at=utcnow()))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def issue_token(name: str) -> str:
    """A new API token for the account (the one before stops working); shown only once."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with session() as s:
        account = s.exec(select(Account).where(Account.name == name)).first()
        if account is None:
            raise AccountError(f"no account {name!r}")
        account.token_hash = _token_hash(token)
        s.add(account)
        record(s, local_actor(), "token", account=name)
    return token


def by_token(token: str) -> Account | None:
    """The account whose API token this is, or None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    with session() as s:
        return s.exec(select(Account).where(Account.token_hash == _token_hash(token))).first()


def local_actor() -> str:
    """Who acts from the command line on the control host: ``cli:<login>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry for this uid (containers)
        return "cli:unknown"


def record(s, actor: str | None, action: str, workflow_id: int | None = None,
           run_id: int | None = None, **detail) -> None:
    """Add one entry to the audit, in the caller's session (it commits with the action)."""
    s.add(AuditEntry(actor=(actor or local_actor())[:80], action=action,
                     workflow_id=workflow_id, run_id=run_id, detail=detail))


def note(actor: str | None, action: str, **detail) -> None:
    """Record an action that has no workflow (a node check) in the audit."""
    with session() as s:
        record(s, actor, action, **detail)


def actions_of(workflow_id: int) -> list[dict]:
    """Who did what to a workflow, and when, oldest first."""
    with session() as s:
        rows = s.exec(select(AuditEntry).where(AuditEntry.workflow_id == workflow_id)
                      .order_by(AuditEntry.id)).all()
    return [{"at": row.at.isoformat(), "actor": row.actor, "action": row.action,
             "detail": row.detail} for row in rows]
