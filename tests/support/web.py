"""Web clients of the tests: an app with a test secret, and accounts that log in for real."""
from __future__ import annotations

import re

from webui import create_app

SECRET_KEY = "tests-only-secret-key-0123456789abcdef"
PASSWORD = "correct horse battery"


def web_app(**config):
    """The web app as the tests run it: a fixed secret key, no shared render unless asked."""
    # Refused logins are not counted unless a test asks (its own prefix): tests log in often.
    return create_app({"TESTING": True, "SECRET_KEY": SECRET_KEY, "LIVE_CACHE_SECONDS": 0,
                       "RATELIMIT_ENABLED": False, **config})


def account(name: str = "alice", role: str = "operator") -> str:
    """Create (or reset) an account; returns its password."""
    from pipelines.runcontrol import accounts

    accounts.add(name, PASSWORD, role=role, replace=True)
    return PASSWORD


def page_csrf(html: str) -> str:
    """The CSRF token a page hands to htmx (or to its login form)."""
    found = re.search(r'"X-CSRF-Token": "([^"]+)"', html) or \
        re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def log_in(client, name: str, password: str = PASSWORD):
    """Log in through the login form; later requests carry the page's CSRF header as htmx does."""
    client.environ_base.pop("HTTP_X_CSRF_TOKEN", None)  # a new session gets a new one
    token = page_csrf(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"name": name, "password": password,
                                           "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)
    client.environ_base["HTTP_X_CSRF_TOKEN"] = page_csrf(client.get("/").get_data(as_text=True))
    return client


def operator_client(**config):
    """A test client logged in as an operator."""
    return log_in(web_app(**config).test_client(), "alice", account("alice", "operator"))
