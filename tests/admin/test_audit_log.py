"""The council's audit log page: search by who, action, subject and date, paginated."""

from __future__ import annotations

from datetime import UTC, datetime

from core.extensions import db
from core.models import AuditEntry, Role
from tests.conftest import sign_in


def add_entries(app, entries):
    with app.app_context():
        for actor_id, action, subject, when in entries:
            db.session.add(
                AuditEntry(
                    actor_id=actor_id,
                    action=action,
                    subject=subject,
                    created_at=when,
                    reason="because",
                    details={},
                )
            )
        db.session.commit()
        db.session.remove()


def count_on(client, query: str) -> int:
    html = client.get(f"/council/audit?{query}").get_data(as_text=True)
    start = html.index('id="audit-count">') + len('id="audit-count">')
    return int(html[start:].split(" ", 1)[0])


def test_filters_by_actor_action_subject_and_date(app, client, create_user):
    council = create_user(Role.COUNCIL, email="casey@example.org", name="Casey Officer")
    other = create_user(Role.COUNCIL, email="drew@example.org", name="Drew Officer")
    add_entries(
        app,
        [
            (council.id, "claim.approved", "claim:1", datetime(2026, 3, 1, 10, tzinfo=UTC)),
            (council.id, "claim.rejected", "claim:2", datetime(2026, 3, 2, 10, tzinfo=UTC)),
            (other.id, "activity.approved", "activity:7", datetime(2026, 4, 1, 10, tzinfo=UTC)),
            (None, "attendance.auto_closed", "attendance:3", datetime(2026, 4, 2, tzinfo=UTC)),
        ],
    )
    sign_in(client, council)
    assert client.get("/council/audit").status_code == 200
    assert count_on(client, "") == 4
    assert count_on(client, "actor=casey") == 2
    assert count_on(client, "actor=Drew+Officer") == 1
    assert count_on(client, f"actor={other.id}") == 1
    assert count_on(client, "actor=system") == 1
    assert count_on(client, "action=claim.") == 2
    assert count_on(client, "action=claim.rejected") == 1
    assert count_on(client, "subject=activity:7") == 1
    assert count_on(client, "subject=claim:") == 2
    assert count_on(client, "date_from=2026-03-02&date_to=2026-04-01") == 2
    assert count_on(client, "actor=casey&action=claim.approved&date_to=2026-03-01") == 1
    wrong = client.get("/council/audit?date_from=2026-02-30")
    assert wrong.status_code == 400
    assert "must be a real date" in wrong.get_data(as_text=True)


def test_pages_of_fifty_newest_first(app, client, create_user):
    council = create_user(Role.COUNCIL)
    add_entries(
        app,
        [
            (council.id, "setting.changed", f"setting:N{n}", datetime(2026, 1, 1, 0, n, tzinfo=UTC))
            for n in range(55)
        ],
    )
    sign_in(client, council)
    first = client.get("/council/audit?action=setting.changed").get_data(as_text=True)
    assert "setting:N54<" in first and "setting:N5<" in first and "setting:N4<" not in first
    assert "page=2" in first
    second = client.get("/council/audit?action=setting.changed&page=2").get_data(as_text=True)
    assert "setting:N4<" in second and "setting:N0<" in second and "setting:N54" not in second


def test_residents_cannot_read_the_audit_log(client, create_user):
    sign_in(client, create_user(Role.RESIDENT))
    assert client.get("/council/audit").status_code == 403
