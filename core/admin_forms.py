"""Forms of the council's administration pages: audit search, users, settings, privacy."""

from __future__ import annotations

from datetime import date

from govuk_frontend_wtf.wtforms_widgets import (
    GovPasswordInput,
    GovSelect,
    GovSubmitInput,
    GovTextArea,
    GovTextInput,
)
from wtforms import PasswordField, SelectField, StringField, SubmitField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, Optional, ValidationError

from core.forms import Form, text_limit


def iso_date(form, field) -> None:
    """A date typed as YYYY-MM-DD."""
    if field.data:
        try:
            field.parsed = date.fromisoformat(field.data.strip())
        except ValueError:
            raise ValidationError(
                f"{field.label.text} must be a real date, like 2026-11-27"
            ) from None
    else:
        field.parsed = None


class AuditSearchForm(Form):
    """Filters of the audit log (GET: changes nothing, so no CSRF token)."""

    class Meta:
        csrf = False

    actor = StringField(
        "Who",
        widget=GovTextInput(),
        description="Email address or name of the person, or 'system' for scheduled jobs",
        validators=[Optional(), Length(max=254, message="Who must be 254 characters or fewer")],
    )
    action = StringField(
        "Action",
        widget=GovTextInput(),
        description="For example claim.approved, or claim. for every claim action",
        validators=[Optional(), Length(max=64, message="Action must be 64 characters or fewer")],
    )
    subject = StringField(
        "Subject",
        widget=GovTextInput(),
        description="For example claim:12 or user:7",
        validators=[Optional(), Length(max=64, message="Subject must be 64 characters or fewer")],
    )
    date_from = StringField(
        "From date",
        widget=GovTextInput(),
        description="For example 2026-11-01",
        validators=[Optional(), text_limit(10), iso_date],
    )
    date_to = StringField(
        "To date (inclusive)",
        widget=GovTextInput(),
        description="For example 2026-11-30",
        validators=[Optional(), text_limit(10), iso_date],
    )


class UserAdminSearchForm(Form):
    """Find people by email, name or postcode, optionally by role and state."""

    class Meta:
        csrf = False

    q = StringField(
        "Search by email, name or postcode",
        widget=GovTextInput(),
        validators=[Optional(), Length(max=254, message="Search for 254 characters or fewer")],
    )
    role = SelectField("Role", widget=GovSelect(), choices=[], validators=[Optional()])
    state = SelectField(
        "Account state",
        widget=GovSelect(),
        choices=[
            SelectChoice("", "Any"),
            SelectChoice("active", "Active"),
            SelectChoice("suspended", "Suspended"),
            SelectChoice("closed", "Closed"),
        ],
        validators=[Optional()],
    )


class SuspendForm(Form):
    reason = TextAreaField(
        "Why are you suspending this account?",
        widget=GovTextArea(),
        description="The reason is kept in the audit log",
        validators=[
            InputRequired(message="Enter why you are suspending this account"),
            Length(max=1000, message="The reason must be 1000 characters or fewer"),
        ],
    )
    submit = SubmitField("Suspend account", widget=GovSubmitInput())


class RestoreForm(Form):
    reason = TextAreaField(
        "Why are you restoring this account?",
        widget=GovTextArea(),
        validators=[
            InputRequired(message="Enter why you are restoring this account"),
            Length(max=1000, message="The reason must be 1000 characters or fewer"),
        ],
    )
    submit = SubmitField("Restore account", widget=GovSubmitInput())


class SettingsForm(Form):
    """The fields are added per setting by ``settings_form_class``."""

    reason = TextAreaField(
        "Reason for the change",
        widget=GovTextArea(),
        description="Kept in the audit log with the old and new values",
        validators=[
            Optional(),
            Length(max=1000, message="Reason must be 1000 characters or fewer"),
        ],
    )
    submit = SubmitField("Save settings", widget=GovSubmitInput())


def settings_form_class(definitions) -> type[SettingsForm]:
    """A form class with one field per scheme setting."""
    fields = {}
    for definition in definitions:
        label = f"{definition.label} ({definition.unit})" if definition.unit else definition.label
        if definition.kind == "text_list":
            fields[definition.name] = TextAreaField(
                definition.label,
                widget=GovTextArea(),
                description=definition.hint,
                validators=[Optional(), Length(max=10_000)],
            )
        else:
            fields[definition.name] = StringField(
                label,
                widget=GovTextInput(),
                description=definition.hint,
                validators=[Optional(), Length(max=200)],
            )
    return type("SchemeSettingsForm", (SettingsForm,), fields)


class CloseAccountForm(Form):
    password = PasswordField(
        "Your password",
        widget=GovPasswordInput(),
        description="To make sure it is you",
        validators=[InputRequired(message="Enter your password"), text_limit(256)],
    )
    submit = SubmitField("Close my account", widget=GovSubmitInput())
