"""Volunteering operations: the only code that changes volunteering's state.

Every function flushes and never commits: the request, task or command that calls it commits
once, so a refusal leaves nothing half-written. Refusals are ``DomainError`` subclasses with
stable codes (``not_pending``, ``activity_not_approved``, ``session_not_open``...).

Hours to credits (SPEC.md flow 3):
- Minutes counted run from check-in (but not before the scheduled start) to check-out (but
  not after the scheduled end plus CHECKIN_GRACE_MINUTES), whole minutes, rounded down.
- Credits = minutes x the activity's credits per hour / 60, computed exactly (Fraction) and
  rounded to a whole credit by CREDIT_ROUNDING: ``half_up`` (the default: 30 minutes at one
  credit an hour is one credit, 29 minutes is none), ``down`` or ``up``.
- A claim is approved automatically when nothing flags it; otherwise it waits for council
  staff. Flags: ``manual`` (typed in by an organiser), ``outside_window`` (times outside the
  check-in window), ``missed_checkout`` (closed by the nightly job), ``overlapping`` (the
  resident was at another session at the same time), ``daily_maximum`` (more than
  CLAIM_DAILY_MAX_HOURS in a day), ``over_threshold`` (more than CLAIM_AUTO_APPROVE_MAX_*),
  ``organisation_not_approved``.
- Approving posts one earn through ``rewards.operations`` with the idempotency key
  ``volunteering-claim:<id>``, under a row lock on the claim: approving twice is a 409
  ``not_pending`` and never credits twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

from flask import current_app, url_for
from sqlalchemy import Integer, String, bindparam, func, or_, select
from sqlalchemy.orm import joinedload

from core import invitations
from core.alone import execute_alone
from core.audit import record
from core.errors import ConflictError, DomainError, ForbiddenError, InvalidRequest, NotFoundError
from core.extensions import db
from core.invitations import Invitation
from core.mail import queue_email
from core.models import Role, RoleMembership, User
from core.timeutil import UTCDateTime, utcnow
from volunteering import tokens
from volunteering.models import (
    Activity,
    ActivityStatus,
    Attendance,
    AttendanceSource,
    Claim,
    ClaimStatus,
    Organisation,
    OrganisationMember,
    OrganisationStatus,
    SessionSignup,
    VolunteeringSession,
)

ROUNDING_RULES = ("half_up", "down", "up")
UK = ZoneInfo("Europe/London")


class VolunteeringError(DomainError):
    """A volunteering rule refused the request."""


class NotPending(ConflictError):
    code = "not_pending"


class SessionNotOpen(VolunteeringError):
    status = 422
    code = "session_not_open"


def setting(name: str):
    return current_app.config[name]


# --- who may do what -------------------------------------------------------------------


def organisation_ids_of(user: User) -> set[int]:
    """Ids of the organisations ``user`` organises."""
    return set(
        db.session.execute(
            select(OrganisationMember.organisation_id).where(OrganisationMember.user_id == user.id)
        ).scalars()
    )


def is_organiser_of(user: User, organisation_id: int) -> bool:
    return (
        db.session.execute(
            select(OrganisationMember.id).where(
                OrganisationMember.user_id == user.id,
                OrganisationMember.organisation_id == organisation_id,
            )
        ).first()
        is not None
    )


def require_organiser_of(user: User, organisation_id: int) -> None:
    """403 ``not_your_organisation`` unless ``user`` organises the organisation."""
    if not is_organiser_of(user, organisation_id):
        raise ForbiddenError(
            "You are not an organiser of this organisation.", code="not_your_organisation"
        )


def get_organisation(organisation_id: int) -> Organisation:
    organisation = db.session.get(Organisation, organisation_id)
    if organisation is None:
        raise NotFoundError("There is no such organisation.")
    return organisation


def get_activity(activity_id: int) -> Activity:
    activity = db.session.get(Activity, activity_id)
    if activity is None:
        raise NotFoundError("There is no such activity.")
    return activity


def get_session(session_id: int) -> VolunteeringSession:
    session = db.session.get(
        VolunteeringSession, session_id, options=[joinedload(VolunteeringSession.activity)]
    )
    if session is None:
        raise NotFoundError("There is no such session.")
    return session


def get_claim(claim_id: int) -> Claim:
    claim = db.session.get(Claim, claim_id)
    if claim is None:
        raise NotFoundError("There is no such claim.")
    return claim


def organised_session(user: User, session_id: int) -> VolunteeringSession:
    """The session, if ``user`` organises its activity's organisation (403 otherwise)."""
    session = get_session(session_id)
    require_organiser_of(user, session.activity.organisation_id)
    return session


def clean_text(value: str | None, field: str, label: str, max_length: int, required=True) -> str:
    text = " ".join((value or "").split()) if field != "description" else (value or "").strip()
    if required and not text:
        raise InvalidRequest(f"Enter {label}", {field: [f"Enter {label}."]})
    if len(text) > max_length:
        raise InvalidRequest(
            f"{label.capitalize()} must be {max_length} characters or fewer",
            {field: [f"At most {max_length} characters."]},
        )
    return text


def clean_reason(reason: str | None) -> str:
    return clean_text(reason, "reason", "a reason", 1000)


# --- organisations ---------------------------------------------------------------------


def propose_organisation(actor: User, name: str, description: str = "") -> Organisation:
    """An organiser proposes a community group; they become its first organiser."""
    organisation = Organisation(
        name=clean_text(name, "name", "the organisation's name", 200),
        description=clean_text(description, "description", "a description", 5000, False),
        created_by_id=actor.id,
    )
    organisation.members.append(OrganisationMember(user_id=actor.id))
    db.session.add(organisation)
    db.session.flush()
    record(actor, "organisation.proposed", f"organisation:{organisation.id}")
    return organisation


def _decide_organisation(
    actor: User, organisation: Organisation, status: OrganisationStatus, reason=None, allowed=None
) -> Organisation:
    allowed = allowed or {OrganisationStatus.PENDING}
    organisation = db.session.execute(
        select(Organisation).where(Organisation.id == organisation.id).with_for_update()
    ).scalar_one()
    if organisation.status not in allowed:
        raise NotPending(
            f"This organisation is {organisation.status}, so it cannot be {status} now."
        )
    organisation.status = status.value
    organisation.decided_by_id = actor.id
    organisation.decided_at = utcnow()
    organisation.decision_reason = reason
    db.session.flush()
    record(actor, f"organisation.{status.value}", f"organisation:{organisation.id}", reason=reason)
    for member in organisation.members:
        queue_email(
            member.user.email,
            f"{organisation.name}: {status.value}",
            f"Council staff have {status.value} {organisation.name}."
            + (f"\n\nReason: {reason}" if reason else ""),
        )
    return organisation


def approve_organisation(actor: User, organisation: Organisation) -> Organisation:
    """Council staff approve a pending (or reinstate a suspended) organisation."""
    return _decide_organisation(
        actor,
        organisation,
        OrganisationStatus.APPROVED,
        allowed={OrganisationStatus.PENDING, OrganisationStatus.SUSPENDED},
    )


def reject_organisation(actor: User, organisation: Organisation, reason: str) -> Organisation:
    """Council staff reject a pending organisation, saying why."""
    return _decide_organisation(
        actor, organisation, OrganisationStatus.REJECTED, clean_reason(reason)
    )


def suspend_organisation(actor: User, organisation: Organisation, reason: str) -> Organisation:
    """Council staff suspend an approved organisation: its claims then wait for approval."""
    return _decide_organisation(
        actor,
        organisation,
        OrganisationStatus.SUSPENDED,
        clean_reason(reason),
        allowed={OrganisationStatus.APPROVED},
    )


def invite_organiser(
    actor: User, organisation: Organisation, email: str
) -> OrganisationMember | Invitation:
    """An organiser adds another person as an organiser of the group, by email.

    With an account, they become an organiser at once (and are told). Without one, a
    pending invitation is kept and emailed (``core.invitations``): they become an organiser
    when they register or sign in with that address, or follow the link. Inviting the same
    address again renews the invitation rather than adding another.
    """
    require_organiser_of(actor, organisation.id)
    from core.accounts import normalise_email

    address = normalise_email(email)
    user = db.session.execute(select(User).where(User.email == address)).scalar_one_or_none()
    if user is None:
        return invitations.invite(actor, ORGANISER_INVITATION.name, organisation.id, address)
    if is_organiser_of(user, organisation.id):
        raise ConflictError(f"{user.display_name} already organises {organisation.name}.")
    member = OrganisationMember(
        organisation_id=organisation.id, user_id=user.id, invited_by_id=actor.id
    )
    db.session.add(member)
    if Role.ORGANISER not in user.roles:
        user.memberships.append(RoleMembership(role=Role.ORGANISER.value, granted_by_id=actor.id))
    db.session.flush()
    record(
        actor,
        "organisation.organiser_added",
        f"organisation:{organisation.id}",
        details={"user_id": user.id},
    )
    queue_email(
        user.email,
        f"You are now an organiser of {organisation.name}",
        f"{actor.display_name} added you as an organiser of {organisation.name}. "
        "Sign in and choose Organise to see its activities.",
    )
    return member


def add_invited_organiser(invitation: Invitation, user: User) -> None:
    """An invited person accepted: they organise the group (no-op if they already do)."""
    organisation = db.session.get(Organisation, invitation.target_id)
    if organisation is None:
        return
    invitations.ensure_role(user, Role.ORGANISER, invitation)
    if is_organiser_of(user, organisation.id):
        return
    db.session.add(
        OrganisationMember(
            organisation_id=organisation.id,
            user_id=user.id,
            invited_by_id=invitation.invited_by_id,
        )
    )
    db.session.flush()
    inviter = invitation.invited_by
    record(
        inviter,
        "organisation.organiser_added",
        f"organisation:{organisation.id}",
        details={"user_id": user.id, "invitation_id": invitation.id},
    )


def _organisation_name(organisation_id: int) -> str | None:
    organisation = db.session.get(Organisation, organisation_id)
    return organisation.name if organisation is not None else None


ORGANISER_INVITATION = invitations.register_kind(
    invitations.InvitationKind(
        name="organiser",
        role=Role.ORGANISER,
        offer="help organise volunteering for {target}",
        becomes="an organiser of {target}",
        target_name=_organisation_name,
        may_manage=is_organiser_of,
        add_member=add_invited_organiser,
        page_endpoint="volunteering.organisation",
        page_argument="organisation_id",
    )
)


# --- activities and sessions -----------------------------------------------------------


def propose_activity(
    actor: User,
    organisation: Organisation,
    *,
    title: str,
    description: str = "",
    category: str,
    location: str,
    ward: str | None = None,
    credits_per_hour: int = 1,
    capacity: int | None = None,
) -> Activity:
    """An organiser of an approved organisation proposes an activity for approval."""
    require_organiser_of(actor, organisation.id)
    if organisation.status != OrganisationStatus.APPROVED:
        raise ConflictError(
            "Your organisation must be approved by the council before it proposes activities.",
            code="organisation_not_approved",
        )
    if category not in setting("VOLUNTEERING_CATEGORIES"):
        raise InvalidRequest("Choose a category from the list", {"category": ["Not a category."]})
    wards = setting("VOLUNTEERING_WARDS")
    ward = ward or wards[0]
    if ward not in wards:
        raise InvalidRequest("Choose a ward from the list", {"ward": ["Not a ward."]})
    if not isinstance(credits_per_hour, int) or not 1 <= credits_per_hour <= 10:
        raise InvalidRequest(
            "Credits per hour must be a whole number from 1 to 10",
            {"credits_per_hour": ["A whole number from 1 to 10."]},
        )
    if capacity is not None and (not isinstance(capacity, int) or not 1 <= capacity <= 10_000):
        raise InvalidRequest(
            "Capacity must be a whole number of people, 1 or more",
            {"capacity": ["A whole number from 1 to 10000."]},
        )
    activity = Activity(
        organisation_id=organisation.id,
        title=clean_text(title, "title", "a title", 200),
        description=clean_text(description, "description", "a description", 5000, False),
        category=category,
        location=clean_text(location, "location", "where it happens", 200),
        ward=ward,
        credits_per_hour=credits_per_hour,
        capacity=capacity,
        created_by_id=actor.id,
    )
    db.session.add(activity)
    db.session.flush()
    record(actor, "activity.proposed", f"activity:{activity.id}")
    return activity


def _decide_activity(
    actor: User, activity: Activity, status: ActivityStatus, reason=None
) -> Activity:
    activity = db.session.execute(
        select(Activity).where(Activity.id == activity.id).with_for_update()
    ).scalar_one()
    if activity.status != ActivityStatus.PENDING:
        raise NotPending(f"This activity is already {activity.status}.")
    activity.status = status.value
    activity.decided_by_id = actor.id
    activity.decided_at = utcnow()
    activity.decision_reason = reason
    db.session.flush()
    record(actor, f"activity.{status.value}", f"activity:{activity.id}", reason=reason)
    creator = db.session.get(User, activity.created_by_id)
    queue_email(
        creator.email,
        f"{activity.title}: {status.value}",
        f"Council staff have {status.value} the activity {activity.title}."
        + (f"\n\nReason: {reason}" if reason else ""),
    )
    return activity


def approve_activity(actor: User, activity: Activity) -> Activity:
    """Council staff approve a pending activity: it can now take sessions and earn."""
    return _decide_activity(actor, activity, ActivityStatus.APPROVED)


def reject_activity(actor: User, activity: Activity, reason: str) -> Activity:
    """Council staff reject a pending activity, saying why."""
    return _decide_activity(actor, activity, ActivityStatus.REJECTED, clean_reason(reason))


def schedule_session(
    actor: User, activity: Activity, starts_at: datetime, ends_at: datetime
) -> VolunteeringSession:
    """An organiser schedules a session of an approved activity (past sessions allowed)."""
    require_organiser_of(actor, activity.organisation_id)
    if activity.status != ActivityStatus.APPROVED:
        raise ConflictError(
            "Sessions can only be added to an activity the council has approved.",
            code="activity_not_approved",
        )
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise InvalidRequest("Give times with a time zone", {"starts_at": ["Add an offset."]})
    if ends_at <= starts_at:
        raise InvalidRequest("The session must end after it starts", {"ends_at": ["Too early."]})
    if ends_at - starts_at > timedelta(hours=24):
        raise InvalidRequest("A session can last at most 24 hours", {"ends_at": ["Too long."]})
    session = VolunteeringSession(
        activity_id=activity.id, starts_at=starts_at, ends_at=ends_at, created_by_id=actor.id
    )
    db.session.add(session)
    db.session.flush()
    record(actor, "session.scheduled", f"session:{session.id}")
    return session


def cancel_session(actor: User, session: VolunteeringSession) -> VolunteeringSession:
    """An organiser cancels a session that has not ended; everyone signed up is emailed.

    A cancelled session takes no sign-ups and no scans; attendance already recorded stays.
    """
    require_organiser_of(actor, session.activity.organisation_id)
    session = db.session.execute(
        select(VolunteeringSession).where(VolunteeringSession.id == session.id).with_for_update()
    ).scalar_one()
    if session.cancelled_at is not None:
        raise ConflictError("This session is already cancelled.", code="session_cancelled")
    if session.ends_at <= utcnow():
        raise ConflictError("This session has already ended.", code="session_closed")
    session.cancelled_at = utcnow()
    db.session.flush()
    record(actor, "session.cancelled", f"session:{session.id}")
    residents = db.session.execute(
        select(User)
        .join(SessionSignup, SessionSignup.resident_id == User.id)
        .where(SessionSignup.session_id == session.id, SessionSignup.cancelled_at.is_(None))
    ).scalars()
    for resident in residents:
        queue_email(
            resident.email,
            f"Cancelled: {session_label(session)}",
            f"Sorry, {session.activity.organisation.name} has cancelled "
            f"{session_label(session)} (UTC). You do not need to go.",
        )
    return session


def sign_up(resident: User, session: VolunteeringSession) -> SessionSignup:
    """A resident signs up to a session that has not ended, within the activity's capacity."""
    session = db.session.execute(
        select(VolunteeringSession).where(VolunteeringSession.id == session.id).with_for_update()
    ).scalar_one()
    if session.cancelled_at is not None or session.ends_at <= utcnow():
        raise ConflictError("This session has finished or was cancelled.", code="session_closed")
    if session.activity.status != ActivityStatus.APPROVED:
        raise ConflictError("This activity is not open.", code="activity_not_approved")
    existing = db.session.execute(
        select(SessionSignup).where(
            SessionSignup.session_id == session.id, SessionSignup.resident_id == resident.id
        )
    ).scalar_one_or_none()
    if existing is not None and existing.cancelled_at is None:
        return existing
    capacity = session.activity.capacity
    if capacity is not None and signup_count(session.id) >= capacity:
        raise ConflictError("Sorry, this session is full.", code="session_full")
    if existing is not None:
        existing.cancelled_at = None
        existing.created_at = utcnow()
        signup = existing
    else:
        signup = SessionSignup(session_id=session.id, resident_id=resident.id)
        db.session.add(signup)
    db.session.flush()
    return signup


def cancel_signup(resident: User, session: VolunteeringSession) -> None:
    """A resident cancels their place (nothing happens if they had none)."""
    signup = db.session.execute(
        select(SessionSignup).where(
            SessionSignup.session_id == session.id,
            SessionSignup.resident_id == resident.id,
            SessionSignup.cancelled_at.is_(None),
        )
    ).scalar_one_or_none()
    if signup is not None:
        signup.cancelled_at = utcnow()
        db.session.flush()


def signup_count(session_id: int) -> int:
    return db.session.execute(
        select(func.count())
        .select_from(SessionSignup)
        .where(SessionSignup.session_id == session_id, SessionSignup.cancelled_at.is_(None))
    ).scalar_one()


# --- check-in --------------------------------------------------------------------------


@dataclass
class ScanResult:
    """What a check-in scan did: ``checked_in`` (first time) or ``checked_out``."""

    state: str
    attendance: Attendance

    @property
    def claim(self) -> Claim | None:
        return self.attendance.claim

    def as_dict(self) -> dict:
        if self.state == "checked_in":
            return {"attendance_id": self.attendance.id, "state": "checked_in"}
        claim = self.claim
        return {
            "attendance_id": self.attendance.id,
            "state": "checked_out",
            "minutes": claim.minutes if claim else 0,
            "credits": claim.credits if claim else 0,
            "claim_status": claim.status if claim else None,
        }


def window_of(session: VolunteeringSession) -> tuple[datetime, datetime]:
    """When scans are accepted: from a little before the start to the grace after the end."""
    opens = session.starts_at - timedelta(minutes=int(setting("CHECKIN_OPENS_MINUTES_BEFORE")))
    closes = session.ends_at + timedelta(minutes=int(setting("CHECKIN_GRACE_MINUTES")))
    return opens, closes


def is_open(session: VolunteeringSession, at: datetime | None = None) -> bool:
    at = at or utcnow()
    opens, closes = window_of(session)
    return session.cancelled_at is None and opens <= at <= closes


def require_open(session: VolunteeringSession, at: datetime) -> None:
    if session.cancelled_at is not None:
        raise SessionNotOpen("This session was cancelled.")
    if session.activity.status != ActivityStatus.APPROVED:
        raise SessionNotOpen("This activity is not approved.")
    if not is_open(session, at):
        opens, closes = window_of(session)
        raise SessionNotOpen(
            "Check-in for this session is not open now. It is open from "
            f"{opens:%H:%M} to {closes:%H:%M} UTC on {opens:%d %b %Y}."
        )


def check_in_with_token(resident: User, token: str, nonce: str) -> ScanResult:
    """A resident scanned a session's QR code: check in the first time, out the second.

    The same ``nonce`` again answers as before and records nothing new. Refused with
    ``token_invalid``, ``token_expired`` or ``session_not_open``.
    """
    scanned = tokens.read_checkin_token(token)
    at = scanned.scanned_at or utcnow()
    source = AttendanceSource.QR
    first = first_scan(scanned.session_id, resident.id, nonce, at, source, resident.id)
    if first is not None:
        return first
    session = get_session(scanned.session_id)
    return record_scan(session, resident.id, nonce, at, source, resident.id)


def check_in_with_card(
    organiser: User, session_id: int, card: str, nonce: str | None = None
) -> ScanResult:
    """An organiser scanned (or typed) a resident's card at their session: in, then out."""
    session = organised_session(organiser, session_id)
    resident_id = resident_id_from_card(card)
    result = record_scan(session, resident_id, nonce, utcnow(), AttendanceSource.CARD, organiser.id)
    record(
        organiser,
        f"attendance.card_{result.state}",
        f"attendance:{result.attendance.id}",
        details={"session_id": session.id, "resident_id": resident_id},
    )
    return result


def resident_id_from_card(card: str) -> int:
    """The resident a card QR token or a typed card number stands for (who must exist)."""
    card = (card or "").strip()
    if card.isdigit() or (card.replace(" ", "").replace("-", "").isdigit() and card):
        resident_id = tokens.resident_id_from_card_number(card)
    else:
        resident_id = tokens.read_card_token(card)
    user = db.session.get(User, resident_id)
    if user is None or Role.RESIDENT not in user.roles:
        raise tokens.TokenInvalid("No resident has this card.")
    return resident_id


def _find_attendance(session_id: int, resident_id: int) -> Attendance | None:
    return db.session.execute(
        select(Attendance)
        .where(Attendance.session_id == session_id, Attendance.resident_id == resident_id)
        .with_for_update()
    ).scalar_one_or_none()


def record_scan(
    session: VolunteeringSession,
    resident_id: int,
    nonce: str | None,
    at: datetime,
    source: AttendanceSource,
    recorded_by_id: int,
) -> ScanResult:
    """Check a resident in (no attendance yet) or out (an open one), under a row lock.

    The hot path (a first scan) is one statement: ``INSERT ... ON CONFLICT DO NOTHING
    RETURNING id`` on the unique (session, resident) index, so two identical requests at the
    same instant record once and need no savepoint. When the row exists already, it is read
    with a row lock: the same nonce answers as before; otherwise the scan checks out.
    """
    first = first_scan(session.id, resident_id, nonce, at, source, recorded_by_id)
    if first is not None:
        return first
    attendance = _find_attendance(session.id, resident_id)
    if attendance is not None and nonce:
        if attendance.checkin_nonce == nonce:
            return ScanResult("checked_in", attendance)
        if attendance.checkout_nonce == nonce:
            return ScanResult("checked_out", attendance)
    require_open(session, at)
    if attendance is None:  # pragma: no cover - the insert above made it or it existed
        raise ConflictError("Scan again.", code="retry")
    if attendance.checked_out_at is not None:
        raise ConflictError(
            "You have already checked in and out of this session.", code="already_checked_out"
        )
    attendance.checked_out_at = max(at, attendance.checked_in_at)
    attendance.checkout_nonce = nonce
    db.session.flush()
    create_claim(attendance)
    return ScanResult("checked_out", attendance)


def first_scan(
    session_id: int,
    resident_id: int,
    nonce: str | None,
    at: datetime,
    source: AttendanceSource,
    recorded_by_id: int,
) -> ScanResult | None:
    """Record a first scan in one statement, or None when it cannot be one.

    ``INSERT ... SELECT`` from the session (joined to its activity) inserts only when the
    session exists, is not cancelled, its activity is approved and ``at`` is inside the
    check-in window; ``ON CONFLICT DO NOTHING`` on the unique (session, resident) index
    makes a second scan, or the same scan twice at the same instant, insert nothing. None
    means "look closer" (``record_scan`` then explains, checks out, or answers a replay).
    """
    opens_before = timedelta(minutes=int(setting("CHECKIN_OPENS_MINUTES_BEFORE")))
    grace = timedelta(minutes=int(setting("CHECKIN_GRACE_MINUTES")))
    values = {
        "session_id": session_id,
        "resident_id": resident_id,
        "checked_in_at": at,
        "source": source.value,
        "checkin_nonce": nonce,
        "recorded_by_id": recorded_by_id,
        "created_at": utcnow(),
    }
    # A Core statement built once per dialect; the hot path neither rebuilds the SQL
    # expression nor goes through the ORM's bulk layer. Complete by itself, it commits on
    # its own when the request has no transaction yet (core.alone): one round trip.
    rows = execute_alone(
        first_scan_statement(db.engine.dialect.name),
        {
            **{f"p_{name}": value for name, value in values.items()},
            "p_latest_start": at + opens_before,
            "p_earliest_end": at - grace,
        },
    )
    new_id = rows[0][0] if rows else None
    if new_id is None:
        return None
    # Not loaded back: the answer needs only what was just written.
    return ScanResult("checked_in", Attendance(id=new_id, **values))


#: ``first_scan``'s statement, per dialect.
_FIRST_SCAN_STATEMENTS: dict = {}


def first_scan_statement(dialect: str):
    """``INSERT INTO attendances ... SELECT ... ON CONFLICT DO NOTHING RETURNING id``."""
    statement = _FIRST_SCAN_STATEMENTS.get(dialect)
    if statement is not None:
        return statement
    columns = [
        ("session_id", None),
        ("resident_id", Integer()),
        ("checked_in_at", UTCDateTime()),
        ("source", String()),
        ("checkin_nonce", String()),
        ("recorded_by_id", Integer()),
        ("created_at", UTCDateTime()),
    ]
    rows = (
        select(
            VolunteeringSession.id,
            *(bindparam(f"p_{name}", type_=kind) for name, kind in columns[1:]),
        )
        .join(Activity, Activity.id == VolunteeringSession.activity_id)
        .where(
            VolunteeringSession.id == bindparam("p_session_id", type_=Integer()),
            VolunteeringSession.cancelled_at.is_(None),
            Activity.status == ActivityStatus.APPROVED.value,
            VolunteeringSession.starts_at <= bindparam("p_latest_start", type_=UTCDateTime()),
            VolunteeringSession.ends_at >= bindparam("p_earliest_end", type_=UTCDateTime()),
        )
    )
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = (
        insert(Attendance.__table__)
        .from_select([name for name, _ in columns], rows)
        .on_conflict_do_nothing(index_elements=["session_id", "resident_id"])
        .returning(Attendance.__table__.c.id)
    )
    _FIRST_SCAN_STATEMENTS[dialect] = statement
    return statement


def add_attendance(
    organiser: User,
    session: VolunteeringSession,
    *,
    resident_id: int | None = None,
    card_token: str | None = None,
    checked_in_at: datetime,
    checked_out_at: datetime | None,
    idempotency_key: str,
    source: AttendanceSource = AttendanceSource.MANUAL,
) -> Attendance:
    """An organiser records attendance by hand (or from a paper sheet); its claim waits.

    The same ``idempotency_key`` for the same session returns the first attendance; with
    different details it is a 409 ``idempotency_conflict``.
    """
    require_organiser_of(organiser, session.activity.organisation_id)
    if card_token:
        resident_id = resident_id_from_card(card_token)
    resident = db.session.get(User, resident_id) if resident_id else None
    if resident is None or Role.RESIDENT not in resident.roles:
        raise InvalidRequest("There is no such resident", {"resident_id": ["Not a resident."]})
    if checked_in_at.tzinfo is None or (checked_out_at and checked_out_at.tzinfo is None):
        raise InvalidRequest("Give times with a time zone", {"checked_in_at": ["Add an offset."]})
    if checked_out_at is not None and checked_out_at < checked_in_at:
        raise InvalidRequest(
            "The check-out time must be after the check-in time",
            {"checked_out_at": ["Before the check-in."]},
        )
    if checked_in_at > utcnow() + timedelta(minutes=5):
        raise InvalidRequest(
            "The check-in time cannot be in the future", {"checked_in_at": ["In the future."]}
        )
    key = f"{session.id}:{idempotency_key}"
    existing = db.session.execute(
        select(Attendance).where(Attendance.idempotency_key == key)
    ).scalar_one_or_none()
    if existing is not None:
        same = (
            existing.resident_id == resident.id
            and existing.checked_in_at == checked_in_at
            and existing.checked_out_at == checked_out_at
        )
        if not same:
            raise ConflictError(
                "This idempotency key was used for a different attendance.",
                code="idempotency_conflict",
            )
        return existing
    if _find_attendance(session.id, resident.id) is not None:
        raise ConflictError(
            f"{resident.display_name} already has an attendance at this session.",
            code="attendance_exists",
        )
    attendance = Attendance(
        session_id=session.id,
        resident_id=resident.id,
        checked_in_at=checked_in_at,
        checked_out_at=checked_out_at,
        source=source.value,
        idempotency_key=key,
        recorded_by_id=organiser.id,
    )
    db.session.add(attendance)
    db.session.flush()
    record(
        organiser,
        "attendance.added",
        f"attendance:{attendance.id}",
        details={"session_id": session.id, "resident_id": resident.id, "source": source.value},
    )
    if checked_out_at is not None:
        create_claim(attendance)
    return attendance


# --- claims ----------------------------------------------------------------------------


def counted_minutes(session: VolunteeringSession, checked_in_at, checked_out_at) -> int:
    """Minutes attended, capped by the schedule plus the grace period."""
    grace = timedelta(minutes=int(setting("CHECKIN_GRACE_MINUTES")))
    start = max(checked_in_at, session.starts_at)
    end = min(checked_out_at, session.ends_at + grace)
    if end <= start:
        return 0
    return int((end - start).total_seconds() // 60)


def credits_for(minutes: int, credits_per_hour: int, rule: str | None = None) -> int:
    """Whole credits for ``minutes`` at ``credits_per_hour``, by the configured rule."""
    rule = rule or setting("CREDIT_ROUNDING")
    exact = Fraction(minutes * credits_per_hour, 60)
    if rule == "down":
        return math.floor(exact)
    if rule == "up":
        return math.ceil(exact)
    if rule == "half_up":
        return math.floor(exact + Fraction(1, 2))
    raise ValueError(f"CREDIT_ROUNDING must be one of {ROUNDING_RULES}, not {rule!r}")


def claim_flags(attendance: Attendance, minutes: int, credits: int) -> list[str]:
    """Why this claim needs a person to look at it (empty: approve it automatically)."""
    session = attendance.session
    flags = []
    if attendance.source in (AttendanceSource.MANUAL, AttendanceSource.SHEET):
        flags.append("manual")
    opens, closes = window_of(session)
    if attendance.checked_in_at < opens or (attendance.checked_out_at or opens) > closes:
        flags.append("outside_window")
    if attendance.auto_closed_at is not None:
        flags.append("missed_checkout")
    end = attendance.checked_out_at or attendance.checked_in_at
    overlapping = db.session.execute(
        select(Attendance.id).where(
            Attendance.resident_id == attendance.resident_id,
            Attendance.id != attendance.id,
            Attendance.checked_in_at < end,
            or_(
                Attendance.checked_out_at.is_(None),
                Attendance.checked_out_at > attendance.checked_in_at,
            ),
        )
    ).first()
    if overlapping is not None:
        flags.append("overlapping")
    # The day is the UK day the resident arrived (midnight in London, not in UTC).
    local = attendance.checked_in_at.astimezone(UK)
    day_start = local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)
    earlier = db.session.execute(
        select(func.coalesce(func.sum(Claim.minutes), 0))
        .join(Attendance, Claim.attendance_id == Attendance.id)
        .where(
            Claim.resident_id == attendance.resident_id,
            Claim.status != ClaimStatus.REJECTED.value,
            Attendance.checked_in_at >= day_start,
            Attendance.checked_in_at < day_start + timedelta(days=1),
        )
    ).scalar_one()
    if earlier + minutes > int(setting("CLAIM_DAILY_MAX_HOURS")) * 60:
        flags.append("daily_maximum")
    if minutes > int(setting("CLAIM_AUTO_APPROVE_MAX_MINUTES")) or credits > int(
        setting("CLAIM_AUTO_APPROVE_MAX_CREDITS")
    ):
        flags.append("over_threshold")
    if session.activity.organisation.status != OrganisationStatus.APPROVED:
        flags.append("organisation_not_approved")
    return flags


def create_claim(attendance: Attendance) -> Claim:
    """The claim of a closed attendance; approved (and credited) at once if nothing flags it."""
    session = attendance.session
    minutes = counted_minutes(session, attendance.checked_in_at, attendance.checked_out_at)
    credits = credits_for(minutes, session.activity.credits_per_hour)
    flags = claim_flags(attendance, minutes, credits)
    claim = Claim(
        attendance=attendance,
        session_id=session.id,
        resident_id=attendance.resident_id,
        minutes=minutes,
        credits=credits,
        flags=flags,
        status=ClaimStatus.PENDING.value,
    )
    db.session.add(claim)
    db.session.flush()
    if not flags:
        _approve(claim, None)
    return claim


def claim_description(claim: Claim) -> str:
    """Why the credits were earned, in words: "Litter pick, Roundhay Park, 3 Nov (2h 30m)"."""
    session = claim.session
    activity = session.activity
    hours, minutes = divmod(claim.minutes, 60)
    duration = f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"
    day = f"{session.starts_at.day} {session.starts_at:%b}"
    return f"{activity.title}, {activity.location}, {day} ({duration})"


def _approve(claim: Claim, actor: User | None) -> Claim:
    """Post the earn and mark the claim approved (the caller holds the claim's lock)."""
    claim.status = ClaimStatus.APPROVED.value
    claim.decided_by_id = actor.id if actor else None
    claim.decided_at = utcnow()
    if claim.credits > 0:
        from rewards import operations as ledger

        transaction = ledger.earn(
            claim.resident_id,
            claim.credits,
            idempotency_key=f"volunteering-claim:{claim.id}",
            description=claim_description(claim),
            actor_id=actor.id if actor else None,
            source="volunteering",
        )
        claim.transaction_id = transaction.id
    db.session.flush()
    record(
        actor,
        "claim.approved",
        f"claim:{claim.id}",
        details={"credits": claim.credits, "automatic": actor is None},
    )
    if claim.credits > 0:
        resident = db.session.get(User, claim.resident_id)
        queue_email(
            resident.email,
            f"You earned {claim.credits} credit{'s' if claim.credits != 1 else ''}",
            f"Thank you for giving your time: {claim_description(claim)}.\n\n"
            f"{claim.credits} credit{'s' if claim.credits != 1 else ''} "
            "have been added to your wallet.",
        )
    return claim


def _lock_pending_claim(actor: User, claim_id: int) -> Claim:
    claim = db.session.execute(
        select(Claim).where(Claim.id == claim_id).with_for_update()
    ).scalar_one_or_none()
    if claim is None:
        raise NotFoundError("There is no such claim.")
    if claim.status != ClaimStatus.PENDING:
        raise NotPending(f"This claim is already {claim.status}.")
    if is_organiser_of(actor, claim.session.activity.organisation_id):
        raise ForbiddenError(
            "You organise this organisation, so another member of council staff must decide "
            "its claims.",
            code="conflict_of_interest",
        )
    if claim.resident_id == actor.id:
        raise ForbiddenError(
            "Another member of council staff must decide your own claim.",
            code="conflict_of_interest",
        )
    return claim


def approve_claim(actor: User, claim_id: int) -> Claim:
    """Council staff approve a pending claim: one earn, never two (409 ``not_pending``)."""
    claim = _lock_pending_claim(actor, claim_id)
    return _approve(claim, actor)


def reject_claim(actor: User, claim_id: int, reason: str) -> Claim:
    """Council staff reject a pending claim, saying why; the resident is told."""
    reason = clean_reason(reason)
    claim = _lock_pending_claim(actor, claim_id)
    claim.status = ClaimStatus.REJECTED.value
    claim.decided_by_id = actor.id
    claim.decided_at = utcnow()
    claim.decision_reason = reason
    db.session.flush()
    record(actor, "claim.rejected", f"claim:{claim.id}", reason=reason)
    resident = db.session.get(User, claim.resident_id)
    queue_email(
        resident.email,
        "Your volunteering hours were not approved",
        f"Council staff did not approve your claim for {claim_description(claim)}.\n\n"
        f"Reason: {reason}",
    )
    return claim


def approve_claims(actor: User, claim_ids: list[int]) -> tuple[list[Claim], dict[int, str]]:
    """Bulk approve: each claim in a savepoint; returns the approved and the refusals.

    The claims and then their residents' wallets are locked first, all of them, in one
    order: the first earn updates the scheme's issuance account, and a lock taken after
    that one could wait in a circle with a single approval running at the same time.
    """
    from rewards import operations as ledger

    approved, refused = [], {}
    claim_ids = sorted(set(claim_ids))
    resident_ids = db.session.execute(
        select(Claim.resident_id)
        .where(Claim.id.in_(claim_ids))
        .order_by(Claim.id)
        .with_for_update()
    ).scalars()
    ledger.lock_wallets(list(resident_ids))
    for claim_id in claim_ids:
        try:
            with db.session.begin_nested():
                approved.append(approve_claim(actor, claim_id))
        except DomainError as error:
            refused[claim_id] = error.message
    return approved, refused


# --- missed check-outs -----------------------------------------------------------------


def close_missed_checkouts(now: datetime | None = None) -> list[Attendance]:
    """Close attendances still open MISSED_CHECKOUT_AFTER_HOURS after their session ended.

    Each is closed at the session's scheduled end and its claim flagged ``missed_checkout``.
    Safe to run twice: closed attendances are not open any more.
    """
    now = now or utcnow()
    cutoff = now - timedelta(hours=int(setting("MISSED_CHECKOUT_AFTER_HOURS")))
    query = (
        select(Attendance)
        .join(VolunteeringSession, Attendance.session_id == VolunteeringSession.id)
        .where(Attendance.checked_out_at.is_(None), VolunteeringSession.ends_at < cutoff)
        .order_by(Attendance.id)
    )
    if db.engine.dialect.name == "postgresql":
        query = query.with_for_update(of=Attendance, skip_locked=True)
    closed = []
    for attendance in db.session.execute(query).scalars().all():
        attendance.checked_out_at = max(attendance.session.ends_at, attendance.checked_in_at)
        attendance.auto_closed_at = now
        db.session.flush()
        create_claim(attendance)
        record(None, "attendance.auto_closed", f"attendance:{attendance.id}")
        closed.append(attendance)
    return closed


def send_missed_checkout_digests(now: datetime | None = None) -> int:
    """Email each organiser one digest of their organisations' auto-closed attendances.

    Each attendance is reported once (``digest_sent_at``). Returns the emails queued.
    """
    now = now or utcnow()
    rows = db.session.execute(
        select(Attendance, Activity)
        .join(VolunteeringSession, Attendance.session_id == VolunteeringSession.id)
        .join(Activity, VolunteeringSession.activity_id == Activity.id)
        .where(Attendance.auto_closed_at.is_not(None), Attendance.digest_sent_at.is_(None))
        .order_by(VolunteeringSession.starts_at)
    ).all()
    by_organisation: dict[int, list[tuple[Attendance, Activity]]] = {}
    for attendance, activity in rows:
        by_organisation.setdefault(activity.organisation_id, []).append((attendance, activity))
        attendance.digest_sent_at = now
    lines_by_user: dict[int, list[str]] = {}
    users: dict[int, User] = {}
    for organisation_id, items in by_organisation.items():
        organisation = db.session.get(Organisation, organisation_id)
        for member in organisation.members:
            users[member.user_id] = member.user
            for attendance, activity in items:
                lines_by_user.setdefault(member.user_id, []).append(
                    f"- {organisation.name}: {activity.title}, "
                    f"{attendance.session.starts_at:%d %b %H:%M} UTC: "
                    f"{attendance.resident.display_name} did not check out; "
                    "closed at the scheduled end and sent to the council for approval."
                )
    for user_id, lines in lines_by_user.items():
        queue_email(
            users[user_id].email,
            f"Missed check-outs: {len(lines)} attendance{'s' if len(lines) != 1 else ''}",
            "These volunteers did not check out, so their attendance was closed at the "
            "session's scheduled end:\n\n"
            + "\n".join(lines)
            + "\n\nIf a time is wrong, tell the council's scheme team.",
        )
    db.session.flush()
    return len(lines_by_user)


# --- reading -----------------------------------------------------------------------------


#: Every flag a claim can carry (see the module docstring).
CLAIM_FLAGS = (
    "manual",
    "outside_window",
    "missed_checkout",
    "overlapping",
    "daily_maximum",
    "over_threshold",
    "organisation_not_approved",
)


def claims_flagged(query, flag: str):
    """``query`` of claims narrowed to those carrying ``flag`` (one of ``CLAIM_FLAGS``).

    The flags are a JSON list; matching its text for the quoted name works the same on
    PostgreSQL and SQLite, and is safe because ``flag`` is one of a fixed set of words.
    """
    if flag not in CLAIM_FLAGS:
        raise InvalidRequest("Choose a flag from the list", {"flag": ["Not a flag."]})
    return query.where(func.cast(Claim.flags, String).like(f'%"{flag}"%'))


def visible_activities(user: User, status: str | None = None):
    """A query of the activities ``user`` may see: approved ones, their own, or all (council)."""
    query = select(Activity)
    if user.has_role(Role.COUNCIL, Role.ADMIN):
        pass
    elif user.has_role(Role.ORGANISER):
        query = query.where(
            or_(
                Activity.status == ActivityStatus.APPROVED.value,
                Activity.organisation_id.in_(organisation_ids_of(user) or {-1}),
            )
        )
    else:
        query = query.where(Activity.status == ActivityStatus.APPROVED.value)
    if status:
        query = query.where(Activity.status == status)
    return query


def upcoming_sessions_query(now: datetime | None = None):
    now = now or utcnow()
    return select(VolunteeringSession).where(
        VolunteeringSession.cancelled_at.is_(None),
        VolunteeringSession.ends_at > now,
    )


def checkin_url(token: str) -> str:
    """The URL a check-in QR code holds: a phone camera opens it, no app needed."""
    return url_for("volunteering.scan", token=token, _external=True)


def session_label(session: VolunteeringSession) -> str:
    return f"{session.activity.title}, {session.starts_at.day} {session.starts_at:%b %Y %H:%M}"
