"""Read-only figures about partners' settlements, for the council's reports.

Kept apart from ``partners.settlement`` (the state machine and the payment runs) so that
reports depend only on what a settlement *is*, not on how it moves. A period is
``[start, end)`` in UTC.

**Paid to partners** is money the scheme actually paid out: settlements whose status is
``paid``, dated by ``paid_at``. A settlement that is pending, sent, failed or cancelled is
not paid; one paid and later reversed by Stripe is ``failed`` again, so it no longer
counts.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from core.extensions import db
from partners.settlement import Settlement, SettlementStatus

PAID = SettlementStatus.PAID.value


def paid_settlements(start: datetime, end: datetime):
    """A select of the settlements paid in ``[start, end)``: partner, time paid, pence."""
    return select(Settlement.partner_id, Settlement.paid_at, Settlement.amount_pence).where(
        Settlement.status == PAID,
        Settlement.paid_at >= start,
        Settlement.paid_at < end,
    )


def paid_in_period(start: datetime, end: datetime) -> int:
    """Pence paid to partners by settlements paid in ``[start, end)``."""
    paid = paid_settlements(start, end).subquery()
    total = db.session.execute(select(func.coalesce(func.sum(paid.c.amount_pence), 0)))
    return int(total.scalar_one())


def paid_by_partner(start: datetime, end: datetime) -> dict[int, int]:
    """Pence paid to each partner (by id) by settlements paid in ``[start, end)``."""
    paid = paid_settlements(start, end).subquery()
    rows = db.session.execute(
        select(paid.c.partner_id, func.sum(paid.c.amount_pence)).group_by(paid.c.partner_id)
    )
    return {partner_id: int(pence or 0) for partner_id, pence in rows}
