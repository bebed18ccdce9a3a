"""Partner operations: registration and approval, staff, offers, redemption codes, redemptions.

Every state change of the partners package happens here. Operations flush and never
commit: the request (or command) commits once at its end, so a refusal anywhere leaves
nothing half-written. Refusals raise ``DomainError`` subclasses with the stable codes of
API.md (``code_invalid``, ``code_expired``, ``code_used``, ``offer_unavailable``...).

Credits move only through ``rewards.operations`` (``spend``, ``reverse``), which locks the
resident's wallet; this module never writes the ledger's tables.

Redemption locks in one order, so two redemptions never deadlock: the code row (guarded
``UPDATE ... WHERE used_at IS NULL``), then the wallet (inside ``spend``), then the offer's
stock row (guarded ``UPDATE ... WHERE stock_remaining > 0``).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from psycopg.errors import UniqueViolation
from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.orm import make_transient_to_detached, selectinload

from core import accounts, invitations
from core.alone import execute_alone
from core.audit import record
from core.errors import ConflictError, DomainError, ForbiddenError, InvalidRequest, NotFoundError
from core.extensions import db
from core.invitations import Invitation
from core.models import Role, User
from core.timeutil import utcnow
from partners import redeem_at_once as redeem_sql
from partners.models import (
    LimitPeriod,
    Offer,
    OfferStatus,
    Partner,
    PartnerMembership,
    PartnerStatus,
    PayoutMethod,
    Redemption,
    RedemptionCode,
    RedemptionStatus,
)

#: Characters of a redemption code: no 0/O, 1/I/L, so it reads aloud and types without doubt.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
#: Length of a code: 31**8, about 8.5e11 codes (40 bits), each valid a few minutes and
#: looked up under a rate limit, so guessing a live one is hopeless.
CODE_LENGTH = 8
#: Offers' days and hours are in the scheme's local time (SCHEME_TIMEZONE may override it).
DEFAULT_TIMEZONE = "Europe/London"
WEEKDAY_NAMES = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


class RedemptionError(DomainError):
    """A redemption or code was refused; ``code`` is one of API.md's."""


#: Refusals of the code itself: they count against the caller's guessing limit.
CODE_REFUSALS = frozenset({"code_invalid", "code_expired", "code_used"})


def ledger():
    """``rewards.operations``, imported when first needed (the ledger is its own package)."""
    from rewards import operations

    return operations


# --- settings -------------------------------------------------------------------------------


def default_settlement_rate() -> int:
    """Pence per credit a new partner is paid (PARTNER_DEFAULT_SETTLEMENT_RATE_PENCE)."""
    return int(current_app.config["PARTNER_DEFAULT_SETTLEMENT_RATE_PENCE"])


def code_validity() -> timedelta:
    """How long a one-time code works (REDEMPTION_CODE_VALIDITY_SECONDS)."""
    return timedelta(seconds=int(current_app.config["REDEMPTION_CODE_VALIDITY_SECONDS"]))


def cancel_window() -> timedelta:
    """How long staff may cancel a redemption themselves (REDEMPTION_CANCEL_WINDOW_MINUTES)."""
    return timedelta(minutes=int(current_app.config["REDEMPTION_CANCEL_WINDOW_MINUTES"]))


def scheme_zone() -> ZoneInfo:
    """The time zone offers' days and hours are written in."""
    return ZoneInfo(current_app.config.get("SCHEME_TIMEZONE", DEFAULT_TIMEZONE))


# --- partners -------------------------------------------------------------------------------


def clean_text(value, field: str, label: str, *, max_length: int, required=True) -> str:
    """Trimmed text of at most ``max_length`` characters (``InvalidRequest`` otherwise)."""
    text = (value or "").strip() if isinstance(value, str) or value is None else None
    if text is None or (required and not text) or len(text) > max_length:
        message = f"Enter {label} ({'1 to ' if required else 'up to '}{max_length} characters)"
        raise InvalidRequest(message, {field: [message]})
    return text


def register_partner(
    user: User,
    *,
    name: str,
    address: str,
    category: str = "",
    ward: str = "",
    opening_hours: str = "",
    contact_name: str = "",
    contact_email: str = "",
    contact_phone: str = "",
) -> Partner:
    """A business registers: pending until council staff approve it; ``user`` is its staff."""
    if contact_email:
        contact_email = accounts.normalise_email(contact_email)
    partner = Partner(
        name=clean_text(name, "name", "the business name", max_length=120),
        address=clean_text(address, "address", "the address", max_length=500),
        category=clean_text(category, "category", "a category", max_length=60, required=False),
        ward=clean_text(ward, "ward", "a ward", max_length=80, required=False),
        opening_hours=clean_text(
            opening_hours, "opening_hours", "opening hours", max_length=500, required=False
        ),
        contact_name=clean_text(
            contact_name, "contact_name", "a contact name", max_length=100, required=False
        ),
        contact_email=contact_email or user.email,
        contact_phone=clean_text(
            contact_phone, "contact_phone", "a phone number", max_length=30, required=False
        ),
        status=PartnerStatus.PENDING.value,
        settlement_rate_pence=default_settlement_rate(),
        payout_method=PayoutMethod.PAYMENT_FILE.value,
        created_by_id=user.id,
    )
    partner.memberships.append(PartnerMembership(user_id=user.id))
    db.session.add(partner)
    db.session.flush()
    record(user, "partner.registered", f"partner:{partner.id}", details={"name": partner.name})
    return partner


def decide_partner(
    actor: User, partner: Partner, new_status: PartnerStatus, reason: str | None = None
) -> Partner:
    """Council staff approve, reject, suspend or reinstate a partner, with an audit entry.

    Approving gives the partner's people the partner staff role. ``not_pending`` (409) when
    the partner is not in a state the decision applies to.
    """
    allowed_from = {
        PartnerStatus.APPROVED: {PartnerStatus.PENDING, PartnerStatus.SUSPENDED},
        PartnerStatus.REJECTED: {PartnerStatus.PENDING},
        PartnerStatus.SUSPENDED: {PartnerStatus.APPROVED},
    }[new_status]
    db.session.refresh(partner, with_for_update=True)
    if PartnerStatus(partner.status) not in allowed_from:
        raise ConflictError(
            f"{partner.name} is {partner.status}, so it cannot be {new_status.value} now.",
            code="not_pending" if PartnerStatus.PENDING in allowed_from else "invalid_state",
        )
    if new_status in (PartnerStatus.REJECTED, PartnerStatus.SUSPENDED):
        reason = clean_text(reason, "reason", "a reason", max_length=1000)
    old_status = partner.status
    partner.status = new_status.value
    partner.status_reason = reason
    partner.decided_at = utcnow()
    partner.decided_by_id = actor.id
    if new_status is PartnerStatus.APPROVED:
        for membership in partner.memberships:
            if Role.PARTNER_STAFF not in membership.user.roles:
                accounts.grant_role(actor, membership.user, Role.PARTNER_STAFF)
    record(
        actor,
        f"partner.{new_status.value}",
        f"partner:{partner.id}",
        reason=reason,
        details={"from": old_status, "to": new_status.value},
    )
    db.session.flush()
    return partner


def set_settlement_rate(actor: User, partner: Partner, rate_pence: int) -> None:
    """Council staff change what the scheme pays this partner per credit (audited)."""
    if not isinstance(rate_pence, int) or isinstance(rate_pence, bool) or not rate_pence >= 0:
        raise InvalidRequest(
            "Enter the rate as a whole number of pence, 0 or more",
            {"settlement_rate_pence": ["Enter a whole number of pence, 0 or more."]},
        )
    old = partner.settlement_rate_pence
    partner.settlement_rate_pence = rate_pence
    record(
        actor,
        "partner.settlement_rate_changed",
        f"partner:{partner.id}",
        details={"from": old, "to": rate_pence},
    )
    db.session.flush()


def set_payout_method(actor: User, partner: Partner, method: str) -> None:
    """Choose how the partner is paid (Stripe Connect or the council's payment file)."""
    try:
        chosen = PayoutMethod(method)
    except ValueError:
        raise InvalidRequest(
            "Choose how you would like to be paid", {"payout_method": ["Not a payout method."]}
        ) from None
    old = partner.payout_method
    partner.payout_method = chosen.value
    record(
        actor,
        "partner.payout_method_changed",
        f"partner:{partner.id}",
        details={"from": old, "to": chosen.value},
    )
    db.session.flush()


def partners_of(user: User) -> list[Partner]:
    """The partners ``user`` works for, by name."""
    return list(
        db.session.execute(
            select(Partner)
            .join(PartnerMembership)
            .where(PartnerMembership.user_id == user.id)
            .order_by(Partner.name, Partner.id)
        ).scalars()
    )


def is_staff_of(user: User, partner_id: int) -> bool:
    """True when ``user`` holds the partner staff role and works for this partner."""
    if not user.has_role(Role.PARTNER_STAFF):
        return False
    return (
        db.session.execute(
            select(PartnerMembership.id).where(
                PartnerMembership.partner_id == partner_id, PartnerMembership.user_id == user.id
            )
        ).first()
        is not None
    )


def require_staff(user: User, partner: Partner) -> None:
    """Refuse (403) anyone who is not staff of ``partner``."""
    if not is_staff_of(user, partner.id):
        raise ForbiddenError(
            "You can only do this for a business you work for.", code="not_your_partner"
        )


def can_view_partner_records(user: User, partner: Partner) -> bool:
    """Staff of the partner, and council staff, may see its redemptions."""
    return user.has_role(Role.COUNCIL, Role.ADMIN) or is_staff_of(user, partner.id)


def add_staff(actor: User, partner: Partner, email: str) -> PartnerMembership:
    """A member of staff adds a colleague who has an account; they get the staff role."""
    require_staff(actor, partner)
    colleague = accounts.find_user_by_email(accounts.normalise_email(email))
    if colleague is None:
        raise NotFoundError(
            "There is no account with this email address. Ask your colleague to create an "
            "account first, then add them.",
            code="no_account",
        )
    existing = db.session.execute(
        select(PartnerMembership).where(
            PartnerMembership.partner_id == partner.id, PartnerMembership.user_id == colleague.id
        )
    ).scalar_one_or_none()
    if existing is not None:
        raise ConflictError(
            f"{colleague.display_name} already works for {partner.name}.", "already_staff"
        )
    membership = PartnerMembership(partner=partner, user=colleague, invited_by_id=actor.id)
    db.session.add(membership)
    if partner.is_approved and Role.PARTNER_STAFF not in colleague.roles:
        accounts.grant_role(actor, colleague, Role.PARTNER_STAFF)
    record(actor, "partner.staff_added", f"partner:{partner.id}", details={"user": colleague.id})
    db.session.flush()
    return membership


def invite_staff(actor: User, partner: Partner, email: str) -> PartnerMembership | Invitation:
    """A member of staff adds a colleague by email, whether or not they have an account.

    With an account, they join at once (``add_staff``). Without one, a pending invitation is
    kept and emailed (``core.invitations``): they join when they register or sign in with
    that address, or follow the link; inviting again renews it rather than adding another.
    """
    require_staff(actor, partner)
    address = accounts.normalise_email(email)
    if accounts.find_user_by_email(address) is not None:
        return add_staff(actor, partner, address)
    return invitations.invite(actor, STAFF_INVITATION.name, partner.id, address)


def add_invited_staff(invitation: Invitation, user: User) -> None:
    """An invited colleague accepted: they work for the partner (no-op if they already do).

    The partner staff role comes now if the partner is approved, or with its approval.
    """
    partner = db.session.get(Partner, invitation.target_id)
    if partner is None:
        return
    if partner.is_approved:
        invitations.ensure_role(user, Role.PARTNER_STAFF, invitation)
    exists = db.session.execute(
        select(PartnerMembership.id).where(
            PartnerMembership.partner_id == partner.id, PartnerMembership.user_id == user.id
        )
    ).first()
    if exists is not None:
        return
    db.session.add(
        PartnerMembership(
            partner_id=partner.id, user_id=user.id, invited_by_id=invitation.invited_by_id
        )
    )
    db.session.flush()
    inviter = invitation.invited_by
    record(
        inviter,
        "partner.staff_added",
        f"partner:{partner.id}",
        details={"user": user.id, "invitation_id": invitation.id},
    )


def _partner_name(partner_id: int) -> str | None:
    partner = db.session.get(Partner, partner_id)
    return partner.name if partner is not None else None


def _may_manage_staff(user: User, partner_id: int) -> bool:
    return is_staff_of(user, partner_id)


STAFF_INVITATION = invitations.register_kind(
    invitations.InvitationKind(
        name="partner_staff",
        role=Role.PARTNER_STAFF,
        offer="take credits at the till of {target}",
        becomes="a member of staff at {target}",
        target_name=_partner_name,
        may_manage=_may_manage_staff,
        add_member=add_invited_staff,
        page_endpoint="partners.staff",
        page_argument="partner_id",
    )
)


# --- offers ---------------------------------------------------------------------------------


@dataclass
class OfferFields:
    """What partner staff set on an offer."""

    title: str
    description: str = ""
    credit_cost: int = 1
    valid_from: date | None = None
    valid_until: date | None = None
    days: str = "0123456"
    available_from: object = None
    available_until: object = None
    limit_per_resident: int | None = None
    limit_period: str = LimitPeriod.WEEK.value
    stock_total: int | None = None


def check_offer_fields(fields: OfferFields) -> dict:
    """The offer's columns, or ``InvalidRequest`` naming each field that is not right."""
    problems: dict[str, list[str]] = {}

    def problem(field: str, message: str) -> None:
        problems.setdefault(field, []).append(message)

    title = (fields.title or "").strip()
    if not title or len(title) > 120:
        problem("title", "Enter a title of 1 to 120 characters")
    description = (fields.description or "").strip()
    if len(description) > 2000:
        problem("description", "Description must be 2000 characters or fewer")
    cost = fields.credit_cost
    if not isinstance(cost, int) or isinstance(cost, bool) or not 1 <= cost <= 1000:
        problem("credit_cost", "Enter a whole number of credits from 1 to 1000")
    if fields.valid_from and fields.valid_until and fields.valid_until < fields.valid_from:
        problem("valid_until", "The last day must be on or after the first day")
    days = "".join(sorted(set(fields.days or "")))
    if not days or not re.fullmatch(r"[0-6]{1,7}", days):
        problem("days", "Choose at least one day of the week")
    if (fields.available_from is None) != (fields.available_until is None):
        problem("available_until", "Enter both times, or neither")
    elif fields.available_from is not None and fields.available_from == fields.available_until:
        problem("available_until", "The end time must differ from the start time")
    limit = fields.limit_per_resident
    if limit is not None and (not isinstance(limit, int) or not 1 <= limit <= 1000):
        problem("limit_per_resident", "Enter a limit from 1 to 1000, or leave it empty")
    if fields.limit_period not in {p.value for p in LimitPeriod}:
        problem("limit_period", "Choose day, week or month")
    stock = fields.stock_total
    if stock is not None and (not isinstance(stock, int) or not 0 <= stock <= 1_000_000):
        problem("stock_total", "Enter a stock from 0 to 1,000,000, or leave it empty")
    if problems:
        first = next(iter(problems.values()))[0]
        raise InvalidRequest(first, problems)
    return {
        "title": title,
        "description": description,
        "credit_cost": cost,
        "valid_from": fields.valid_from,
        "valid_until": fields.valid_until,
        "days": days,
        "available_from": fields.available_from,
        "available_until": fields.available_until,
        "limit_per_resident": limit,
        "limit_period": fields.limit_period,
        "stock_total": stock,
    }


def create_offer(actor: User, partner: Partner, fields: OfferFields) -> Offer:
    """Partner staff add an offer (active at once; shown when the partner is approved)."""
    require_staff(actor, partner)
    values = check_offer_fields(fields)
    offer = Offer(partner=partner, status=OfferStatus.ACTIVE.value, **values)
    offer.stock_remaining = values["stock_total"]
    db.session.add(offer)
    db.session.flush()
    record(actor, "offer.created", f"offer:{offer.id}", details={"title": offer.title})
    return offer


def update_offer(actor: User, offer: Offer, fields: OfferFields) -> Offer:
    """Partner staff change an offer. A new stock total resets what is left to it, less
    what was taken since (never below zero)."""
    require_staff(actor, offer.partner)
    values = check_offer_fields(fields)
    db.session.refresh(offer, with_for_update=True)
    old_total, old_left = offer.stock_total, offer.stock_remaining
    for name, value in values.items():
        setattr(offer, name, value)
    if values["stock_total"] is None:
        offer.stock_remaining = None
    elif values["stock_total"] != old_total:
        taken = (old_total - old_left) if old_total is not None else 0
        offer.stock_remaining = max(values["stock_total"] - taken, 0)
    record(actor, "offer.updated", f"offer:{offer.id}", details={"title": offer.title})
    db.session.flush()
    return offer


def set_offer_status(actor: User, offer: Offer, status: OfferStatus) -> Offer:
    """Pause an offer (residents can no longer take it) or make it active again."""
    require_staff(actor, offer.partner)
    offer.status = status.value
    record(actor, f"offer.{status.value}", f"offer:{offer.id}")
    db.session.flush()
    return offer


def offer_refusal(offer: Offer, now: datetime | None = None) -> str | None:
    """Why residents cannot take ``offer`` now, in words; None when they can."""
    if not offer.partner.is_approved:
        return f"{offer.partner.name} is not taking credits at the moment."
    if offer.status != OfferStatus.ACTIVE.value:
        return "This offer is paused."
    local = (now or utcnow()).astimezone(scheme_zone())
    today = local.date()
    if offer.valid_from and today < offer.valid_from:
        return f"This offer starts on {offer.valid_from.day} {offer.valid_from:%B %Y}."
    if offer.valid_until and today > offer.valid_until:
        return "This offer has ended."
    if str(local.weekday()) not in offer.days:
        return f"This offer is not available on {WEEKDAY_NAMES[local.weekday()]}s."
    if offer.available_from is not None and offer.available_until is not None:
        start, end, clock = offer.available_from, offer.available_until, local.time()
        inside = start <= clock < end if start < end else (clock >= start or clock < end)
        if not inside:
            return f"This offer is available from {start:%H:%M} to {end:%H:%M}."
    if offer.stock_remaining is not None and offer.stock_remaining <= 0:
        return "This offer has sold out."
    return None


def period_start(period: str, now: datetime | None = None) -> datetime:
    """The start (UTC) of the day, week (from Monday) or month that ``now`` is in, locally."""
    local = (now or utcnow()).astimezone(scheme_zone())
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == LimitPeriod.WEEK.value:
        start -= timedelta(days=local.weekday())
    elif period == LimitPeriod.MONTH.value:
        start = start.replace(day=1)
    # Rebuild from the wall clock so a change of summer time inside the period is right.
    naive = start.replace(tzinfo=None)
    return naive.replace(tzinfo=scheme_zone()).astimezone(UTC)


def times_taken(offer: Offer, resident_id: int, now: datetime | None = None) -> int:
    """How often the resident took ``offer`` in its current limit period (cancelled aside)."""
    since = period_start(offer.limit_period, now)
    return db.session.execute(
        select(func.count())
        .select_from(Redemption)
        .where(
            Redemption.offer_id == offer.id,
            Redemption.resident_id == resident_id,
            Redemption.status == RedemptionStatus.COMPLETED.value,
            Redemption.created_at >= since,
        )
    ).scalar_one()


def limit_refusal(offer: Offer, resident_id: int, now: datetime | None = None) -> str | None:
    """Why the resident cannot take ``offer`` again this period, or None."""
    if offer.limit_per_resident is None:
        return None
    if times_taken(offer, resident_id, now) >= offer.limit_per_resident:
        times = "once" if offer.limit_per_resident == 1 else f"{offer.limit_per_resident} times"
        return f"Each person can have this offer {times} a {offer.limit_period}."
    return None


def directory_query(
    *, category: str = "", ward: str = "", text: str = "", max_cost: int | None = None
):
    """Active offers of approved partners for the directory, cheapest first."""
    query = (
        select(Offer)
        .join(Offer.partner)
        .where(
            Partner.status == PartnerStatus.APPROVED.value,
            Offer.status == OfferStatus.ACTIVE.value,
            or_(Offer.stock_remaining.is_(None), Offer.stock_remaining > 0),
        )
        .order_by(Offer.credit_cost, Partner.name, Offer.title)
    )
    today = utcnow().astimezone(scheme_zone()).date()
    query = query.where(
        or_(Offer.valid_until.is_(None), Offer.valid_until >= today),
    )
    if category:
        query = query.where(Partner.category == category)
    if ward:
        query = query.where(Partner.ward == ward)
    if text:
        term = f"%{text.strip().lower()}%"
        query = query.where(
            or_(
                func.lower(Offer.title).like(term),
                func.lower(Offer.description).like(term),
                func.lower(Partner.name).like(term),
            )
        )
    if max_cost is not None:
        query = query.where(Offer.credit_cost <= max_cost)
    return query


# --- redemption codes -----------------------------------------------------------------------


def normalise_code(raw) -> str:
    """The code as stored: upper case, without spaces or dashes (``abcd-efgh`` -> ``ABCDEFGH``)."""
    if not isinstance(raw, str):
        return ""
    return re.sub(r"[\s\-]", "", raw).upper()[:64]


def code_digest(code: str) -> str:
    return hashlib.sha256(normalise_code(code).encode()).hexdigest()


def format_code(code: str) -> str:
    """``ABCDEFGH`` as ``ABCD-EFGH``, easier to read aloud and type."""
    return f"{code[:4]}-{code[4:]}"


def issue_code(resident: User) -> tuple[str, RedemptionCode]:
    """A new one-time code for ``resident`` (returned once, stored as a digest).

    Older codes of the resident stay valid until they expire: a resident may hold a
    code open on two devices, and each still works only once.
    """
    if not resident.has_role(Role.RESIDENT):
        raise ForbiddenError("Only residents have credits to spend.")
    now = utcnow()
    for _attempt in range(5):
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        digest = code_digest(code)
        taken = db.session.execute(
            select(RedemptionCode.id).where(RedemptionCode.code_digest == digest)
        ).first()
        if taken is None:
            row = RedemptionCode(
                code_digest=digest,
                resident_id=resident.id,
                created_at=now,
                expires_at=now + code_validity(),
            )
            db.session.add(row)
            db.session.flush()
            return format_code(code), row
    raise DomainError("Could not make a code just now. Please try again.", "code_unavailable")


def find_code(raw) -> RedemptionCode | None:
    """The code row for what the till read or typed, if there is one."""
    code = normalise_code(raw)
    if len(code) != CODE_LENGTH or any(c not in CODE_ALPHABET for c in code):
        return None
    return db.session.execute(
        select(RedemptionCode).where(RedemptionCode.code_digest == code_digest(code))
    ).scalar_one_or_none()


def first_word(name: str) -> str:
    """A first name from a display name (as ``User.first_name``)."""
    return name.split()[0] if name.strip() else ""


CODE_ERRORS = {
    "code_invalid": (
        "This code is not right. Check it with the customer and type it again, or ask "
        "them to show a new code.",
        422,
    ),
    "code_used": ("This code has already been used. Ask the customer to show a new code.", 409),
    "code_expired": (
        "This code has expired. Ask the customer to tap 'Get a new code' and show it again.",
        422,
    ),
}


def code_refusal(row: RedemptionCode | None, now: datetime) -> RedemptionError | None:
    """Why the code cannot be spent now (``code_invalid``, ``code_used``, ``code_expired``),
    or None when it can."""
    if row is None:
        reason = "code_invalid"
    elif row.used_at is not None:
        reason = "code_used"
    elif row.expires_at <= now:
        reason = "code_expired"
    else:
        return None
    message, status = CODE_ERRORS[reason]
    return RedemptionError(message, code=reason, status=status)


def usable_code(raw, now: datetime | None = None) -> RedemptionCode:
    """The code if it can be spent now; else ``code_invalid``, ``code_used`` or ``code_expired``."""
    row = find_code(raw)
    refusal = code_refusal(row, now or utcnow())
    if refusal is not None:
        raise refusal
    return row


@dataclass
class CodeCheck:
    """What the till sees after reading a code, before choosing the offer."""

    code: RedemptionCode
    first_name: str
    offers: list[Offer]
    unavailable: list[tuple[Offer, str]]


def check_code_at(staff: User, partner: Partner, raw) -> CodeCheck:
    """Read a code at a partner's till: the resident's first name and what they can have.

    Nothing changes: the code stays unused until a redemption is confirmed.
    """
    require_staff(staff, partner)
    row = usable_code(raw)
    refuse_own_code(staff, row)
    balance = ledger().wallet_of(row.resident_id).balance
    offers = db.session.execute(
        select(Offer).where(Offer.partner_id == partner.id).order_by(Offer.credit_cost, Offer.title)
    ).scalars()
    can, cannot = [], []
    for offer in offers:
        reason = offer_refusal(offer)
        if reason is None and offer.credit_cost > balance:
            reason = "Not enough credits for this offer."
        reason = reason or limit_refusal(offer, row.resident_id)
        if reason is None:
            can.append(offer)
        elif offer.status == OfferStatus.ACTIVE.value:
            cannot.append((offer, reason))
    return CodeCheck(row, row.resident.first_name, can, cannot)


def refuse_own_code(staff: User, row: RedemptionCode) -> None:
    """Staff cannot take their own credits at their own till."""
    if row.resident_id == staff.id:
        raise RedemptionError(
            "You cannot take your own code at your own till. Ask a colleague to serve you.",
            code="own_code",
            status=403,
        )


# --- redemptions ----------------------------------------------------------------------------


def ledger_key(prefix: str, partner_id: int, key: str) -> str:
    """A ledger idempotency key derived from a till's key (bounded length, partner scoped)."""
    return f"{prefix}:{partner_id}:{hashlib.sha256(key.encode()).hexdigest()[:40]}"


def previous_redemption(partner_id: int, idempotency_key: str) -> Redemption | None:
    return db.session.execute(
        select(Redemption).where(
            Redemption.partner_id == partner_id, Redemption.idempotency_key == idempotency_key
        )
    ).scalar_one_or_none()


def replayed(previous: Redemption, code: RedemptionCode | None, offer_id: int) -> Redemption:
    """The earlier answer for the same key and body; ``idempotency_conflict`` otherwise."""
    if previous.offer_id == offer_id and code is not None and previous.code_id == code.id:
        return previous
    raise ConflictError(
        "This idempotency key was already used for a different redemption.",
        code="idempotency_conflict",
    )


def get_offer_for_till(staff: User, offer_id) -> Offer:
    """The offer, if it exists (``offer_unavailable``, 404) and ``staff`` works for its partner.

    One query: the offer, its partner and whether ``staff`` is on its staff.
    """
    found = None
    if isinstance(offer_id, int) and not isinstance(offer_id, bool):
        found = db.session.execute(
            select(Offer, PartnerMembership.id)
            .outerjoin(
                PartnerMembership,
                (PartnerMembership.partner_id == Offer.partner_id)
                & (PartnerMembership.user_id == staff.id),
            )
            .where(Offer.id == offer_id)
        ).first()
    if found is None:
        raise RedemptionError("There is no such offer.", code="offer_unavailable", status=404)
    offer, membership_id = found
    if membership_id is None or not staff.has_role(Role.PARTNER_STAFF):
        raise ForbiddenError(
            "You can only do this for a business you work for.", code="not_your_partner"
        )
    return offer


@dataclass
class ClaimedCode:
    """A code this transaction just marked used."""

    id: int
    resident_id: int
    first_name: str


def claim_code(raw, now: datetime) -> ClaimedCode | None:
    """Mark the code used if it is unused and unexpired, in one guarded ``UPDATE`` that
    also returns the resident's first name; None when it could not be claimed.

    Two tills claiming the same code at once: the second ``UPDATE`` waits for the first
    transaction, then finds ``used_at`` set and claims nothing.
    """
    code = normalise_code(raw)
    if len(code) != CODE_LENGTH or any(c not in CODE_ALPHABET for c in code):
        return None
    claimed = (
        db.session.connection()
        .execute(CLAIM_CODE, {"digest": code_digest(code), "now": now})
        .first()
    )
    if claimed is None:
        return None
    return ClaimedCode(claimed[0], claimed[1], first_word(claimed[2] or ""))


_CODES, _USERS = RedemptionCode.__table__, User.__table__
#: ``redeem``'s insert, its id returned (built once).
INSERT_REDEMPTION = insert(Redemption.__table__).returning(Redemption.__table__.c.id)
#: ``claim_code``'s statement, built once (hot path: every redemption).
CLAIM_CODE = (
    update(_CODES)
    .where(
        _CODES.c.code_digest == bindparam("digest"),
        _CODES.c.used_at.is_(None),
        _CODES.c.expires_at > bindparam("now"),
    )
    .values(used_at=bindparam("now"))
    .returning(
        _CODES.c.id,
        _CODES.c.resident_id,
        select(_USERS.c.display_name).where(_USERS.c.id == _CODES.c.resident_id).scalar_subquery(),
    )
)


def completed_redemption_values(**values) -> dict:
    """Every column of a completed redemption's row, from those that vary."""
    return {
        **values,
        "status": RedemptionStatus.COMPLETED.value,
        "cancelled_at": None,
        "cancelled_by_id": None,
        "cancel_reason": None,
        "reversal_transaction_id": None,
    }


def code_used_error() -> RedemptionError:
    message, status = CODE_ERRORS["code_used"]
    return RedemptionError(message, code="code_used", status=status)


def redeem(staff: User, *, code: str, offer_id: int, idempotency_key: str):
    """Spend a resident's credits on an offer with their one-time code.

    Returns ``(redemption, created)``; the same ``idempotency_key`` and body again returns
    the first redemption with ``created=False`` and changes nothing. Guarantees, under
    concurrency: a code is used at most once; the resident's balance never goes below zero
    (``rewards.operations.spend`` locks the wallet); a per-resident limit and the offer's
    stock are never exceeded. Any refusal after the code was claimed raises, so the
    caller's rollback gives the code back. A key used before with another code meets the
    unique key of ``redemptions`` at the flush: ``IntegrityError``, which the caller answers
    with ``answer_again``.

    Round trips on the way to a 201: the offer with the staff check, the claim of the code
    (returning the resident's name), the partner's ledger account, the ledger's spend, and
    the insert. Why a code was refused, and a repeated request, are looked up only when the
    claim fails.
    """
    offer = get_offer_for_till(staff, offer_id)
    partner = offer.partner
    now = utcnow()
    row = claim_code(code, now)
    if row is None:
        # Not claimed: say why. The same request sent before (or at the same instant, by a
        # till whose claim we waited for) is answered as it was.
        found = find_code(code)
        if found is not None and found.used_at is not None:
            previous = previous_redemption(partner.id, idempotency_key)
            if previous is not None:
                return replayed(previous, found, offer.id), False
        # A code that looks usable again here was claimed by a till that has since given it
        # back: to this request it was in use.
        raise code_refusal(found, now) or code_used_error()
    # Refusals from here raise, and the caller's rollback un-claims the code.
    refuse_own_code(staff, row)
    reason = offer_refusal(offer, now)
    if reason:
        raise RedemptionError(reason, code="offer_unavailable")

    description = f"{partner.name}: {offer.title}"
    transaction = ledger().spend(
        row.resident_id,
        partner.account_key,  # read with the wallet's lock: no round trip of its own
        offer.credit_cost,
        idempotency_key=ledger_key("redemption", partner.id, idempotency_key),
        description=description,
        actor_id=staff.id,
        partner_name=partner.name,
    )
    # The wallet is locked now, so this resident's other redemptions wait: the count holds.
    reason = limit_refusal(offer, row.resident_id, now)
    if reason:
        raise RedemptionError(reason, code="offer_unavailable")
    if offer.stock_remaining is not None:
        taken = db.session.execute(
            update(Offer)
            .where(Offer.id == offer.id, Offer.stock_remaining > 0)
            .values(stock_remaining=Offer.stock_remaining - 1)
            .execution_options(synchronize_session=False)
        ).rowcount
        if taken != 1:
            raise RedemptionError("This offer has sold out.", code="offer_unavailable")
        db.session.expire(offer, ["stock_remaining"])

    values = completed_redemption_values(
        partner_id=partner.id,
        offer_id=offer.id,
        resident_id=row.resident_id,
        code_id=row.id,
        staff_id=staff.id,
        idempotency_key=idempotency_key,
        credits=offer.credit_cost,
        settlement_rate_pence=partner.settlement_rate_pence,
        description=description,
        transaction_id=transaction.id,
        created_at=now,
    )
    # A Core insert (the key taken by another till raises IntegrityError here, as a flush
    # would); the object is then attached to the session as loaded, without a read back.
    redemption_id = db.session.connection().execute(INSERT_REDEMPTION, values).scalar_one()
    redemption = Redemption(id=redemption_id, **values)
    make_transient_to_detached(redemption)
    db.session.add(redemption)
    redemption.resident_first_name = row.first_name
    return redemption, True


def redeem_at_once(
    staff: User, *, code, offer_id, idempotency_key: str, token_digest: str | None = None
) -> Redemption | None:
    """The usual redemption in one round trip (PostgreSQL, outside a transaction; see
    ``partners.redeem_at_once``), or None when ``redeem`` must do it step by step.

    ``token_digest``: the till's bearer token when the request has not looked it up
    (``core.security.bearer_user``); the database checks it in the same statement.
    """
    plain = normalise_code(code)
    if (
        not isinstance(offer_id, int)
        or isinstance(offer_id, bool)
        or len(plain) != CODE_LENGTH
        or any(c not in CODE_ALPHABET for c in plain)
        or not staff.has_role(Role.PARTNER_STAFF)
    ):
        return None
    now = utcnow()
    local = now.astimezone(scheme_zone())
    try:
        rows = execute_alone(
            redeem_sql.CALL,
            {
                "staff_id": staff.id,
                "offer_id": offer_id,
                "code_digest": code_digest(plain),
                "till_key": idempotency_key,
                "till_key_hash": hashlib.sha256(idempotency_key.encode()).hexdigest()[:40],
                "now": now,
                "local_date": local.date(),
                "local_weekday": str(local.weekday()),
                "local_time": local.time().replace(tzinfo=None),
                "token_digest": token_digest,
            },
            only_alone=True,
        )
    except UniqueViolation:
        # Another till took this key or code at the same instant: nothing was written.
        return None
    if not rows:
        return None
    done = rows[0]
    values = completed_redemption_values(
        partner_id=done.partner_id,
        offer_id=offer_id,
        resident_id=done.resident_id,
        code_id=done.code_id,
        staff_id=staff.id,
        idempotency_key=idempotency_key,
        credits=done.credits,
        settlement_rate_pence=done.settlement_rate_pence,
        description=done.description,
        transaction_id=done.transaction_id,
        created_at=now,
    )
    # The answer only: committed already, it needs nothing from the session.
    redemption = Redemption(id=done.redemption_id, **values)
    redemption.resident_first_name = first_word(done.display_name or "")
    return redemption


def answer_again(staff: User, *, code: str, offer_id: int, idempotency_key: str) -> Redemption:
    """After ``redeem`` met the unique key of an earlier redemption (and the caller rolled
    back): that redemption if the request was the same, else ``idempotency_conflict``."""
    offer = get_offer_for_till(staff, offer_id)
    previous = previous_redemption(offer.partner_id, idempotency_key)
    if previous is None:
        raise ConflictError(
            "This redemption conflicts with another made at the same moment. Try again.",
            code="conflict",
        )
    return replayed(previous, find_code(code), offer.id)


def cancel_redemption(actor: User, redemption: Redemption, reason: str) -> Redemption:
    """Give the credits back: a reversing ledger transaction with ``reason``.

    Staff of the partner may cancel within the cancel window; council staff may reverse at
    any time. The resident's lots come back with their original expiry; stock comes back.
    Audited. ``already_cancelled`` (409) the second time; ``cancel_window_passed`` (409)
    for staff after the window.
    """
    reason = clean_text(reason, "reason", "a reason", max_length=1000)
    council = actor.has_role(Role.COUNCIL, Role.ADMIN)
    if not council:
        require_staff(actor, redemption.partner)
    db.session.refresh(redemption, with_for_update=True)
    if redemption.status == RedemptionStatus.CANCELLED.value:
        raise ConflictError("This redemption has already been cancelled.", "already_cancelled")
    if is_settled(redemption.id):
        raise ConflictError(
            "This redemption has been settled with the partner already, so it cannot be "
            "cancelled. Ask the council's scheme team to correct it.",
            "already_settled",
        )
    now = utcnow()
    if not council and now - redemption.created_at > cancel_window():
        minutes = int(cancel_window().total_seconds() // 60)
        raise ConflictError(
            f"Redemptions can be cancelled at the till for {minutes} minutes only. "
            "Ask the council's scheme team to reverse it.",
            "cancel_window_passed",
        )
    reversal = ledger().reverse(
        redemption.transaction_id,
        reason=reason,
        idempotency_key=f"redemption-cancel:{redemption.id}",
        actor_id=actor.id,
    )
    db.session.execute(
        update(Offer)
        .where(Offer.id == redemption.offer_id, Offer.stock_remaining.is_not(None))
        .values(stock_remaining=Offer.stock_remaining + 1)
        .execution_options(synchronize_session=False)
    )
    redemption.status = RedemptionStatus.CANCELLED.value
    redemption.cancelled_at = now
    redemption.cancelled_by_id = actor.id
    redemption.cancel_reason = reason
    redemption.reversal_transaction_id = getattr(reversal, "id", None)
    record(
        actor,
        "redemption.reversed" if council else "redemption.cancelled",
        f"redemption:{redemption.id}",
        reason=reason,
        details={"credits": redemption.credits, "partner": redemption.partner_id},
    )
    db.session.flush()
    return redemption


def is_settled(redemption_id: int) -> bool:
    """True once a settlement (partners.settlement) includes the redemption."""
    from partners.settlement import SettlementRedemption

    return (
        db.session.execute(
            select(SettlementRedemption.id).where(
                SettlementRedemption.redemption_id == redemption_id
            )
        ).first()
        is not None
    )


def can_cancel_at_till(redemption: Redemption, now: datetime | None = None) -> bool:
    """True while partner staff may still cancel this redemption themselves."""
    return (
        redemption.status == RedemptionStatus.COMPLETED.value
        and (now or utcnow()) - redemption.created_at <= cancel_window()
    )


def redemptions_query(
    partner_id: int,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    offer_id: int | None = None,
    status: str | None = None,
):
    """A partner's redemptions, newest first, filtered."""
    query = (
        select(Redemption)
        .where(Redemption.partner_id == partner_id)
        .order_by(Redemption.id.desc())
        .options(
            selectinload(Redemption.offer),
            selectinload(Redemption.resident),
            selectinload(Redemption.staff),
        )
    )
    if since is not None:
        query = query.where(Redemption.created_at >= since)
    if until is not None:
        query = query.where(Redemption.created_at < until)
    if offer_id is not None:
        query = query.where(Redemption.offer_id == offer_id)
    if status:
        query = query.where(Redemption.status == status)
    return query


def period_totals(partner_id: int, since: datetime, until: datetime) -> dict:
    """Credits taken and pence owed for a partner's standing redemptions in a period."""
    credits, pence, count = db.session.execute(
        select(
            func.coalesce(func.sum(Redemption.credits), 0),
            func.coalesce(func.sum(Redemption.credits * Redemption.settlement_rate_pence), 0),
            func.count(),
        ).where(
            Redemption.partner_id == partner_id,
            Redemption.status == RedemptionStatus.COMPLETED.value,
            Redemption.created_at >= since,
            Redemption.created_at < until,
        )
    ).one()
    return {"credits": int(credits), "amount_pence": int(pence), "count": int(count)}


def owed_and_paid(partner_id: int) -> dict:
    """Pence owed to the partner for standing redemptions no paid settlement covers yet,
    and pence paid to it by settlements (partners.settlement)."""
    from partners.settlement import Settlement, SettlementRedemption, SettlementStatus

    paid_redemptions = (
        select(SettlementRedemption.redemption_id)
        .join(Settlement, Settlement.id == SettlementRedemption.settlement_id)
        .where(Settlement.status == SettlementStatus.PAID.value)
    )
    owed = db.session.execute(
        select(
            func.coalesce(func.sum(Redemption.credits * Redemption.settlement_rate_pence), 0)
        ).where(
            Redemption.partner_id == partner_id,
            Redemption.status == RedemptionStatus.COMPLETED.value,
            Redemption.id.not_in(paid_redemptions),
        )
    ).scalar_one()
    paid = db.session.execute(
        select(func.coalesce(func.sum(Settlement.amount_pence), 0)).where(
            Settlement.partner_id == partner_id,
            Settlement.status == SettlementStatus.PAID.value,
        )
    ).scalar_one()
    return {"owed_pence": int(owed), "paid_pence": int(paid)}
