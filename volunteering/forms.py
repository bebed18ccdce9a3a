"""Web forms for volunteering pages (Flask-WTF, rendered with govuk-frontend-wtf widgets)."""

from __future__ import annotations

from flask import current_app
from flask_wtf.file import FileAllowed, FileField, FileRequired
from govuk_frontend_wtf.wtforms_widgets import (
    GovFileInput,
    GovSelect,
    GovSubmitInput,
    GovTextArea,
    GovTextInput,
)
from wtforms import (
    DateField,
    EmailField,
    FieldList,
    FormField,
    HiddenField,
    IntegerField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import (
    Email,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    Regexp,
)

from core.forms import Form, text_limit

TIME_RE = r"^([01]?[0-9]|2[0-3])[:.][0-5][0-9]$"
TIME_MESSAGE = "Enter a time in 24-hour format, like 09:30 or 14:00"


class OrganisationForm(Form):
    name = StringField(
        "Organisation name",
        widget=GovTextInput(),
        validators=[
            InputRequired(message="Enter the organisation's name"),
            Length(max=200, message="Name must be 200 characters or fewer"),
        ],
    )
    description = TextAreaField(
        "What does your organisation do?",
        widget=GovTextArea(),
        description="Who you are, where you work and who you help",
        validators=[Length(max=5000, message="Description must be 5000 characters or fewer")],
    )
    submit = SubmitField("Send for approval", widget=GovSubmitInput())


class ActivityForm(Form):
    title = StringField(
        "Title",
        widget=GovTextInput(),
        description="For example, Litter pick",
        validators=[
            InputRequired(message="Enter a title"),
            Length(max=200, message="Title must be 200 characters or fewer"),
        ],
    )
    description = TextAreaField(
        "Description",
        widget=GovTextArea(),
        description="What volunteers do and what to bring",
        validators=[Length(max=5000, message="Description must be 5000 characters or fewer")],
    )
    category = SelectField("Category", widget=GovSelect(), choices=[])
    location = StringField(
        "Where",
        widget=GovTextInput(),
        description="For example, Roundhay Park, main gate",
        validators=[
            InputRequired(message="Enter where the activity happens"),
            Length(max=200, message="Place must be 200 characters or fewer"),
        ],
    )
    ward = SelectField("Ward", widget=GovSelect(), choices=[])
    credits_per_hour = IntegerField(
        "Credits per hour",
        widget=GovTextInput(),
        default=1,
        validators=[
            InputRequired(message="Enter the credits per hour, a whole number from 1 to 10"),
            NumberRange(min=1, max=10, message="Credits per hour must be from 1 to 10"),
        ],
    )
    capacity = IntegerField(
        "Places per session (optional)",
        widget=GovTextInput(),
        description="Leave empty for no limit",
        validators=[
            Optional(),
            NumberRange(min=1, max=10000, message="Places must be 1 or more"),
        ],
    )
    submit = SubmitField("Send for approval", widget=GovSubmitInput())

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        config = current_app.config
        self.category.choices = [(c, c) for c in config["VOLUNTEERING_CATEGORIES"]]
        self.ward.choices = [(w, w) for w in config["VOLUNTEERING_WARDS"]]


class SessionForm(Form):
    day = DateField(
        "Date",
        widget=GovTextInput(),
        description="For example, 2026-11-03",
        validators=[InputRequired(message="Enter the date, like 2026-11-03")],
    )
    starts = StringField(
        "Start time",
        widget=GovTextInput(),
        description="UK time, 24-hour, like 10:00",
        validators=[
            InputRequired(message="Enter the start time"),
            text_limit(5),
            Regexp(TIME_RE, 0, TIME_MESSAGE),
        ],
    )
    ends = StringField(
        "End time",
        widget=GovTextInput(),
        description="UK time, 24-hour, like 12:30",
        validators=[
            InputRequired(message="Enter the end time"),
            text_limit(5),
            Regexp(TIME_RE, 0, TIME_MESSAGE),
        ],
    )
    submit = SubmitField("Add session", widget=GovSubmitInput())


class InviteForm(Form):
    email = EmailField(
        "Email address of the new organiser",
        widget=GovTextInput(),
        description="Without an account yet, they are emailed an invitation to create one",
        validators=[
            InputRequired(message="Enter their email address"),
            text_limit(254),
            Email(message="Enter an email address in the correct format, like name@example.org"),
        ],
    )
    submit = SubmitField("Add organiser", widget=GovSubmitInput())


class ConfirmForm(Form):
    """A button that changes something: only the CSRF token travels."""

    submit = SubmitField("Confirm", widget=GovSubmitInput())


class RejectForm(Form):
    reason = TextAreaField(
        "Reason",
        widget=GovTextArea(),
        description="The organiser or resident will see this",
        validators=[
            InputRequired(message="Enter the reason"),
            Length(max=1000, message="Reason must be 1000 characters or fewer"),
        ],
    )
    submit = SubmitField("Reject", widget=GovSubmitInput())


class ActivitySearchForm(Form):
    class Meta:
        csrf = False  # a GET search changes nothing

    q = StringField(
        "Search",
        widget=GovTextInput(),
        validators=[Length(max=100, message="Search for 100 characters or fewer")],
    )
    category = SelectField("Category", widget=GovSelect(), choices=[], validate_choice=False)
    ward = SelectField("Ward", widget=GovSelect(), choices=[], validate_choice=False)
    day = DateField("On date", widget=GovTextInput(), validators=[Optional()])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        config = current_app.config
        self.category.choices = [("", "Any category")] + [
            (c, c) for c in config["VOLUNTEERING_CATEGORIES"]
        ]
        self.ward.choices = [("", "Any ward")] + [(w, w) for w in config["VOLUNTEERING_WARDS"]]


class CardScanForm(Form):
    card = StringField(
        "Card number",
        widget=GovTextInput(),
        description="The 7-digit number under the QR code on the resident's card",
        validators=[
            InputRequired(message="Enter the card number"),
            Length(max=500, message="Card number is too long"),
        ],
    )
    nonce = HiddenField(validators=[text_limit(100)])
    submit = SubmitField("Check in or out", widget=GovSubmitInput())


class AttendanceRowForm(Form):
    """One line of a paper sign-in sheet."""

    class Meta:
        csrf = False  # part of a form that has one

    who = StringField(
        "Email address or card number",
        widget=GovTextInput(),
        validators=[Length(max=254, message="Too long")],
    )
    checked_in = StringField(
        "Arrived",
        widget=GovTextInput(),
        validators=[Optional(), text_limit(5), Regexp(TIME_RE, 0, TIME_MESSAGE)],
    )
    checked_out = StringField(
        "Left",
        widget=GovTextInput(),
        validators=[Optional(), text_limit(5), Regexp(TIME_RE, 0, TIME_MESSAGE)],
    )


class AttendanceSheetForm(Form):
    rows = FieldList(FormField(AttendanceRowForm), min_entries=6, max_entries=50)
    submit = SubmitField("Add attendance", widget=GovSubmitInput())


class AttendanceCsvForm(Form):
    file = FileField(
        "Sign-in sheet (CSV)",
        widget=GovFileInput(),
        description="Columns: who (email or card number), arrived, left (24-hour UK times)",
        validators=[
            FileRequired(message="Choose a CSV file"),
            FileAllowed(["csv", "txt"], message="The file must be a CSV file"),
        ],
    )
    submit = SubmitField("Upload sheet", widget=GovSubmitInput())


class CardLookupForm(Form):
    class Meta:
        csrf = False  # a GET lookup changes nothing

    email = StringField(
        "Resident's email address",
        widget=GovTextInput(),
        validators=[Length(max=254, message="Too long")],
    )


CLAIM_STATUSES = [("pending", "Waiting"), ("approved", "Approved"), ("rejected", "Rejected")]
CLAIM_FLAGS = [
    ("", "Any"),
    ("manual", "Typed in by an organiser"),
    ("overlapping", "Overlapping sessions"),
    ("daily_maximum", "Over the daily maximum"),
    ("outside_window", "Outside the session window"),
    ("missed_checkout", "Missed check-out"),
    ("over_threshold", "Over the automatic limit"),
    ("organisation_not_approved", "Organisation not approved"),
]


class ClaimFilterForm(Form):
    class Meta:
        csrf = False

    status = SelectField("Status", widget=GovSelect(), choices=[], validate_choice=False)
    flag = SelectField("Flag", widget=GovSelect(), choices=[], validate_choice=False)
    organisation = SelectField(
        "Organisation", widget=GovSelect(), choices=[], validate_choice=False
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.status.choices = CLAIM_STATUSES
        self.flag.choices = CLAIM_FLAGS
