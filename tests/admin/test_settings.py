"""Scheme settings: saved by admins, audited, and in force for the other packages at once."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core import settings
from core.extensions import db
from core.models import AuditEntry, Role, SchemeSetting, User
from core.timeutil import utcnow
from tests.conftest import post_form, sign_in


def form_values(app, **changes) -> dict:
    """Every field of the settings form as it shows now, with ``changes``."""
    with app.app_context():
        values = {
            d.name: settings.format_value(d, settings.get_setting(d.name))
            for d in settings.SETTINGS
        }
    values.update(changes)
    return values


def test_admin_changes_settings_with_an_audit_entry_of_old_and_new(app, client, create_user):
    admin = create_user(Role.ADMIN)
    sign_in(client, admin)
    assert client.get("/admin/settings").status_code == 200
    response = post_form(
        client,
        "/admin/settings",
        form_values(
            app,
            CLAIM_DAILY_MAX_HOURS="6",
            CREDIT_VALIDITY_DAYS="180",
            CREDIT_EXPIRY_REMINDER_DAYS="7, 30, 1",
            SETTLEMENT_BUDGET_PENCE="50000",
            VOLUNTEERING_WARDS="Roundhay\nChapel Allerton\n  Moortown  \n",
            reason="Council decision 12/2026",
        ),
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    with app.app_context():
        saved = {
            row.name: row.value for row in db.session.execute(db.select(SchemeSetting)).scalars()
        }
        assert saved == {
            "CLAIM_DAILY_MAX_HOURS": 6,
            "CREDIT_VALIDITY_DAYS": 180,
            "CREDIT_EXPIRY_REMINDER_DAYS": [30, 7, 1],
            "SETTLEMENT_BUDGET_PENCE": 50000,
            "VOLUNTEERING_WARDS": ["Roundhay", "Chapel Allerton", "Moortown"],
        }
        entries = (
            db.session.execute(db.select(AuditEntry).where(AuditEntry.action == "setting.changed"))
            .scalars()
            .all()
        )
        by_subject = {entry.subject: entry for entry in entries}
        assert by_subject["setting:CLAIM_DAILY_MAX_HOURS"].details == {"old": 8, "new": 6}
        assert by_subject["setting:CLAIM_DAILY_MAX_HOURS"].actor_id == admin.id
        assert by_subject["setting:CLAIM_DAILY_MAX_HOURS"].reason == "Council decision 12/2026"
        assert by_subject["setting:SETTLEMENT_BUDGET_PENCE"].details == {"old": None, "new": 50000}
        assert len(entries) == 5
        # In force for the packages that read app.config directly.
        assert app.config["CLAIM_DAILY_MAX_HOURS"] == 6
        assert app.config["CREDIT_VALIDITY_DAYS"] == 180
        assert settings.get_setting("VOLUNTEERING_WARDS")[-1] == "Moortown"
        db.session.remove()
    # Saving the same values again changes nothing and audits nothing.
    post_form(client, "/admin/settings", form_values(app))
    with app.app_context():
        count = db.session.execute(
            db.select(db.func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == "setting.changed")
        ).scalar()
        assert count == 5
        db.session.remove()


def test_wrong_values_are_refused_field_by_field(app, client, create_user):
    sign_in(client, create_user(Role.ADMIN))
    response = post_form(
        client,
        "/admin/settings",
        form_values(
            app, CLAIM_DAILY_MAX_HOURS="lots", CREDIT_VALIDITY_DAYS="0", VOLUNTEERING_CATEGORIES=""
        ),
    )
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "Daily maximum hours must be a whole number" in html
    assert "Credit validity must be between 1 and 3,650" in html
    assert "Enter at least 1 line for activity categories" in html
    with app.app_context():
        assert db.session.execute(db.select(SchemeSetting)).first() is None
        db.session.remove()


def test_only_admins_change_settings(client, create_user):
    sign_in(client, create_user(Role.COUNCIL))
    assert client.get("/admin/settings").status_code == 403


def save(app, create_user, name, value):
    admin = create_user(Role.ADMIN)
    with app.test_request_context():
        settings.set_setting(db.session.get(User, admin.id), name, value)
        db.session.commit()
        settings.apply_now()  # as the settings page does after its commit
        db.session.remove()


def test_a_saved_setting_changes_how_claims_are_flagged(app, create_user):
    """The volunteering package reads CLAIM_DAILY_MAX_HOURS from app.config: it obeys."""
    from volunteering import operations as ops
    from volunteering.models import Claim

    organiser = create_user(Role.ORGANISER)
    council = create_user(Role.COUNCIL)
    resident = create_user(Role.RESIDENT)
    save(app, create_user, "CLAIM_DAILY_MAX_HOURS", 1)
    start = (utcnow() - timedelta(hours=3)).replace(microsecond=0)
    with app.test_request_context():
        actor = db.session.get(User, organiser.id)
        organisation = ops.propose_organisation(actor, "Friends", "")
        ops.approve_organisation(db.session.get(User, council.id), organisation)
        activity = ops.propose_activity(
            actor, organisation, title="Litter pick", category="Environment", location="Park"
        )
        ops.approve_activity(db.session.get(User, council.id), activity)
        session = ops.schedule_session(actor, activity, start, start + timedelta(minutes=90))
        attendance = ops.add_attendance(
            actor,
            session,
            resident_id=resident.id,
            checked_in_at=start,
            checked_out_at=start + timedelta(minutes=90),
            idempotency_key="one",
        )
        db.session.commit()
        claim = db.session.get(Claim, attendance.claim.id)
        assert "daily_maximum" in claim.flags
        db.session.remove()


@pytest.fixture
def another_process(make_app):
    """``another_process(**settings)``: an app standing for another process; closed after."""
    made = []

    def make(**overrides):
        made.append(make_app(**overrides))
        return made[-1]

    yield make
    for other in made:
        with other.app_context():
            db.session.remove()
            db.engine.dispose()


def test_other_processes_pick_up_changes_and_removed_overrides_restore_defaults(
    app, another_process, create_user
):
    """Another process (a worker) sees the change when its app context starts."""
    worker = another_process(SETTINGS_REFRESH_SECONDS=0)
    with worker.app_context():
        assert worker.config["CLAIM_AUTO_APPROVE_MAX_CREDITS"] == 8
    save(app, create_user, "CLAIM_AUTO_APPROVE_MAX_CREDITS", 3)
    with worker.app_context():
        assert worker.config["CLAIM_AUTO_APPROVE_MAX_CREDITS"] == 3
        assert settings.get_setting("CLAIM_AUTO_APPROVE_MAX_CREDITS") == 3
        db.session.execute(db.delete(SchemeSetting))
        db.session.commit()
        db.session.remove()
    with worker.app_context():
        assert worker.config["CLAIM_AUTO_APPROVE_MAX_CREDITS"] == 8


def test_celery_tasks_run_with_the_saved_settings(app, create_user):
    from celery import shared_task

    @shared_task(name="tests.admin.read_setting")
    def read_setting():
        from flask import current_app

        return current_app.config["CREDIT_EXPIRY_GRACE_DAYS"]

    save(app, create_user, "CREDIT_EXPIRY_GRACE_DAYS", 4)
    assert read_setting.apply().get() == 4


def test_refresh_is_cheap_between_intervals(app, another_process, create_user):
    worker = another_process(SETTINGS_REFRESH_SECONDS=3600)
    with worker.app_context():
        pass
    save(app, create_user, "CLAIM_DAILY_MAX_HOURS", 2)
    with worker.app_context():
        # Within the interval the worker has not looked again...
        assert worker.config["CLAIM_DAILY_MAX_HOURS"] == 8
        settings.refresh(worker, force=True)
        # ...and when it does it sees the change.
        assert worker.config["CLAIM_DAILY_MAX_HOURS"] == 2


@pytest.mark.parametrize(
    ("name", "raw", "value"),
    [
        ("CREDIT_VALIDITY_DAYS", " 1,000 ", 1000),
        ("SETTLEMENT_BUDGET_PENCE", "", None),
        ("CREDIT_EXPIRY_REMINDER_DAYS", "7;30;7", [30, 7]),
        ("VOLUNTEERING_CATEGORIES", "A\n\nB\nA", ["A", "B"]),
    ],
)
def test_values_are_parsed_from_what_admins_type(name, raw, value):
    assert settings.parse_value(settings.BY_NAME[name], raw) == value
