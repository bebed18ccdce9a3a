"""Privacy: everything the scheme holds about a person, and closing an account.

- ``personal_data(user)`` gathers every row about the person, by section (their account,
  roles, sign-ins, attendances and claims, wallet and credit lots, redemptions, emails sent,
  invitations to their address, audit entries about them), as plain JSON-ready values.
  ``as_json`` and ``as_csv_zip`` give it as a download.
- ``close_account(user, password)`` pseudonymises the person: email, name and postcode are
  replaced, the password can never match, every session and token is revoked, and emails
  not yet sent (and invitations not yet accepted) are dropped. The ledger is never touched
  except for the wallet's display name: entries are append-only, so the history keeps
  adding up and ``ledger verify`` still passes; the wallet now reads "Closed account".

Feature packages are imported inside the functions: the kernel imports none at module level.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import or_, select, update
from werkzeug.security import check_password_hash, generate_password_hash

from core import accounts
from core.audit import record
from core.errors import ConflictError, InvalidRequest
from core.extensions import db
from core.invitations import Invitation
from core.mail import OutboxMessage
from core.models import ApiToken, AuditEntry, LoginSession, RoleMembership, User
from core.security import new_secret_token
from core.timeutil import utcnow

CLOSED_NAME = "Closed account"
CLOSED_POSTCODE = ""


def closed_email(user_id: int) -> str:
    """The pseudonymous address a closed account keeps (unique, undeliverable)."""
    return f"closed-account-{user_id}@closed.invalid"


def _rows(query) -> list[dict]:
    return [dict(row._mapping) for row in db.session.execute(query).all()]


def personal_data(user: User) -> dict[str, list[dict]]:
    """Every row held about ``user``, by section; values are JSON-ready."""
    data: dict[str, list[dict]] = {
        "account": [
            {
                "id": user.id,
                "email": user.email,
                "display_name": user.display_name,
                "postcode": user.postcode,
                "created_at": user.created_at,
                "suspended_at": user.suspended_at,
                "closed_at": user.closed_at,
            }
        ],
        "roles": _rows(
            select(RoleMembership.role, RoleMembership.granted_at).where(
                RoleMembership.user_id == user.id
            )
        ),
        "sign_ins": _rows(
            select(LoginSession.created_at, LoginSession.expires_at, LoginSession.revoked_at)
            .where(LoginSession.user_id == user.id)
            .order_by(LoginSession.created_at)
        ),
        "api_tokens": _rows(
            select(ApiToken.created_at, ApiToken.expires_at, ApiToken.revoked_at)
            .where(ApiToken.user_id == user.id)
            .order_by(ApiToken.created_at)
        ),
        "emails": _rows(
            select(
                OutboxMessage.subject,
                OutboxMessage.body,
                OutboxMessage.created_at,
                OutboxMessage.sent_at,
            )
            .where(OutboxMessage.to == user.email)
            .order_by(OutboxMessage.id)
        ),
        "invitations": _rows(
            select(
                Invitation.kind,
                Invitation.target_id,
                Invitation.created_at,
                Invitation.expires_at,
                Invitation.accepted_at,
                Invitation.revoked_at,
            )
            .where(or_(Invitation.email == user.email, Invitation.accepted_by_id == user.id))
            .order_by(Invitation.id)
        ),
        "audit_entries": _rows(
            select(
                AuditEntry.created_at,
                AuditEntry.action,
                AuditEntry.subject,
                AuditEntry.reason,
                AuditEntry.actor_id,
            )
            .where(or_(AuditEntry.actor_id == user.id, AuditEntry.subject == f"user:{user.id}"))
            .order_by(AuditEntry.id)
        ),
    }
    data.update(_volunteering_data(user))
    data.update(_ledger_data(user))
    data.update(_partner_data(user))
    return data


def _volunteering_data(user: User) -> dict[str, list[dict]]:
    from volunteering.models import (
        Activity,
        Attendance,
        Claim,
        OrganisationMember,
        SessionSignup,
        VolunteeringSession,
    )

    return {
        "attendances": _rows(
            select(
                Attendance.id,
                Activity.title.label("activity"),
                VolunteeringSession.starts_at.label("session_starts_at"),
                Attendance.checked_in_at,
                Attendance.checked_out_at,
                Attendance.source,
            )
            .join(VolunteeringSession, Attendance.session_id == VolunteeringSession.id)
            .join(Activity, VolunteeringSession.activity_id == Activity.id)
            .where(Attendance.resident_id == user.id)
            .order_by(Attendance.checked_in_at)
        ),
        "claims": _rows(
            select(
                Claim.id,
                Claim.attendance_id,
                Claim.minutes,
                Claim.credits,
                Claim.status,
                Claim.decided_at,
                Claim.decision_reason,
            )
            .where(Claim.resident_id == user.id)
            .order_by(Claim.id)
        ),
        "session_signups": _rows(
            select(SessionSignup.session_id, SessionSignup.created_at, SessionSignup.cancelled_at)
            .where(SessionSignup.resident_id == user.id)
            .order_by(SessionSignup.id)
        ),
        "organisations_organised": _rows(
            select(OrganisationMember.organisation_id, OrganisationMember.created_at).where(
                OrganisationMember.user_id == user.id
            )
        ),
    }


def _ledger_data(user: User) -> dict[str, list[dict]]:
    from rewards.models import Account, CreditLot, Entry, Transaction

    account_ids = select(Account.id).where(Account.user_id == user.id)
    return {
        "wallet_transactions": _rows(
            select(
                Transaction.id,
                Transaction.kind,
                Entry.amount,
                Entry.balance_after,
                Entry.memo,
                Transaction.created_at,
            )
            .join(Transaction, Entry.transaction_id == Transaction.id)
            .where(Entry.account_id.in_(account_ids))
            .order_by(Entry.id)
        ),
        "credit_lots": _rows(
            select(
                CreditLot.amount,
                CreditLot.remaining,
                CreditLot.earned_at,
                CreditLot.expires_at,
                CreditLot.source,
            )
            .where(CreditLot.account_id.in_(account_ids))
            .order_by(CreditLot.id)
        ),
    }


def _partner_data(user: User) -> dict[str, list[dict]]:
    from partners.models import Partner, PartnerMembership, Redemption

    return {
        "redemptions": _rows(
            select(
                Redemption.id,
                Partner.name.label("partner"),
                Redemption.description,
                Redemption.credits,
                Redemption.status,
                Redemption.created_at,
            )
            .join(Partner, Redemption.partner_id == Partner.id)
            .where(Redemption.resident_id == user.id)
            .order_by(Redemption.id)
        ),
        "partner_staff_of": _rows(
            select(PartnerMembership.partner_id, Partner.name.label("partner"))
            .join(Partner, PartnerMembership.partner_id == Partner.id)
            .where(PartnerMembership.user_id == user.id)
        ),
    }


def _plain(value):
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def as_json(data: dict[str, list[dict]]) -> str:
    """The personal data as a JSON document."""
    plain = {
        section: [{key: _plain(value) for key, value in row.items()} for row in rows]
        for section, rows in data.items()
    }
    return json.dumps(plain, indent=2, ensure_ascii=False)


def as_csv_zip(data: dict[str, list[dict]]) -> bytes:
    """The personal data as a ZIP of CSV files, one per section."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for section, rows in data.items():
            text = io.StringIO()
            columns = list(rows[0]) if rows else ["(none)"]
            writer = csv.writer(text)
            writer.writerow(columns)
            for row in rows:
                writer.writerow([csv_safe(_plain(row.get(c))) for c in columns])
            archive.writestr(f"{section}.csv", text.getvalue())
    return buffer.getvalue()


def csv_safe(value):
    """Stop a spreadsheet from running a cell as a formula (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def close_account(user: User, password: str) -> User:
    """Close the person's own account, pseudonymising their personal data.

    Credits left in the wallet stay in the ledger (they can no longer be used); the ledger
    still balances. Flushes, never commits.
    """
    if user.closed_at is not None:
        raise ConflictError("This account is already closed.", "account_closed")
    if not check_password_hash(user.password_hash, password or ""):
        raise InvalidRequest(
            "Your password is not right", {"password": ["Your password is not right"]}
        )
    old_email = user.email
    now = utcnow()
    user.email = closed_email(user.id)
    user.display_name = CLOSED_NAME
    user.postcode = CLOSED_POSTCODE
    user.password_hash = generate_password_hash(new_secret_token())
    user.closed_at = now
    user.suspended_at = user.suspended_at or now
    accounts.revoke_all_sessions(user, tokens=True)
    # Emails not sent yet would reach the old address: drop them. Sent ones lose the address.
    db.session.execute(
        OutboxMessage.__table__.delete().where(
            OutboxMessage.to == old_email, OutboxMessage.sent_at.is_(None)
        )
    )
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.to == old_email)
        .values(to=user.email, body="(removed when the account was closed)")
    )
    # Invitations to the old address: pending ones go, the rest lose the address.
    db.session.execute(
        Invitation.__table__.delete().where(
            Invitation.email == old_email,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
    )
    db.session.execute(
        update(Invitation).where(Invitation.email == old_email).values(email=user.email)
    )
    _pseudonymise_wallet(user)
    record(user, "account.closed", f"user:{user.id}")
    db.session.flush()
    return user


def _pseudonymise_wallet(user: User) -> None:
    """The wallet's display name is the person's name: replace it.

    The ledger has no operation for renaming an account yet (requested from rewards/), so
    this one column is updated directly; balances, entries and lots are not touched.
    """
    from rewards.models import Account

    db.session.execute(update(Account).where(Account.user_id == user.id).values(name=CLOSED_NAME))
