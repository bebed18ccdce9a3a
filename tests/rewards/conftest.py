"""Fixtures of the ledger's tests: residents with wallets, a partner account, a pot."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.extensions import db
from core.models import Role
from core.timeutil import utcnow
from rewards import operations as ops


@pytest.fixture
def ctx(app):
    """An application context with a clean session, committed by the test where needed."""
    with app.app_context():
        yield
        db.session.rollback()
        db.session.remove()


@pytest.fixture
def resident(create_user):
    return create_user(Role.RESIDENT)


@pytest.fixture
def other_resident(create_user):
    return create_user(Role.RESIDENT)


@pytest.fixture
def partner(ctx):
    account = ops.partner_account("partner:1", "The Corner Café")
    db.session.commit()
    return account


def give(resident_id: int, amount: int, *, days: int = 365, key: str | None = None):
    """Earn ``amount`` credits expiring in ``days`` days (committed)."""
    transaction = ops.earn(
        resident_id,
        amount,
        idempotency_key=key or f"test-earn-{resident_id}-{amount}-{days}-{utcnow().timestamp()}",
        description="Litter pick, Roundhay Park",
        source="test",
        expires_at=utcnow() + timedelta(days=days),
    )
    db.session.commit()
    return transaction
