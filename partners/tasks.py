"""Scheduled jobs of partners: settlement, payment and purging old redemption codes
(beat runs them; see core/celery_app.py)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="partners.tasks.settle_partners")
def settle_partners() -> int:
    """Make the last period's settlements, then pay them. Safe to run twice."""
    from partners.payments import pay_due_settlements
    from partners.settlement import create_settlements

    created = create_settlements().created
    pay_due_settlements()
    return len(created)


@shared_task(name="partners.tasks.pay_settlements")
def pay_settlements() -> int:
    """Pay what is due: new settlements and failed ones whose retry time has come."""
    from partners.payments import pay_due_settlements

    report = pay_due_settlements()
    return len(report.transfers)


@shared_task(name="partners.tasks.purge_redemption_codes")
def purge_redemption_codes() -> int:
    """Delete redemption codes long expired and never redeemed, in batches. Safe to rerun."""
    from partners.purge import purge_old_redemption_codes

    return purge_old_redemption_codes()
