"""People, their roles, their sign-in sessions and API tokens, and the audit trail.

Design:
- A ``User`` is one person; what they may do comes from ``RoleMembership`` rows, so one
  person can be a resident and an organiser at once.
- Web sign-in creates a ``LoginSession`` row whose random id is all the session cookie holds.
  Signing out, changing the password or changing roles revokes rows, so a cookie copied
  earlier stops working at once (a signed cookie alone could not be taken back).
- API bearer tokens are stored only as SHA-256 digests, expire, and can be revoked.
- ``AuditEntry`` rows are append-only: who did what to which thing, when and why.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint, event
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.extensions import db
from core.timeutil import UTCDateTime, utcnow


class Role(enum.StrEnum):
    """The roles of SPEC.md; a person may hold several."""

    RESIDENT = "resident"
    ORGANISER = "organiser"
    PARTNER_STAFF = "partner_staff"
    COUNCIL = "council"
    ADMIN = "admin"

    @property
    def label(self) -> str:
        return ROLE_LABELS[self]


ROLE_LABELS = {
    Role.RESIDENT: "Resident",
    Role.ORGANISER: "Organiser",
    Role.PARTNER_STAFF: "Partner staff",
    Role.COUNCIL: "Council staff",
    Role.ADMIN: "Council admin",
}


class User(db.Model):
    """A person with a sign-in."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Lower-cased email address, unique: the sign-in name.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    #: Werkzeug scrypt hash of the password.
    password_hash: Mapped[str] = mapped_column(String(255))
    #: The name shown to others (a first name is enough).
    display_name: Mapped[str] = mapped_column(String(100))
    #: UK postcode, normalised to upper case with one space.
    postcode: Mapped[str] = mapped_column(String(8))
    #: When the account was created.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Set when council staff suspend the account: no sign-in, no API.
    suspended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Set when the person closed their account: personal data pseudonymised, no sign-in.
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    memberships: Mapped[list[RoleMembership]] = relationship(
        back_populates="user",
        cascade="all, delete-orphan",
        lazy="selectin",
        foreign_keys="RoleMembership.user_id",
    )

    #: The login session this object was loaded for (not a column; see core.accounts).
    login_session_id = None

    @property
    def roles(self) -> set[Role]:
        cached = self.__dict__.get("_roles")
        if cached is not None:
            return cached
        return {Role(m.role) for m in self.memberships}

    def cache_roles(self, roles) -> None:
        """Roles read with the user (the bearer lookup), so ``memberships`` need not load;
        forgotten as soon as a membership is added or removed."""
        self.__dict__["_roles"] = {Role(role) for role in roles if role}

    def has_role(self, *roles: Role) -> bool:
        return bool(self.roles.intersection(roles))

    @property
    def is_active(self) -> bool:
        return self.suspended_at is None

    # Flask-Login protocol: the cookie identifies a login session, not the user.
    is_authenticated = True
    is_anonymous = False

    def get_id(self) -> str | None:
        return self.login_session_id

    @property
    def first_name(self) -> str:
        return self.display_name.split()[0] if self.display_name.strip() else ""


class RoleMembership(db.Model):
    """One role held by one person."""

    __tablename__ = "role_memberships"
    __table_args__ = (UniqueConstraint("user_id", "role", name="uq_role_memberships_user_role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The person holding the role.
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: One of ``Role``.
    role: Mapped[str] = mapped_column(String(20))
    #: When the role was granted, and by whom (None for self-registration and demo data).
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    granted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    user: Mapped[User] = relationship(back_populates="memberships", foreign_keys=[user_id])


class LoginSession(db.Model):
    """A signed-in browser. The session cookie holds only ``id``."""

    __tablename__ = "login_sessions"

    #: Random, unguessable identifier (``secrets.token_urlsafe``).
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: Whose session this is.
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: When it was created and when it stops working.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: Set on sign-out, password change or role change.
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(lazy="joined")


class ApiToken(db.Model):
    """A bearer token for the JSON API, stored as a digest."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: SHA-256 hex digest of the token; the token itself is shown once and never stored.
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    #: Whose token this is.
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: When it was issued and when it stops working.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: Set when revoked (``DELETE /api/v1/auth/token``, password change, suspension).
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(lazy="joined")


class AuditEntry(db.Model):
    """An append-only record of a staff action or a credit movement."""

    __tablename__ = "audit_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: When it happened.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    #: Who did it (None for the system: scheduled jobs, demo data).
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    #: A stable dotted name of the action, e.g. ``role.granted``.
    action: Mapped[str] = mapped_column(String(64), index=True)
    #: What it was done to, e.g. ``user:12``.
    subject: Mapped[str] = mapped_column(String(64), index=True)
    #: Why, in the actor's words, where the action takes a reason.
    reason: Mapped[str | None] = mapped_column(Text)
    #: Further facts (old and new values).
    details: Mapped[dict] = mapped_column(JSON, default=dict)

    actor: Mapped[User | None] = relationship()


class SchemeSetting(db.Model):
    """A scheme rule an admin changed on the settings page (core.settings).

    Absent rows mean the configured default (``app.config``) applies. Every change is also
    written to the audit trail with the old and new values.
    """

    __tablename__ = "scheme_settings"

    #: The configuration key it overrides, e.g. ``CREDIT_VALIDITY_DAYS``.
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: The value, as JSON (a number, a list of strings, or null).
    value: Mapped[object] = mapped_column(JSON, nullable=True)
    #: When it was last changed, and by whom.
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


@event.listens_for(User.memberships, "append")
@event.listens_for(User.memberships, "remove")
@event.listens_for(User.memberships, "bulk_replace")
def _forget_cached_roles(user, *_args, **_kwargs):
    user.__dict__.pop("_roles", None)
