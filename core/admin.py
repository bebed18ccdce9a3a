"""Council administration: searching the audit trail, finding people, suspending accounts.

Operations flush and never commit (the request commits once), and audit what they change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Select, func, or_, select

from core import accounts
from core.audit import record
from core.errors import ConflictError, DomainError, ForbiddenError, InvalidRequest
from core.extensions import db
from core.models import AuditEntry, Role, RoleMembership, User
from core.timeutil import utcnow

AUDIT_PAGE_SIZE = 50
USER_PAGE_SIZE = 50


@dataclass
class AuditFilters:
    """What the audit log is filtered by; empty fields do not filter."""

    actor: str = ""
    action: str = ""
    subject: str = ""
    date_from: date | None = None
    date_to: date | None = None


def audit_query(filters: AuditFilters) -> Select:
    """Audit entries matching ``filters``, newest first."""
    query = select(AuditEntry).order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc())
    actor = (filters.actor or "").strip().lower()
    if actor in ("system", "the system"):
        query = query.where(AuditEntry.actor_id.is_(None))
    elif actor.isdigit():
        query = query.where(AuditEntry.actor_id == int(actor))
    elif actor:
        term = f"%{actor}%"
        people = select(User.id).where(
            or_(func.lower(User.email).like(term), func.lower(User.display_name).like(term))
        )
        query = query.where(AuditEntry.actor_id.in_(people))
    action = (filters.action or "").strip()
    if action.endswith("."):
        query = query.where(AuditEntry.action.startswith(action, autoescape=True))
    elif action:
        query = query.where(AuditEntry.action == action)
    subject = (filters.subject or "").strip()
    if subject.endswith(":"):
        query = query.where(AuditEntry.subject.startswith(subject, autoescape=True))
    elif subject:
        query = query.where(AuditEntry.subject == subject)
    if filters.date_from:
        query = query.where(AuditEntry.created_at >= start_of(filters.date_from))
    if filters.date_to:
        query = query.where(AuditEntry.created_at < start_of(filters.date_to + timedelta(days=1)))
    return query


def start_of(day: date) -> datetime:
    """Midnight UTC at the start of ``day``."""
    return datetime.combine(day, time.min, tzinfo=UTC)


def audit_page(filters: AuditFilters, page: int) -> tuple[list[AuditEntry], int]:
    """One page of matching entries and the total number that match."""
    query = audit_query(filters)
    total = db.session.execute(
        select(func.count()).select_from(query.order_by(None).subquery())
    ).scalar_one()
    entries = (
        db.session.execute(query.limit(AUDIT_PAGE_SIZE).offset((page - 1) * AUDIT_PAGE_SIZE))
        .scalars()
        .all()
    )
    return entries, total


def known_actions() -> list[str]:
    """Every action name in the audit log, for the filter's hint."""
    return list(
        db.session.execute(select(AuditEntry.action).distinct().order_by(AuditEntry.action))
        .scalars()
        .all()
    )


# --- people -----------------------------------------------------------------------------


def user_search_query(q: str = "", role: str = "", state: str = "") -> Select:
    """People matching a search term (email, name, postcode), a role and a state."""
    query = select(User).order_by(User.email)
    term = (q or "").strip().lower()
    if term.isdigit():
        query = query.where(User.id == int(term))
    elif term:
        like = f"%{term}%"
        query = query.where(
            or_(
                func.lower(User.email).like(like),
                func.lower(User.display_name).like(like),
                func.lower(User.postcode).like(like),
            )
        )
    if role:
        query = query.where(
            User.id.in_(select(RoleMembership.user_id).where(RoleMembership.role == role))
        )
    if state == "active":
        query = query.where(User.suspended_at.is_(None), User.closed_at.is_(None))
    elif state == "suspended":
        query = query.where(User.suspended_at.is_not(None), User.closed_at.is_(None))
    elif state == "closed":
        query = query.where(User.closed_at.is_not(None))
    return query


def check_may_manage(actor: User, user: User) -> None:
    """Council staff manage residents, organisers and partner staff; admins manage anyone."""
    if actor.id == user.id:
        raise ForbiddenError("You cannot suspend or restore your own account.", "own_account")
    staff_roles = {Role.COUNCIL, Role.ADMIN}
    if user.roles & staff_roles and Role.ADMIN not in actor.roles:
        raise ForbiddenError(
            "Only a council admin can suspend or restore council staff.", "admin_needed"
        )


def suspend_user(actor: User, user: User, reason: str) -> User:
    """Suspend an account: no sign-in, every session and API token stops working at once."""
    reason = clean_reason(reason)
    check_may_manage(actor, user)
    if user.closed_at is not None:
        raise ConflictError("This account is closed.", "account_closed")
    if user.suspended_at is not None:
        raise ConflictError(f"{user.display_name}'s account is already suspended.", "suspended")
    if Role.ADMIN in user.roles and active_admin_count() <= 1:
        raise DomainError("The scheme must keep at least one council admin.", "last_admin")
    user.suspended_at = utcnow()
    accounts.revoke_all_sessions(user, tokens=True)
    record(actor, "user.suspended", f"user:{user.id}", reason=reason)
    db.session.flush()
    return user


def restore_user(actor: User, user: User, reason: str) -> User:
    """Lift a suspension: the person can sign in again (old sessions stay revoked)."""
    reason = clean_reason(reason)
    check_may_manage(actor, user)
    if user.closed_at is not None:
        raise ConflictError("A closed account cannot be restored.", "account_closed")
    if user.suspended_at is None:
        raise ConflictError(f"{user.display_name}'s account is not suspended.", "not_suspended")
    record(
        actor,
        "user.restored",
        f"user:{user.id}",
        reason=reason,
        details={"suspended_at": user.suspended_at.isoformat()},
    )
    user.suspended_at = None
    db.session.flush()
    return user


def active_admin_count() -> int:
    """Council admins whose accounts work."""
    return db.session.execute(
        select(func.count())
        .select_from(RoleMembership)
        .join(User, RoleMembership.user_id == User.id)
        .where(RoleMembership.role == Role.ADMIN.value, User.suspended_at.is_(None))
    ).scalar_one()


def clean_reason(reason: str | None) -> str:
    text = " ".join((reason or "").split())
    if not text:
        raise InvalidRequest("Enter a reason", {"reason": ["Enter a reason."]})
    if len(text) > 1000:
        raise InvalidRequest(
            "The reason must be 1000 characters or fewer", {"reason": ["Too long."]}
        )
    return text


def recent_audit_about(user: User, limit: int = 20) -> list[AuditEntry]:
    """The latest audit entries done by or to ``user``."""
    return list(
        db.session.execute(
            select(AuditEntry)
            .where(or_(AuditEntry.actor_id == user.id, AuditEntry.subject == f"user:{user.id}"))
            .order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc())
            .limit(limit)
        )
        .scalars()
        .all()
    )
