"""What every page's layout needs: the scheme's name and navigation fitted to the roles."""

from __future__ import annotations

from flask import current_app, request, url_for
from flask_login import current_user

from core.models import Role

#: (endpoint, label, roles that see it; empty = everyone signed in)
NAVIGATION = [
    ("rewards.wallet", "Your credits", {Role.RESIDENT}),
    ("volunteering.activities", "Give time", {Role.RESIDENT, Role.ORGANISER}),
    ("volunteering.card", "Your card", {Role.RESIDENT}),
    ("partners.offers", "Spend credits", {Role.RESIDENT, Role.PARTNER_STAFF}),
    ("volunteering.organise", "Organise", {Role.ORGANISER}),
    ("partners.business", "Your business", {Role.PARTNER_STAFF}),
    ("partners.till_start", "Till", {Role.PARTNER_STAFF}),
    ("core.council", "Council", {Role.COUNCIL, Role.ADMIN}),
    ("volunteering.council_claims", "Approvals", {Role.COUNCIL, Role.ADMIN}),
    ("partners.council_partners", "Partners", {Role.COUNCIL, Role.ADMIN}),
    ("rewards.pots", "Community pots", {Role.COUNCIL, Role.ADMIN}),
    ("settlement.council_settlements", "Payments", {Role.COUNCIL, Role.ADMIN}),
    ("reports.dashboard", "Reports", {Role.COUNCIL, Role.ADMIN}),
    ("reports.mine", "Your reports", {Role.ORGANISER, Role.PARTNER_STAFF}),
    ("admin.users", "People", {Role.COUNCIL, Role.ADMIN}),
    ("admin.audit_log", "Audit log", {Role.COUNCIL, Role.ADMIN}),
    ("core.admin_roles", "Roles", {Role.ADMIN}),
    ("admin.scheme_settings", "Settings", {Role.ADMIN}),
    ("core.account", "Account", set()),
]


def navigation_items() -> list[dict]:
    """The service navigation for the current user."""
    if not current_user.is_authenticated:
        items = [("core.register", "Register"), ("core.sign_in", "Sign in")]
    else:
        roles = current_user.roles
        items = [(e, label) for e, label, need in NAVIGATION if not need or roles & need]
    return [
        {"href": url_for(endpoint), "text": label, "active": request.endpoint == endpoint}
        for endpoint, label in items
    ]


def inject_layout() -> dict:
    """Template globals for the layout."""
    return {
        "scheme_name": current_app.config["SCHEME_NAME"],
        "source_code_url": current_app.config.get("SOURCE_CODE_URL") or "",
        "navigation_items": navigation_items,
        "Role": Role,
    }
