"""Settle N partners and pay them through the fake Stripe server: time, transfers/s.

    .venv/bin/python bench/settlement_bench.py --db sqlite --partners 200
    .venv/bin/python bench/settlement_bench.py --db postgresql --partners 1000   # the issue's

Seeds N approved partners, each with a connected (onboarded) Stripe account at the fake
server and ``--redemptions`` redemptions last period, their credits in the partner's
ledger account. Then times the two halves of the weekly job as the worker runs them:
``create_settlements`` (one settlement and ledger settle transaction per partner, each
committed) and ``pay_due_settlements`` (one Stripe Transfer per settlement through the real
``stripe`` SDK over HTTP to tests/stripe_fake on 127.0.0.1, each committed).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).parent)]

from ledger_common import bench_app, bench_database, machine  # noqa: E402

from core.extensions import db  # noqa: E402
from core.models import User  # noqa: E402
from core.timeutil import utcnow  # noqa: E402
from tests.stripe_fake import FakeStripe  # noqa: E402

SECRET_KEY = "sk_test_settlement_bench"


def seed(fake: FakeStripe, partners: int, redemptions: int) -> None:
    """Partners with offers, connected accounts, redemptions and credits; committed."""
    from partners.models import Offer, Partner, Redemption
    from partners.settlement import StripeConnectedAccount, last_complete_period
    from rewards import operations as ledger

    resident = User(
        email="bench@example.org", password_hash="x", display_name="Bench", postcode="LS8"
    )
    db.session.add(resident)
    rows = [
        Partner(
            name=f"Partner {n}",
            address="1 High Street",
            status="approved",
            settlement_rate_pence=100,
            payout_method="stripe_connect",
        )
        for n in range(partners)
    ]
    db.session.add_all(rows)
    db.session.flush()
    offers = [Offer(partner_id=p.id, title="Coffee", credit_cost=2) for p in rows]
    db.session.add_all(offers)
    db.session.flush()
    start, _end = last_complete_period(utcnow())
    transaction_number = 0
    for partner, offer in zip(rows, offers, strict=True):
        account = fake.create_account({"type": "express"})
        fake.complete_onboarding(account["id"])
        db.session.add(
            StripeConnectedAccount(
                partner_id=partner.id,
                account_id=account["id"],
                details_submitted=True,
                payouts_enabled=True,
            )
        )
        ledger_account = ledger.partner_account(partner.account_key, partner.name)
        ledger_account.balance = 2 * redemptions
        for _ in range(redemptions):
            transaction_number += 1
            db.session.add(
                Redemption(
                    partner_id=partner.id,
                    offer_id=offer.id,
                    resident_id=resident.id,
                    idempotency_key=f"bench-{transaction_number}",
                    credits=2,
                    settlement_rate_pence=100,
                    description="Coffee",
                    transaction_id=transaction_number,
                    status="completed",
                    created_at=start + timedelta(days=1),
                )
            )
    fake.undelivered.clear()
    db.session.commit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--partners", type=int, default=200)
    parser.add_argument("--redemptions", type=int, default=3, help="per partner")
    args = parser.parse_args()
    print(f"{args.partners} partners x {args.redemptions} redemptions, {args.db}; {machine()}")

    from partners.payments import pay_due_settlements
    from partners.settlement import create_settlements

    with FakeStripe() as fake:
        app = bench_app(bench_database(args.db, "settlement_bench"))
        app.config.update(STRIPE_SECRET_KEY=SECRET_KEY, STRIPE_API_BASE=fake.url)
        with app.app_context():
            started = time.perf_counter()
            seed(fake, args.partners, args.redemptions)
            print(f"  seeded in {time.perf_counter() - started:.1f} s")
            started = time.perf_counter()
            report = create_settlements()
            settle_seconds = time.perf_counter() - started
            assert len(report.created) == args.partners, report.summary()
            started = time.perf_counter()
            paid = pay_due_settlements()
            pay_seconds = time.perf_counter() - started
            assert len(paid.transfers) == args.partners, paid.summary()
            assert len(fake.transfers) == args.partners
            print(
                f"  settlements made  {settle_seconds:7.1f} s  "
                f"{args.partners / settle_seconds:7.1f} partners/s"
            )
            print(
                f"  transfers sent    {pay_seconds:7.1f} s  "
                f"{args.partners / pay_seconds:7.1f} transfers/s"
            )
            total = settle_seconds + pay_seconds
            print(f"  whole run         {total:7.1f} s")
            db.session.remove()
            db.engine.dispose()


if __name__ == "__main__":
    main()
