"""Stripe Connect against our fake Stripe server, through the real stripe SDK over HTTP:
onboarding, one transfer per settlement, retries with backoff, and webhooks (signature on
the raw body, each event once, re-fetched objects, tampered, stale, replayed and
out-of-order events)."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from core.extensions import db
from core.timeutil import utcnow
from partners.settlement import StripeConnectedAccount, StripeEvent
from tests.conftest import PASSWORD, MadeUser, post_form, sign_in
from tests.jobs.stripe_support import (
    WEBHOOK_SECRET,
    connect_partner,
    settle_last_week,
    settlement,
    stripe_settings,
    visit,
)
from tests.stripe_fake import FakeStripe


@pytest.fixture
def fake(app):
    """The fake Stripe server, and the app configured to use it (restored afterwards)."""
    with FakeStripe() as server:
        saved = {k: app.config.get(k) for k in stripe_settings(server)}
        app.config.update(stripe_settings(server))
        try:
            yield server
        finally:
            app.config.update(saved)


@pytest.fixture
def connected(world, fake):
    """A shop with a connected, onboarded Stripe account."""
    shop = world.shop("Café", rate=100, cost=2)
    shop.account_id = connect_partner(world, fake, shop)
    return shop


def pay(world, **kwargs):
    from partners.payments import pay_due_settlements

    return world.run(pay_due_settlements, **kwargs)


def post_event(client, fake, event, *, secret=WEBHOOK_SECRET, timestamp=None, body=None):
    payload, header = fake.signed(event, secret, timestamp)
    return client.post(
        "/webhooks/stripe",
        data=body if body is not None else payload,
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
    )


def deliver_all(client, fake) -> list[int]:
    events, fake.undelivered = fake.undelivered, []
    return [post_event(client, fake, event).status_code for event in events]


def staff_of(world, shop) -> MadeUser:
    from core.models import User

    with world.app.app_context():
        email = db.session.get(User, shop.staff_id).email
        db.session.remove()
    return MadeUser(shop.staff_id, email, PASSWORD, "Staff")


# --------------------------------------------------------------------------- onboarding


def test_partner_staff_connect_an_express_account_and_come_back_onboarded(world, fake, client):
    shop = world.shop("Café")
    sign_in(client, staff_of(world, shop))
    page = client.get(f"/business/{shop.partner_id}/payouts")
    assert "Connect a Stripe account" in page.get_data(as_text=True)

    started = post_form(client, f"/business/{shop.partner_id}/payouts", {})

    assert started.status_code == 303 and started.location.startswith(fake.url)
    (account,) = fake.accounts.values()
    assert account["type"] == "express" and account["metadata"] == {
        "partner_id": str(shop.partner_id)
    }
    back = visit(started.location)  # the partner fills in Stripe's forms
    assert back.endswith(f"/business/{shop.partner_id}/payouts?returned=1")
    page = client.get(back)
    assert "Your Stripe account is connected" in page.get_data(as_text=True)
    row = world.scalar(select(StripeConnectedAccount.payouts_enabled))
    assert row is True


def test_account_updated_webhook_keeps_the_status(world, fake, client):
    from partners.models import Partner
    from partners.payments import connect_account

    shop = world.shop()
    with world.app.app_context():
        connect_account(
            db.session.get(Partner, shop.partner_id), refresh_url="http://x", return_url="http://x"
        )
        db.session.commit()
        db.session.remove()
    (account_id,) = fake.accounts
    assert world.scalar(select(StripeConnectedAccount.payouts_enabled)) is False
    fake.complete_onboarding(account_id)

    assert deliver_all(client, fake) == [200]

    assert world.scalar(select(StripeConnectedAccount.payouts_enabled)) is True


# --------------------------------------------------------------------------- transfers


def test_a_connected_partner_is_paid_by_one_transfer_keyed_by_its_settlement(
    world, fake, connected, client
):
    settlement_id = settle_last_week(world, connected, residents=2)

    report = pay(world)

    assert report.transfers == [settlement_id] and report.batch_id is None
    (transfer,) = fake.transfers.values()
    assert transfer["amount"] == 400 and transfer["destination"] == connected.account_id
    assert transfer["transfer_group"] == f"settlement-{settlement_id}"
    assert transfer["metadata"]["settlement_id"] == str(settlement_id)
    row = settlement(world, settlement_id)
    assert (row.status, row.stripe_transfer_id) == ("submitted", transfer["id"])
    assert pay(world).transfers == []  # nothing due any more
    # Stripe's transfer.created webhook moves it to paid.
    assert deliver_all(client, fake) == [200]
    assert settlement(world, settlement_id).status == "paid"
    assert len(fake.transfers) == 1


def test_a_crash_after_stripe_answered_is_retried_with_the_same_key_and_pays_once(
    world, fake, connected, monkeypatch
):
    from partners import payments

    settlement_id = settle_last_week(world, connected)
    real = payments.send_transfer

    def crash_after_the_call(*args):
        real(*args)
        raise SystemExit("worker killed before commit")

    monkeypatch.setattr(payments, "send_transfer", crash_after_the_call)
    with pytest.raises(SystemExit):
        pay(world)
    assert settlement(world, settlement_id).status == "pending"  # rolled back
    monkeypatch.setattr(payments, "send_transfer", real)

    report = pay(world)

    assert report.transfers == [settlement_id]
    assert len(fake.transfers_for(f"settlement-{settlement_id}")) == 1
    assert fake.transfer_posts == 1  # the second POST was answered from the saved response
    assert settlement(world, settlement_id).stripe_transfer_id in fake.transfers


def test_failures_retry_with_backoff_and_are_shown_to_council_after_the_last(
    app, world, fake, connected, client
):
    app.config["SETTLEMENT_MAX_ATTEMPTS"] = 3
    try:
        settlement_id = settle_last_week(world, connected)
        fake.fail_next("POST", "/v1/transfers", status=500, times=3)
        now = utcnow()

        assert pay(world, now=now).failed == [settlement_id]
        first = settlement(world, settlement_id)
        assert first.status == "failed" and first.attempts == 1
        assert first.next_attempt_at == now + timedelta(seconds=60)
        assert pay(world, now=now + timedelta(seconds=30)).failed == []  # not due yet
        assert pay(world, now=now + timedelta(seconds=61)).failed == [settlement_id]
        second = settlement(world, settlement_id)
        assert second.next_attempt_at == now + timedelta(seconds=61 + 120)
        assert pay(world, now=now + timedelta(seconds=200)).failed == [settlement_id]
        last = settlement(world, settlement_id)
        assert last.gave_up and "Stripe refused" in last.last_error
        assert pay(world, now=now + timedelta(days=1)).failed == []  # no more tries

        sign_in(client, world.council)
        page = client.get("/council/settlements").get_data(as_text=True)
        assert "No more automatic tries" in page
        # Each try after a Stripe answer used a new key: Stripe keeps a 500 for its key.
        assert last.transfer_attempt == 3
        post_form(
            client,
            f"/council/settlements/{settlement_id}/retry",
            {},
            page="/council/settlements",
        )
        assert pay(world, now=utcnow() + timedelta(seconds=1)).transfers == [settlement_id]
        assert len(fake.transfers) == 1
    finally:
        app.config["SETTLEMENT_MAX_ATTEMPTS"] = 5


def test_a_dropped_connection_keeps_the_key_for_the_retry(world, fake, connected):
    settlement_id = settle_last_week(world, connected)
    fake.fail_next("POST", "/v1/transfers", drop=True)
    now = utcnow()
    assert pay(world, now=now).failed == [settlement_id]
    failed = settlement(world, settlement_id)
    assert failed.transfer_attempt == 0 and "Could not reach Stripe" in failed.last_error
    assert pay(world, now=now + timedelta(minutes=2)).transfers == [settlement_id]
    assert len(fake.transfers) == 1


def test_a_key_still_in_use_is_retried_with_the_same_key(world, fake, connected):
    """A 409 (a request with this key still running, e.g. from a worker that died mid-call)
    must not move to a new key: that could pay twice."""
    settlement_id = settle_last_week(world, connected)
    fake.fail_next("POST", "/v1/transfers", status=409, type_="idempotency_error")
    now = utcnow()
    assert pay(world, now=now).failed == [settlement_id]
    assert settlement(world, settlement_id).transfer_attempt == 0
    assert pay(world, now=now + timedelta(minutes=2)).transfers == [settlement_id]
    assert len(fake.transfers) == 1


def test_partners_without_a_connected_account_go_in_the_payment_file(world, fake, connected):
    paid_by_stripe = settle_last_week(world, connected)
    other = world.shop("Bakery")
    in_file = settle_last_week(world, other)
    report = pay(world)
    assert report.transfers == [paid_by_stripe]
    assert report.batch_count == 1
    assert settlement(world, in_file).payment_batch_id == report.batch_id


# --------------------------------------------------------------------------- webhooks


@pytest.fixture
def submitted(world, fake, connected):
    """A settlement whose transfer Stripe made (events not delivered yet)."""
    settlement_id = settle_last_week(world, connected)
    pay(world)
    (transfer_id,) = fake.transfers
    return settlement_id, transfer_id


def test_a_tampered_body_is_refused_and_changes_nothing(world, fake, client, submitted):
    settlement_id, _transfer = submitted
    (event,) = fake.undelivered
    payload, header = fake.signed(event, WEBHOOK_SECRET)
    tampered = payload.replace(b'"transfer.created"', b'"transfer.reversed"')
    response = client.post("/webhooks/stripe", data=tampered, headers={"Stripe-Signature": header})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_signature"
    assert world.count(StripeEvent) == 0
    assert settlement(world, settlement_id).status == "submitted"


def test_a_wrong_secret_or_no_signature_is_refused(world, fake, client, submitted):
    (event,) = fake.undelivered
    assert post_event(client, fake, event, secret="whsec_wrong").status_code == 400
    unsigned = client.post("/webhooks/stripe", data=json.dumps(event))
    assert unsigned.status_code == 400
    assert world.count(StripeEvent) == 0


def test_a_stale_event_is_refused(world, fake, client, submitted):
    (event,) = fake.undelivered
    old = int(utcnow().timestamp()) - 600  # older than the 300 s tolerance
    assert post_event(client, fake, event, timestamp=old).status_code == 400
    assert world.count(StripeEvent) == 0


def test_a_replayed_event_is_recorded_once_and_acted_on_once(world, fake, client, submitted):
    settlement_id, _transfer = submitted
    (event,) = fake.undelivered
    first = post_event(client, fake, event)
    again = post_event(client, fake, event)
    assert first.get_json()["outcome"] == "paid"
    assert again.status_code == 200 and again.get_json()["duplicate"] is True
    assert world.count(StripeEvent) == 1
    assert settlement(world, settlement_id).status == "paid"


def test_events_out_of_order_end_in_what_stripe_says_now(world, fake, client, submitted):
    settlement_id, transfer_id = submitted
    created = fake.undelivered.pop()
    fake.reverse_transfer(transfer_id)
    reversed_event = fake.undelivered.pop()
    # The reversal arrives before the creation it follows.
    assert post_event(client, fake, reversed_event).get_json()["outcome"].startswith("failed")
    late = post_event(client, fake, created).get_json()["outcome"]
    assert late == "already failed"
    row = settlement(world, settlement_id)
    assert row.status == "failed" and row.gave_up and "reversed" in row.last_error


def test_the_event_copy_is_not_trusted_the_object_is_fetched_again(world, fake, client, submitted):
    settlement_id, transfer_id = submitted
    (event,) = fake.undelivered
    fake.reverse_transfer(transfer_id)  # by the time we look, it is reversed
    fake.undelivered.clear()
    outcome = post_event(client, fake, event).get_json()["outcome"]
    assert outcome == "failed: transfer reversed"
    assert settlement(world, settlement_id).status == "failed"


def test_a_paid_settlement_whose_transfer_is_reversed_fails(world, fake, client, submitted):
    settlement_id, transfer_id = submitted
    assert deliver_all(client, fake) == [200]
    assert settlement(world, settlement_id).status == "paid"
    fake.reverse_transfer(transfer_id)
    assert deliver_all(client, fake) == [200]
    assert settlement(world, settlement_id).status == "failed"


def test_a_webhook_for_a_transfer_the_worker_never_recorded_is_adopted(
    world, fake, client, connected, monkeypatch
):
    """The worker died after Stripe made the transfer and before its commit: the event
    finds the settlement from the transfer's metadata."""
    from partners import payments

    settlement_id = settle_last_week(world, connected)
    real = payments.send_transfer

    def die(*args):
        real(*args)
        raise SystemExit("killed")

    monkeypatch.setattr(payments, "send_transfer", die)
    with pytest.raises(SystemExit):
        pay(world)
    assert settlement(world, settlement_id).status == "pending"
    assert deliver_all(client, fake) == [200]
    row = settlement(world, settlement_id)
    assert row.status == "paid" and row.stripe_transfer_id in fake.transfers


def test_a_failed_payout_is_noted_for_the_partner_and_council(world, fake, client, connected):
    fake.fail_payout(connected.account_id)
    assert deliver_all(client, fake) == [200]
    note = world.scalar(select(StripeConnectedAccount.last_payout_failure))
    assert "bank account has been closed" in note
    sign_in(client, world.council)
    page = client.get("/council/settlements").get_data(as_text=True)
    assert "Payouts Stripe could not make" in page and "Café" in page


# --------------------------------------------------------------------------- payout.failed


def settle_period(world, shop, period_end) -> int:
    """One redemption at the shop in the period ending ``period_end``, settled; its id."""
    from partners.settlement import Settlement, create_settlements, period_length

    with world.app.app_context():
        length = period_length()
    world.redeem(shop, world.resident(), at=period_end - length + timedelta(hours=1))
    world.run(create_settlements, period_end=period_end)
    return world.scalar(
        select(Settlement.id).where(
            Settlement.partner_id == shop.partner_id, Settlement.period_end == period_end
        )
    )


def periods(world):
    """The ends of the last complete period and of the one before it."""
    from partners.settlement import last_complete_period

    with world.app.app_context():
        start, end = last_complete_period(utcnow())
    return start, end


@pytest.fixture
def payout_world(world, fake, connected, client):
    """Café: an older settlement paid out in payout ``po``, and a newer one paid after it;
    Bakery (its own account): a settlement paid out in its own payout."""
    bakery = world.shop("Bakery", rate=100, cost=2)
    bakery.account_id = connect_partner(world, fake, bakery)
    earlier_end, last_end = periods(world)
    old = settle_period(world, connected, earlier_end)
    pay(world)
    po = fake.pay_out(connected.account_id)["id"]
    new = settle_period(world, connected, last_end)
    pay(world)
    other = settle_period(world, bakery, last_end)
    pay(world)
    fake.pay_out(bakery.account_id)
    assert set(deliver_all(client, fake)) == {200}
    assert {settlement(world, i).status for i in (old, new, other)} == {"paid"}
    return {"po": po, "old": old, "new": new, "other": other, "shop": connected}


def test_a_failed_payout_fails_the_settlements_it_carried_and_only_them(
    world, fake, client, payout_world
):
    pw = payout_world
    fake.fail_payout(pw["shop"].account_id, payout_id=pw["po"])
    (event,) = fake.undelivered
    response = post_event(client, fake, event)
    assert response.status_code == 200
    assert (
        response.get_json()["outcome"] == f"payout failure noted; settlements failed: {pw['old']}"
    )
    old = settlement(world, pw["old"])
    assert old.status == "failed" and old.gave_up and old.failed_at is not None
    assert pw["po"] in old.last_error and "bank account has been closed" in old.last_error
    assert "account_closed" in old.last_error
    assert settlement(world, pw["new"]).status == "paid"  # paid after that payout
    assert settlement(world, pw["other"]).status == "paid"  # another partner's payout
    note = world.scalar(
        select(StripeConnectedAccount.last_payout_failure).where(
            StripeConnectedAccount.partner_id == pw["shop"].partner_id
        )
    )
    assert pw["po"] in note

    sign_in(client, world.council)
    page = client.get("/council/settlements").get_data(as_text=True)
    assert "No more automatic tries" in page and "bank account has been closed" in page
    # Council retries once the bank details are put right: the standing transfer is
    # confirmed, no second transfer is sent.
    transfers = len(fake.transfers)
    post_form(client, f"/council/settlements/{pw['old']}/retry", {}, page="/council/settlements")
    assert pay(world, now=utcnow() + timedelta(seconds=1)).transfers == [pw["old"]]
    assert len(fake.transfers) == transfers and fake.transfer_posts == transfers
    assert settlement(world, pw["old"]).status == "paid"


def test_a_replayed_payout_failure_is_recorded_once(world, fake, client, payout_world):
    pw = payout_world
    fake.fail_payout(pw["shop"].account_id, payout_id=pw["po"])
    (event,) = fake.undelivered
    assert post_event(client, fake, event).status_code == 200
    first = settlement(world, pw["old"])
    again = post_event(client, fake, event)
    assert again.status_code == 200 and again.get_json()["duplicate"] is True
    assert world.count(StripeEvent, StripeEvent.event_id == event["id"]) == 1
    assert settlement(world, pw["old"]).failed_at == first.failed_at


def test_a_tampered_payout_failure_is_refused_and_changes_nothing(
    world, fake, client, payout_world
):
    pw = payout_world
    fake.fail_payout(pw["shop"].account_id, payout_id=pw["po"])
    (event,) = fake.undelivered
    payload, header = fake.signed(event, WEBHOOK_SECRET)
    tampered = payload.replace(pw["po"].encode(), b"po_someone_elses")
    response = client.post("/webhooks/stripe", data=tampered, headers={"Stripe-Signature": header})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_signature"
    assert world.count(StripeEvent, StripeEvent.event_id == event["id"]) == 0
    assert settlement(world, pw["old"]).status == "paid"


def test_a_payout_that_has_not_failed_after_all_changes_nothing(world, fake, client, payout_world):
    """The event's copy says failed, Stripe says paid: Stripe wins."""
    pw = payout_world
    event = fake.emit(
        "payout.failed",
        {"id": pw["po"], "object": "payout", "status": "failed"},
        account=pw["shop"].account_id,
    )
    assert post_event(client, fake, event).get_json()["outcome"] == "payout is paid"
    assert settlement(world, pw["old"]).status == "paid"


def test_a_payout_failure_before_the_transfer_event_fails_the_submitted_settlement(
    world, fake, client, connected
):
    settlement_id = settle_last_week(world, connected)
    pay(world)
    created = fake.undelivered.pop()
    assert created["type"] == "transfer.created"
    po = fake.pay_out(connected.account_id)["id"]
    fake.undelivered.clear()
    fake.fail_payout(connected.account_id, payout_id=po)
    (failed_event,) = fake.undelivered
    assert settlement(world, settlement_id).status == "submitted"
    outcome = post_event(client, fake, failed_event).get_json()["outcome"]
    assert outcome.endswith(f"settlements failed: {settlement_id}")
    assert settlement(world, settlement_id).status == "failed"
    # The transfer's own event, arriving late, does not make it paid again.
    assert post_event(client, fake, created).get_json()["outcome"] == "already failed"
    row = settlement(world, settlement_id)
    assert row.status == "failed" and row.gave_up and po in row.last_error


def test_a_payout_failure_for_a_transfer_the_worker_never_recorded_adopts_it(
    world, fake, client, connected, monkeypatch
):
    from partners import payments

    settlement_id = settle_last_week(world, connected)
    real = payments.send_transfer

    def die(*args):
        real(*args)
        raise SystemExit("killed")

    monkeypatch.setattr(payments, "send_transfer", die)
    with pytest.raises(SystemExit):
        pay(world)
    assert settlement(world, settlement_id).status == "pending"
    po = fake.pay_out(connected.account_id)["id"]
    fake.undelivered.clear()
    fake.fail_payout(connected.account_id, payout_id=po)
    assert deliver_all(client, fake) == [200]
    row = settlement(world, settlement_id)
    assert row.status == "failed" and row.stripe_transfer_id in fake.transfers


def test_the_fake_lists_a_payouts_balance_transactions_as_stripe_does(fake):
    """Transfers in make payments on the connected account; a payout sweeps them; the
    list by payout pages with starting_after and expands the payments' sources."""
    import stripe

    client = stripe.StripeClient(
        "sk_test_x", base_addresses={"api": fake.url}, http_client=stripe.UrllibClient()
    )
    account = client.v1.accounts.create(params={"type": "express"})
    fake.complete_onboarding(account.id)
    made = [
        client.v1.transfers.create(
            params={"amount": 100 * n, "currency": "gbp", "destination": account.id}
        )
        for n in (1, 2, 3)
    ]
    assert all(t.destination_payment.startswith("py_") for t in made)
    payout = fake.pay_out(account.id)
    assert payout["amount"] == 600
    options = {"stripe_account": account.id}
    seen, params = [], {"payout": payout["id"], "limit": 1, "expand": ["data.source"]}
    while True:
        page = client.v1.balance_transactions.list(params=params, options=options)
        seen += page.data
        if not page.has_more:
            break
        params = {**params, "starting_after": page.data[-1].id}
    assert sorted(t.type for t in seen) == ["payment", "payment", "payment", "payout"]
    sources = {t.source.source_transfer for t in seen if t.type == "payment"}
    assert sources == {t.id for t in made}
    assert sum(t.net for t in seen) == 0  # the payout's own transaction takes it all out
    payments_only = client.v1.balance_transactions.list(
        params={"payout": payout["id"], "type": "payment"}, options=options
    )
    assert [t.source for t in payments_only.data] == [t.destination_payment for t in reversed(made)]
    # Not on the platform, not another account's payout.
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.balance_transactions.list(params={"payout": payout["id"]})
    failed = fake.fail_payout(account.id, payout_id=payout["id"])["data"]["object"]
    assert failed["status"] == "failed" and failed["failure_code"] == "account_closed"
    back = client.v1.balance_transactions.retrieve(
        failed["failure_balance_transaction"], options=options
    )
    assert back.type == "payout_failure" and back.amount == 600


def test_events_are_delivered_over_http_with_a_real_signature(app, world, fake, submitted):
    """The fake POSTs to the app served on 127.0.0.1, as Stripe would."""
    settlement_id, _transfer = submitted
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/webhooks/stripe"
        assert fake.deliver(url, WEBHOOK_SECRET) == [200]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
    assert settlement(world, settlement_id).status == "paid"


def test_the_fake_keeps_stripes_idempotency_semantics(fake):
    """Same key and body: the first answer again; another body: 400; over real HTTP."""
    import stripe

    client = stripe.StripeClient(
        "sk_test_x", base_addresses={"api": fake.url}, http_client=stripe.UrllibClient()
    )
    account = client.v1.accounts.create(params={"type": "express"})
    fake.complete_onboarding(account.id)
    params = {"amount": 100, "currency": "gbp", "destination": account.id}
    first = client.v1.transfers.create(params=params, options={"idempotency_key": "k1"})
    second = client.v1.transfers.create(params=params, options={"idempotency_key": "k1"})
    assert first.id == second.id and len(fake.transfers) == 1
    with pytest.raises(stripe.IdempotencyError):
        client.v1.transfers.create(
            params={**params, "amount": 200}, options={"idempotency_key": "k1"}
        )
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.transfers.retrieve("tr_nope")
    assert missing.value.code == "resource_missing" and missing.value.http_status == 404
    with pytest.raises(stripe.AuthenticationError):
        stripe.StripeClient(
            "rk_bad", base_addresses={"api": fake.url}, http_client=stripe.UrllibClient()
        ).v1.accounts.retrieve(account.id)
