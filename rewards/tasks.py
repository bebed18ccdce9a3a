"""Scheduled jobs of the credits bank (beat runs them; see core/celery_app.py)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="rewards.tasks.expire_credits")
def expire_credits() -> int:
    """Expire what is left of lots past their date. Safe to run twice or in two workers."""
    from rewards.expiry import expire_due_lots

    return expire_due_lots().lots_expired


@shared_task(name="rewards.tasks.send_expiry_reminders", bind=True)
def send_expiry_reminders(self) -> int:
    """Queue reminders for credits about to expire, then ask for the outbox to be sent."""
    from rewards.expiry import send_expiry_reminders as remind

    emails = remind().emails
    if emails:
        # Through this task's own Celery app (not the process's "current" one).
        self.app.tasks["core.mail.send_outbox"].delay()
    return emails
