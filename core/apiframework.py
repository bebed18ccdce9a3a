"""The JSON API's plumbing: flask-smorest with API.md's error shape and bearer auth.

Feature packages build their API with ``ApiBlueprint`` and register it in ``core.api``; the
OpenAPI document is generated from the blueprints' schemas by flask-smorest/apispec.
"""

from __future__ import annotations

import marshmallow as ma
from flask_smorest import Api as SmorestApi
from flask_smorest import Blueprint as SmorestBlueprint
from webargs.flaskparser import FlaskParser

from core.errors import InvalidRequest

BEARER = [{"bearerAuth": []}]


class ErrorBodySchema(ma.Schema):
    """API.md's error: a stable ``code`` and a ``message`` for people."""

    code = ma.fields.String(required=True, metadata={"example": "invalid_request"})
    message = ma.fields.String(required=True)
    fields = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.List(ma.fields.String()),
        metadata={"description": "Each bad field with its problems (invalid_request only)"},
    )


class ErrorSchema(ma.Schema):
    """Every error response under /api/."""

    error = ma.fields.Nested(ErrorBodySchema, required=True)


def flatten_messages(messages) -> dict[str, list[str]]:
    """webargs' nested ``{"json": {"field": [...]}}`` as ``{"field": [...]}``."""
    if isinstance(messages, dict) and set(messages) <= {"json", "query", "view_args", "form"}:
        merged: dict = {}
        for value in messages.values():
            merged.update(flatten_messages(value))
        return merged
    if isinstance(messages, dict):
        out = {}
        for key, value in messages.items():
            if isinstance(value, dict):
                for sub, sub_messages in flatten_messages(value).items():
                    out[f"{key}.{sub}"] = sub_messages
            else:
                out[str(key)] = [str(v) for v in (value if isinstance(value, list) else [value])]
        return out
    return {"_schema": [str(m) for m in (messages if isinstance(messages, list) else [messages])]}


class JsonErrorParser(FlaskParser):
    """Parse like webargs, but fail with API.md's ``invalid_request``."""

    def handle_error(self, error, req, schema, *, error_status_code, error_headers):
        fields = flatten_messages(error.messages)
        names = ", ".join(sorted(fields)) or "the body"
        raise InvalidRequest(f"Some fields are missing or not right: {names}.", fields)

    def _raw_load_json(self, req):
        """The body ``core.request_guard`` already parsed and checked, if it did."""
        from core.request_guard import parsed_api_body

        parsed = parsed_api_body()
        return parsed[0] if parsed is not None else super()._raw_load_json(req)

    def _handle_invalid_json_error(self, error, req, *args, **kwargs):
        raise InvalidRequest("The body is not valid JSON.", {"_body": ["Send a JSON object."]})


class ApiBlueprint(SmorestBlueprint):
    """A flask-smorest blueprint whose argument errors are API.md's ``invalid_request``."""

    ARGUMENTS_PARSER = JsonErrorParser()
    #: Every schema an operation loads its arguments with (tests check each field is bounded).
    argument_schemas: list[ma.Schema] = []

    def arguments(self, schema, *args, **kwargs):
        """As flask-smorest's, with a schema class made into an instance once, here, rather
        than by webargs on every request (a schema keeps no state between loads)."""
        if isinstance(schema, type):
            schema = schema()
        ApiBlueprint.argument_schemas.append(schema)
        return super().arguments(schema, *args, **kwargs)


class Api(SmorestApi):
    """flask-smorest's Api, leaving error handling to ``core.errors``."""

    ERROR_SCHEMA = ErrorSchema

    def _register_error_handlers(self):
        """Errors are handled app-wide by core.errors (JSON under /api/, pages elsewhere)."""


#: The largest PostgreSQL ``integer``: every id and count column.
MAX_INT = 2**31 - 1


def Id(**kwargs) -> ma.fields.Integer:  # noqa: N802 - a field type, named like one
    """A row's id in a body or query: a JSON integer from 1 to 2^31 - 1."""
    kwargs.setdefault("strict", True)
    return ma.fields.Integer(validate=ma.validate.Range(min=1, max=MAX_INT), **kwargs)


def Count(*, min: int = 0, max: int = MAX_INT, **kwargs) -> ma.fields.Integer:  # noqa: N802, A002
    """A whole number of something (credits, days, pence, items), ``min`` to ``max``."""
    kwargs.setdefault("strict", True)
    return ma.fields.Integer(validate=ma.validate.Range(min=min, max=max), **kwargs)


class RequestSchema(ma.Schema):
    """Base of request bodies: unknown fields are refused with a clear message."""

    class Meta:
        unknown = ma.RAISE


def bearer_doc(*roles: str) -> dict:
    """OpenAPI doc for an operation needing a bearer token and one of ``roles``."""
    doc: dict = {"security": BEARER}
    if roles:
        doc["description"] = "Roles: " + ", ".join(roles) + "."
    return doc


class PageArgsSchema(ma.Schema):
    """API.md's list paging: ``?limit=`` (default 50, at most 200) and ``?cursor=``."""

    limit = ma.fields.Integer(load_default=50, validate=ma.validate.Range(min=1, max=200))
    cursor = ma.fields.String(load_default=None, validate=ma.validate.Length(max=40))


def paginate(query, id_column, limit: int, cursor: str | None, *, newest_first=True) -> dict:
    """``{"items", "next_cursor"}``: up to ``limit`` rows of ``query`` after ``cursor``.

    The cursor is the id of the last row of the previous page; rows come newest (highest
    id) first, or oldest first with ``newest_first=False``.
    """
    from core.extensions import db

    if cursor:
        if not cursor.isdigit() or len(cursor) > 18:
            raise InvalidRequest("The cursor is not right.", {"cursor": ["Not a cursor."]})
        after = id_column < int(cursor) if newest_first else id_column > int(cursor)
        query = query.where(after)
    order = id_column.desc() if newest_first else id_column.asc()
    rows = db.session.execute(query.order_by(None).order_by(order).limit(limit + 1)).scalars()
    rows = list(rows)
    items = rows[:limit]
    return {"items": items, "next_cursor": str(items[-1].id) if len(rows) > limit else None}
