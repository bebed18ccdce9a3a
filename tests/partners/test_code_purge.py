"""The nightly purge of old redemption codes: long-expired codes go, in batches; recent
codes and codes a redemption points at stay."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from core.extensions import db
from core.models import User
from core.timeutil import utcnow
from partners.models import Redemption, RedemptionCode


def make_code(resident, expired_days_ago: float | None = None) -> int:
    """A code of ``resident`` (in an app context), moved into the past if asked."""
    from partners import operations as ops

    _code, row = ops.issue_code(db.session.get(User, resident.id))
    if expired_days_ago is not None:
        expires_at = utcnow() - timedelta(days=expired_days_ago)
        db.session.execute(
            update(RedemptionCode)
            .where(RedemptionCode.id == row.id)
            .values(expires_at=expires_at, created_at=expires_at - timedelta(minutes=5))
        )
    db.session.commit()
    return row.id


def remaining_code_ids() -> set[int]:
    return set(db.session.execute(select(RedemptionCode.id)).scalars())


def test_purge_deletes_long_expired_codes_and_keeps_recent_and_redeemed_ones(
    app, shop, resident, new_code, api
):
    from partners.purge import purge_old_redemption_codes

    # A code redeemed at the till, which then lies in the past like the rest.
    code = new_code(resident)
    staff_token = api.token(shop.staff)
    redeemed = api.post(
        "/api/v1/redemptions",
        staff_token,
        json={"code": code, "offer_id": shop.offer_id, "idempotency_key": "purge-1"},
    )
    assert redeemed.status_code == 201, redeemed.get_json()
    with app.app_context():
        redeemed_code_id = db.session.execute(select(Redemption.code_id)).scalar_one()
        db.session.execute(
            update(RedemptionCode)
            .where(RedemptionCode.id == redeemed_code_id)
            .values(expires_at=utcnow() - timedelta(days=30))
        )
        old_unused = [make_code(resident, expired_days_ago=days) for days in (8, 20, 400)]
        recent = make_code(resident, expired_days_ago=2)
        live = make_code(resident)

        removed = purge_old_redemption_codes()

        assert removed == 3
        assert remaining_code_ids() == {redeemed_code_id, recent, live}
        assert not remaining_code_ids() & set(old_unused)
        # The redemption still points at its code.
        assert db.session.execute(select(Redemption.code_id)).scalar_one() == redeemed_code_id
        # Running again finds nothing more to do.
        assert purge_old_redemption_codes() == 0
        db.session.remove()


def test_purge_works_in_bounded_batches_and_honours_the_retention_setting(
    app, resident, monkeypatch
):
    from partners.purge import purge_old_redemption_codes

    with app.app_context():
        old = [make_code(resident, expired_days_ago=3) for _ in range(5)]
        # Three days is inside the default week: nothing goes.
        assert purge_old_redemption_codes() == 0
        statements = []
        original_commit = db.session.commit
        monkeypatch.setattr(
            db.session, "commit", lambda: (statements.append("commit"), original_commit())
        )
        monkeypatch.setitem(app.config, "REDEMPTION_CODE_RETENTION_DAYS", 1)
        assert purge_old_redemption_codes(batch_size=2) == 5
        assert len(statements) == 3  # batches of 2, 2 and 1, each committed
        assert not remaining_code_ids() & set(old)
        db.session.remove()


def test_the_purge_is_a_scheduled_task(app, resident):
    from core.celery_app import BEAT_SCHEDULE
    from partners.tasks import purge_redemption_codes

    entry = BEAT_SCHEDULE["purge-redemption-codes"]
    assert entry["task"] == "partners.tasks.purge_redemption_codes"
    with app.app_context():
        make_code(resident, expired_days_ago=10)
        db.session.remove()
    assert purge_redemption_codes.apply().get() == 1
    with app.app_context():
        assert remaining_code_ids() == set()
        db.session.remove()
