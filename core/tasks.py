"""Housekeeping tasks of the shared kernel."""

from celery import shared_task

from core.accounts import purge_expired_credentials as purge
from core.extensions import db
from core.invitations import purge_ended_invitations


@shared_task(name="core.tasks.purge_expired_credentials")
def purge_expired_credentials() -> int:
    """Delete login sessions and API tokens that ended over 30 days ago. Safe to run twice."""
    removed = purge()
    db.session.commit()
    return removed


@shared_task(name="core.tasks.purge_invitations")
def purge_invitations() -> int:
    """Delete invitations that ended over INVITATION_RETENTION_DAYS ago. Safe to run twice."""
    return purge_ended_invitations()
