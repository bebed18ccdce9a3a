"""Partner businesses, their staff, their offers, one-time redemption codes and redemptions.

Design:
- A ``Partner`` is a business or venue. It registers (``pending``), council staff approve,
  reject or suspend it; only an approved partner's offers are shown and redeemed. Each
  partner has a settlement rate (pence per credit) and a payout method, which settlement
  (partners settle) reads.
- ``PartnerMembership`` says who works for which partner; only members holding the
  partner staff role act for a partner, so staff of one partner never see another's data.
- An ``Offer`` costs a whole number of credits and may be limited in time (dates, days of
  the week, hours), per resident per period, and in stock. ``stock_remaining`` is
  decremented by a guarded ``UPDATE ... WHERE stock_remaining > 0`` so concurrent buyers
  never take more than the stock.
- A ``RedemptionCode`` is what a resident shows at the till: a short random code from an
  alphabet without look-alike characters. Only its SHA-256 digest is stored; it names no
  person in itself, works once (``used_at`` set by a guarded ``UPDATE``) and expires after a
  few minutes.
- A ``Redemption`` is one spend at a partner: it points at the ledger transaction that moved
  the credits (``rewards.operations.spend``) and, when cancelled, at the reversing one.
  ``code_id`` is unique, so the database itself holds "one redemption per code";
  ``(partner_id, idempotency_key)`` is unique, so a till's retry never spends twice.
"""

from __future__ import annotations

import enum
from datetime import date, datetime, time

from sqlalchemy import (
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Time,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.extensions import db
from core.models import User
from core.timeutil import UTCDateTime, utcnow


class PartnerStatus(enum.StrEnum):
    """Where a partner is in council approval."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    SUSPENDED = "suspended"


class PayoutMethod(enum.StrEnum):
    """How the council pays a partner (settlement builds on this)."""

    PAYMENT_FILE = "payment_file"
    STRIPE_CONNECT = "stripe_connect"

    @property
    def label(self) -> str:
        return {
            PayoutMethod.PAYMENT_FILE: "Payment file for the council's finance system",
            PayoutMethod.STRIPE_CONNECT: "Stripe Connect",
        }[self]


class OfferStatus(enum.StrEnum):
    """Whether residents can take an offer now."""

    ACTIVE = "active"
    PAUSED = "paused"


class LimitPeriod(enum.StrEnum):
    """The period a per-resident limit counts over."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class RedemptionStatus(enum.StrEnum):
    """A redemption stands, or was cancelled (credits given back)."""

    COMPLETED = "completed"
    CANCELLED = "cancelled"


class Partner(db.Model):
    """A local business or venue that accepts credits."""

    __tablename__ = "partners"
    __table_args__ = (
        CheckConstraint("settlement_rate_pence >= 0", name="settlement_rate_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The business name residents know.
    name: Mapped[str] = mapped_column(String(120))
    #: Street address, as residents would look for it.
    address: Mapped[str] = mapped_column(Text)
    #: The kind of business (café, leisure centre...), for the offer directory.
    category: Mapped[str] = mapped_column(String(60), default="")
    #: The council ward it is in.
    ward: Mapped[str] = mapped_column(String(80), default="")
    #: Opening hours in the partner's words.
    opening_hours: Mapped[str] = mapped_column(Text, default="")
    #: Who the council contacts.
    contact_name: Mapped[str] = mapped_column(String(100), default="")
    contact_email: Mapped[str] = mapped_column(String(254), default="")
    contact_phone: Mapped[str] = mapped_column(String(30), default="")
    #: One of ``PartnerStatus``.
    status: Mapped[str] = mapped_column(String(20), default=PartnerStatus.PENDING.value, index=True)
    #: Why council staff rejected or suspended it.
    status_reason: Mapped[str | None] = mapped_column(Text)
    #: What the scheme pays per credit redeemed, in pence.
    settlement_rate_pence: Mapped[int] = mapped_column(Integer)
    #: One of ``PayoutMethod``.
    payout_method: Mapped[str] = mapped_column(String(20), default=PayoutMethod.PAYMENT_FILE.value)
    #: The connected Stripe account (``acct_...``) once the partner connects one.
    stripe_account_id: Mapped[str | None] = mapped_column(String(64))
    #: Who registered it and when.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    #: When council staff last decided on it, and who.
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    memberships: Mapped[list[PartnerMembership]] = relationship(
        back_populates="partner", cascade="all, delete-orphan"
    )

    @property
    def is_approved(self) -> bool:
        return self.status == PartnerStatus.APPROVED.value

    @property
    def account_key(self) -> str:
        """The key of this partner's account in the ledger."""
        return f"partner:{self.id}"


class PartnerMembership(db.Model):
    """One person working for one partner."""

    __tablename__ = "partner_memberships"
    __table_args__ = (
        UniqueConstraint("partner_id", "user_id", name="uq_partner_memberships_partner_user"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The partner.
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id", ondelete="CASCADE"))
    #: The member of staff.
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: When they joined, and who added them (None for the person who registered the partner).
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    invited_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    partner: Mapped[Partner] = relationship(back_populates="memberships")
    user: Mapped[User] = relationship(foreign_keys=[user_id])


class Offer(db.Model):
    """Something a partner gives for credits."""

    __tablename__ = "offers"
    __table_args__ = (
        CheckConstraint("credit_cost > 0", name="credit_cost_positive"),
        CheckConstraint("stock_remaining >= 0", name="stock_not_negative"),
        CheckConstraint("limit_per_resident > 0", name="limit_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Whose offer it is.
    partner_id: Mapped[int] = mapped_column(
        ForeignKey("partners.id", ondelete="CASCADE"), index=True
    )
    #: What it is, in a few words, and in more.
    title: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    #: What it costs in whole credits.
    credit_cost: Mapped[int] = mapped_column(Integer)
    #: One of ``OfferStatus``; paused offers cannot be taken.
    status: Mapped[str] = mapped_column(String(20), default=OfferStatus.ACTIVE.value)
    #: First and last day it can be taken (inclusive, scheme time zone); None = open.
    valid_from: Mapped[date | None] = mapped_column(Date)
    valid_until: Mapped[date | None] = mapped_column(Date)
    #: Days of the week it can be taken, as digits Monday=0 ... Sunday=6 ("01234" = weekdays).
    days: Mapped[str] = mapped_column(String(7), default="0123456")
    #: Hours it can be taken (scheme time zone); None = any time the partner is open.
    available_from: Mapped[time | None] = mapped_column(Time)
    available_until: Mapped[time | None] = mapped_column(Time)
    #: How many times one resident may take it per ``limit_period``; None = no limit.
    limit_per_resident: Mapped[int | None] = mapped_column(Integer)
    #: One of ``LimitPeriod``.
    limit_period: Mapped[str] = mapped_column(String(10), default=LimitPeriod.WEEK.value)
    #: Total stock when the offer was made, and what is left; None = unlimited.
    stock_total: Mapped[int | None] = mapped_column(Integer)
    stock_remaining: Mapped[int | None] = mapped_column(Integer)
    #: When it was made.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    partner: Mapped[Partner] = relationship(lazy="joined")


class RedemptionCode(db.Model):
    """A one-time code a resident shows at the till. The code itself is never stored."""

    __tablename__ = "redemption_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: SHA-256 hex digest of the normalised code.
    code_digest: Mapped[str] = mapped_column(String(64), unique=True)
    #: Whose credits the code spends.
    resident_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: When it was made and when it stops working (indexed for the nightly purge of old
    #: codes, partners/purge.py).
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    #: When a till used it (set once, by a guarded UPDATE).
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    resident: Mapped[User] = relationship()


class Redemption(db.Model):
    """Credits a resident spent at a partner, for an offer."""

    __tablename__ = "redemptions"
    __table_args__ = (
        UniqueConstraint(
            "partner_id", "idempotency_key", name="uq_redemptions_partner_idempotency_key"
        ),
        CheckConstraint("credits > 0", name="credits_positive"),
        Index("ix_redemptions_partner_created", "partner_id", "created_at"),
        Index("ix_redemptions_offer_resident", "offer_id", "resident_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Where, for what, and whose credits.
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"))
    offer_id: Mapped[int] = mapped_column(ForeignKey("offers.id"))
    resident_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    #: The code that was used; unique, so a code is redeemed at most once.
    code_id: Mapped[int | None] = mapped_column(
        ForeignKey("redemption_codes.id", ondelete="SET NULL"), unique=True
    )
    #: The member of staff who took it.
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    #: The till's key: the same key again returns this redemption.
    idempotency_key: Mapped[str] = mapped_column(String(255))
    #: Credits spent, and the partner's settlement rate at the time (pence per credit).
    credits: Mapped[int] = mapped_column(Integer)
    settlement_rate_pence: Mapped[int] = mapped_column(Integer)
    #: Why, in words ("The Corner Café: coffee"), as the ledger has it.
    description: Mapped[str] = mapped_column(String(255))
    #: The ledger's spend transaction.
    transaction_id: Mapped[int] = mapped_column(Integer, unique=True)
    #: One of ``RedemptionStatus``.
    status: Mapped[str] = mapped_column(String(20), default=RedemptionStatus.COMPLETED.value)
    #: When it happened.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Cancellation: when, by whom, why, and the ledger's reversing transaction.
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    reversal_transaction_id: Mapped[int | None] = mapped_column(Integer)

    partner: Mapped[Partner] = relationship()
    offer: Mapped[Offer] = relationship()
    resident: Mapped[User] = relationship(foreign_keys=[resident_id])
    staff: Mapped[User | None] = relationship(foreign_keys=[staff_id])

    #: The resident's first name when the till already read it (not a column): the answer
    #: to a redemption shows it without loading the resident again.
    resident_first_name = None

    @property
    def first_name(self) -> str:
        """The resident's first name, for receipts."""
        return self.resident_first_name or self.resident.first_name

    @property
    def amount_pence(self) -> int:
        """What the scheme owes the partner for this redemption."""
        return self.credits * self.settlement_rate_pence
