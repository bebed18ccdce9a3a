"""Missed check-outs, the organisers' digest, the outbox, and demo data."""

import logging
from datetime import timedelta

from core.extensions import db
from core.mail import OutboxMessage, queue_email, send_outbox
from core.models import Role, User
from core.timeutil import utcnow
from volunteering import operations as ops
from volunteering.models import Attendance, AttendanceSource, Claim


def open_attendance(app, scene, hours_ago_ended: float) -> None:
    """The scene's resident checked in and never out; move the session into the past."""
    from volunteering.models import VolunteeringSession

    with app.app_context():
        session = db.session.get(VolunteeringSession, scene.session_id)
        session.ends_at = utcnow() - timedelta(hours=hours_ago_ended)
        session.starts_at = session.ends_at - timedelta(hours=2)
        db.session.add(
            Attendance(
                session_id=session.id,
                resident_id=scene.resident.id,
                checked_in_at=session.starts_at + timedelta(minutes=10),
                source=AttendanceSource.QR.value,
                recorded_by_id=scene.resident.id,
            )
        )
        db.session.commit()
        db.session.remove()


def run_task(app, task):
    """Run a task's body in this test's app (other tests may swap Celery's default app)."""
    with app.app_context():
        return task.run()


def test_missed_checkouts_are_closed_at_the_scheduled_end_and_flagged(app, scene):
    from volunteering.tasks import close_missed_checkouts

    open_attendance(app, scene, hours_ago_ended=3)
    assert run_task(app, close_missed_checkouts) == 1
    with app.app_context():
        attendance = db.session.execute(db.select(Attendance)).scalar_one()
        assert attendance.checked_out_at == attendance.session.ends_at
        claim = db.session.execute(db.select(Claim)).scalar_one()
        assert claim.status == "pending" and "missed_checkout" in claim.flags
        assert claim.minutes == 110
    assert run_task(app, close_missed_checkouts) == 0


def test_recent_sessions_are_left_open(app, scene):
    open_attendance(app, scene, hours_ago_ended=0.5)
    with app.app_context():
        assert ops.close_missed_checkouts() == []


def test_each_organiser_gets_one_digest_once(app, scene, create_user):
    from volunteering.tasks import close_missed_checkouts, send_missed_checkout_digests

    open_attendance(app, scene, hours_ago_ended=3)
    run_task(app, close_missed_checkouts)
    assert run_task(app, send_missed_checkout_digests) == 1
    assert run_task(app, send_missed_checkout_digests) == 0
    with app.app_context():
        digest = db.session.execute(
            db.select(OutboxMessage).where(
                OutboxMessage.to == scene.organiser.email,
                OutboxMessage.subject.like("Missed check-outs%"),
            )
        ).scalar_one()
        assert "Resident did not check out" in digest.body


def test_outbox_logs_without_a_mail_server_and_sends_once(app, caplog):
    with app.app_context():
        queue_email("someone@example.org", "Hello", "Body text")
        db.session.commit()
        with caplog.at_level(logging.INFO, logger="core.mail"):
            assert send_outbox() == 1
        assert "someone@example.org" in caplog.text
        assert send_outbox() == 0
        message = db.session.execute(db.select(OutboxMessage)).scalar_one()
        assert message.sent_at is not None


def test_outbox_sends_over_smtp_when_configured(app, monkeypatch):
    sent = []

    class FakeSMTP:
        def __init__(self, host, port, timeout):
            sent.append((host, port))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def send_message(self, message):
            sent.append(message["To"])

    monkeypatch.setattr("core.mail.smtplib.SMTP", FakeSMTP)
    monkeypatch.setitem(app.config, "MAIL_SERVER", "127.0.0.1")
    with app.app_context():
        queue_email("someone@example.org", "Hello", "Body")
        db.session.commit()
        assert send_outbox() == 1
    assert sent == [("127.0.0.1", 25), "someone@example.org"]


def test_demo_data_has_a_session_open_now_and_loads_twice(app):
    from core.demo import load_demo_data

    with app.app_context():
        load_demo_data()
        db.session.commit()
        load_demo_data()
        db.session.commit()
        organiser = db.session.execute(
            db.select(User).where(User.email == "organiser@example.org")
        ).scalar_one()
        organisations = db.session.execute(db.select(ops.Organisation)).scalars().all()
        assert [o.status for o in organisations] == ["approved"]
        sessions = db.session.execute(db.select(ops.VolunteeringSession)).scalars().all()
        assert sum(ops.is_open(s) for s in sessions) == 1
        assert Role.ORGANISER in organiser.roles
        assert len(db.session.execute(db.select(Claim)).all()) == 1


def test_operator_commands_run_the_jobs_by_hand(app, scene):
    open_attendance(app, scene, hours_ago_ended=3)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["volunteering", "close-missed-checkouts"])
    assert result.exit_code == 0 and "1 attendance closed" in result.output
    result = runner.invoke(args=["volunteering", "send-digests"])
    assert result.exit_code == 0 and "1 digest queued" in result.output
