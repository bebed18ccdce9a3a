"""Web forms of the kernel (Flask-WTF: every form carries a CSRF token)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import (
    GovCheckboxesInput,
    GovPasswordInput,
    GovSubmitInput,
    GovTextInput,
)
from wtforms import EmailField, PasswordField, SelectMultipleField, StringField, SubmitField
from wtforms.validators import Email, InputRequired, Length

from core.request_guard import has_control_character

#: Passwords are hashed, but a hash of megabytes still costs time: longer is refused.
MAX_PASSWORD_LENGTH = 256


class Form(FlaskForm):
    """Every page form: Flask-WTF's, refusing control characters (NUL and the like).

    PostgreSQL cannot store a NUL, and no answer of ours needs a control character other
    than a tab or a line break: such a field gets an error of its own, and nothing else of
    the form is checked or used.
    """

    def validate(self, extra_validators=None) -> bool:
        """Refuse control characters first, then validate as usual."""
        bad = [field for field in self if _holds_control_character(field)]
        for field in bad:
            field.errors = [
                _l("Remove the control character (such as NUL) from this answer, then try again")
            ]
        if bad:
            return False
        return super().validate(extra_validators)


def _holds_control_character(field) -> bool:
    values = getattr(field, "raw_data", None) or []
    return any(isinstance(value, str) and has_control_character(value) for value in values)


def text_limit(max_length: int) -> Length:
    """A Length validator with the GOV.UK message for an answer that is too long."""
    return Length(
        max=max_length,
        message=_l("Must be %(max)d characters or fewer", max=max_length),
    )


class RegisterForm(Form):
    email = EmailField(
        "Email address",
        widget=GovTextInput(),
        validators=[
            InputRequired(message="Enter your email address"),
            Email(message="Enter an email address in the correct format, like name@example.org"),
            Length(max=254, message="Email address must be 254 characters or fewer"),
        ],
    )
    display_name = StringField(
        "Your name",
        widget=GovTextInput(),
        description="The name organisers and shops will see, a first name is enough",
        validators=[
            InputRequired(message="Enter your name"),
            Length(max=100, message="Name must be 100 characters or fewer"),
        ],
    )
    postcode = StringField(
        "Postcode",
        widget=GovTextInput(),
        validators=[
            InputRequired(message="Enter your postcode"),
            Length(max=10, message="Enter a real UK postcode, like LS8 2HE"),
        ],
    )
    password = PasswordField(
        "Create a password",
        widget=GovPasswordInput(),
        description="At least 10 characters. A few words together are easy to remember",
        validators=[InputRequired(message="Enter a password"), text_limit(MAX_PASSWORD_LENGTH)],
    )
    submit = SubmitField("Create account", widget=GovSubmitInput())


class SignInForm(Form):
    email = EmailField(
        "Email address",
        widget=GovTextInput(),
        validators=[InputRequired(message="Enter your email address"), text_limit(254)],
    )
    password = PasswordField(
        "Password",
        widget=GovPasswordInput(),
        validators=[
            InputRequired(message="Enter your password"),
            text_limit(MAX_PASSWORD_LENGTH),
        ],
    )
    submit = SubmitField("Sign in", widget=GovSubmitInput())


class ChangePasswordForm(Form):
    current_password = PasswordField(
        "Current password",
        widget=GovPasswordInput(),
        validators=[
            InputRequired(message="Enter your current password"),
            text_limit(MAX_PASSWORD_LENGTH),
        ],
    )
    new_password = PasswordField(
        "New password",
        widget=GovPasswordInput(),
        description="At least 10 characters",
        validators=[
            InputRequired(message="Enter a new password"),
            text_limit(MAX_PASSWORD_LENGTH),
        ],
    )
    submit = SubmitField("Change password", widget=GovSubmitInput())


class SignOutForm(Form):
    submit = SubmitField("Sign out", widget=GovSubmitInput())


class AcceptInvitationForm(Form):
    submit = SubmitField("Accept invitation", widget=GovSubmitInput())


class RevokeInvitationForm(Form):
    """Withdraw one pending invitation (a button per invitation; CSRF only)."""

    submit = SubmitField("Revoke", widget=GovSubmitInput())


class UserSearchForm(Form):
    class Meta:
        csrf = False  # a GET search changes nothing

    q = StringField(
        "Search by email or name",
        widget=GovTextInput(),
        validators=[Length(max=254, message="Search for 254 characters or fewer")],
    )


class RolesForm(Form):
    roles = SelectMultipleField(
        "Roles",
        widget=GovCheckboxesInput(),
        description="Select every role this person holds",
        choices=[],
    )
    submit = SubmitField("Save roles", widget=GovSubmitInput())


__all__ = [
    "AcceptInvitationForm",
    "ChangePasswordForm",
    "RegisterForm",
    "RevokeInvitationForm",
    "RolesForm",
    "SignInForm",
    "SignOutForm",
    "UserSearchForm",
]
