"""Invitations of people without an account (core.invitations): to organise for a group or
to work for a partner. Accepted on registering (web and API), on signing in, or by the
emailed link; never when expired or revoked; one pending invitation per address."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from core.extensions import db
from core.invitations import Invitation
from core.mail import OutboxMessage
from core.models import AuditEntry, Role, User
from core.timeutil import utcnow
from tests.conftest import PASSWORD, MadeUser, csrf_token_from, post_form, sign_in

NEW_PERSON = {
    "email": "New.Helper@Example.org",
    "password": PASSWORD,
    "display_name": "Nia Newcomer",
    "postcode": "LS8 2HE",
}


@dataclass
class Groups:
    """Two organisations with an organiser each, and an approved partner with staff."""

    organiser: object
    organisation_id: int
    other_organiser: object
    other_organisation_id: int
    staff: object
    partner_id: int
    council: object


@pytest.fixture
def groups(app, create_user) -> Groups:
    from partners import operations as partner_ops
    from partners.models import PartnerStatus
    from volunteering import operations as ops

    organiser = create_user(Role.ORGANISER, Role.RESIDENT, email="olu@example.org", name="Olu")
    other = create_user(Role.ORGANISER, email="other@example.org", name="Otto")
    staff = create_user(Role.PARTNER_STAFF, email="sam@example.org", name="Sam")
    council = create_user(Role.COUNCIL, email="chris@example.org", name="Chris")
    with app.test_request_context():
        organisation = ops.propose_organisation(
            db.session.get(User, organiser.id), "Roundhay Friends"
        )
        other_organisation = ops.propose_organisation(db.session.get(User, other.id), "Others")
        partner = partner_ops.register_partner(
            db.session.get(User, staff.id), name="The Corner Café", address="1 High Street"
        )
        partner_ops.decide_partner(
            db.session.get(User, council.id), partner, PartnerStatus.APPROVED
        )
        db.session.commit()
        made = Groups(
            organiser,
            organisation.id,
            other,
            other_organisation.id,
            staff,
            partner.id,
            council,
        )
        db.session.remove()
    return made


def invitations_to(app, email: str) -> list[Invitation]:
    with app.app_context():
        rows = list(
            db.session.execute(
                select(Invitation).where(Invitation.email == email).order_by(Invitation.id)
            ).scalars()
        )
        db.session.remove()
    return rows


def emails_to(app, email: str) -> list[OutboxMessage]:
    with app.app_context():
        rows = list(
            db.session.execute(
                select(OutboxMessage).where(OutboxMessage.to == email).order_by(OutboxMessage.id)
            ).scalars()
        )
        db.session.remove()
    return rows


def link_token(message: OutboxMessage) -> str:
    """The token of the invitation page's link in an emailed invitation."""
    return re.search(r"/invitations/([A-Za-z0-9_.\-]+)", message.body).group(1)


def person(app, email: str) -> User:
    with app.app_context():
        user = db.session.execute(select(User).where(User.email == email)).scalar_one()
        user.roles  # noqa: B018 - loaded before the session goes
        db.session.remove()
    return user


def is_organiser(app, user_id: int, organisation_id: int) -> bool:
    from volunteering import operations as ops

    with app.app_context():
        found = ops.is_organiser_of(db.session.get(User, user_id), organisation_id)
        db.session.remove()
    return found


def is_staff(app, user_id: int, partner_id: int) -> bool:
    from partners import operations as ops

    with app.app_context():
        found = ops.is_staff_of(db.session.get(User, user_id), partner_id)
        db.session.remove()
    return found


def audit_actions(app) -> list[str]:
    with app.app_context():
        actions = list(
            db.session.execute(select(AuditEntry.action).order_by(AuditEntry.id)).scalars()
        )
        db.session.remove()
    return actions


def invite_organiser_on_the_page(app, groups, email="new.helper@example.org"):
    client = app.test_client()
    sign_in(client, groups.organiser)
    path = f"/organise/organisations/{groups.organisation_id}"
    response = post_form(client, path, {"email": email})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return client, path


def register_on_the_web(client, token: str | None = None, **overrides):
    url = "/register" + (f"?invitation={token}" if token else "")
    return post_form(client, url, {**NEW_PERSON, **overrides})


# --- accepted on registering -------------------------------------------------------------------


def test_registering_on_the_web_with_an_invited_address_makes_them_an_organiser(app, groups):
    organiser_client, path = invite_organiser_on_the_page(app, groups)
    (pending,) = invitations_to(app, "new.helper@example.org")
    assert pending.status == "pending" and pending.invited_by_id == groups.organiser.id
    assert pending.expires_at - utcnow() > timedelta(days=13)
    page = organiser_client.get(path).get_data(as_text=True)
    assert "Invited, no account yet" in page and "new.helper@example.org" in page
    (message,) = emails_to(app, "new.helper@example.org")
    assert "Roundhay Friends" in message.subject
    assert "/register?invitation=" in message.body and "/invitations/" in message.body

    newcomer = app.test_client()
    # The link's page invites them to register with the address filled in.
    invitation_page = newcomer.get(f"/invitations/{link_token(message)}")
    assert invitation_page.status_code == 200
    assert "Create an account" in invitation_page.get_data(as_text=True)
    form = newcomer.get(f"/register?invitation={link_token(message)}").get_data(as_text=True)
    assert 'value="new.helper@example.org"' in form

    registered = register_on_the_web(newcomer)
    assert registered.status_code == 302
    account = newcomer.get("/account").get_data(as_text=True)
    assert "You are now an organiser of Roundhay Friends." in account
    user = person(app, "new.helper@example.org")
    assert Role.ORGANISER in user.roles and Role.RESIDENT in user.roles
    assert is_organiser(app, user.id, groups.organisation_id)
    (accepted,) = invitations_to(app, "new.helper@example.org")
    assert accepted.status == "accepted" and accepted.accepted_by_id == user.id
    actions = audit_actions(app)
    assert {"invitation.created", "invitation.accepted", "role.granted"} <= set(actions)
    assert actions.count("organisation.organiser_added") == 1
    # The organiser who invited them is told.
    told = [m for m in emails_to(app, groups.organiser.email) if "accepted" in m.subject]
    assert len(told) == 1 and "is now an organiser of Roundhay Friends" in told[0].body
    # Their new organisation's page is theirs now, and it no longer lists them as invited.
    assert newcomer.get(path).status_code == 200
    assert "Invited, no account yet" not in organiser_client.get(path).get_data(as_text=True)


def test_registering_through_the_api_makes_an_invited_colleague_partner_staff(app, api, groups):
    staff_token = api.token(groups.staff)
    invited = api.post(
        f"/api/v1/partners/{groups.partner_id}/staff",
        staff_token,
        json={"email": "New.Helper@example.org"},
    )
    assert invited.status_code == 202, invited.get_json()
    body = invited.get_json()
    assert body["status"] == "invited" and body["user_id"] is None and body["invitation_id"]
    listed = api.get(
        f"/api/v1/invitations?kind=partner_staff&target_id={groups.partner_id}", staff_token
    )
    assert [item["email"] for item in listed.get_json()["items"]] == ["new.helper@example.org"]

    registered = api.post("/api/v1/residents", json=NEW_PERSON)
    assert registered.status_code == 201, registered.get_json()
    assert registered.get_json()["roles"] == ["partner_staff", "resident"]
    user = person(app, "new.helper@example.org")
    assert is_staff(app, user.id, groups.partner_id)
    token = api.token(MadeUser(user.id, user.email, PASSWORD, user.display_name))
    assert api.get(f"/api/v1/partners/{groups.partner_id}", token).status_code == 200
    listed = api.get(
        f"/api/v1/invitations?kind=partner_staff&target_id={groups.partner_id}", staff_token
    )
    assert listed.get_json()["items"] == []


def test_a_colleague_with_an_account_is_added_at_once(app, api, groups, create_user):
    colleague = create_user(Role.RESIDENT, email="kim@example.org")
    response = api.post(
        f"/api/v1/partners/{groups.partner_id}/staff",
        api.token(groups.staff),
        json={"email": "KIM@example.org"},
    )
    assert response.status_code == 201, response.get_json()
    assert response.get_json() == {
        "partner_id": groups.partner_id,
        "user_id": colleague.id,
        "status": "added",
    }
    assert is_staff(app, colleague.id, groups.partner_id)
    assert invitations_to(app, "kim@example.org") == []


def test_an_invitation_to_a_suspended_partner_gives_the_role_when_reinstated(app, api, groups):
    from partners import operations as ops
    from partners.models import Partner, PartnerStatus

    invited = api.post(
        f"/api/v1/partners/{groups.partner_id}/staff",
        api.token(groups.staff),
        json={"email": NEW_PERSON["email"]},
    )
    assert invited.status_code == 202

    def decide(status, reason=None):
        with app.app_context():
            ops.decide_partner(
                db.session.get(User, groups.council.id),
                db.session.get(Partner, groups.partner_id),
                status,
                reason,
            )
            db.session.commit()
            db.session.remove()

    decide(PartnerStatus.SUSPENDED, "Checking the books")
    assert api.post("/api/v1/residents", json=NEW_PERSON).status_code == 201
    user = person(app, "new.helper@example.org")
    assert Role.PARTNER_STAFF not in user.roles
    decide(PartnerStatus.APPROVED)
    assert is_staff(app, user.id, groups.partner_id)


# --- accepted on signing in, or by the link --------------------------------------------------


def test_signing_in_with_an_invited_address_accepts_the_invitation(app, api, groups, create_user):
    invite_organiser_on_the_page(app, groups, "late@example.org")
    # An account made some other way (the operator's command, say) after the invitation.
    late = create_user(Role.RESIDENT, email="late@example.org")
    client = app.test_client()
    response = post_form(
        client,
        "/sign-in?next=/organise",
        {"email": late.email, "password": late.password},
        page="/sign-in",
    )
    assert response.status_code == 302 and response.location.endswith("/organise")
    assert is_organiser(app, late.id, groups.organisation_id)

    # And on the API: a partner's invitation accepted when a token is issued.
    with app.test_request_context():
        from core import invitations

        invitations.invite(
            db.session.get(User, groups.staff.id),
            "partner_staff",
            groups.partner_id,
            "late@example.org",
        )
        db.session.commit()
        db.session.remove()
    token = api.token(late)
    assert api.get("/api/v1/me", token).get_json()["roles"] == [
        "organiser",
        "partner_staff",
        "resident",
    ]


def test_the_link_is_refused_to_an_account_with_another_address(app, api, groups, create_user):
    """A forwarded or leaked link must not make a stranger an organiser."""
    invite_organiser_on_the_page(app, groups, "old.address@example.org")
    token = link_token(emails_to(app, "old.address@example.org")[0])
    someone = create_user(Role.RESIDENT, email="new.address@example.org")
    client = app.test_client()
    sign_in(client, someone)
    page = client.get(f"/invitations/{token}").get_data(as_text=True)
    assert "Only old.address@example.org can accept this invitation" in page
    refused = post_form(client, f"/invitations/{token}/accept", {}, page="/account")
    assert refused.status_code == 302
    shown = client.get(refused.location).text
    assert "This invitation was sent to old.address@example.org" in shown
    response = api.post("/api/v1/invitations/accept", api.token(someone), json={"token": token})
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "invitation_for_another_address"
    assert not is_organiser(app, someone.id, groups.organisation_id)
    (pending,) = invitations_to(app, "old.address@example.org")
    assert pending.status == "pending"


def test_accepting_through_the_api_with_the_links_token(app, api, groups, create_user):
    invite_organiser_on_the_page(app, groups, "old.address@example.org")
    token = link_token(emails_to(app, "old.address@example.org")[0])
    someone = create_user(Role.RESIDENT, email="old.address@example.org")
    bearer = api.token(someone)  # signing in accepts it already
    response = api.post("/api/v1/invitations/accept", bearer, json={"token": token})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "accepted"
    assert is_organiser(app, someone.id, groups.organisation_id)
    # Accepting again as the same person changes nothing.
    assert api.post("/api/v1/invitations/accept", bearer, json={"token": token}).status_code == 200


def test_a_wrong_token_is_refused(app, api, client, groups, create_user):
    invite_organiser_on_the_page(app, groups)
    token = link_token(emails_to(app, "new.helper@example.org")[0])
    assert client.get(f"/invitations/{token}x").status_code == 404
    assert client.get("/invitations/1").status_code == 404
    bearer = api.token(create_user(Role.RESIDENT))
    response = api.post("/api/v1/invitations/accept", bearer, json={"token": token[:-2]})
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "invitation_invalid"


# --- expired and revoked -------------------------------------------------------------------------


def test_an_expired_invitation_is_not_accepted(app, api, groups):
    invite_organiser_on_the_page(app, groups)
    token = link_token(emails_to(app, "new.helper@example.org")[0])
    with app.app_context():
        db.session.execute(update(Invitation).values(expires_at=utcnow() - timedelta(minutes=1)))
        db.session.commit()
        db.session.remove()
    client = app.test_client()
    assert "This invitation expired" in client.get(f"/invitations/{token}").text
    assert register_on_the_web(client, token).status_code == 302
    user = person(app, "new.helper@example.org")
    assert Role.ORGANISER not in user.roles
    assert not is_organiser(app, user.id, groups.organisation_id)
    (invitation,) = invitations_to(app, "new.helper@example.org")
    assert invitation.status == "expired"
    response = api.post(
        "/api/v1/invitations/accept",
        api.token(MadeUser(user.id, user.email, PASSWORD, user.display_name)),
        json={"token": token},
    )
    assert response.status_code == 410
    assert response.get_json()["error"]["code"] == "invitation_expired"


def test_a_revoked_invitation_is_not_accepted(app, api, groups):
    organiser_client, path = invite_organiser_on_the_page(app, groups)
    (invitation,) = invitations_to(app, "new.helper@example.org")
    page = organiser_client.get(path).get_data(as_text=True)
    revoked = organiser_client.post(
        f"/invitations/{invitation.id}/revoke", data={"csrf_token": csrf_token_from(page)}
    )
    assert revoked.status_code == 302 and revoked.location.endswith(path)
    (invitation,) = invitations_to(app, "new.helper@example.org")
    assert invitation.status == "revoked" and invitation.revoked_by_id == groups.organiser.id
    assert "invitation.revoked" in audit_actions(app)
    token = link_token(emails_to(app, "new.helper@example.org")[0])
    assert "This invitation was withdrawn" in app.test_client().get(f"/invitations/{token}").text

    assert api.post("/api/v1/residents", json=NEW_PERSON).status_code == 201
    user = person(app, "new.helper@example.org")
    assert Role.ORGANISER not in user.roles
    assert not is_organiser(app, user.id, groups.organisation_id)
    # Revoking twice: 409 on the API.
    again = api.call("DELETE", f"/api/v1/invitations/{invitation.id}", api.token(groups.organiser))
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "not_pending"


# --- no duplicates, and who may manage them --------------------------------------------------


def test_inviting_the_same_address_twice_keeps_one_pending_invitation(app, api, groups):
    token = api.token(groups.organiser)
    path = f"/api/v1/organisations/{groups.organisation_id}/organisers"
    first = api.post(path, token, json={"email": "new.helper@example.org"})
    second = api.post(path, token, json={"email": "NEW.helper@example.org "})
    assert first.status_code == second.status_code == 202
    assert first.get_json()["invitation_id"] == second.get_json()["invitation_id"]
    assert len(invitations_to(app, "new.helper@example.org")) == 1
    # Each invite sends the (same) link again.
    links = {link_token(m) for m in emails_to(app, "new.helper@example.org")}
    assert len(emails_to(app, "new.helper@example.org")) == 2 and len(links) == 1
    # After a revocation, inviting again makes a new invitation.
    invitation_id = first.get_json()["invitation_id"]
    assert api.call("DELETE", f"/api/v1/invitations/{invitation_id}", token).status_code == 204
    third = api.post(path, token, json={"email": "new.helper@example.org"})
    assert third.get_json()["invitation_id"] != invitation_id
    assert [i.status for i in invitations_to(app, "new.helper@example.org")] == [
        "revoked",
        "pending",
    ]
    # Only the pending one is accepted on registering.
    assert api.post("/api/v1/residents", json=NEW_PERSON).status_code == 201
    assert is_organiser(app, person(app, "new.helper@example.org").id, groups.organisation_id)
    assert audit_actions(app).count("invitation.accepted") == 1


def test_the_same_address_may_be_invited_to_two_different_groups(app, api, groups):
    email = {"email": "new.helper@example.org"}
    assert (
        api.post(
            f"/api/v1/organisations/{groups.organisation_id}/organisers",
            api.token(groups.organiser),
            json=email,
        ).status_code
        == 202
    )
    assert (
        api.post(
            f"/api/v1/organisations/{groups.other_organisation_id}/organisers",
            api.token(groups.other_organiser),
            json=email,
        ).status_code
        == 202
    )
    assert api.post("/api/v1/residents", json=NEW_PERSON).status_code == 201
    user = person(app, "new.helper@example.org")
    assert is_organiser(app, user.id, groups.organisation_id)
    assert is_organiser(app, user.id, groups.other_organisation_id)


def test_an_organiser_of_another_organisation_cannot_see_or_revoke_invitations(app, api, groups):
    invite_organiser_on_the_page(app, groups)
    (invitation,) = invitations_to(app, "new.helper@example.org")
    other = app.test_client()
    sign_in(other, groups.other_organiser)
    page = other.get(f"/organise/organisations/{groups.other_organisation_id}").text
    refused = other.post(
        f"/invitations/{invitation.id}/revoke", data={"csrf_token": csrf_token_from(page)}
    )
    assert refused.status_code == 403
    token = api.token(groups.other_organiser)
    response = api.call("DELETE", f"/api/v1/invitations/{invitation.id}", token)
    assert response.status_code == 403
    listed = api.get(
        f"/api/v1/invitations?kind=organiser&target_id={groups.organisation_id}", token
    )
    assert listed.status_code == 403
    # Nor can partner staff (another kind's managers), nor invite to someone else's group.
    staff_token = api.token(groups.staff)
    assert (
        api.call("DELETE", f"/api/v1/invitations/{invitation.id}", staff_token).status_code == 403
    )
    invite = api.post(
        f"/api/v1/organisations/{groups.organisation_id}/organisers",
        token,
        json={"email": "someone.else@example.org"},
    )
    assert invite.status_code == 403
    assert invitations_to(app, "someone.else@example.org") == []
    (invitation,) = invitations_to(app, "new.helper@example.org")
    assert invitation.status == "pending"


def test_staff_invite_colleagues_on_the_partner_page_and_revoke_them(app, groups):
    client = app.test_client()
    sign_in(client, groups.staff)
    path = f"/business/{groups.partner_id}/staff"
    added = post_form(client, path, {"email": "new.colleague@example.org"})
    assert added.status_code == 302
    page = client.get(path).text
    assert "new.colleague@example.org" in page and "Revoke" in page
    (invitation,) = invitations_to(app, "new.colleague@example.org")
    revoked = client.post(
        f"/invitations/{invitation.id}/revoke", data={"csrf_token": csrf_token_from(page)}
    )
    assert revoked.status_code == 302
    assert "The invitation to new.colleague@example.org has been revoked" in client.get(path).text
    assert "new.colleague@example.org" not in client.get(path).text


# --- privacy and housekeeping ---------------------------------------------------------------


def test_closing_an_account_drops_invitations_to_its_address(app, groups, create_user):
    from core import privacy

    invite_organiser_on_the_page(app, groups, "leaving@example.org")
    with app.test_request_context():
        from core import invitations

        # A second, accepted one: it keeps its row but loses the address.
        user = db.session.get(User, create_user(Role.RESIDENT, email="leaving@example.org").id)
        accepted = invitations.invite(
            db.session.get(User, groups.other_organiser.id),
            "organiser",
            groups.other_organisation_id,
            "leaving@example.org",
        )
        invitations.accept(accepted, user)
        assert len(privacy.personal_data(user)["invitations"]) == 2
        privacy.close_account(user, PASSWORD)
        db.session.commit()
        rows = db.session.execute(select(Invitation.email, Invitation.accepted_at)).all()
        db.session.remove()
    assert [(email, at is not None) for email, at in rows] == [
        (privacy.closed_email(user.id), True)
    ]


def test_purge_deletes_invitations_ended_long_ago_only(app, groups):
    from core.invitations import purge_ended_invitations
    from core.tasks import purge_invitations

    emails = ["expired.old@x.org", "revoked.old@x.org", "accepted.old@x.org", "pending@x.org"]
    emails += ["expired.recent@x.org"]
    with app.test_request_context():
        from core import invitations

        organiser = db.session.get(User, groups.organiser.id)
        made = {
            email: invitations.invite(organiser, "organiser", groups.organisation_id, email)
            for email in emails
        }
        long_ago = utcnow() - timedelta(days=45)
        made["expired.old@x.org"].expires_at = long_ago
        made["revoked.old@x.org"].revoked_at = long_ago
        made["accepted.old@x.org"].accepted_at = long_ago
        made["expired.recent@x.org"].expires_at = utcnow() - timedelta(days=3)
        db.session.commit()
        assert purge_ended_invitations(batch_size=2) == 3
        db.session.remove()
    assert purge_invitations.apply().get() == 0
    with app.app_context():
        left = set(db.session.execute(select(Invitation.email)).scalars())
        db.session.remove()
    assert left == {"pending@x.org", "expired.recent@x.org"}
