"""Every input has a bounded type: each field an API operation or a page form reads has a
largest (and, for numbers, a smallest) value, so nothing reaches a column it cannot fit."""

from __future__ import annotations

import marshmallow as ma
import pytest
from flask_wtf import FlaskForm
from wtforms import fields as wtf_fields
from wtforms import validators as wtf_validators

from core.apiframework import MAX_INT, ApiBlueprint

#: Where a string is one of a fixed few, a OneOf bounds it as well as a Length would.
STRING_BOUNDS = (ma.validate.Length, ma.validate.OneOf, ma.validate.Regexp)


def schema_fields(schema: ma.Schema, prefix: str = ""):
    """(name, field) of every field, nested schemas and list items included."""
    for name, field in schema.fields.items():
        yield from field_and_inner(f"{prefix}{name}", field)


def field_and_inner(name, field):
    if isinstance(field, ma.fields.Nested):
        nested = field.schema
        yield from schema_fields(nested, f"{name}.")
    elif isinstance(field, ma.fields.List):
        yield name, field
        yield from field_and_inner(f"{name}[]", field.inner)
    else:
        yield name, field


def validators_of(field):
    return list(getattr(field, "validators", []) or [])


def integer_is_bounded(field) -> bool:
    return any(
        isinstance(v, ma.validate.Range)
        and v.min is not None
        and v.max is not None
        and v.min >= -MAX_INT - 1
        and v.max <= MAX_INT
        for v in validators_of(field)
    )


def string_is_bounded(field) -> bool:
    return any(
        isinstance(v, STRING_BOUNDS) and (not isinstance(v, ma.validate.Length) or v.max)
        for v in validators_of(field)
    )


def unbounded_api_fields(app) -> list[str]:
    problems = []
    assert ApiBlueprint.argument_schemas, "no argument schema was registered"
    for schema in ApiBlueprint.argument_schemas:
        for name, field in schema_fields(schema):
            if field.dump_only:
                continue
            where = f"{type(schema).__name__}.{name}"
            if isinstance(field, ma.fields.Integer) and not integer_is_bounded(field):
                problems.append(f"{where}: Integer without Range(min, max <= 2^31 - 1)")
            elif isinstance(field, ma.fields.Float | ma.fields.Decimal) and not integer_is_bounded(
                field
            ):
                problems.append(f"{where}: number without Range")
            elif (
                isinstance(field, ma.fields.String)
                and not isinstance(field, ma.fields.DateTime | ma.fields.Date)
                and not string_is_bounded(field)
            ):
                problems.append(f"{where}: String without Length(max=...)")
            elif isinstance(field, ma.fields.List) and not any(
                isinstance(v, ma.validate.Length) and v.max for v in validators_of(field)
            ):
                problems.append(f"{where}: List without Length(max=...)")
    return problems


def test_every_api_argument_is_bounded(app):
    assert unbounded_api_fields(app) == []


def all_form_classes() -> list[type]:
    import importlib

    for module in (
        "core.forms",
        "core.admin_forms",
        "volunteering.forms",
        "partners.forms",
        "rewards.forms",
        "reports.forms",
    ):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError:
            continue
    found, todo = [], list(FlaskForm.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return [c for c in found if not c.__module__.startswith(("flask_wtf", "wtforms", "tests"))]


TEXT_FIELDS = (wtf_fields.StringField,)  # Email, Password, TextArea, Search... subclass it
NUMBER_FIELDS = (wtf_fields.IntegerField, wtf_fields.DecimalField, wtf_fields.FloatField)
#: Fields whose value is one of a few choices or a file bound themselves.
SELF_BOUNDED = (
    wtf_fields.SelectField,
    wtf_fields.SelectMultipleField,
    wtf_fields.RadioField,
    wtf_fields.BooleanField,
    wtf_fields.SubmitField,
    wtf_fields.HiddenField,
    wtf_fields.FileField,
    wtf_fields.DateField,
    wtf_fields.DateTimeField,
    wtf_fields.DateTimeLocalField,
    wtf_fields.TimeField,
)


def unbounded_form_fields(app, form_classes=None) -> list[str]:
    problems = []
    with app.test_request_context():
        for form_class in form_classes if form_classes is not None else all_form_classes():
            try:
                form = form_class(meta={"csrf": False})
            except TypeError:
                continue
            for field in form:
                where = f"{form_class.__module__}.{form_class.__name__}.{field.name}"
                validators = list(field.validators)
                if isinstance(field, SELF_BOUNDED) and not isinstance(field, TEXT_FIELDS):
                    continue
                if isinstance(field, wtf_fields.HiddenField) and field.name == "csrf_token":
                    continue
                if isinstance(field, NUMBER_FIELDS):
                    ranges = [v for v in validators if isinstance(v, wtf_validators.NumberRange)]
                    if not any(
                        v.min is not None and v.max is not None and v.max <= MAX_INT for v in ranges
                    ):
                        problems.append(f"{where}: number without NumberRange(min, max)")
                elif isinstance(field, TEXT_FIELDS):
                    if not any(
                        isinstance(v, wtf_validators.Length) and v.max > 0 for v in validators
                    ) and not any(isinstance(v, wtf_validators.AnyOf) for v in validators):
                        problems.append(f"{where}: text without Length(max=...)")
    return problems


def test_every_form_field_is_bounded(app):
    assert unbounded_form_fields(app) == []


@pytest.mark.parametrize("kind", ["api", "form"])
def test_the_check_finds_an_unbounded_field(app, kind):
    """The checks above can fail: an unbounded field is reported."""
    if kind == "api":

        class Loose(ma.Schema):
            count = ma.fields.Integer()
            name = ma.fields.String()

        ApiBlueprint.argument_schemas.append(Loose())
        try:
            problems = unbounded_api_fields(app)
        finally:
            ApiBlueprint.argument_schemas.pop()
        assert "Loose.count: Integer without Range(min, max <= 2^31 - 1)" in problems
        assert "Loose.name: String without Length(max=...)" in problems
    else:

        class LooseForm(FlaskForm):
            name = wtf_fields.StringField("Name")
            count = wtf_fields.IntegerField("Count")

        problems = unbounded_form_fields(app, [LooseForm])
        assert any(p.endswith("LooseForm.name: text without Length(max=...)") for p in problems)
        assert any(
            p.endswith("LooseForm.count: number without NumberRange(min, max)") for p in problems
        )
