"""The alert job: snapshot -> rules -> incidents -> queued notifications -> delivery with retries.

`evaluate_alerts(ctx, now)` is what the scheduler runs (its leader only, so one evaluator at a time). The
incident changes and their queued deliveries commit together; sending happens afterwards, one delivery per
short transaction, so a slow receiver never holds database locks. A delivery that fails with a temporary
error is retried on later runs with exponential backoff until MAX_ATTEMPTS.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pooler.alerts import email as email_channel
from pooler.alerts import message, webhook
from pooler.alerts.incidents import apply_signals
from pooler.alerts.rules import Thresholds, evaluate_rules
from pooler.alerts.snapshot import load_alert_snapshot
from pooler.alerts.webhook import SendResult
from pooler.context import CoreContext
from pooler.crypto.secretbox import SecretBox
from pooler.models import AlertDelivery, AlertIncident
from pooler.settings import get_number, get_setting

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
BACKOFF_BASE = dt.timedelta(seconds=30)
BACKOFF_CAP = dt.timedelta(hours=1)
BATCH = 100
"""Deliveries sent per run at most; the rest wait for the next run."""


def backoff(attempts: int) -> dt.timedelta:
    """30 s, 1 min, 2 min, ... capped at an hour (attempts counts the failures so far, from 1)."""
    factor: int = 1 << max(0, attempts - 1)
    return min(BACKOFF_CAP, BACKOFF_BASE * factor)


def load_thresholds(session: Session) -> Thresholds:
    return Thresholds(
        min_routable=int(get_number(session, "alert_min_routable_accounts")),
        quota_percent=float(get_number(session, "alert_quota_percent")),
        key_error_threshold=int(get_number(session, "alert_key_error_threshold")),
        key_error_window=dt.timedelta(minutes=float(get_number(session, "alert_key_error_window_minutes"))),
        job_failure_runs=int(get_number(session, "alert_job_failure_runs")),
    )


@dataclass(frozen=True)
class Channels:
    webhook_url: str | None
    webhook_secret: str | None
    smtp: email_channel.SmtpSettings | None

    def __repr__(self) -> str:  # keeps the webhook secret and SMTP password out of any log line
        return f"Channels(webhook={self.webhook_url is not None}, email={self.smtp is not None})"

    @property
    def names(self) -> tuple[str, ...]:
        return (("webhook",) if self.webhook_url else ()) + (("email",) if self.smtp else ())


def _text(session: Session, name: str) -> str | None:
    value = get_setting(session, name)
    return str(value).strip() or None if value is not None else None


def load_channels(session: Session, box: SecretBox | None, *, with_secrets: bool = True) -> Channels:
    """The configured channels; secrets are opened only when about to send (`with_secrets`)."""
    url = _text(session, "alert_webhook_url")
    secret = None
    if url and with_secrets and box is not None:
        raw = get_setting(session, "alert_webhook_secret", box)
        secret = str(raw) if raw else None
    smtp = None
    host = _text(session, "smtp_host")
    recipients = tuple(r.strip() for r in (_text(session, "alert_email_to") or "").split(",") if r.strip())
    if host and recipients:
        password = None
        if with_secrets and box is not None:
            raw_password = get_setting(session, "smtp_password", box)
            password = str(raw_password) if raw_password else None
        smtp = email_channel.SmtpSettings(
            host=host,
            port=int(get_number(session, "smtp_port")),
            sender=_text(session, "alert_email_from") or "pooler@localhost",
            recipients=recipients,
            username=_text(session, "smtp_username"),
            password=password,
            starttls=bool(get_setting(session, "smtp_starttls")),
        )
    return Channels(url, secret, smtp)


def evaluate(factory: sessionmaker[Session], now: dt.datetime) -> Counter[str]:
    """Runs the rules and reconciles incidents (one transaction); returns counts."""
    with factory.begin() as session:
        thresholds = load_thresholds(session)
        snapshot = load_alert_snapshot(session, thresholds, now)
        signals = evaluate_rules(snapshot, thresholds)
        cooldown = dt.timedelta(seconds=float(get_number(session, "alert_cooldown_seconds")))
        channels = load_channels(session, None, with_secrets=False).names
        transitions = apply_signals(session, signals, now, cooldown=cooldown, channels=channels)
    return Counter(
        signals=len(signals),
        opened=len(transitions.opened),
        escalated=len(transitions.escalated),
        resolved=len(transitions.resolved),
        queued=transitions.queued,
    )


def _send_one(
    delivery: AlertDelivery, incident: AlertIncident, channels: Channels, http: httpx.Client, now: dt.datetime
) -> SendResult:
    if delivery.channel == "webhook":
        if not channels.webhook_url:
            return SendResult(False, False, None, "not_configured")
        if not channels.webhook_secret:
            # Unsigned alerts could be forged by anyone who learns the receiver URL: refuse to send them.
            return SendResult(False, False, None, "webhook_secret_missing")
        body = message.body_bytes(message.payload(incident, delivery.event, delivery.id, now))
        return webhook.send(
            http,
            channels.webhook_url,
            channels.webhook_secret,
            body,
            event=f"incident.{delivery.event}",
            delivery_id=delivery.id,
            timestamp=int(now.timestamp()),
        )
    if delivery.channel == "email":
        if channels.smtp is None:
            return SendResult(False, False, None, "not_configured")
        mail = email_channel.build_message(
            channels.smtp,
            message.subject_line(incident, delivery.event),
            message.text(incident, delivery.event),
            delivery.id,
        )
        return email_channel.send(channels.smtp, mail)
    return SendResult(False, False, None, "unknown_channel")


def deliver_due(
    factory: sessionmaker[Session], box: SecretBox | None, http: httpx.Client, now: dt.datetime
) -> Counter[str]:
    counts: Counter[str] = Counter()
    with factory() as session:
        due = list(
            session.scalars(
                select(AlertDelivery.id)
                .where(AlertDelivery.status == "pending", AlertDelivery.next_attempt_at <= now)
                .order_by(AlertDelivery.id)
                .limit(BATCH)
            )
        )
        channels = load_channels(session, box) if due else Channels(None, None, None)
    for delivery_id in due:
        with factory() as session:
            delivery = session.get(AlertDelivery, delivery_id)
            incident = session.get(AlertIncident, delivery.incident_id) if delivery else None
            if delivery is None or incident is None or delivery.status != "pending":
                continue
            # The network call happens with no transaction open (the read above ended with the session).
            session.rollback()
            result = _send_one(delivery, incident, channels, http, now)
        with factory.begin() as session:
            row = session.get(AlertDelivery, delivery_id)
            if row is None:
                continue
            row.attempts += 1
            row.last_status_code = result.status_code
            row.last_error = result.error
            if result.ok:
                row.status, row.delivered_at, row.next_attempt_at = "delivered", now, None
                counts["delivered"] += 1
            elif result.retry and row.attempts < MAX_ATTEMPTS:
                row.next_attempt_at = now + backoff(row.attempts)
                counts["retrying"] += 1
            else:
                row.status, row.next_attempt_at = "failed", None
                counts["failed"] += 1
                log.warning(
                    "alert delivery %s (%s) gave up after %s attempts: %s",
                    delivery_id,
                    row.channel,
                    row.attempts,
                    result.error,
                )
    return counts


def run(
    factory: sessionmaker[Session], box: SecretBox | None, now: dt.datetime, http: httpx.Client | None = None
) -> dict[str, int]:
    counts = evaluate(factory, now)
    own_client = http is None
    client = http or httpx.Client(follow_redirects=False)
    try:
        counts.update(deliver_due(factory, box, client, now))
    finally:
        if own_client:
            client.close()
    return dict(counts)


def evaluate_alerts(ctx: CoreContext, now: dt.datetime, http: httpx.Client | None = None) -> dict[str, int]:
    """The scheduler job. Counts: signals, opened, escalated, resolved, queued, delivered, retrying, failed."""
    return run(ctx.session_factory, ctx.box, now, http)
