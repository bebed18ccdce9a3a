"""Scheduled volunteering jobs: closing missed check-outs, and the organisers' digest."""

from __future__ import annotations

from celery import shared_task

from core.extensions import db
from volunteering import operations


@shared_task(name="volunteering.tasks.close_missed_checkouts")
def close_missed_checkouts() -> int:
    """Close attendances left open after their session, flag their claims. Safe to rerun."""
    closed = operations.close_missed_checkouts()
    db.session.commit()
    return len(closed)


@shared_task(name="volunteering.tasks.send_missed_checkout_digests")
def send_missed_checkout_digests() -> int:
    """Queue each organiser's daily digest of auto-closed attendances. Safe to rerun."""
    sent = operations.send_missed_checkout_digests()
    db.session.commit()
    return sent
