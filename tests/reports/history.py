"""A small scheme with a known history, built through the real operations at real dates.

``time_machine`` moves the clock so each step (registration, attendance, approval, spend,
gift, expiry) happens on its own day; every figure the reports show is then known by hand
(see the expected values in test_reports.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count

import time_machine

from core.extensions import db
from core.models import Role, User

NUMBERS = count(1)


def at(year: int, month: int, day: int, hour: int = 9, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


class History:
    """Builds rows through the operations, each step at a chosen moment, committed."""

    def __init__(self, app, create_user):
        self.app = app
        self.create_user = create_user
        self.council = create_user(Role.COUNCIL, email="officer@example.org", name="Casey Officer")
        self.organiser = create_user(Role.ORGANISER, email="lead@example.org", name="Lee Lead")

    def step(self, when: datetime, action):
        """Run ``action(user_of)`` in an app context at ``when`` and commit."""
        with time_machine.travel(when, tick=False), self.app.test_request_context():
            result = action(lambda made: db.session.get(User, made.id))
            db.session.commit()
            db.session.remove()
        return result

    def resident(self, when: datetime, name: str):
        with time_machine.travel(when, tick=False):
            return self.create_user(Role.RESIDENT, email=f"{name.lower()}@example.org", name=name)

    def organisation(self, when: datetime, name: str) -> int:
        from volunteering import operations as ops

        def build(user_of):
            organisation = ops.propose_organisation(user_of(self.organiser), name, "")
            ops.approve_organisation(user_of(self.council), organisation)
            return organisation.id

        return self.step(when, build)

    def activity(self, when, organisation_id, title, category, ward, credits_per_hour=1) -> int:
        from volunteering import operations as ops

        def build(user_of):
            activity = ops.propose_activity(
                user_of(self.organiser),
                ops.get_organisation(organisation_id),
                title=title,
                category=category,
                location="The park",
                ward=ward,
                credits_per_hour=credits_per_hour,
            )
            ops.approve_activity(user_of(self.council), activity)
            return activity.id

        return self.step(when, build)

    def attendance(self, activity_id, resident, start: datetime, minutes: int, *, approve=True):
        """A session of the activity at ``start``, attended for ``minutes``, decided."""
        from volunteering import operations as ops

        def build(user_of):
            activity = ops.get_activity(activity_id)
            session = ops.schedule_session(
                user_of(self.organiser), activity, start, start + timedelta(minutes=minutes)
            )
            attendance = ops.add_attendance(
                user_of(self.organiser),
                session,
                resident_id=resident.id,
                checked_in_at=start,
                checked_out_at=start + timedelta(minutes=minutes),
                idempotency_key=f"sheet-{next(NUMBERS)}",
            )
            claim = attendance.claim
            if approve:
                ops.approve_claim(user_of(self.council), claim.id)
            else:
                ops.reject_claim(user_of(self.council), claim.id, "Not on the sign-in sheet")
            return claim.id

        return self.step(start + timedelta(minutes=minutes + 30), build)

    def partner(self, when, name, ward, *, rate=None, offer=("Coffee", 2)):
        from partners import operations as ops
        from partners.models import PartnerStatus

        staff = self.create_user(Role.PARTNER_STAFF, email=f"staff{next(NUMBERS)}@example.org")

        def build(user_of):
            partner = ops.register_partner(
                user_of(staff), name=name, address="1 High Street", category="Café", ward=ward
            )
            ops.decide_partner(user_of(self.council), partner, PartnerStatus.APPROVED)
            if rate is not None:
                ops.set_settlement_rate(user_of(self.council), partner, rate)
            created = ops.create_offer(
                user_of(staff), partner, ops.OfferFields(title=offer[0], credit_cost=offer[1])
            )
            return partner.id, created.id

        partner_id, offer_id = self.step(when, build)
        return partner_id, offer_id, staff

    def redeem(self, when, resident, shop) -> int:
        from partners import operations as ops

        partner_id, offer_id, staff = shop

        def build(user_of):
            code, _row = ops.issue_code(user_of(resident))
            redemption, _created = ops.redeem(
                user_of(staff), code=code, offer_id=offer_id, idempotency_key=f"till-{code}"
            )
            return redemption.id

        return self.step(when, build)

    def cancel(self, when, redemption_id: int) -> None:
        from partners import operations as ops
        from partners.models import Redemption

        def build(user_of):
            ops.cancel_redemption(
                user_of(self.council), db.session.get(Redemption, redemption_id), "Wrong offer"
            )

        self.step(when, build)

    def gift(self, when, giver, receiver, amount: int) -> None:
        from rewards import operations as ledger

        def build(user_of):
            ledger.gift(
                giver.id,
                ledger.wallet_of(receiver.id).id,
                amount,
                idempotency_key=f"gift-{next(NUMBERS)}",
            )

        self.step(when, build)

    def settle(self, when, period_end: datetime) -> list[int]:
        """Make the partners' settlements for the week ending ``period_end``."""
        from partners.settlement import create_settlements

        return self.step(
            when, lambda user_of: create_settlements(now=when, period_end=period_end).created
        )

    def pay(self, when) -> int:
        """Send the due settlements: with no Stripe, into a payment file; its id."""
        from partners.payments import pay_due_settlements

        return self.step(when, lambda user_of: pay_due_settlements(now=when).batch_id)

    def mark_paid(self, when, batch_id: int) -> None:
        """Council marks the payment file paid: its settlements become paid at ``when``."""
        from partners.settlement import mark_batch_paid

        self.step(when, lambda user_of: mark_batch_paid(user_of(self.council), batch_id))

    def payment_reversed(self, when, settlement_id: int) -> None:
        """The payment of a paid settlement came back: it is failed again."""
        from partners.settlement import SettlementStatus, lock_settlement, transition

        self.step(
            when,
            lambda user_of: transition(
                lock_settlement(settlement_id), SettlementStatus.FAILED, when
            ),
        )

    def expire(self, when) -> None:
        from rewards.expiry import expire_due_lots

        self.step(when, lambda user_of: expire_due_lots(now=when))

    def setting(self, when, name, value) -> None:
        from core import settings

        admin = self.create_user(Role.ADMIN, email=f"admin{next(NUMBERS)}@example.org")

        def build(user_of):
            settings.set_setting(user_of(admin), name, value, "Shorter validity for the test")

        self.step(when, build)
        with self.app.app_context():
            settings.refresh(self.app, force=True)


def build_known_history(app, create_user) -> dict:
    """The history the reports tests check, by hand (see test_reports.py for the figures)."""
    history = History(app, create_user)
    history.setting(at(2025, 10, 1), "CREDIT_VALIDITY_DAYS", 90)
    robin = history.resident(at(2025, 6, 1), "Robin")
    sam = history.resident(at(2026, 3, 1), "Sam")
    kit = history.resident(at(2025, 12, 1), "Kit")
    friends = history.organisation(at(2025, 10, 1), "Roundhay Friends")
    litter = history.activity(at(2025, 10, 2), friends, "Litter pick", "Environment", "Roundhay")
    lunch = history.activity(
        at(2025, 10, 2), friends, "Lunch club", "Food and lunch clubs", "Chapel Allerton", 2
    )
    cafe = history.partner(at(2025, 10, 3), "Corner Café", "Roundhay", offer=("Coffee", 2))
    books = history.partner(
        at(2025, 10, 3), "Book Nook", "Chapel Allerton", rate=80, offer=("Book", 3)
    )
    # Before the period: Robin gives 2 hours (2 credits, valid 90 days).
    history.attendance(litter, robin, at(2025, 11, 10, 10), 120)
    # Also before it: Ari earns 9 credits and spends them all, a book (3 credits at 80p) and
    # three coffees (2 at 100p), each in its own week, so each is its own settlement.
    ari = history.resident(at(2025, 10, 5), "Ari")
    history.attendance(lunch, ari, at(2025, 11, 3, 10), 180)
    history.attendance(lunch, ari, at(2025, 11, 5, 10), 90)
    history.redeem(at(2025, 11, 17, 12), ari, books)
    for day in (at(2025, 11, 24, 12), at(2025, 12, 1, 12), at(2025, 12, 8, 12)):
        history.redeem(day, ari, cafe)
    # The book's settlement (240p) is paid in the period, on 12 January.
    (book_settlement,) = history.settle(at(2025, 11, 25), at(2025, 11, 24, 0))
    book_file = history.pay(at(2025, 11, 26))
    # The first coffee's (200p) is paid before the period, on 15 December.
    history.settle(at(2025, 12, 2), at(2025, 12, 1, 0))
    history.mark_paid(at(2025, 12, 15), history.pay(at(2025, 12, 3)))
    # The second's (200p) is paid on 20 January, but the payment comes back: failed.
    (reversed_settlement,) = history.settle(at(2025, 12, 9), at(2025, 12, 8, 0))
    reversed_file = history.pay(at(2025, 12, 10))
    # The third's (200p) is made and never paid: pending.
    (pending_settlement,) = history.settle(at(2025, 12, 16), at(2025, 12, 15, 0))
    history.mark_paid(at(2026, 1, 12), book_file)
    history.mark_paid(at(2026, 1, 20), reversed_file)
    history.payment_reversed(at(2026, 2, 2), reversed_settlement)
    # February: Robin's first lot expires (2 credits); Robin gives 2 hours more.
    history.expire(at(2026, 2, 10))
    history.attendance(litter, robin, at(2026, 2, 3, 10), 120)
    # March: Sam (joined this month) and Kit (joined in December) lunch club at 2 an hour.
    history.attendance(lunch, sam, at(2026, 3, 15, 11), 90)
    history.attendance(lunch, kit, at(2026, 3, 15, 11, 30), 60)
    history.attendance(litter, kit, at(2026, 3, 20, 10), 60, approve=False)
    # April: Robin spends 2 at the café; Sam's book is cancelled the same day.
    history.redeem(at(2026, 4, 2, 12), robin, cafe)
    book = history.redeem(at(2026, 4, 5, 12), sam, books)
    history.cancel(at(2026, 4, 5, 13), book)
    # May: Sam gives Kit 1 credit. July: Sam's 2 and Kit's 3 expire.
    history.gift(at(2026, 5, 1), sam, kit, 1)
    history.expire(at(2026, 7, 1))
    # September: Sam gives an hour more (1 credit, still held at the end of October).
    history.attendance(litter, sam, at(2026, 9, 10, 10), 60)
    return {
        "history": history,
        "robin": robin,
        "sam": sam,
        "ari": ari,
        "settlements": {
            "paid": book_settlement,
            "failed": reversed_settlement,
            "pending": pending_settlement,
        },
        "kit": kit,
        "organisation_id": friends,
        "cafe": cafe,
        "books": books,
    }
