"""What a request must be before any view sees it.

- Ids in paths are PostgreSQL ``integer``s: a larger number matches no route (404), so it
  never reaches a query (``BoundedIntegerConverter``).
- No NUL character in a path or query string: PostgreSQL cannot store it and nothing we serve
  needs it (400).
- API writes carry JSON (``application/json``, else 415), at most ``API_BODY_LIMIT`` bytes
  (else 413), parsed here once: not nested deeper than ``MAX_JSON_DEPTH``, no control
  characters in any string or key, no NaN or Infinity (each 400 ``invalid_request`` naming the
  field). The parsed body is what the view's schema then loads (``parsed_api_body``).

Form fields on pages are checked by ``core.forms.Form`` (a form error next to the field).
"""

from __future__ import annotations

import json
import re

from flask import abort, g, request
from flask_babel import gettext as _
from werkzeug.routing import IntegerConverter

from core.errors import InvalidRequest

#: The largest value of a PostgreSQL ``integer`` column (every id and count).
MAX_INT = 2**31 - 1
#: JSON bodies under /api/ are at most this many bytes.
API_BODY_LIMIT = 1_000_000
#: No request body of ours nests objects and arrays deeper than a few levels.
MAX_JSON_DEPTH = 32
#: C0 control characters other than tab, newline and carriage return, and DEL.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
#: Methods whose body is read.
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_NOT_PARSED = object()


class BoundedIntegerConverter(IntegerConverter):
    """``<int:...>`` as Werkzeug's, but only 0 to 2^31 - 1: anything larger is no route."""

    def __init__(self, map, fixed_digits=0, min=None, max=MAX_INT, signed=False):  # noqa: A002
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


def has_control_character(value: str) -> bool:
    """True when ``value`` holds a character no form or API field accepts."""
    return CONTROL_CHARACTERS.search(value) is not None


def refuse_nul_in_address() -> None:
    """400 for a NUL anywhere in the path or the query string (encoded or not)."""
    if "\x00" in request.path or b"%00" in request.query_string:
        raise _nul_in_address()
    for values in request.args.listvalues():
        if any("\x00" in value for value in values):
            raise _nul_in_address()


def _nul_in_address() -> InvalidRequest:
    return InvalidRequest(
        _("The address holds a character that cannot be used (NUL)."),
        {"_address": [_("Remove the NUL character from the address.")]},
    )


def check_api_body() -> None:
    """Refuse an API write body that is not small, shallow, clean JSON; keep it parsed."""
    g.api_body = _NOT_PARSED
    if request.method not in WRITE_METHODS:
        return
    # Werkzeug refuses a longer body (413) by its Content-Length, or while reading one sent
    # without it (chunked).
    request.max_content_length = API_BODY_LIMIT
    data = request.get_data(cache=True)
    if not data:
        return
    if not request.is_json:
        abort(415)
    g.api_body = parse_json_body(data)
    # Flask's request.get_json() (the sign-in limiter reads the email) answers from here.
    request._cached_json = (g.api_body, g.api_body)


def parse_json_body(data: bytes):
    """The JSON value of ``data``; ``invalid_request`` for anything we would not store."""
    try:
        text = data.decode("utf-8")
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise _too_deep() from None
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest(
            _("The body is not valid JSON."), {"_body": [_("Send a JSON object.")]}
        ) from None
    check_json_value(value)
    return value


def check_json_value(value) -> None:
    """Walk ``value`` (without recursion): depth, control characters in strings and keys."""
    stack = [(value, "", 1)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise _too_deep()
        if isinstance(item, str):
            if has_control_character(item):
                raise _bad_character(path or "_body")
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{path}.{key}" if path else key
                if has_control_character(key):
                    raise _bad_character(repr(key)[:40])
                if isinstance(child, dict | list | str):
                    stack.append((child, child_path, depth + 1))
        elif isinstance(item, list):
            for index, child in enumerate(item):
                if isinstance(child, dict | list | str):
                    stack.append((child, f"{path}.{index}" if path else str(index), depth + 1))


def parsed_api_body():
    """The body ``check_api_body`` parsed for this request, or ``None`` when it did not."""
    body = g.get("api_body", _NOT_PARSED)
    return None if body is _NOT_PARSED else (body,)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _too_deep() -> InvalidRequest:
    return InvalidRequest(
        _("The body is nested too deeply."),
        {"_body": [_("Nest objects and arrays at most %(depth)d deep.", depth=MAX_JSON_DEPTH)]},
    )


def _bad_character(field: str) -> InvalidRequest:
    message = _("Remove the control character (such as NUL) from this field.")
    return InvalidRequest(
        _("Some fields hold a character that cannot be used: %(field)s.", field=field),
        {field: [message]},
    )


def init_app(app) -> None:
    """Bound path integers, and the checks above before every request (before sign-in)."""
    app.url_map.converters["int"] = BoundedIntegerConverter

    def guard_request():
        refuse_nul_in_address()
        if request.path.startswith("/api/"):
            check_api_body()

    app.before_request_funcs.setdefault(None, []).insert(0, guard_request)
