"""Demo data for trying the scheme out: the five logins of API.md and each package's own.

Loading is idempotent: running it again finds what exists and adds only what is missing.
Feature packages add their demo data with ``@demo_loader``; loaders run in registration
order after the logins exist.
"""

from __future__ import annotations

from collections.abc import Callable

from werkzeug.security import generate_password_hash

from core.extensions import db
from core.models import Role, RoleMembership, User

DEMO_PASSWORD = "demo-password"  # noqa: S105 - published in API.md for demo logins only

#: email -> (display name, postcode, roles)
DEMO_USERS = {
    "resident@example.org": ("Robin Resident", "LS8 2HE", [Role.RESIDENT]),
    "organiser@example.org": ("Olu Organiser", "LS7 3QA", [Role.ORGANISER, Role.RESIDENT]),
    "partner@example.org": ("Priya Partner", "LS6 1AA", [Role.PARTNER_STAFF]),
    "council@example.org": ("Chris Council", "LS1 1UR", [Role.COUNCIL]),
    "admin@example.org": ("Alex Admin", "LS1 1UR", [Role.ADMIN, Role.COUNCIL]),
}

DEMO_LOADERS: list[Callable[[dict[str, User]], None]] = []


def demo_loader(function: Callable[[dict[str, User]], None]):
    """Register a package's demo loader; it receives the demo users by email."""
    DEMO_LOADERS.append(function)
    return function


def ensure_user(email: str, display_name: str, postcode: str, roles: list[Role]) -> User:
    """The demo user, created if missing, holding at least ``roles``."""
    user = db.session.execute(db.select(User).where(User.email == email)).scalar_one_or_none()
    if user is None:
        user = User(
            email=email,
            password_hash=generate_password_hash(DEMO_PASSWORD),
            display_name=display_name,
            postcode=postcode,
        )
        db.session.add(user)
    for role in roles:
        if role not in user.roles:
            user.memberships.append(RoleMembership(role=role.value))
    db.session.flush()
    return user


def load_demo_data() -> dict[str, User]:
    """Create (or complete) the demo data; the caller commits."""
    users = {email: ensure_user(email, *details) for email, details in DEMO_USERS.items()}
    for loader in DEMO_LOADERS:
        loader(users)
    db.session.flush()
    return users
