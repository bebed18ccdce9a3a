"""Purging old one-time redemption codes (beat runs it nightly; see core/celery_app.py).

A code works for a few minutes, after which its row serves nothing but the digest's
uniqueness; left alone, the table grows by one row every time a resident opens "Show a
code". Codes that expired more than REDEMPTION_CODE_RETENTION_DAYS ago are deleted, used or
not, in batches of REDEMPTION_CODE_PURGE_BATCH_SIZE with a commit after each, so the job
never holds many row locks at once and can stop halfway and start again. A code a
redemption points at (``redemptions.code_id``) is kept: it is what makes "one redemption
per code" a fact the database holds.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, exists, select

from core.extensions import db
from core.timeutil import utcnow
from partners.models import Redemption, RedemptionCode


def purge_old_redemption_codes(
    now: datetime | None = None,
    retention: timedelta | None = None,
    batch_size: int | None = None,
) -> int:
    """Delete codes that expired over ``retention`` ago and no redemption refers to.

    Commits after each batch; returns how many codes were deleted. Safe to run twice.
    """
    config = current_app.config
    if retention is None:
        retention = timedelta(days=int(config["REDEMPTION_CODE_RETENTION_DAYS"]))
    if batch_size is None:
        batch_size = int(config["REDEMPTION_CODE_PURGE_BATCH_SIZE"])
    cutoff = (now or utcnow()) - retention
    unreferenced = ~exists().where(Redemption.code_id == RedemptionCode.id)
    removed = 0
    while True:
        ids = list(
            db.session.execute(
                select(RedemptionCode.id)
                .where(RedemptionCode.expires_at < cutoff, unreferenced)
                .order_by(RedemptionCode.expires_at)
                .limit(batch_size)
            ).scalars()
        )
        if not ids:
            break
        # The reference check again in the DELETE: a row is never removed from under a
        # redemption, whatever happened between the two statements.
        db.session.execute(
            delete(RedemptionCode)
            .where(RedemptionCode.id.in_(ids), unreferenced)
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
        removed += len(ids)
        if len(ids) < batch_size:
            break
    return removed
