"""Writing the audit trail. Entries are only ever added."""

from __future__ import annotations

from core.extensions import db
from core.models import AuditEntry, User


def record(
    actor: User | None,
    action: str,
    subject: str,
    *,
    reason: str | None = None,
    details: dict | None = None,
) -> AuditEntry:
    """Add an audit entry to the current transaction (committed with the action itself)."""
    entry = AuditEntry(
        actor_id=actor.id if actor is not None else None,
        action=action,
        subject=subject,
        reason=reason,
        details=details or {},
    )
    db.session.add(entry)
    return entry
