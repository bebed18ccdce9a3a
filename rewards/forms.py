"""Web forms of the wallet: giving credits, and council's community pots."""

from __future__ import annotations

from govuk_frontend_wtf.wtforms_widgets import (
    GovCharacterCount,
    GovRadioInput,
    GovSubmitInput,
    GovTextArea,
    GovTextInput,
)
from wtforms import HiddenField, IntegerField, RadioField, StringField, SubmitField
from wtforms.validators import InputRequired, Length, NumberRange, Optional

from core.forms import Form

#: The radio value meaning "a person, by email address".
TO_PERSON = "person"


class GiftForm(Form):
    to = RadioField(
        "Who do you want to give credits to?",
        widget=GovRadioInput(),
        choices=[],
        validators=[InputRequired(message="Select who you want to give credits to")],
    )
    email = StringField(
        "Their email address",
        widget=GovTextInput(),
        description="Only if you are giving to another resident",
        validators=[Optional(), Length(max=254, message="Email address is too long")],
    )
    amount = IntegerField(
        "How many credits?",
        widget=GovTextInput(),
        validators=[
            InputRequired(message="Enter how many credits to give, as a whole number"),
            NumberRange(min=1, max=10_000, message="Give at least 1 credit"),
        ],
    )
    message = StringField(
        "Message (optional)",
        widget=GovCharacterCount(),
        description="They will see it in their history",
        validators=[Optional(), Length(max=200, message="Message must be 200 characters or fewer")],
    )
    #: A fresh key each time the form is shown: a double-click gives once.
    idempotency_key = HiddenField(validators=[InputRequired(), Length(max=100)])
    submit = SubmitField("Give credits", widget=GovSubmitInput())


class PotForm(Form):
    name = StringField(
        "Name of the pot",
        widget=GovTextInput(),
        description="For example, Food bank or Youth club trips",
        validators=[
            InputRequired(message="Enter a name for the pot"),
            Length(max=100, message="Name must be 100 characters or fewer"),
        ],
    )
    description = StringField(
        "What the credits will be used for",
        widget=GovTextArea(),
        validators=[Optional(), Length(max=1000, message="Keep it to 1000 characters or fewer")],
    )
    submit = SubmitField("Create pot", widget=GovSubmitInput())
