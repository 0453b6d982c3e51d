"""Forms of the onboarding (OAuth link/relink) and invite pages. Every one carries a CSRF token."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import IntegerField, RadioField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, NumberRange

METHODS = [("browser", "Browser (paste the callback URL)"), ("device", "Device code")]


class StartLinkForm(FlaskForm):
    pool_id = SelectField("Target pool", coerce=int)
    method = RadioField("Method", choices=METHODS, default="browser")


class StartRelinkForm(FlaskForm):
    method = RadioField("Method", choices=METHODS, default="browser")


class CallbackForm(FlaskForm):
    # Length is checked again by the validator; the field is never rendered back with its value.
    callback_url = TextAreaField("Callback URL from the browser's address bar", validators=[Length(max=8192)])


class InviteForm(FlaskForm):
    pool_id = SelectField("Pool", coerce=int)
    label = StringField("For whom (a note for operators)", validators=[DataRequired(), Length(max=200)])
    days = IntegerField("Valid for (days)", default=7, validators=[NumberRange(1, 30)])
