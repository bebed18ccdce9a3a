"""Fixtures of the jobs' tests: residents with lots, partners with redemptions, all made
through the operations of rewards/ and partners/ and committed (the jobs commit too)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import count

import pytest
from sqlalchemy import func, select, update

from core.extensions import db
from core.models import Role, User
from core.timeutil import utcnow


@dataclass
class Shop:
    partner_id: int
    staff_id: int
    offer_id: int


class World:
    """Builds what a job test needs; every method commits and leaves no session behind."""

    def __init__(self, app, create_user):
        self.app = app
        self.create_user = create_user
        self.keys = count(1)
        self.council = create_user(Role.COUNCIL, name="Casey Council")

    def resident(self, name=None):
        return self.create_user(Role.RESIDENT, name=name)

    def earn(self, user, amount: int, *, expires_at: datetime | None = None) -> int:
        """Give ``user`` a lot of ``amount`` credits; return the lot's id."""
        from rewards import operations as ledger
        from rewards.models import CreditLot

        with self.app.app_context():
            transaction = ledger.earn(
                user.id,
                amount,
                idempotency_key=f"jobs-earn-{next(self.keys)}",
                description="Litter pick",
                expires_at=expires_at,
            )
            lot_id = db.session.execute(
                select(CreditLot.id).where(CreditLot.created_by_id == transaction.id)
            ).scalar_one()
            db.session.commit()
            db.session.remove()
        return lot_id

    def shop(self, name="The Corner Café", *, rate: int = 100, cost: int = 2) -> Shop:
        """An approved partner with one offer costing ``cost`` credits, paid ``rate`` p/credit."""
        from partners import operations as ops
        from partners.models import PartnerStatus

        staff = self.create_user(Role.PARTNER_STAFF, name=f"Staff {next(self.keys)}")
        with self.app.app_context():
            person = db.session.get(User, staff.id)
            partner = ops.register_partner(
                person, name=name, address="1 High Street", category="Café", ward="Roundhay"
            )
            council = db.session.get(User, self.council.id)
            ops.decide_partner(council, partner, PartnerStatus.APPROVED)
            ops.set_settlement_rate(council, partner, rate)
            offer = ops.create_offer(
                person, partner, ops.OfferFields(title="Coffee", credit_cost=cost)
            )
            db.session.commit()
            made = Shop(partner.id, staff.id, offer.id)
            db.session.remove()
        return made

    def redeem(self, shop: Shop, resident, *, at: datetime | None = None) -> int:
        """``resident`` takes the shop's offer (credits given first); return the redemption id."""
        from partners import operations as ops
        from partners.models import Redemption

        with self.app.app_context():
            offer_cost = ops.get_offer_for_till(
                db.session.get(User, shop.staff_id), shop.offer_id
            ).credit_cost
            db.session.rollback()
        self.earn(resident, offer_cost)
        with self.app.app_context():
            code, _row = ops.issue_code(db.session.get(User, resident.id))
            redemption, _created = ops.redeem(
                db.session.get(User, shop.staff_id),
                code=code,
                offer_id=shop.offer_id,
                idempotency_key=f"till-{next(self.keys)}",
            )
            if at is not None:
                db.session.execute(
                    update(Redemption).where(Redemption.id == redemption.id).values(created_at=at)
                )
            db.session.commit()
            rid = redemption.id
            db.session.remove()
        return rid

    def scalar(self, query):
        with self.app.app_context():
            value = db.session.execute(query).scalar()
            db.session.remove()
        return value

    def count(self, model, *conditions) -> int:
        return self.scalar(select(func.count()).select_from(model).where(*conditions))

    def run(self, function, *args, **kwargs):
        """Call ``function`` in a fresh app context (jobs commit themselves)."""
        with self.app.app_context():
            try:
                return function(*args, **kwargs)
            finally:
                db.session.rollback()
                db.session.remove()


@pytest.fixture
def world(app, create_user) -> World:
    return World(app, create_user)


@pytest.fixture
def past():
    """A moment well in the past (so lots made with it are due)."""
    return utcnow() - timedelta(days=3)
