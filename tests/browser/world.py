"""Real rows for the pages whose URLs carry ids: a small scheme around one person.

``World(app, everyone)`` makes, on first need and through each package's operations (never
by writing its models), what a page's URL argument names: an approved organisation that
``everyone`` organises, an approved activity with a session open now, an approved partner
``everyone`` works for with an offer, a resident's redemption there, and so on. A URL
argument is filled by its name, so a new page reusing ``session_id`` or ``partner_id`` is
checked at once; a new name needs a line in ``FILLERS``.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property

from core.extensions import db
from core.models import Role, User
from core.timeutil import utcnow

#: Every row made here is in the scheme's own little world.
POSTCODE = "LS8 2HE"


class World:
    """Rows for URL arguments, made once per test and committed (``clean_state`` empties)."""

    def __init__(self, app, everyone, create_user):
        self.app = app
        self.everyone = everyone
        self.create_user = create_user

    def _in_app(self, build):
        """Run ``build(everyone_row)`` in a request context, commit, and return its result."""
        with self.app.test_request_context():
            result = build(db.session.get(User, self.everyone.id))
            db.session.commit()
            db.session.remove()
        return result

    @cached_property
    def approver(self):
        """A council officer other than ``everyone``: nobody approves their own proposal."""
        return self.create_user(Role.COUNCIL, email="approver@example.org", name="Ade Approver")

    # Volunteering -------------------------------------------------------------------------

    @cached_property
    def volunteering(self) -> tuple[int, int, int]:
        """(organisation, activity, session) ids: all approved, the session open now."""
        from volunteering import operations as ops

        approver = self.approver

        def build(person):
            council = db.session.get(User, approver.id)
            organisation = ops.propose_organisation(person, "Roundhay Friends", "Park volunteers")
            ops.approve_organisation(council, organisation)
            activity = ops.propose_activity(
                person,
                organisation,
                title="Litter pick in Roundhay Park",
                description="Gloves and bags provided.",
                category="Environment",
                location="Roundhay Park, Mansion Lane gate",
                ward="Roundhay",
                credits_per_hour=1,
                capacity=20,
            )
            ops.approve_activity(council, activity)
            starts_at = utcnow() - timedelta(minutes=30)
            session = ops.schedule_session(
                person, activity, starts_at, starts_at + timedelta(hours=2)
            )
            return organisation.id, activity.id, session.id

        return self._in_app(build)

    @cached_property
    def checkin_token(self) -> str:
        """A check-in token of the open session: the poster's, valid all session long.

        (A rotating screen code lasts a minute, which a slow run of every page can outlast.)
        """
        from volunteering import tokens

        session_id = self.volunteering[2]
        with self.app.test_request_context():
            return tokens.poster_token(session_id)

    # Partners -----------------------------------------------------------------------------

    @cached_property
    def partner(self) -> tuple[int, int]:
        """(partner, offer) ids: an approved partner ``everyone`` works for, with an offer."""
        from partners import operations as ops
        from partners.models import PartnerStatus

        approver = self.approver

        def build(person):
            partner = ops.register_partner(
                person,
                name="The Corner Café",
                address="1 High Street, Leeds LS8 2HE",
                category="Café",
                ward="Roundhay",
            )
            ops.decide_partner(db.session.get(User, approver.id), partner, PartnerStatus.APPROVED)
            offer = ops.create_offer(
                person, partner, ops.OfferFields(title="Coffee", credit_cost=2)
            )
            return partner.id, offer.id

        return self._in_app(build)

    @cached_property
    def redemption_id(self) -> int:
        """A resident with credits spent some at the partner; ``everyone`` took the code."""
        from partners import operations as ops
        from rewards import operations as ledger

        _, offer_id = self.partner
        shopper = self.create_user(Role.RESIDENT, email="shopper@example.org", name="Sol Shopper")

        def build(person):
            ledger.earn(shopper.id, 5, idempotency_key="browser-earn", description="Litter pick")
            code, _ = ops.issue_code(db.session.get(User, shopper.id))
            redemption, _ = ops.redeem(
                person, code=code, offer_id=offer_id, idempotency_key="browser-redeem"
            )
            return redemption.id

        return self._in_app(build)

    @cached_property
    def settlement_id(self) -> int:
        """The partner's settlement for this period, made by the job once the period is over."""
        from partners import settlement as settling

        partner_id, _ = self.partner
        self.redemption_id  # noqa: B018 - the settlement pays for this redemption
        with self.app.test_request_context():
            period_end = settling.period_containing(utcnow())[1]
            after = period_end + settling.cancel_window() + timedelta(minutes=1)
            settling.create_settlements(now=after, period_end=period_end)
            settlement_id = db.session.execute(
                db.select(settling.Settlement.id).where(
                    settling.Settlement.partner_id == partner_id
                )
            ).scalar_one()
            db.session.remove()
        return settlement_id

    @cached_property
    def redemption_code_id(self) -> int:
        """A one-time redemption code ``everyone`` (a resident too) has just shown."""
        from partners import operations as ops

        return self._in_app(lambda person: ops.issue_code(person)[1].id)

    @cached_property
    def invitation_token(self) -> str:
        """The link's token of a pending invitation to organise for the organisation."""
        from core import invitations

        organisation_id = self.volunteering[0]

        def build(person):
            invitation = invitations.invite(
                person, "organiser", organisation_id, "invited.helper@example.org"
            )
            return invitations.token_for(invitation)

        return self._in_app(build)


#: URL argument name -> its value in the world.
FILLERS = {
    "user_id": lambda world: world.everyone.id,
    "organisation_id": lambda world: world.volunteering[0],
    "activity_id": lambda world: world.volunteering[1],
    "session_id": lambda world: world.volunteering[2],
    "token": lambda world: world.checkin_token,
    "partner_id": lambda world: world.partner[0],
    "offer_id": lambda world: world.partner[1],
    "rid": lambda world: world.redemption_id,
    "code_id": lambda world: world.redemption_code_id,
    "settlement_id": lambda world: world.settlement_id,
    "invitation_token": lambda world: world.invitation_token,
}
