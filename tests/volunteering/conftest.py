"""Fixtures for volunteering tests: approved organisations, activities and sessions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from core.extensions import db
from core.models import Role, User
from core.timeutil import utcnow

# The browser fixtures of tests/browser (live server, Chromium, a checked page), shared.
from tests.browser.conftest import browser, live_server, page, playwright_driver  # noqa: F401


@dataclass
class Scene:
    """An approved organisation with an approved activity and one session, and its people."""

    organiser: object
    council: object
    resident: object
    organisation_id: int
    activity_id: int
    session_id: int


@pytest.fixture
def make_session(app, create_user):
    """``make_session(organiser, starts_at=..., ends_at=..., credits_per_hour=1)``.

    Builds (through the operations) an approved organisation of ``organiser`` with an approved
    activity and one session; returns (organisation_id, activity_id, session_id).
    """
    from volunteering import operations as ops

    council = create_user(Role.COUNCIL, email="approver@example.org")

    def make(
        organiser,
        *,
        starts_at: datetime | None = None,
        ends_at: datetime | None = None,
        credits_per_hour: int = 1,
        capacity: int | None = None,
        title: str = "Litter pick",
        organisation_id: int | None = None,
    ):
        starts_at = starts_at or utcnow() - timedelta(minutes=30)
        ends_at = ends_at or starts_at + timedelta(hours=2)
        with app.app_context():
            actor = db.session.get(User, organiser.id)
            approver = db.session.get(User, council.id)
            if organisation_id is None:
                organisation = ops.propose_organisation(actor, "Roundhay Friends", "Park group")
                ops.approve_organisation(approver, organisation)
            else:
                organisation = ops.get_organisation(organisation_id)
            activity = ops.propose_activity(
                actor,
                organisation,
                title=title,
                description="Picking litter",
                category="Environment",
                location="Roundhay Park",
                ward="Roundhay",
                credits_per_hour=credits_per_hour,
                capacity=capacity,
            )
            ops.approve_activity(approver, activity)
            session = ops.schedule_session(actor, activity, starts_at, ends_at)
            db.session.commit()
            ids = (organisation.id, activity.id, session.id)
            db.session.remove()
        return ids

    return make


@pytest.fixture
def scene(create_user, make_session) -> Scene:
    """An organiser's session open now (started 30 minutes ago, two hours long)."""
    organiser = create_user(Role.ORGANISER, Role.RESIDENT, email="organiser@example.org")
    council = create_user(Role.COUNCIL, email="council@example.org")
    resident = create_user(Role.RESIDENT, email="resident@example.org")
    organisation_id, activity_id, session_id = make_session(organiser)
    return Scene(organiser, council, resident, organisation_id, activity_id, session_id)


@pytest.fixture
def tokens_of(api):
    """Bearer tokens, cached per user."""
    cache: dict[int, str] = {}

    def token(user) -> str:
        if user.id not in cache:
            cache[user.id] = api.token(user)
        return cache[user.id]

    return token


def balance(app, user_id: int) -> int:
    """The resident's balance from the ledger."""
    from rewards.wallet import balance_of

    with app.app_context():
        value = balance_of(db.session.get(User, user_id))
        db.session.remove()
    return value
