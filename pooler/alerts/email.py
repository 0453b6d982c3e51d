"""Alert email over SMTP (optional STARTTLS and login); settings come from the DB catalogue."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage

from pooler.alerts.webhook import SendResult

TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    username: str | None = None
    password: str | None = None
    starttls: bool = True

    def __repr__(self) -> str:  # the password must never reach a log line or traceback
        return f"SmtpSettings(host={self.host!r}, port={self.port}, recipients={len(self.recipients)})"


def build_message(settings: SmtpSettings, subject: str, text: str, delivery_id: int) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.sender
    message["To"] = ", ".join(settings.recipients)
    message["Subject"] = subject
    message["X-Pooler-Delivery"] = str(delivery_id)
    message.set_content(text)
    return message


def send(settings: SmtpSettings, message: EmailMessage) -> SendResult:
    try:
        with smtplib.SMTP(settings.host, settings.port, timeout=TIMEOUT_SECONDS) as smtp:
            if settings.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if settings.username:
                smtp.login(settings.username, settings.password or "")
            smtp.send_message(message)
    except smtplib.SMTPResponseException as exc:
        # 5xx replies are permanent (bad recipient, auth refused); 4xx are worth another try.
        return SendResult(False, exc.smtp_code < 500, exc.smtp_code, f"smtp_{exc.smtp_code}")
    except (smtplib.SMTPException, OSError) as exc:
        return SendResult(False, True, None, type(exc).__name__[:64])
    return SendResult(True, False, None, None)
