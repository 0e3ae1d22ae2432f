"""Security headers on every response: only daqflow's own scripts run, no framing, no sniffing."""
from __future__ import annotations

# Scripts and styles from daqflow's own static files only (htmx is vendored): no inline
# script, no eval. Inline style attributes draw the progress bars' widths.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    # The same for browsers that predate frame-ancestors: no page of daqflow's in a frame.
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # A link out of daqflow does not tell the other site which workflow it came from.
    "Referrer-Policy": "same-origin",
}


def init_app(app) -> None:
    """Add the security headers to every response the app gives."""

    @app.after_request
    def _security_headers(response):
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response
