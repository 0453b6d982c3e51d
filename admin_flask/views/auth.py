"""Bootstrap (first owner), login/logout with rate limiting and TOTP, and the operator's own profile."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pyotp
from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for

from admin_flask import auditing, security, throttle
from admin_flask.db import core, get_db
from admin_flask.forms import BootstrapForm, LoginForm, PasswordForm, TotpEnableForm
from pooler.errors import PoolerError
from pooler.models import AdminSession, Operator
from pooler.services import admin_sessions
from pooler.services import operators as ops
from pooler.states import OperatorRole

PREFIX = ""
bp = Blueprint("auth", __name__)
# Outcomes that count against the client address (a TOTP prompt or a disabled operator is not guessing).
FAILURES = frozenset({ops.LoginOutcome.BAD_CREDENTIALS, ops.LoginOutcome.BAD_TOTP, ops.LoginOutcome.LOCKED})


def _safe_next(target: str | None) -> str:
    # Only same-site paths under /admin: never an open redirect.
    if target and target.startswith("/admin") and not urlsplit(target).netloc and "//" not in target:
        return target
    return url_for("dashboard.index")


@bp.route("/bootstrap", methods=["GET", "POST"])
def bootstrap() -> Any:
    db = get_db()
    if ops.operator_count(db) > 0:
        abort(404)
    form = BootstrapForm()
    if form.validate_on_submit():
        try:
            operator = ops.create_operator(
                db,
                username=form.username.data or "",
                password=form.password.data or "",
                role=OperatorRole.OWNER,
                display_name=form.display_name.data,
            )
        except PoolerError as exc:
            flash(str(exc), "error")
        else:
            # Re-check inside the transaction: two racing bootstraps must not both create an owner.
            if ops.operator_count(db) != 1:
                db.rollback()
                abort(404)
            auditing.record(
                "operator.bootstrap", "operator", operator.id, operator.username, actor_label=operator.username
            )
            db.commit()
            flash("Owner created. Sign in to continue.", "ok")
            return redirect(url_for("auth.login"))
    return render_template("auth/bootstrap.html", form=form)


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    db = get_db()
    if ops.operator_count(db) == 0:
        return redirect(url_for("auth.bootstrap"))
    form = LoginForm()
    if form.validate_on_submit():
        address = throttle.client_address()
        if throttle.blocked(db, address):
            # Checked before the password: a throttled address cannot extend an operator's lock.
            flash("Too many failed sign-ins from your address. Try again later.", "error")
            return render_template("auth/login.html", form=form), 429
        result = ops.authenticate(
            db,
            core().box,
            username=form.username.data or "",
            password=form.password.data or "",
            totp_code=form.code.data or None,
        )
        if result.outcome == ops.LoginOutcome.OK and result.operator is not None:
            security.log_in(result.operator)
            auditing.record(
                "operator.login",
                "operator",
                result.operator.id,
                result.operator.username,
                actor_label=result.operator.username,
            )
            db.commit()
            return redirect(_safe_next(request.args.get("next")))
        messages = {
            ops.LoginOutcome.BAD_CREDENTIALS: "Wrong username or password.",
            ops.LoginOutcome.BAD_TOTP: "Wrong authentication code.",
            ops.LoginOutcome.TOTP_REQUIRED: "Enter the code from your authenticator app.",
            ops.LoginOutcome.DISABLED: "This operator is disabled.",
            ops.LoginOutcome.LOCKED: "Too many failed sign-ins. Try again in a few minutes.",
        }
        if result.outcome in FAILURES:
            throttle.record_failure(db, address, form.username.data or "", result.outcome)
        if result.outcome == ops.LoginOutcome.LOCKED:
            auditing.record(
                "operator.login_locked",
                "operator",
                None,
                (form.username.data or "")[:64],
                outcome="failure",
                actor_label=(form.username.data or "")[:64],
            )
        db.commit()
        flash(messages[result.outcome], "error")
        status = 429 if result.outcome == ops.LoginOutcome.LOCKED else 401
        return render_template("auth/login.html", form=form, totp_step=True), status
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
def logout() -> Any:
    principal = g.get("principal")
    revoked = security.log_out()
    if principal is not None:
        auditing.record(
            "operator.logout",
            "operator",
            principal.id,
            principal.username,
            details={"sessions_revoked": revoked},
        )
    get_db().commit()
    return redirect(url_for("auth.login"))


def _me() -> Operator:
    principal = security.current()
    operator = get_db().get(Operator, principal.id)
    if operator is None:
        abort(404)
    return operator


def _my_session() -> AdminSession:
    row = security.current_session()
    if row is None:
        abort(401)
    return row


@bp.route("/profile", methods=["GET"])
def profile() -> Any:
    if g.get("principal") is None:
        return redirect(url_for("auth.login"))
    return render_template(
        "auth/profile.html",
        operator=_me(),
        password_form=PasswordForm(),
        totp_form=TotpEnableForm(),
        pending=_pending_totp(),
        sessions=admin_sessions.live_sessions(get_db(), security.current().id),
        this_session=_my_session().id,
    )


def _pending_totp() -> dict[str, str] | None:
    seed = admin_sessions.pending_totp(core().box, _my_session())
    if not seed:
        return None
    uri = pyotp.TOTP(seed).provisioning_uri(name=security.current().username, issuer_name="Codex Pooler")
    return {"seed": seed, "uri": uri}


@bp.route("/profile/password", methods=["POST"])
def change_password() -> Any:
    operator = _me()
    form = PasswordForm()
    if not form.validate_on_submit():
        for errors in form.errors.values():
            flash("; ".join(errors), "error")
    elif not ops.verify_password(operator.password_hash, form.current_password.data or ""):
        flash("The current password is wrong.", "error")
    else:
        operator.password_hash = ops.hash_password(form.password.data or "")
        # Every session of this operator ends, this one included; this browser gets a fresh session (a new
        # token), so whoever holds a copy of any old cookie is out and the operator stays signed in.
        revoked = admin_sessions.revoke_operator(get_db(), operator.id)
        security.log_in(operator)
        auditing.record(
            "operator.password_change",
            "operator",
            operator.id,
            operator.username,
            details={"sessions_revoked": revoked},
        )
        get_db().commit()
        flash("Password changed. Every other session of yours was signed out.", "ok")
    return redirect(url_for("auth.profile"))


@bp.route("/profile/sessions/revoke-others", methods=["POST"])
def revoke_other_sessions() -> Any:
    operator = _me()
    revoked = admin_sessions.revoke_operator(get_db(), operator.id, keep=_my_session().id)
    auditing.record(
        "operator.sessions_revoke", "operator", operator.id, operator.username, details={"sessions_revoked": revoked}
    )
    get_db().commit()
    flash(f"Signed out {revoked} other session(s).", "ok")
    return redirect(url_for("auth.profile"))


@bp.route("/profile/totp/start", methods=["POST"])
def totp_start() -> Any:
    # The seed waits in this session's row, sealed in the secret box, until a code proves the authenticator
    # has it; only then is it sealed into the operator row. The cookie never carries it.
    _me()
    admin_sessions.set_pending_totp(core().box, _my_session(), ops.new_totp_seed())
    get_db().commit()
    return redirect(url_for("auth.profile"))


@bp.route("/profile/totp/confirm", methods=["POST"])
def totp_confirm() -> Any:
    operator = _me()
    form = TotpEnableForm()
    row = _my_session()
    seed = admin_sessions.pending_totp(core().box, row)
    if not seed or not form.validate_on_submit() or not ops.accept_totp(operator, seed, form.code.data or ""):
        flash("That code did not match. Check the clock of your device and try again.", "error")
        return redirect(url_for("auth.profile"))
    ops.set_totp_seed(core().box, operator, seed)
    admin_sessions.clear_pending_totp(row)
    auditing.record("operator.totp_enable", "operator", operator.id, operator.username)
    get_db().commit()
    flash("Two-factor authentication is on.", "ok")
    return redirect(url_for("auth.profile"))


@bp.route("/profile/totp/disable", methods=["POST"])
def totp_disable() -> Any:
    operator = _me()
    form = TotpEnableForm()
    seed = ops.totp_seed(core().box, operator)
    if seed is None or not form.validate_on_submit() or not ops.accept_totp(operator, seed, form.code.data or ""):
        flash("Enter a current code to turn two-factor authentication off.", "error")
        return redirect(url_for("auth.profile"))
    ops.clear_totp(operator)
    auditing.record("operator.totp_disable", "operator", operator.id, operator.username)
    get_db().commit()
    flash("Two-factor authentication is off.", "ok")
    return redirect(url_for("auth.profile"))
