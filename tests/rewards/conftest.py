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
def other_app(app, make_app):
    """``other_app(**settings)``: ``make_app``, and afterwards the test app is Celery's
    current app again (creating an app makes its Celery app the thread's current one,
    which ``make_app`` alone does not undo: later tasks would run on our scratch app)."""
    made = []

    def make(**overrides):
        made.append(make_app(**overrides))
        return made[-1]

    yield make
    celery = app.extensions["celery"]
    celery.set_current()
    celery.set_default()
    for other in made:
        with other.app_context():
            db.engine.dispose()


@pytest.fixture
def resident(create_user):
    return create_user(Role.RESIDENT)


@pytest.fixture
def other_resident(create_user):
    return create_user(Role.RESIDENT)


@pytest.fixture
def partner(app):
    with app.app_context():
        account = ops.partner_account("partner:1", "The Corner Café")
        db.session.commit()
        db.session.remove()
    return account


@pytest.fixture
def in_app(app):
    """``in_app(function, *args)`` runs it in a fresh app context and commits (API tests,
    whose requests must not share the test's app context, session and ``g``)."""

    def run(function, *args, **kwargs):
        with app.app_context():
            result = function(*args, **kwargs)
            db.session.commit()
            db.session.remove()
            return result

    return run


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
