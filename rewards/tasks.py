"""Scheduled jobs of the credits bank (beat runs them; see core/celery_app.py)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="rewards.tasks.expire_credits")
def expire_credits() -> int:
    """Expire what is left of lots past their date. Safe to run twice or in two workers."""
    from rewards.expiry import expire_due_lots

    return expire_due_lots().lots_expired


@shared_task(name="rewards.tasks.send_expiry_reminders")
def send_expiry_reminders() -> int:
    """Queue reminders for credits about to expire, then send the outbox."""
    from core.mail import send_outbox_task
    from rewards.expiry import send_expiry_reminders as remind

    emails = remind().emails
    if emails:
        send_outbox_task.delay()
    return emails
