"""Every staff action writes an audit entry: a walk over the council's write endpoints.

The endpoints come from the URL map (every non-GET route whose declared roles include
council staff or admins), so a staff endpoint added later is noticed: it needs a recipe
here, or a place in ``NOT_WALKED`` with the reason.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from core.extensions import db
from core.models import AuditEntry, Role, User
from core.security import view_function_of
from core.timeutil import utcnow
from tests.conftest import csrf_token_from, sign_in
from tests.reports.history import History

STAFF = {Role.COUNCIL, Role.ADMIN}

#: Staff endpoints this walk does not drive, and why (each is audited by its own package's
#: tests, or needs state that only a settlement run makes).
NOT_WALKED = {
    ("POST", "settlement.settlement_action"): "needs a failed settlement from a payout run",
    ("POST", "settlement.batch_paid"): "needs a payment file from a settlement run",
}


def staff_endpoints(app) -> set[tuple[str, str]]:
    """(method, endpoint) of every write a council officer or admin may make."""
    found = set()
    for rule in app.url_map.iter_rules():
        for method in rule.methods - {"GET", "HEAD", "OPTIONS"}:
            view = view_function_of(app, rule.endpoint, method)
            roles = getattr(view, "required_roles", None)
            if roles is None:
                roles = getattr(app.view_functions[rule.endpoint], "required_roles", None)
            if roles and set(roles) & STAFF:
                found.add((method, rule.endpoint))
    return found


class Walk:
    """A world to act on, and the staff who act, signed in on the API and the pages."""

    def __init__(self, app, api, create_user):
        self.app = app
        self.api = api
        self.history = History(app, create_user)
        self.create_user = create_user
        self.council = self.history.council
        self.admin = create_user(Role.ADMIN, Role.COUNCIL, email="the.admin@example.org")
        self.token = api.token(self.council)
        self.page = app.test_client()
        sign_in(self.page, self.admin)
        self.resident = create_user(Role.RESIDENT, email="walk.resident@example.org")
        self.organisation_id = self.history.organisation(utcnow() - timedelta(days=3), "Walkers")

    def pending_organisation(self) -> int:
        from volunteering import operations as ops

        return self.history.step(
            utcnow(),
            lambda user_of: (
                ops.propose_organisation(
                    user_of(self.history.organiser), f"Group {next(COUNTER)}", ""
                ).id
            ),
        )

    def pending_activity(self) -> int:
        from volunteering import operations as ops

        def build(user_of):
            return ops.propose_activity(
                user_of(self.history.organiser),
                ops.get_organisation(self.organisation_id),
                title=f"Activity {next(COUNTER)}",
                category="Environment",
                location="Park",
            ).id

        return self.history.step(utcnow(), build)

    def pending_claim(self) -> int:
        from volunteering import operations as ops
        from volunteering.models import Activity

        def approved_activity(user_of):
            activity = db.session.get(Activity, self.pending_activity())
            ops.approve_activity(user_of(self.history.council), activity)
            return activity.id

        activity_id = self.history.step(utcnow(), approved_activity)
        start = (utcnow() - timedelta(hours=next(COUNTER) * 3 + 5)).replace(microsecond=0)

        def build(user_of):
            organiser = user_of(self.history.organiser)
            session = ops.schedule_session(
                organiser, ops.get_activity(activity_id), start, start + timedelta(hours=1)
            )
            attendance = ops.add_attendance(
                organiser,
                session,
                resident_id=self.resident.id,
                checked_in_at=start,
                checked_out_at=start + timedelta(hours=1),
                idempotency_key=f"walk-{next(COUNTER)}",
            )
            return attendance.claim.id

        return self.history.step(utcnow(), build)

    def partner(self, approve=True) -> int:
        from partners import operations as ops

        staff = self.create_user(Role.PARTNER_STAFF)

        def build(user_of):
            partner = ops.register_partner(
                user_of(staff), name=f"Shop {next(COUNTER)}", address="1 High Street"
            )
            if approve:
                from partners.models import PartnerStatus

                ops.decide_partner(user_of(self.council), partner, PartnerStatus.APPROVED)
            return partner.id

        return self.history.step(utcnow(), build)

    def redemption(self) -> tuple[int, int]:
        from rewards import operations as ledger

        shop = self.history.partner(utcnow(), f"Café {next(COUNTER)}", "Roundhay")
        self.history.step(
            utcnow(),
            lambda user_of: ledger.earn(
                self.resident.id, 5, idempotency_key=f"walk-earn-{next(COUNTER)}", description="x"
            ),
        )
        return shop[0], self.history.redeem(utcnow(), self.resident, shop)

    def form(self, url: str, data: dict, *, prefix: str = "", page: str = "/council/audit"):
        """POST a page form as the admin, with the session's CSRF token."""
        html = self.page.get("/account").get_data(as_text=True)
        token = csrf_token_from(html)
        name = f"{prefix}-csrf_token" if prefix else "csrf_token"
        return self.page.post(url, data={**data, name: token})


COUNTER = iter(range(1, 1_000_000))


def api_post(walk, path, body=None, method="POST"):
    return walk.api.call(method, path, walk.token, json=body or {})


def recipe(setup, act):
    """``setup(walk)`` makes what the action needs; ``act(walk, made)`` is the staff action."""
    return setup, act


def nothing(walk):
    return None


def suspended_resident(walk):
    person = walk.create_user(Role.RESIDENT)
    walk.form(f"/admin/users/{person.id}/suspend", {"reason": "Abuse"})
    return person


RECIPES = {
    ("POST", "volunteering_api.OrganisationApprove"): recipe(
        Walk.pending_organisation,
        lambda w, org: api_post(w, f"/api/v1/organisations/{org}/approve"),
    ),
    ("POST", "volunteering_api.OrganisationReject"): recipe(
        Walk.pending_organisation,
        lambda w, org: api_post(w, f"/api/v1/organisations/{org}/reject", {"reason": "Far"}),
    ),
    ("POST", "volunteering_api.OrganisationSuspend"): recipe(
        lambda w: w.organisation_id,
        lambda w, org: api_post(w, f"/api/v1/organisations/{org}/suspend", {"reason": "Harm"}),
    ),
    ("POST", "volunteering_api.ActivityApprove"): recipe(
        Walk.pending_activity,
        lambda w, activity: api_post(w, f"/api/v1/activities/{activity}/approve"),
    ),
    ("POST", "volunteering_api.ActivityReject"): recipe(
        Walk.pending_activity,
        lambda w, activity: api_post(
            w, f"/api/v1/activities/{activity}/reject", {"reason": "Unsafe"}
        ),
    ),
    ("POST", "volunteering_api.ClaimApprove"): recipe(
        Walk.pending_claim, lambda w, claim: api_post(w, f"/api/v1/claims/{claim}/approve")
    ),
    ("POST", "volunteering_api.ClaimReject"): recipe(
        Walk.pending_claim,
        lambda w, claim: api_post(w, f"/api/v1/claims/{claim}/reject", {"reason": "Absent"}),
    ),
    ("POST", "partners_api.PartnerApproveResource"): recipe(
        lambda w: w.partner(approve=False),
        lambda w, partner: api_post(w, f"/api/v1/partners/{partner}/approve"),
    ),
    ("POST", "partners_api.PartnerRejectResource"): recipe(
        lambda w: w.partner(approve=False),
        lambda w, partner: api_post(w, f"/api/v1/partners/{partner}/reject", {"reason": "Far"}),
    ),
    ("POST", "partners_api.PartnerSuspendResource"): recipe(
        Walk.partner,
        lambda w, partner: api_post(
            w, f"/api/v1/partners/{partner}/suspend", {"reason": "Complaints"}
        ),
    ),
    ("PUT", "partners_api.PartnerRateResource"): recipe(
        Walk.partner,
        lambda w, partner: api_post(
            w,
            f"/api/v1/partners/{partner}/settlement-rate",
            {"settlement_rate_pence": 90},
            method="PUT",
        ),
    ),
    ("POST", "wallet.PotsResource"): recipe(
        nothing,
        lambda w, _: api_post(w, "/api/v1/pots", {"name": "Food bank", "description": "Food"}),
    ),
    ("POST", "redemptions_api.RedemptionCancelResource"): recipe(
        Walk.redemption,
        lambda w, ids: api_post(
            w, f"/api/v1/redemptions/{ids[1]}/cancel", {"reason": "Wrong offer"}
        ),
    ),
    ("POST", "partners.receipt"): recipe(
        Walk.redemption,
        lambda w, ids: w.form(
            f"/business/{ids[0]}/redemptions/{ids[1]}", {"reason": "Wrong offer", "submit": "1"}
        ),
    ),
    ("POST", "partners.council_partner"): recipe(
        Walk.partner,
        lambda w, partner: w.form(
            f"/council/partners/{partner}",
            {"rate-settlement_rate_pence": "75", "rate-submit": "Confirm"},
            prefix="rate",
        ),
    ),
    ("POST", "volunteering.decide_organisation"): recipe(
        Walk.pending_organisation,
        lambda w, org: w.form(f"/council/organisations/{org}/approve", {}),
    ),
    ("POST", "volunteering.decide_activity"): recipe(
        Walk.pending_activity,
        lambda w, activity: w.form(f"/council/activities/{activity}/reject", {"reason": "Unsafe"}),
    ),
    ("POST", "volunteering.reject_claim"): recipe(
        Walk.pending_claim,
        lambda w, claim: w.form(f"/council/claims/{claim}/reject", {"reason": "Absent"}),
    ),
    ("POST", "volunteering.approve_claims"): recipe(
        Walk.pending_claim,
        lambda w, claim: w.form("/council/claims/approve", {"claim_ids": [str(claim)]}),
    ),
    ("POST", "rewards.pots"): recipe(
        nothing,
        lambda w, _: w.form("/council/pots", {"name": "Library", "description": "Books"}),
    ),
    ("POST", "expiry.extend_page"): recipe(
        Walk.redemption,
        lambda w, _: w.form(
            f"/council/residents/{w.resident.id}/extend-credits",
            {"days": "30", "reason": "In hospital"},
        ),
    ),
    ("POST", "wallet.ResidentExtensionsResource"): recipe(
        Walk.redemption,
        lambda w, _: api_post(
            w,
            f"/api/v1/residents/{w.resident.id}/extensions",
            {"days": 30, "reason": "In hospital", "idempotency_key": "walk-extension"},
        ),
    ),
    ("POST", "settlement.council_budget"): recipe(
        nothing, lambda w, _: w.form("/council/settlements/budget", {"amount_gbp": "2500.00"})
    ),
    ("POST", "core.admin_user_roles"): recipe(
        nothing,
        lambda w, _: w.form(f"/admin/roles/{w.resident.id}", {"roles": ["resident", "organiser"]}),
    ),
    ("POST", "admin.scheme_settings"): recipe(
        nothing,
        lambda w, _: w.form("/admin/settings", settings_form(w.app, CLAIM_DAILY_MAX_HOURS="7")),
    ),
    ("POST", "admin.suspend_user"): recipe(
        lambda w: w.create_user(Role.RESIDENT),
        lambda w, person: w.form(f"/admin/users/{person.id}/suspend", {"reason": "Abuse"}),
    ),
    ("POST", "admin.restore_user"): recipe(
        suspended_resident,
        lambda w, person: w.form(f"/admin/users/{person.id}/restore", {"reason": "Appeal"}),
    ),
}


def settings_form(app, **changes) -> dict:
    from core import settings

    with app.app_context():
        values = {
            d.name: settings.format_value(d, settings.get_setting(d.name))
            for d in settings.SETTINGS
        }
    return {**values, **changes}


def audit_entries(app) -> list[AuditEntry]:
    with app.app_context():
        entries = db.session.execute(db.select(AuditEntry).order_by(AuditEntry.id)).scalars().all()
        db.session.remove()
    return entries


def test_every_staff_endpoint_is_walked_or_says_why_not(app):
    missing = staff_endpoints(app) - set(RECIPES) - set(NOT_WALKED)
    assert not missing, f"staff endpoints with no audit recipe in this test: {sorted(missing)}"


@pytest.mark.parametrize("endpoint", sorted(RECIPES), ids=lambda e: f"{e[0]} {e[1]}")
def test_the_staff_action_writes_an_audit_entry_naming_who_did_it(app, api, create_user, endpoint):
    assert endpoint in staff_endpoints(app), f"stale recipe: {endpoint} is not in this app"
    walk = Walk(app, api, create_user)
    setup, act = RECIPES[endpoint]
    made = setup(walk)
    before = audit_entries(app)[-1].id if audit_entries(app) else 0
    response = act(walk, made)
    assert response.status_code in (200, 201, 204, 302), (
        endpoint,
        response.status_code,
        re.sub(r"\s+", " ", response.get_data(as_text=True))[:600],
    )
    new = [entry for entry in audit_entries(app) if entry.id > before]
    staff_ids = {walk.council.id, walk.admin.id}
    by_staff = [entry for entry in new if entry.actor_id in staff_ids]
    assert by_staff, f"{endpoint} wrote no audit entry by the officer: {[e.action for e in new]}"
    with app.app_context():
        actor = db.session.get(User, by_staff[-1].actor_id)
        assert actor.has_role(*STAFF)
        db.session.remove()
