"""User administration: find people, see their roles and activity, suspend and restore."""

from __future__ import annotations

from core.extensions import db
from core.models import ApiToken, AuditEntry, LoginSession, Role, User
from tests.conftest import post_form, sign_in


def test_search_by_email_name_postcode_role_and_state(app, client, create_user):
    council = create_user(Role.COUNCIL)
    create_user(Role.RESIDENT, email="robin.hood@example.org", name="Robin Hood")
    create_user(Role.ORGANISER, email="marian@example.org", name="Maid Marian")
    sign_in(client, council)
    page = client.get("/admin/users?q=robin").get_data(as_text=True)
    assert "Robin Hood" in page and "Maid Marian" not in page
    assert "Maid Marian" in client.get("/admin/users?q=MAID").get_data(as_text=True)
    assert "1 person found" in client.get("/admin/users?q=ls8+2he&role=organiser").get_data(
        as_text=True
    )
    assert "0 people found" in client.get("/admin/users?state=suspended").get_data(as_text=True)


def test_a_persons_page_shows_roles_and_activity(app, client, create_user):
    council = create_user(Role.COUNCIL)
    person = create_user(Role.RESIDENT, Role.ORGANISER, name="Pat Person")
    sign_in(client, council)
    html = client.get(f"/admin/users/{person.id}").get_data(as_text=True)
    assert "Pat Person" in html
    assert "Organiser, Resident" in html
    assert "Sessions attended" in html and "Credit balance" in html


def test_suspending_signs_the_person_out_everywhere_and_is_audited(app, client, api, create_user):
    council = create_user(Role.COUNCIL)
    resident = create_user(Role.RESIDENT)
    their_browser = app.test_client()
    sign_in(their_browser, resident)
    token = api.token(resident)
    assert api.get("/api/v1/me", token).status_code == 200

    sign_in(client, council)
    response = post_form(
        client,
        f"/admin/users/{resident.id}/suspend",
        {"reason": "Reported for abuse"},
        page=f"/admin/users/{resident.id}",
    )
    assert response.status_code == 302
    # The browser session and the API token stop working at once.
    assert their_browser.get("/account").status_code == 302
    refused = api.get("/api/v1/me", token)
    assert refused.status_code == 401
    with app.app_context():
        user = db.session.get(User, resident.id)
        assert user.suspended_at is not None
        assert all(s.revoked_at for s in db.session.query(LoginSession).filter_by(user_id=user.id))
        assert all(t.revoked_at for t in db.session.query(ApiToken).filter_by(user_id=user.id))
        entry = db.session.query(AuditEntry).filter_by(action="user.suspended").one()
        assert (entry.actor_id, entry.subject, entry.reason) == (
            council.id,
            f"user:{resident.id}",
            "Reported for abuse",
        )
        db.session.remove()
    # Signing in is refused while suspended.
    refused_sign_in = post_form(
        app.test_client(), "/sign-in", {"email": resident.email, "password": resident.password}
    )
    assert refused_sign_in.status_code == 401

    restored = post_form(
        client,
        f"/admin/users/{resident.id}/restore",
        {"reason": "Appeal upheld"},
        page=f"/admin/users/{resident.id}",
    )
    assert restored.status_code == 302
    sign_in(app.test_client(), resident)
    with app.app_context():
        assert db.session.query(AuditEntry).filter_by(action="user.restored").count() == 1
        db.session.remove()


def test_a_reason_is_needed_and_council_cannot_suspend_admins_or_themselves(client, create_user):
    council = create_user(Role.COUNCIL)
    admin = create_user(Role.ADMIN)
    resident = create_user(Role.RESIDENT)
    sign_in(client, council)
    page = f"/admin/users/{resident.id}"
    no_reason = post_form(client, f"/admin/users/{resident.id}/suspend", {"reason": ""}, page=page)
    assert no_reason.status_code == 400
    assert "Enter why you are suspending" in no_reason.get_data(as_text=True)
    on_admin = post_form(client, f"/admin/users/{admin.id}/suspend", {"reason": "x"}, page=page)
    assert on_admin.status_code == 400
    assert "Only a council admin" in on_admin.get_data(as_text=True)
    on_self = post_form(
        client,
        f"/admin/users/{council.id}/suspend",
        {"reason": "x"},
        page=page,
    )
    assert on_self.status_code == 400


def test_the_last_admin_cannot_be_suspended(app, client, create_user):
    first = create_user(Role.ADMIN, Role.COUNCIL)
    only_admin = create_user(Role.ADMIN)
    sign_in(client, first)
    # first is an admin too, so only_admin is not the last one: this works.
    ok = post_form(
        client,
        f"/admin/users/{only_admin.id}/suspend",
        {"reason": "Left the council"},
        page=f"/admin/users/{only_admin.id}",
    )
    assert ok.status_code == 302
    with app.app_context():
        from core import admin

        assert admin.active_admin_count() == 1
        db.session.remove()
