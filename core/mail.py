"""Email through an outbox: queued in the same transaction as the change it reports.

``queue_email`` only adds an ``OutboxMessage`` row, so an email is sent if and only if the
change that caused it was committed. The ``core.mail.send_outbox`` task (run by beat every
minute, or by hand) sends unsent rows over SMTP when MAIL_SERVER is set, and writes them to
the log otherwise (the embedded default: no mail server needed to try the scheme).
Sending twice is avoided by marking each row sent in its own commit, with rows locked
(``SKIP LOCKED`` on PostgreSQL) so two workers never pick the same row.
"""

from __future__ import annotations

import logging
import smtplib
from datetime import datetime
from email.message import EmailMessage

from celery import shared_task
from flask import current_app
from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.extensions import db
from core.timeutil import UTCDateTime, utcnow

log = logging.getLogger(__name__)

#: A row is tried this many times before it is left for a person to look at.
MAX_ATTEMPTS = 5


class OutboxMessage(db.Model):
    """One email to send (or sent)."""

    __tablename__ = "outbox_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The recipient's address.
    to: Mapped[str] = mapped_column(String(254))
    #: Subject line and plain-text body.
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    #: When it was queued, and when it was sent (None until then).
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    #: Failed sending attempts so far, and the last failure.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


def queue_email(to: str, subject: str, body: str) -> OutboxMessage:
    """Add an email to the outbox in the current transaction (sent after it commits)."""
    message = OutboxMessage(to=to, subject=subject[:200], body=body)
    db.session.add(message)
    return message


def deliver(message: OutboxMessage) -> None:
    """Send one message over SMTP, or log it when no MAIL_SERVER is configured."""
    config = current_app.config
    if not config.get("MAIL_SERVER"):
        log.info(
            "Email (no MAIL_SERVER set) to %s: %s\n%s", message.to, message.subject, message.body
        )
        return
    email = EmailMessage()
    email["From"] = config["MAIL_DEFAULT_SENDER"]
    email["To"] = message.to
    email["Subject"] = message.subject
    email.set_content(message.body)
    with smtplib.SMTP(config["MAIL_SERVER"], int(config.get("MAIL_PORT") or 25), timeout=30) as s:
        s.send_message(email)


def send_outbox(limit: int = 100) -> int:
    """Send up to ``limit`` unsent messages; return how many were sent."""
    query = (
        db.select(OutboxMessage)
        .where(OutboxMessage.sent_at.is_(None), OutboxMessage.attempts < MAX_ATTEMPTS)
        .order_by(OutboxMessage.id)
        .limit(limit)
    )
    if db.engine.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    sent = 0
    for message in db.session.execute(query).scalars().all():
        try:
            deliver(message)
        except (OSError, smtplib.SMTPException) as error:
            message.attempts += 1
            message.last_error = str(error)[:1000]
            log.warning("Email %s to %s not sent: %s", message.id, message.to, error)
        else:
            message.sent_at = utcnow()
            sent += 1
    db.session.commit()
    return sent


@shared_task(name="core.mail.send_outbox")
def send_outbox_task() -> int:
    """Send what is waiting in the outbox. Safe to run twice or in two workers at once."""
    return send_outbox()
