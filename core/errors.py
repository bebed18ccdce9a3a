"""Domain errors with stable codes, and the handlers that show them.

Operations raise ``DomainError`` subclasses; under ``/api/`` every error becomes API.md's
JSON shape ``{"error": {"code", "message"}}`` with the right status, and on pages the same
error becomes a message in the GOV.UK style. Nobody ever sees a stack trace.
"""

from __future__ import annotations

import logging

from flask import jsonify, render_template, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class DomainError(Exception):
    """A rule refused the request. ``code`` is stable; ``message`` is for people."""

    status = 422
    code = "rule_refused"

    def __init__(self, message: str, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status:
            self.status = status


class NotFoundError(DomainError):
    status = 404
    code = "not_found"


class ConflictError(DomainError):
    status = 409
    code = "conflict"


class ForbiddenError(DomainError):
    status = 403
    code = "forbidden"


class AuthenticationError(DomainError):
    status = 401
    code = "unauthenticated"


class InvalidRequest(DomainError):
    """Malformed input; ``fields`` maps each bad field to its messages."""

    status = 400
    code = "invalid_request"

    def __init__(self, message: str, fields: dict | None = None):
        super().__init__(message)
        self.fields = fields or {}


def checked_text(value, field: str, max_length: int) -> str:
    """``value`` stripped, when it is text we can store: at most ``max_length`` characters,
    no control characters (a NUL cannot be stored in PostgreSQL). ``invalid_request`` else."""
    from flask_babel import gettext as _

    from core.request_guard import has_control_character

    text = (value or "").strip() if isinstance(value, str | None) else None
    if text is None:
        raise InvalidRequest(_("Enter text."), {field: [_("Enter text.")]})
    if has_control_character(text):
        message = _("Remove the control character (such as NUL) from this field.")
        raise InvalidRequest(message, {field: [message]})
    if len(text) > max_length:
        message = _("Enter at most %(count)d characters.", count=max_length)
        raise InvalidRequest(message, {field: [message]})
    return text


#: Codes and words for plain HTTP errors.
HTTP_CODES = {
    400: ("bad_request", "The request could not be understood."),
    401: ("unauthenticated", "Sign in first: send a valid bearer token."),
    403: ("forbidden", "You do not have permission to do that."),
    404: ("not_found", "There is nothing at this address."),
    405: ("method_not_allowed", "This address does not accept that method."),
    409: ("conflict", "That conflicts with the current state."),
    413: ("too_large", "The request is too large."),
    415: ("unsupported_media_type", "Send JSON with Content-Type: application/json."),
    429: ("rate_limited", "Too many attempts. Wait a few minutes, then try again."),
    500: ("internal_error", "Something went wrong on our side. Please try again later."),
}


def wants_json() -> bool:
    """True for API requests, which never get an HTML error page."""
    return request.path.startswith("/api/")


def error_response(status: int, code: str, message: str, **extra):
    """API.md's JSON error body with ``status``."""
    body = {"error": {"code": code, "message": message, **extra}}
    return jsonify(body), status


def handle_domain_error(error: DomainError):
    if wants_json():
        extra = {"fields": error.fields} if isinstance(error, InvalidRequest) else {}
        return error_response(error.status, error.code, error.message, **extra)
    return render_template("errors/domain.html", error=error), error.status


def handle_http_exception(error: HTTPException):
    status = error.code or 500
    code, message = HTTP_CODES.get(status, ("http_error", error.description or "Error"))
    if status == 400 and getattr(error, "description", None) and "CSRF" in str(error.description):
        code, message = (
            "csrf_failed",
            (
                "Your form could not be sent because it was open for too long or came from "
                "another site. Go back, reload the page and try again."
            ),
        )
    if wants_json():
        response = error_response(status, code, message)
        if status == 405 and getattr(error, "valid_methods", None):
            response[0].headers["Allow"] = ", ".join(error.valid_methods)
        return response
    template = f"errors/{status}.html" if status in (403, 404, 429, 500) else "errors/http.html"
    return render_template(template, status=status, message=message), status


def handle_unexpected(error: Exception):
    if isinstance(error, HTTPException):
        return handle_http_exception(error)
    log.exception("Unhandled error on %s %s", request.method, request.path)
    from core.extensions import db

    db.session.rollback()
    code, message = HTTP_CODES[500]
    if wants_json():
        return error_response(500, code, message)
    return render_template("errors/500.html", status=500, message=message), 500


def register_error_handlers(app) -> None:
    """Send every error through the handlers above."""
    app.register_error_handler(DomainError, handle_domain_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
