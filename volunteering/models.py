"""Volunteering: who runs what, when, who came, and the hours that become credits.

Design:
- An ``Organisation`` (a community group) is proposed by an organiser and decided by council
  staff. Its organisers are ``OrganisationMember`` rows, so one group has several organisers
  and one person can organise for several groups.
- An ``Activity`` belongs to an organisation and earns credits only once council staff
  approve it. A ``VolunteeringSession`` is one scheduled occurrence (start, end) of an
  approved activity; residents may sign up to it (``SessionSignup``, capacity respected).
- An ``Attendance`` is one resident at one session (unique together), opened by a check-in
  (QR scan, card scan, or by hand) and closed by a check-out. The scan nonces are kept so a
  repeated request answers the same and records once.
- A ``Claim`` turns a closed attendance into credits: minutes capped by the schedule, credits
  by the configured rounding rule. Approving it posts one earn to the ledger through
  ``rewards.operations`` with the idempotency key ``volunteering-claim:<id>``.

Statuses move only through ``volunteering.operations``; each move is audited.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.extensions import db
from core.models import User
from core.timeutil import UTCDateTime, utcnow


class OrganisationStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    SUSPENDED = "suspended"


class ActivityStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class ClaimStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class AttendanceSource(enum.StrEnum):
    """How the attendance was recorded; manual sources always wait for approval."""

    QR = "qr"
    CARD = "card"
    MANUAL = "manual"
    SHEET = "sheet"


class Organisation(db.Model):
    """A community group whose organisers run activities."""

    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The group's public name.
    name: Mapped[str] = mapped_column(String(200))
    #: What the group does, in its own words.
    description: Mapped[str] = mapped_column(Text, default="")
    #: One of ``OrganisationStatus``.
    status: Mapped[str] = mapped_column(String(20), default=OrganisationStatus.PENDING.value)
    #: Who proposed it and when.
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: The last council decision: who, when and why (reasons for rejection or suspension).
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision_reason: Mapped[str | None] = mapped_column(Text)

    members: Mapped[list[OrganisationMember]] = relationship(
        back_populates="organisation", cascade="all, delete-orphan"
    )
    activities: Mapped[list[Activity]] = relationship(back_populates="organisation")


class OrganisationMember(db.Model):
    """One organiser of one organisation."""

    __tablename__ = "organisation_members"
    __table_args__ = (
        UniqueConstraint(
            "organisation_id", "user_id", name="uq_organisation_members_organisation_user"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The organisation.
    organisation_id: Mapped[int] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    #: The organiser.
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: When they joined and who invited them (None for the proposer).
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    invited_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    organisation: Mapped[Organisation] = relationship(back_populates="members")
    user: Mapped[User] = relationship(foreign_keys=[user_id])


class Activity(db.Model):
    """Something an organisation runs that residents give time to."""

    __tablename__ = "activities"
    __table_args__ = (
        CheckConstraint("credits_per_hour > 0", name="credits_per_hour_positive"),
        CheckConstraint("capacity IS NULL OR capacity > 0", name="capacity_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The organisation running it.
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    #: Short title, e.g. "Litter pick".
    title: Mapped[str] = mapped_column(String(200))
    #: What volunteers do, what to bring.
    description: Mapped[str] = mapped_column(Text, default="")
    #: One of the configured VOLUNTEERING_CATEGORIES.
    category: Mapped[str] = mapped_column(String(100), index=True)
    #: Where it happens, e.g. "Roundhay Park, main gate".
    location: Mapped[str] = mapped_column(String(200))
    #: One of the configured VOLUNTEERING_WARDS.
    ward: Mapped[str] = mapped_column(String(100), index=True)
    #: Whole credits earned per hour given.
    credits_per_hour: Mapped[int] = mapped_column(Integer, default=1)
    #: Most residents who can sign up to one session (None: no limit).
    capacity: Mapped[int | None] = mapped_column(Integer)
    #: One of ``ActivityStatus``.
    status: Mapped[str] = mapped_column(
        String(20), default=ActivityStatus.PENDING.value, index=True
    )
    #: Who proposed it and when.
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: The council decision: who, when and why.
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision_reason: Mapped[str | None] = mapped_column(Text)

    organisation: Mapped[Organisation] = relationship(back_populates="activities")
    sessions: Mapped[list[VolunteeringSession]] = relationship(
        back_populates="activity", order_by="VolunteeringSession.starts_at"
    )


class VolunteeringSession(db.Model):
    """One scheduled occurrence of an activity."""

    __tablename__ = "volunteering_sessions"
    __table_args__ = (CheckConstraint("ends_at > starts_at", name="ends_after_start"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The activity.
    activity_id: Mapped[int] = mapped_column(ForeignKey("activities.id"), index=True)
    #: When it is scheduled to start and end.
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: Who scheduled it and when.
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Set when the organiser cancels it.
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    activity: Mapped[Activity] = relationship(back_populates="sessions")

    @property
    def scheduled_minutes(self) -> int:
        return int((self.ends_at - self.starts_at).total_seconds() // 60)


class SessionSignup(db.Model):
    """A resident who said they will come to a session."""

    __tablename__ = "session_signups"
    __table_args__ = (
        UniqueConstraint("session_id", "resident_id", name="uq_session_signups_session_resident"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The session.
    session_id: Mapped[int] = mapped_column(
        ForeignKey("volunteering_sessions.id", ondelete="CASCADE"), index=True
    )
    #: The resident.
    resident_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    #: When they signed up; set ``cancelled_at`` when they cancel (the row is kept).
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Attendance(db.Model):
    """One resident at one session: checked in, and (later) checked out."""

    __tablename__ = "attendances"
    __table_args__ = (
        UniqueConstraint("session_id", "resident_id", name="uq_attendances_session_resident"),
        UniqueConstraint("idempotency_key", name="uq_attendances_idempotency_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The session attended.
    session_id: Mapped[int] = mapped_column(ForeignKey("volunteering_sessions.id"), index=True)
    #: The resident who attended.
    resident_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    #: When they arrived and left (``checked_out_at`` None while they are there).
    checked_in_at: Mapped[datetime] = mapped_column(UTCDateTime)
    checked_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: One of ``AttendanceSource``.
    source: Mapped[str] = mapped_column(String(20), default=AttendanceSource.QR.value)
    #: The client nonces of the scans that checked in and out (a repeat answers the same).
    checkin_nonce: Mapped[str | None] = mapped_column(String(100))
    checkout_nonce: Mapped[str | None] = mapped_column(String(100))
    #: For attendance added by an organiser: the caller's idempotency key (scoped by session).
    idempotency_key: Mapped[str | None] = mapped_column(String(300))
    #: Who recorded it (the resident for QR scans, the organiser otherwise).
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Set when the missed check-out job closed it at the scheduled end.
    auto_closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Set when the organisers' digest reported the auto-close.
    digest_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    session: Mapped[VolunteeringSession] = relationship()
    resident: Mapped[User] = relationship(foreign_keys=[resident_id])
    claim: Mapped[Claim | None] = relationship(back_populates="attendance", uselist=False)


class Claim(db.Model):
    """The credits a closed attendance earns, and the decision on them."""

    __tablename__ = "claims"
    __table_args__ = (
        CheckConstraint("minutes >= 0", name="minutes_not_negative"),
        CheckConstraint("credits >= 0", name="credits_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The attendance claimed for (one claim each).
    attendance_id: Mapped[int] = mapped_column(ForeignKey("attendances.id"), unique=True)
    #: Copies of the attendance's session and resident, for the approval queue's filters.
    session_id: Mapped[int] = mapped_column(ForeignKey("volunteering_sessions.id"), index=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    #: Minutes counted (capped by the schedule plus grace) and whole credits earned.
    minutes: Mapped[int] = mapped_column(Integer)
    credits: Mapped[int] = mapped_column(Integer)
    #: One of ``ClaimStatus``.
    status: Mapped[str] = mapped_column(String(20), default=ClaimStatus.PENDING.value, index=True)
    #: Why it waits for a person: ``manual``, ``overlapping``, ``daily_maximum``,
    #: ``outside_window``, ``missed_checkout``, ``over_threshold``.
    flags: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: The decision: who (None when approved automatically), when, and why (rejections).
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision_reason: Mapped[str | None] = mapped_column(Text)
    #: The ledger transaction the approval posted (rewards' id; no FK across packages).
    transaction_id: Mapped[int | None] = mapped_column(Integer)

    attendance: Mapped[Attendance] = relationship(back_populates="claim")
    session: Mapped[VolunteeringSession] = relationship()
    resident: Mapped[User] = relationship(foreign_keys=[resident_id])
