"""Fixtures for partners tests: an approved partner with staff and offers, and residents
with credits, all made through the operations."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import count

import pytest

from core.extensions import db
from core.models import Role, User


@dataclass
class Shop:
    """An approved partner, a member of its staff, a council officer and an offer."""

    partner_id: int
    staff: object
    council: object
    offer_id: int


@pytest.fixture
def make_partner(app, create_user):
    """``make_partner(name=..., staff=None, approve=True, offers=[(title, cost, extra)])``."""
    from partners import operations as ops
    from partners.models import PartnerStatus

    council = create_user(Role.COUNCIL)
    numbers = count(1)

    def make(name="The Corner Café", *, staff=None, approve=True, offers=(("Coffee", 2),), **extra):
        staff = staff or create_user(Role.PARTNER_STAFF, name=f"Sam Staff{next(numbers)}")
        with app.app_context():
            person = db.session.get(User, staff.id)
            partner = ops.register_partner(
                person,
                name=name,
                address="1 High Street, Leeds LS8 2HE",
                category=extra.pop("category", "Café"),
                ward=extra.pop("ward", "Roundhay"),
            )
            if approve:
                ops.decide_partner(
                    db.session.get(User, council.id), partner, PartnerStatus.APPROVED
                )
            offer_ids = []
            for title, cost, *more in offers:
                fields = ops.OfferFields(title=title, credit_cost=cost, **(more[0] if more else {}))
                offer_ids.append(ops.create_offer(person, partner, fields).id)
            db.session.commit()
            shop = Shop(partner.id, staff, council, offer_ids[0] if offer_ids else None)
            shop.offer_ids = offer_ids
            db.session.remove()
        return shop

    return make


@pytest.fixture
def shop(make_partner):
    """The Corner Café, approved, with a coffee for 2 credits."""
    return make_partner()


@pytest.fixture
def give_credits(app):
    """``give_credits(user, amount, expires_at=None)`` posts an earn to the user's wallet."""
    from rewards import operations as ledger

    keys = count(1)

    def give(user, amount, expires_at=None):
        with app.app_context():
            ledger.earn(
                user.id,
                amount,
                idempotency_key=f"test-earn-{user.id}-{next(keys)}",
                description="Litter pick",
                expires_at=expires_at,
            )
            db.session.commit()
            db.session.remove()

    return give


@pytest.fixture
def balance_of(app):
    """``balance_of(user)``: the resident's balance from the ledger."""
    from rewards import operations as ledger

    def balance(user) -> int:
        with app.app_context():
            value = ledger.wallet_of(user.id).balance
            db.session.rollback()
            db.session.remove()
        return value

    return balance


@pytest.fixture
def resident(create_user, give_credits):
    """Robin, a resident with 10 credits."""
    user = create_user(Role.RESIDENT, name="Robin Resident")
    give_credits(user, 10)
    return user


@pytest.fixture
def new_code(api):
    """``new_code(resident)``: a fresh redemption code for the resident (through the API)."""

    def make(user) -> str:
        response = api.post("/api/v1/wallet/redemption-codes", api.token(user), json={})
        assert response.status_code == 201, response.get_json()
        return response.get_json()["code"]

    return make
