"""Invites: operators create/revoke single-use invites for a pool; the invitee opens the public link
`/admin/invite/<token>`, is redirected to `/admin/invite/continue` (which shows nothing but the device-code
sign-in) and links their own account."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, Flask, abort, redirect, render_template, session, url_for

from admin_flask import auditing, scope, security
from admin_flask.db import core, get_db
from admin_flask.forms import ActionForm
from admin_flask.forms_onboarding import InviteForm
from admin_flask.views.onboarding import browser_binding, error_context, operator_scope
from pooler.errors import NotFoundError
from pooler.models import OAuthInvite, Pool, UpstreamAccount, utcnow
from pooler.onboarding import flows, invites
from pooler.onboarding.errors import OnboardingError
from pooler.onboarding.priming import prime_account
from pooler.onboarding.types import LinkOutcome, Purpose, Requester
from pooler.services.refresh import make_http_client
from pooler.states import InviteStatus

PREFIX = "/invites"
PUBLIC_PREFIX = "/invite"
bp = Blueprint("invites", __name__)
public = Blueprint("invite_public", __name__)
FLOW_KEY = "invite_flows"
INVITE_KEY = "invite_id"
"""Session key: the invite this browser opened by its link (so later URLs need no token)."""


def register(app: Flask, url_prefix: str) -> None:
    app.register_blueprint(bp, url_prefix=url_prefix + PREFIX)
    app.register_blueprint(public, url_prefix=url_prefix + PUBLIC_PREFIX)


# ---- operator side ----------------------------------------------------------------------------------------


def _form() -> InviteForm:
    form = InviteForm()
    form.pool_id.choices = [(p.id, f"{p.label} ({p.name})") for p in scope.visible_pools(include_archived=False)]
    return form


def _rows() -> list[dict[str, Any]]:
    db, now = get_db(), utcnow()
    rows = []
    for invite in invites.list_invites(db, operator_scope()):
        if not security.current().sees_pool(invite.pool_id):
            continue
        pool = db.get(Pool, invite.pool_id)
        account = db.get(UpstreamAccount, invite.account_id) if invite.account_id else None
        rows.append(
            {"invite": invite, "status": invites.effective_status(invite, now), "pool": pool, "account": account}
        )
    return rows


@bp.route("/")
def index() -> Any:
    return render_template("invites/index.html", rows=_rows(), form=_form(), action=ActionForm())


@bp.route("/create", methods=["POST"])
def create() -> Any:
    form = _form()
    if not form.validate_on_submit():
        return render_template("invites/index.html", rows=_rows(), form=form, action=ActionForm()), 400
    db = get_db()
    scope.pool_or_404(form.pool_id.data or 0)
    try:
        invite, token = invites.create_invite(
            db,
            core().hasher,
            operator=operator_scope(),
            pool_id=form.pool_id.data or 0,
            label=form.label.data or "",
            actor=auditing.actor(),
            ttl=dt.timedelta(days=form.days.data or 7),
        )
    except OnboardingError as exc:
        db.rollback()
        return render_template(
            "invites/index.html", rows=_rows(), form=form, action=ActionForm(), error=error_context(exc)
        ), 400
    db.commit()
    # Shown once: only the hash is stored, so this page is the only place the link ever appears.
    link = url_for("invite_public.show", token=token, _external=True)
    return render_template("invites/created.html", invite=invite, link=link)


@bp.route("/<int:invite_id>/revoke", methods=["POST"])
def revoke(invite_id: int) -> Any:
    db = get_db()
    try:
        invites.revoke_invite(db, operator_scope(), invite_id, actor=auditing.actor())
    except NotFoundError:
        abort(404)
    db.commit()
    return redirect(url_for("invites.index"))


# ---- public side (no login) -------------------------------------------------------------------------------
# The token is in the link's path, and request lines (gunicorn at DEBUG, proxies) log paths. So the token URL is
# visited once: it validates the token, puts the invite id in this browser's signed session and redirects to
# token-free URLs (/invite/continue...). The token then appears in exactly one request line.


def _invite_by_token(token: str) -> OAuthInvite:
    invite = invites.find_usable_invite(get_db(), core().hasher, token)
    if invite is None:
        # One answer for unknown, used, revoked and expired: the page reveals nothing about other invites.
        abort(404)
    return invite


def _current_invite() -> OAuthInvite:
    """The invite this browser opened by its link; 404 (the same page as a bad link) once it is no longer usable."""
    invite_id = session.get(INVITE_KEY)
    invite = get_db().get(OAuthInvite, invite_id) if isinstance(invite_id, int) else None
    if invite is None or invites.effective_status(invite, utcnow()) != InviteStatus.PENDING:
        abort(404)
    return invite


def _invitee(invite: OAuthInvite) -> Requester:
    return Requester(None, browser_binding(), invite.id)


@public.route("/<token>")
def show(token: str) -> Any:
    invite = _invite_by_token(token)
    session[INVITE_KEY] = invite.id
    return redirect(url_for("invite_public.resume"))


@public.route("/continue")
def resume() -> Any:
    invite = _current_invite()
    flow_id = (session.get(FLOW_KEY) or {}).get(str(invite.id))
    view = None
    if isinstance(flow_id, int):
        db, ctx = get_db(), core()
        try:
            view = flows.describe_flow(
                db, ctx.box, ctx.hasher, flows.load_oauth_config(db), flow_id=flow_id, requester=_invitee(invite)
            )
        except NotFoundError:
            view = None
    return render_template("invites/public.html", view=view, action=ActionForm(), error=None)


@public.route("/continue/start", methods=["POST"])
def start() -> Any:
    invite = _current_invite()
    db, ctx = get_db(), core()
    try:
        with make_http_client() as http:
            started = flows.start_device_flow(
                db,
                ctx.box,
                ctx.hasher,
                http,
                flows.load_oauth_config(db),
                operator=None,
                binding=browser_binding(),
                purpose=Purpose.INVITE,
                pool_id=None,
                invite=invite,
            )
    except OnboardingError as exc:
        db.rollback()
        return render_template("invites/public.html", view=None, action=ActionForm(), error=error_context(exc)), 400
    db.commit()
    session[FLOW_KEY] = {**(session.get(FLOW_KEY) or {}), str(invite.id): started.flow_id}
    return redirect(url_for("invite_public.resume"))


@public.route("/continue/poll/<int:flow_id>", methods=["POST"])
def poll(flow_id: int) -> Any:
    invite = _current_invite()
    db, ctx = get_db(), core()
    try:
        with make_http_client() as http:
            result = flows.poll_device_flow(
                db, ctx.box, ctx.hasher, http, flows.load_oauth_config(db), flow_id=flow_id, requester=_invitee(invite)
            )
    except NotFoundError:
        abort(404)
    except OnboardingError as exc:
        db.commit()
        return render_template("invites/public.html", view=None, action=ActionForm(), error=error_context(exc)), 400
    db.commit()
    if isinstance(result, LinkOutcome):
        with make_http_client() as http:
            prime_account(ctx.session_factory, ctx.box, http, result.account_id, actor_label=f"invite #{invite.id}")
        return render_template("invites/accepted.html")
    return redirect(url_for("invite_public.resume"))
