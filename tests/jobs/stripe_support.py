"""Helpers of the Stripe tests: the fake server wired into the test app, and a connected
partner with a settlement waiting to be paid."""

from __future__ import annotations

import http.client
from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy import select

from core.extensions import db
from core.timeutil import utcnow

SECRET_KEY = "sk_test_civic_credits_fake"
WEBHOOK_SECRET = "whsec_test_civic_credits"


def stripe_settings(fake) -> dict:
    return {
        "STRIPE_SECRET_KEY": SECRET_KEY,
        "STRIPE_API_BASE": fake.url,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }


def visit(url: str) -> str:
    """GET ``url`` over HTTP without following redirects; return the Location."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("GET", parts.path)
        response = connection.getresponse()
        response.read()
        return response.getheader("Location")
    finally:
        connection.close()


def connect_partner(world, fake, shop) -> str:
    """Open the shop's Express account through our code and finish onboarding at the fake."""
    from partners.models import Partner, PayoutMethod
    from partners.payments import connect_account, refresh_account

    with world.app.app_context():
        partner = db.session.get(Partner, shop.partner_id)
        partner.payout_method = PayoutMethod.STRIPE_CONNECT.value
        url = connect_account(partner, refresh_url="http://x/r", return_url="http://x/back")
        db.session.commit()
        db.session.remove()
    assert visit(url) == "http://x/back"
    with world.app.app_context():
        row = refresh_account(shop.partner_id)
        account_id = row.account_id
        db.session.commit()
        db.session.remove()
    fake.undelivered.clear()
    return account_id


def settle_last_week(world, shop, residents=1):
    """``residents`` redemptions at the shop last period, settled; return the settlement id."""
    from partners.settlement import Settlement, create_settlements, last_complete_period

    with world.app.app_context():
        start, _end = last_complete_period(utcnow())
    for _ in range(residents):
        world.redeem(shop, world.resident(), at=start + timedelta(days=1))
    world.run(create_settlements)
    return world.scalar(select(Settlement.id).where(Settlement.partner_id == shop.partner_id))


def settlement(world, settlement_id):
    from partners.settlement import Settlement

    with world.app.app_context():
        row = db.session.get(Settlement, settlement_id)
        db.session.expunge(row)
        db.session.remove()
    return row
