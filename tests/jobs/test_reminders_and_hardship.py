"""Reminders before credits expire (once per lot and threshold, through the outbox, over a
real local SMTP server), and council's hardship extension (audited)."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest
from sqlalchemy import select

from core.extensions import db
from core.mail import OutboxMessage
from core.models import AuditEntry
from core.timeutil import utcnow
from rewards.expiry import ExpiryReminder
from rewards.models import CreditLot
from tests.conftest import post_form, sign_in


def remind(world, now=None):
    from rewards.expiry import send_expiry_reminders

    return world.run(send_expiry_reminders, now)


def outbox(world) -> list[OutboxMessage]:
    with world.app.app_context():
        rows = list(db.session.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars())
        db.session.expunge_all()
        db.session.remove()
    return rows


def test_reminded_30_then_7_days_before_once_per_lot_and_threshold(world):
    robin = world.resident("Robin")
    now = utcnow()
    world.earn(robin, 5, expires_at=now + timedelta(days=20))
    world.earn(robin, 9, expires_at=now + timedelta(days=200))  # not soon

    assert remind(world, now).emails == 1
    assert remind(world, now + timedelta(hours=1)).emails == 0
    assert remind(world, now + timedelta(days=10)).emails == 0  # 10 days left: none due
    assert remind(world, now + timedelta(days=14)).emails == 1  # 6 days left: the 7-day one
    assert remind(world, now + timedelta(days=15)).emails == 0

    first, second = outbox(world)
    assert first.to == robin.email and "5 time credits expire in 20 days" in first.subject
    assert "Hello Robin" in first.body and "5 credits on" in first.body
    assert "expire in 6 days" in second.subject
    assert world.count(ExpiryReminder) == 2


def test_a_lot_already_inside_both_thresholds_gets_one_email(world):
    sam = world.resident()
    world.earn(sam, 3, expires_at=utcnow() + timedelta(days=5))
    assert remind(world).emails == 1
    assert world.count(ExpiryReminder) == 2  # both thresholds done
    assert remind(world).emails == 0


def test_one_email_per_resident_names_every_lot_due(world):
    alex = world.resident()
    now = utcnow()
    world.earn(alex, 2, expires_at=now + timedelta(days=25))
    world.earn(alex, 4, expires_at=now + timedelta(days=28))
    report = remind(world, now)
    assert (report.emails, report.lots) == (1, 2)
    (message,) = outbox(world)
    assert "6 time credits" in message.subject


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp_server(app):
    """A real SMTP server on 127.0.0.1 (aiosmtpd); the app sends to it."""
    from aiosmtpd.controller import Controller

    class Inbox:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            self.messages.append(envelope)
            return "250 Message accepted for delivery"

    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    saved = {key: app.config.get(key) for key in ("MAIL_SERVER", "MAIL_PORT")}
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=port)
    try:
        yield inbox
    finally:
        app.config.update(saved)
        controller.stop()


def test_the_reminder_task_sends_through_the_outbox_over_smtp(app, world, smtp_server):
    robin = world.resident("Robin")
    world.earn(robin, 7, expires_at=utcnow() + timedelta(days=6))

    task = app.extensions["celery"].tasks["rewards.tasks.send_expiry_reminders"]
    assert task.apply().get() == 1

    (envelope,) = smtp_server.messages
    assert envelope.rcpt_tos == [robin.email]
    assert b"7 time credits expire in 5 days" in envelope.content
    (row,) = outbox(world)
    assert row.sent_at is not None
    assert task.apply().get() == 0 and len(smtp_server.messages) == 1


# --------------------------------------------------------------------------- hardship


def test_council_extends_a_residents_credits_with_a_reason(world, client):
    robin = world.resident()
    now = utcnow()
    soon = world.earn(robin, 5, expires_at=now + timedelta(days=3))
    overdue = world.earn(robin, 2, expires_at=now - timedelta(hours=2))  # job not run yet
    remind(world, now)
    assert world.count(ExpiryReminder) == 2

    sign_in(client, world.council)
    response = post_form(
        client,
        f"/council/residents/{robin.id}/extend-credits",
        {"days": "60", "reason": "In hospital for six weeks"},
    )

    assert response.status_code == 302
    with world.app.app_context():
        dates = dict(db.session.execute(select(CreditLot.id, CreditLot.expires_at)).all())
        audit = db.session.execute(
            select(AuditEntry).where(AuditEntry.action == "credits.extended")
        ).scalar_one()
        assert audit.reason == "In hospital for six weeks"
        assert audit.actor_id == world.council.id and audit.subject == f"user:{robin.id}"
        db.session.remove()
    assert dates[soon] - (now + timedelta(days=63)) < timedelta(seconds=1)
    assert dates[overdue] > now + timedelta(days=59)
    assert world.count(ExpiryReminder) == 0  # reminded again before the new dates

    # The wallet shows the new dates; the expiry job leaves them alone.
    from rewards.expiry import expire_due_lots

    assert world.run(expire_due_lots).lots_expired == 0
    wallet = client.application.test_client()
    sign_in(wallet, robin)
    page = wallet.get("/wallet").get_data(as_text=True)
    assert str((now + timedelta(days=63)).year) in page


def test_an_extension_needs_a_reason_and_sensible_days(world, client):
    robin = world.resident()
    world.earn(robin, 5, expires_at=utcnow() + timedelta(days=3))
    sign_in(client, world.council)
    url = f"/council/residents/{robin.id}/extend-credits"
    no_reason = post_form(client, url, {"days": "30", "reason": ""})
    assert no_reason.status_code == 400 and "Enter a reason" in no_reason.get_data(as_text=True)
    silly = post_form(client, url, {"days": "abc", "reason": "x"})
    assert silly.status_code == 400
    too_long = post_form(client, url, {"days": "5000", "reason": "x"})
    assert too_long.status_code == 400
    assert world.count(AuditEntry, AuditEntry.action == "credits.extended") == 0


def test_residents_and_partner_staff_cannot_extend(world, client, create_user):
    from core.models import Role

    robin = world.resident()
    sign_in(client, create_user(Role.PARTNER_STAFF))
    assert client.get(f"/council/residents/{robin.id}/extend-credits").status_code == 403
