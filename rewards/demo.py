"""Demo data of the ledger: the demo resident's credits, in two lots, with a short history.

Idempotent: each movement has a fixed idempotency key and is skipped once it exists, so
loading again (on another day, with other dates) changes nothing.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from core.demo import demo_loader
from core.extensions import db
from core.timeutil import utcnow
from rewards import operations as ops
from rewards.models import Transaction

RESIDENT = "resident@example.org"


def once(idempotency_key: str, operation, *args, **kwargs) -> None:
    """Run the operation unless a transaction with this key exists already."""
    exists = db.session.execute(
        select(Transaction.id).where(Transaction.idempotency_key == idempotency_key)
    ).first()
    if not exists:
        operation(*args, idempotency_key=idempotency_key, **kwargs)


@demo_loader
def load_ledger_demo(users) -> None:
    """A food bank pot, and credits for the demo resident: one lot expiring soon."""
    pot = ops.community_pot("pot:food-bank", "Food bank", "Meals for families in Harehills")
    resident = users.get(RESIDENT)
    if resident is None:
        return
    now = utcnow()
    once(
        "demo:earn:litter-pick",
        ops.earn,
        resident.id,
        3,
        description="Litter pick, Roundhay Park",
        source="demo",
        expires_at=now + timedelta(days=25),
    )
    once(
        "demo:earn:lunch-club",
        ops.earn,
        resident.id,
        4,
        description="Lunch club, Chapeltown Community Centre",
        source="demo",
        expires_at=now + timedelta(days=330),
    )
    once(
        "demo:gift:food-bank",
        ops.gift,
        resident.id,
        pot.id,
        1,
        description="For the winter appeal",
    )
