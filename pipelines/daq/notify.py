"""Telling people: email over SMTP, and a webhook (a JSON POST with a ``text`` field, as
Mattermost and Slack take it). Each raises NotifyError with what went wrong."""
from __future__ import annotations

import json
import smtplib
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage

from models import settings

# Seconds a mail server or a webhook may take before the notification counts as failed.
TIMEOUT = 15


class NotifyError(Exception):
    """A notification could not be delivered; the message says where and why."""


def email_configured() -> bool:
    """Whether alarms are emailed at all (DAQFLOW_SMTP_HOST)."""
    return bool(settings.SMTP_HOST.get())


def send_email(recipients: list[str], subject: str, body: str) -> None:
    """One email to ``recipients`` through DAQFLOW_SMTP_HOST (STARTTLS and login if set)."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = (
        settings.SMTP_FROM.get(), ", ".join(recipients), subject)
    message.set_content(body)
    host, port = settings.SMTP_HOST.get(), settings.SMTP_PORT.get()
    try:
        with smtplib.SMTP(host, port, timeout=TIMEOUT) as smtp:
            if settings.SMTP_STARTTLS.get():
                smtp.starttls(context=ssl.create_default_context())
            if settings.SMTP_USER.get():
                smtp.login(settings.SMTP_USER.get(), settings.SMTP_PASSWORD.get() or "")
            smtp.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:
        raise NotifyError(f"email via {host}:{port}: {exc}") from None


def webhook_configured() -> bool:
    """Whether alarms are posted to a webhook (DAQFLOW_ALARM_WEBHOOK_URL)."""
    return bool(settings.ALARM_WEBHOOK_URL.get())


def post_webhook(text: str) -> None:
    """POST ``{"text": text}`` to DAQFLOW_ALARM_WEBHOOK_URL; any answer but 2xx fails."""
    url = settings.ALARM_WEBHOOK_URL.get()
    request = urllib.request.Request(url, data=json.dumps({"text": text}).encode(),
                                     headers={"Content-Type": "application/json"},
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            response.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise NotifyError(f"webhook {url}: {exc}") from None
