"""Web forms of the kernel (Flask-WTF: every form carries a CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import (
    GovCheckboxesInput,
    GovPasswordInput,
    GovSubmitInput,
    GovTextInput,
)
from wtforms import EmailField, PasswordField, SelectMultipleField, StringField, SubmitField
from wtforms.validators import Email, InputRequired, Length


class RegisterForm(FlaskForm):
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
        validators=[InputRequired(message="Enter a password")],
    )
    submit = SubmitField("Create account", widget=GovSubmitInput())


class SignInForm(FlaskForm):
    email = EmailField(
        "Email address",
        widget=GovTextInput(),
        validators=[InputRequired(message="Enter your email address")],
    )
    password = PasswordField(
        "Password",
        widget=GovPasswordInput(),
        validators=[InputRequired(message="Enter your password")],
    )
    submit = SubmitField("Sign in", widget=GovSubmitInput())


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField(
        "Current password",
        widget=GovPasswordInput(),
        validators=[InputRequired(message="Enter your current password")],
    )
    new_password = PasswordField(
        "New password",
        widget=GovPasswordInput(),
        description="At least 10 characters",
        validators=[InputRequired(message="Enter a new password")],
    )
    submit = SubmitField("Change password", widget=GovSubmitInput())


class SignOutForm(FlaskForm):
    submit = SubmitField("Sign out", widget=GovSubmitInput())


class AcceptInvitationForm(FlaskForm):
    submit = SubmitField("Accept invitation", widget=GovSubmitInput())


class RevokeInvitationForm(FlaskForm):
    """Withdraw one pending invitation (a button per invitation; CSRF only)."""

    submit = SubmitField("Revoke", widget=GovSubmitInput())


class UserSearchForm(FlaskForm):
    class Meta:
        csrf = False  # a GET search changes nothing

    q = StringField(
        "Search by email or name",
        widget=GovTextInput(),
        validators=[Length(max=254, message="Search for 254 characters or fewer")],
    )


class RolesForm(FlaskForm):
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
