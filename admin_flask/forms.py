"""Flask-WTF forms (every one carries a CSRF token). Choices that depend on scope are set by the view."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    DateTimeLocalField,
    FloatField,
    IntegerField,
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, EqualTo, Length, NumberRange, Optional, Regexp

from pooler.models.pools import DEFAULT_MAX_STREAMS_PER_ACCOUNT
from pooler.selection import STRATEGIES
from pooler.services.operators import MIN_PASSWORD_LENGTH
from pooler.states import OperatorRole

SLUG = Regexp(r"^[a-z0-9][a-z0-9-]{0,62}$", message="Lower-case letters, digits and dashes")


class ActionForm(FlaskForm):
    """Empty form for POST-only buttons (pause, revoke, ...): CSRF is all it carries."""


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])
    code = StringField("Authentication code", validators=[Optional(), Length(max=10)])


class BootstrapForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    display_name = StringField("Display name", validators=[Optional(), Length(max=200)])
    password = PasswordField("Password", validators=[DataRequired(), Length(min=MIN_PASSWORD_LENGTH, max=256)])
    confirm = PasswordField("Repeat password", validators=[EqualTo("password", message="Passwords differ")])


class PasswordForm(FlaskForm):
    current_password = PasswordField("Current password", validators=[DataRequired()])
    password = PasswordField("New password", validators=[DataRequired(), Length(min=MIN_PASSWORD_LENGTH, max=256)])
    confirm = PasswordField("Repeat new password", validators=[EqualTo("password", message="Passwords differ")])


class TotpEnableForm(FlaskForm):
    code = StringField("Code from your authenticator app", validators=[DataRequired(), Length(max=10)])


class PoolForm(FlaskForm):
    name = StringField("Name (slug)", validators=[DataRequired(), SLUG])
    label = StringField("Label", validators=[DataRequired(), Length(max=200)])
    strategy = SelectField("Strategy", choices=[(name, f"{name}: {s.label}") for name, s in STRATEGIES.items()])
    sticky_ttl_seconds = IntegerField("Sticky session TTL (s)", default=3600, validators=[NumberRange(0, 604800)])
    max_attempts = IntegerField("Max upstream attempts", default=3, validators=[NumberRange(1, 10)])
    primary_cap_percent = FloatField("5h window cap (%)", default=100.0, validators=[NumberRange(1, 100)])
    secondary_cap_percent = FloatField("Weekly window cap (%)", default=100.0, validators=[NumberRange(1, 100)])
    max_concurrency_per_account = IntegerField(
        "Max concurrent streams per account (empty = unlimited)",
        default=DEFAULT_MAX_STREAMS_PER_ACCOUNT,
        validators=[Optional(), NumberRange(1, 1000)],
    )
    allowed_models = TextAreaField("Allowed models (one per line, empty = all)", validators=[Length(max=4000)])
    time_zone = StringField("Time zone (IANA)", default="UTC", validators=[Optional(), Length(max=64)])


class ImportForm(FlaskForm):
    pool_id = SelectField("Target pool", coerce=int)
    label = StringField("Label (optional)", validators=[Optional(), Length(max=200)])
    auth_json = TextAreaField("Paste auth.json", validators=[Optional()])
    upload = FileField("…or upload auth.json")


class ReplaceAuthForm(FlaskForm):
    auth_json = TextAreaField("Paste auth.json", validators=[Optional()])
    upload = FileField("…or upload auth.json")


class RenameForm(FlaskForm):
    label = StringField("Label", validators=[DataRequired(), Length(max=200)])


class AssignForm(FlaskForm):
    pool_id = SelectField("Pool", coerce=int)
    priority = IntegerField("Priority (lower first)", default=100, validators=[NumberRange(0, 10000)])


SHARE_LABEL = "Quota share (% of the pool's 5h and weekly capacity, empty = none)"
BUDGETS_LABEL = "Budgets (one per line: PERIOD:UNIT:HARD[:SOFT], e.g. day:tokens:200000 or month:usd:50:40)"


class KeyForm(FlaskForm):
    pool_id = SelectField("Pool", coerce=int)
    label = StringField("Label", validators=[DataRequired(), Length(max=200)])
    expires_at = DateTimeLocalField("Expires (UTC, optional)", format="%Y-%m-%dT%H:%M", validators=[Optional()])
    allowed_models = TextAreaField("Allowed models (one per line, empty = pool default)")
    requests_per_minute = IntegerField("Requests per minute", validators=[Optional(), NumberRange(1, 100000)])
    tokens_per_day = IntegerField("Tokens per day", validators=[Optional(), NumberRange(1, 10**12)])
    budgets = TextAreaField(BUDGETS_LABEL, validators=[Length(max=400)])
    share_percent = FloatField(SHARE_LABEL, validators=[Optional(), NumberRange(0.01, 100)])
    share_team = StringField("Share team (keys of a team share one measure)", validators=[Optional(), Length(max=64)])
    share_pacing = BooleanField("Pace the weekly share over the week's days")


class BudgetsForm(FlaskForm):
    """A key's spend limits: budgets and quota share."""

    budgets = TextAreaField(BUDGETS_LABEL, validators=[Length(max=400)])
    share_percent = FloatField(SHARE_LABEL, validators=[Optional(), NumberRange(0.01, 100)])
    share_team = StringField("Share team", validators=[Optional(), Length(max=64)])
    share_pacing = BooleanField("Paced")


class OperatorForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    display_name = StringField("Display name", validators=[Optional(), Length(max=200)])
    password = PasswordField("Initial password", validators=[DataRequired(), Length(min=MIN_PASSWORD_LENGTH, max=256)])
    role = SelectField("Role", choices=[(r.value, r.value) for r in OperatorRole], default="viewer")
    pool_ids = SelectMultipleField("Pools (admins only)", coerce=int)


class OperatorEditForm(FlaskForm):
    role = SelectField("Role", choices=[(r.value, r.value) for r in OperatorRole])
    pool_ids = SelectMultipleField("Pools (admins only)", coerce=int)
    disabled = BooleanField("Disabled")


def lines(text: str | None) -> list[str] | None:
    """A textarea of one item per line → a list, or None when empty."""
    items = [line.strip() for line in (text or "").replace(",", "\n").splitlines() if line.strip()]
    return items or None
