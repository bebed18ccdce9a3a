"""Demo data of the partners package: The Corner Café, approved, with two offers, run by the
demo partner login (partner@example.org).

Idempotent: the café is found by name among the demo partner's businesses, and each offer
by title, so loading again adds nothing.
"""

from __future__ import annotations

from sqlalchemy import select

from core.demo import demo_loader
from core.extensions import db
from partners import operations as ops
from partners.models import Offer, Partner, PartnerMembership, PartnerStatus

PARTNER_LOGIN = "partner@example.org"
COUNCIL_LOGIN = "council@example.org"
CAFE = "The Corner Café"
OFFERS = [
    ops.OfferFields(
        title="A hot drink",
        description="Any tea, coffee or hot chocolate, to drink in or take away.",
        credit_cost=1,
    ),
    ops.OfferFields(
        title="Soup and a roll",
        description="Today's soup with a fresh roll, served from noon.",
        credit_cost=3,
        limit_per_resident=1,
        limit_period="day",
    ),
]


@demo_loader
def load_partners_demo(users) -> None:
    """An approved café with a cheap offer and a lunch offer."""
    staff, council = users.get(PARTNER_LOGIN), users.get(COUNCIL_LOGIN)
    if staff is None or council is None:
        return
    partner = db.session.execute(
        select(Partner)
        .join(PartnerMembership)
        .where(PartnerMembership.user_id == staff.id, Partner.name == CAFE)
    ).scalar_one_or_none()
    if partner is None:
        partner = ops.register_partner(
            staff,
            name=CAFE,
            address="12 Roundhay Road, Leeds LS8 5AN",
            category="Café",
            ward="Gipton and Harehills",
            opening_hours="Monday to Saturday, 8am to 4pm",
            contact_name=staff.display_name,
            contact_phone="0113 496 0000",
        )
    if partner.status == PartnerStatus.PENDING.value:
        ops.decide_partner(council, partner, PartnerStatus.APPROVED)
    titles = set(
        db.session.execute(select(Offer.title).where(Offer.partner_id == partner.id)).scalars()
    )
    for fields in OFFERS:
        if fields.title not in titles:
            ops.create_offer(staff, partner, fields)
    db.session.flush()
