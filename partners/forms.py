"""Web forms of the partners pages (Flask-WTF with GOV.UK widgets)."""

from __future__ import annotations

from datetime import datetime

from govuk_frontend_wtf.wtforms_widgets import (
    GovCheckboxesInput,
    GovCheckboxInput,
    GovDateInput,
    GovRadioInput,
    GovSelect,
    GovSubmitInput,
    GovTextArea,
    GovTextInput,
)
from wtforms import (
    BooleanField,
    DateField,
    HiddenField,
    IntegerField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import (
    Email,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    ValidationError,
)

from core.forms import Form, text_limit
from partners.models import LimitPeriod
from partners.operations import WEEKDAY_NAMES

#: Kinds of business residents can search for.
PARTNER_CATEGORIES = [
    "Café",
    "Food and drink",
    "Leisure and sport",
    "Arts and culture",
    "Shop",
    "Hair and beauty",
    "Education",
    "Other",
]


class GovIntegerInput(GovTextInput):
    """A whole number, typed (GOV.UK asks for ``inputmode=numeric`` rather than type=number)."""

    def map_gov_params(self, field, **kwargs):
        params = super().map_gov_params(field, **kwargs)
        params.setdefault("inputmode", "numeric")
        params.setdefault("spellcheck", False)
        return params


class GovDatePartsInput(GovDateInput):
    """GOV.UK's day, month and year boxes, also when the form was sent without them."""

    def map_gov_params(self, field, **kwargs):
        if field.raw_data is not None and len(field.raw_data) != 3:
            field.raw_data = None
        return super().map_gov_params(field, **kwargs)


def clock_time(form, field) -> None:
    """``HH:MM`` in 24-hour time, turned into a ``time``."""
    raw = (field.data or "").strip()
    if not raw:
        field.data = None
        return
    try:
        field.data = datetime.strptime(raw.replace(".", ":"), "%H:%M").time()
    except ValueError:
        raise ValidationError("Enter a time like 09:30 or 17:00") from None


class PartnerRegistrationForm(Form):
    name = StringField(
        "Business name",
        widget=GovTextInput(),
        validators=[
            InputRequired(message="Enter the name of your business"),
            Length(max=120, message="Business name must be 120 characters or fewer"),
        ],
    )
    address = TextAreaField(
        "Address",
        widget=GovTextArea(),
        validators=[
            InputRequired(message="Enter the address of your business"),
            Length(max=500, message="Address must be 500 characters or fewer"),
        ],
    )
    category = SelectField(
        "Kind of business",
        widget=GovSelect(),
        choices=[SelectChoice(c, c) for c in PARTNER_CATEGORIES],
    )
    ward = SelectField("Ward", widget=GovSelect(), choices=[])
    opening_hours = TextAreaField(
        "Opening hours",
        widget=GovTextArea(),
        description="For example, Monday to Friday 8am to 5pm, Saturday 9am to 1pm",
        validators=[Length(max=500, message="Opening hours must be 500 characters or fewer")],
    )
    contact_name = StringField(
        "Contact name",
        widget=GovTextInput(),
        validators=[Length(max=100, message="Contact name must be 100 characters or fewer")],
    )
    contact_email = StringField(
        "Contact email address",
        widget=GovTextInput(),
        description="Leave empty to use your own",
        validators=[
            Optional(),
            Email(message="Enter an email address in the correct format, like name@example.org"),
            Length(max=254, message="Email address must be 254 characters or fewer"),
        ],
    )
    contact_phone = StringField(
        "Contact phone number",
        widget=GovTextInput(),
        validators=[Length(max=30, message="Phone number must be 30 characters or fewer")],
    )
    submit = SubmitField("Register business", widget=GovSubmitInput())


class OfferForm(Form):
    title = StringField(
        "Title",
        widget=GovTextInput(),
        description="What residents get, for example 'A hot drink' or 'One swim'",
        validators=[
            InputRequired(message="Enter a title"),
            Length(max=120, message="Title must be 120 characters or fewer"),
        ],
    )
    description = TextAreaField(
        "Description",
        widget=GovTextArea(),
        validators=[Length(max=2000, message="Description must be 2000 characters or fewer")],
    )
    credit_cost = IntegerField(
        "Cost in credits",
        widget=GovIntegerInput(),
        validators=[
            InputRequired(message="Enter the cost in credits"),
            NumberRange(min=1, max=1000, message="Cost must be between 1 and 1000 credits"),
        ],
    )
    valid_from = DateField(
        "First day (optional)",
        widget=GovDatePartsInput(),
        format="%d %m %Y",
        validators=[Optional()],
    )
    valid_until = DateField(
        "Last day (optional)",
        widget=GovDatePartsInput(),
        format="%d %m %Y",
        validators=[Optional()],
    )
    days = SelectMultipleField(
        "Days it can be taken",
        widget=GovCheckboxesInput(),
        choices=[SelectChoice(str(number), name) for number, name in enumerate(WEEKDAY_NAMES)],
        validators=[InputRequired(message="Choose at least one day")],
    )
    available_from = StringField(
        "From (optional)",
        widget=GovTextInput(),
        description="24-hour time, for example 09:00",
        validators=[text_limit(5), clock_time],
    )
    available_until = StringField(
        "Until (optional)",
        widget=GovTextInput(),
        description="24-hour time, for example 12:00",
        validators=[text_limit(5), clock_time],
    )
    limit_per_resident = IntegerField(
        "Times one person can have it (optional)",
        widget=GovIntegerInput(),
        validators=[
            Optional(),
            NumberRange(min=1, max=1000, message="Enter a limit between 1 and 1000"),
        ],
    )
    limit_period = RadioField(
        "Per",
        widget=GovRadioInput(),
        choices=[SelectChoice(p.value, p.value.title()) for p in LimitPeriod],
        default=LimitPeriod.WEEK.value,
    )
    stock_total = IntegerField(
        "How many you can give in total (optional)",
        widget=GovIntegerInput(),
        description="Leave empty if there is no limit",
        validators=[
            Optional(),
            NumberRange(min=0, max=1_000_000, message="Enter a number from 0 to 1,000,000"),
        ],
    )
    submit = SubmitField("Save offer", widget=GovSubmitInput())


class TillCodeForm(Form):
    code = StringField(
        "Customer's code",
        widget=GovTextInput(),
        description="8 letters and numbers, for example K7MQ-4XRT",
        validators=[
            InputRequired(message="Enter the customer's code"),
            Length(max=64, message="Enter the 8 characters of the code"),
        ],
    )
    submit = SubmitField("Check code", widget=GovSubmitInput())


class TillConfirmForm(Form):
    code = HiddenField(validators=[InputRequired(), Length(max=64)])
    idempotency_key = HiddenField(validators=[InputRequired(), Length(max=255)])
    offer_id = RadioField(
        "Which offer?",
        widget=GovRadioInput(),
        coerce=int,
        choices=[],
        validators=[InputRequired(message="Choose the offer the customer is having")],
    )
    submit = SubmitField("Take credits", widget=GovSubmitInput())


class ReasonForm(Form):
    reason = TextAreaField(
        "Reason",
        widget=GovTextArea(),
        validators=[
            InputRequired(message="Say why"),
            Length(max=1000, message="Reason must be 1000 characters or fewer"),
        ],
    )
    submit = SubmitField("Confirm", widget=GovSubmitInput())


class ConfirmForm(Form):
    """A button that changes something (CSRF protected)."""

    submit = SubmitField("Confirm", widget=GovSubmitInput())


class SettlementRateForm(Form):
    settlement_rate_pence = IntegerField(
        "Settlement rate in pence per credit",
        widget=GovIntegerInput(),
        validators=[
            InputRequired(message="Enter the rate in pence"),
            NumberRange(min=0, max=100_000, message="Enter a rate from 0 to 100,000 pence"),
        ],
    )
    submit = SubmitField("Change rate", widget=GovSubmitInput())


class AddStaffForm(Form):
    email = StringField(
        "Colleague's email address",
        widget=GovTextInput(),
        description="Without an account yet, they are emailed an invitation to create one",
        validators=[
            InputRequired(message="Enter your colleague's email address"),
            text_limit(254),
            Email(message="Enter an email address in the correct format, like name@example.org"),
        ],
    )
    submit = SubmitField("Add colleague", widget=GovSubmitInput())


class DirectoryForm(Form):
    class Meta:
        csrf = False  # a GET search changes nothing

    q = StringField(
        "Search offers",
        widget=GovTextInput(),
        validators=[Length(max=100, message="Search for 100 characters or fewer")],
    )
    category = SelectField(
        "Kind of business", widget=GovSelect(), choices=[], validate_choice=False
    )
    ward = SelectField("Ward", widget=GovSelect(), choices=[], validate_choice=False)
    affordable = BooleanField(
        "Only offers I can get with my credits", widget=GovCheckboxInput(), default=False
    )
    submit = SubmitField("Search", widget=GovSubmitInput())


class RedemptionFilterForm(Form):
    class Meta:
        csrf = False  # a GET filter changes nothing

    since = DateField(
        "From", widget=GovDatePartsInput(), format="%d %m %Y", validators=[Optional()]
    )
    until = DateField("To", widget=GovDatePartsInput(), format="%d %m %Y", validators=[Optional()])
    offer = SelectField("Offer", widget=GovSelect(), choices=[], validate_choice=False)
    status = SelectField(
        "Status",
        widget=GovSelect(),
        choices=[
            SelectChoice("", "All"),
            SelectChoice("completed", "Completed"),
            SelectChoice("cancelled", "Cancelled"),
        ],
        validate_choice=False,
    )
    submit = SubmitField("Filter", widget=GovSubmitInput())


class SpendForm(Form):
    submit = SubmitField("Show my code", widget=GovSubmitInput())
