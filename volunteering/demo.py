"""Demo data of volunteering: an approved organisation, approved activities, a session open
now and some coming up, and one claim waiting in the council's queue.

Idempotent: rows are found by name before they are made; a session open now is added only
when none is open at load time, so loading on another day gives a fresh one.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from core.demo import demo_loader
from core.extensions import db
from core.models import Role
from core.timeutil import utcnow
from volunteering import operations as ops
from volunteering.models import (
    Activity,
    ActivityStatus,
    Attendance,
    AttendanceSource,
    Organisation,
    OrganisationStatus,
    VolunteeringSession,
)

ORGANISATION = "Friends of Roundhay Park"
ACTIVITIES = [
    ("Litter pick", "Environment", "Roundhay Park, main gate", "Roundhay", 1, 20),
    (
        "Lunch club helpers",
        "Food and lunch clubs",
        "Chapeltown Community Centre",
        "Chapel Allerton",
        2,
        6,
    ),
]


@demo_loader
def load_volunteering_demo(users) -> None:
    """The demo organiser's approved group with activities and sessions; a pending claim."""
    organiser = users.get("organiser@example.org")
    council = users.get("council@example.org")
    resident = users.get("resident@example.org")
    if organiser is None or council is None:
        return
    organisation = db.session.execute(
        select(Organisation).where(Organisation.name == ORGANISATION)
    ).scalar_one_or_none()
    if organisation is None:
        organisation = ops.propose_organisation(
            organiser, ORGANISATION, "Volunteers who look after Roundhay Park and its neighbours."
        )
    if organisation.status == OrganisationStatus.PENDING:
        ops.approve_organisation(council, organisation)
    activities = []
    for title, category, location, ward, per_hour, capacity in ACTIVITIES:
        activity = db.session.execute(
            select(Activity).where(
                Activity.organisation_id == organisation.id, Activity.title == title
            )
        ).scalar_one_or_none()
        if activity is None:
            activity = ops.propose_activity(
                organiser,
                organisation,
                title=title,
                description=f"{title}: all welcome, no experience needed.",
                category=category,
                location=location,
                ward=ward,
                credits_per_hour=per_hour,
                capacity=capacity,
            )
        if activity.status == ActivityStatus.PENDING:
            ops.approve_activity(council, activity)
        activities.append(activity)
    now = utcnow().replace(second=0, microsecond=0)
    litter, lunch = activities
    if not any(ops.is_open(s, now) for s in sessions_of(litter)):
        ops.schedule_session(organiser, litter, now - timedelta(hours=1), now + timedelta(hours=2))
    if not any(s.starts_at > now for s in sessions_of(lunch)):
        for days in (2, 9):
            start = (now + timedelta(days=days)).replace(hour=11, minute=0)
            ops.schedule_session(organiser, lunch, start, start + timedelta(hours=2))
    if resident is not None and Role.RESIDENT in resident.roles:
        add_pending_claim(organiser, resident, litter)
    db.session.flush()


def sessions_of(activity: Activity) -> list[VolunteeringSession]:
    """The activity's sessions as in the database now (not a collection loaded earlier)."""
    return list(
        db.session.execute(
            select(VolunteeringSession).where(VolunteeringSession.activity_id == activity.id)
        ).scalars()
    )


def add_pending_claim(organiser, resident, activity) -> None:
    """One typed-in attendance last week, so the council's queue has something in it."""
    exists = db.session.execute(
        select(Attendance.id).where(Attendance.idempotency_key.like("%:demo-sheet"))
    ).first()
    if exists:
        return
    start = (utcnow() - timedelta(days=7)).replace(hour=10, minute=0, second=0, microsecond=0)
    past = db.session.execute(
        select(VolunteeringSession).where(
            VolunteeringSession.activity_id == activity.id,
            VolunteeringSession.starts_at == start,
        )
    ).scalar_one_or_none() or ops.schedule_session(
        organiser, activity, start, start + timedelta(hours=2)
    )
    ops.add_attendance(
        organiser,
        past,
        resident_id=resident.id,
        checked_in_at=start,
        checked_out_at=start + timedelta(hours=2),
        idempotency_key="demo-sheet",
        source=AttendanceSource.SHEET,
    )
