"""Errors as the asker reads them: an HTTP status for each refusal, the page's message
box for htmx, JSON under /api."""
from __future__ import annotations

from flask import jsonify, render_template, render_template_string, request
from htmx_flask import make_response

from pipelines.runcontrol.errors import Invalid, NotFound, Refused, Unavailable


def error_status(exc: Exception) -> int:
    """The HTTP status for a refusal, a missing thing, bad input, or no broker."""
    return {Refused: 409, NotFound: 404, Invalid: 400, Unavailable: 503}.get(type(exc), 500)


def refusal(exc: Exception):
    """An error answer htmx swaps into the page's message box instead of its target."""
    return refusal_message(str(exc), error_status(exc))


def refusal_message(message: str, status: int):
    """``message`` with ``status``, for the page's message box (htmx retargets it there)."""
    return make_response(render_template("runcontrol/_message.html", message=message), status,
                         retarget="#message", reswap="innerHTML")


def register_json_errors(app) -> None:
    """Answer JSON under /api for unknown URLs and methods, bad encodings and floods."""

    def http_error(exc):
        if request.path.startswith("/api/"):
            return jsonify(error=exc.description), exc.code
        return render_template_string("{{ e.code }} {{ e.name }}: {{ e.description }}",
                                      e=exc), exc.code

    for code in (400, 404, 405, 413):
        app.register_error_handler(code, http_error)
