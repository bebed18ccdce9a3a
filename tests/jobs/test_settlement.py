"""Partner settlement: one settlement per partner per period, credits moved through the
ledger once, the state machine, the budget cap, the payment file and statements."""

from __future__ import annotations

import csv
import io
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from core.extensions import db
from core.models import Role, User
from core.timeutil import utcnow
from partners.settlement import (
    IllegalTransition,
    PaymentBatch,
    Settlement,
    SettlementRedemption,
    SettlementStatus,
    last_complete_period,
    transition,
)
from rewards.models import Account, Transaction
from tests.conftest import post_form, sign_in


@pytest.fixture
def last_week(app):
    """A moment inside the last complete period."""
    with app.app_context():
        start, _end = last_complete_period(utcnow())
    return start + timedelta(days=2)


def settlements(world) -> list[Settlement]:
    with world.app.app_context():
        rows = list(db.session.execute(select(Settlement).order_by(Settlement.id)).scalars())
        db.session.expunge_all()
        db.session.remove()
    return rows


def account_balance(world, key: str) -> int:
    return world.scalar(select(Account.balance).where(Account.key == key)) or 0


def create(world, **kwargs):
    from partners.settlement import create_settlements

    return world.run(create_settlements, **kwargs)


def pay(world, **kwargs):
    from partners.payments import pay_due_settlements

    return world.run(pay_due_settlements, **kwargs)


def test_one_settlement_per_partner_covers_every_unsettled_redemption(world, last_week):
    cafe = world.shop("Café", rate=100, cost=2)
    gym = world.shop("Gym", rate=50, cost=3)
    robin = world.resident()
    r1 = world.redeem(cafe, robin, at=last_week)
    r2 = world.redeem(cafe, robin, at=last_week - timedelta(days=30))  # missed before
    world.redeem(gym, robin, at=last_week)
    world.redeem(cafe, robin)  # this period: next time

    report = create(world)

    made = settlements(world)
    assert len(report.created) == 2 and [s.partner_id for s in made] == [
        cafe.partner_id,
        gym.partner_id,
    ]
    cafe_settlement, gym_settlement = made
    assert (cafe_settlement.credits, cafe_settlement.amount_pence) == (4, 400)
    assert (gym_settlement.credits, gym_settlement.amount_pence) == (3, 150)
    assert cafe_settlement.status == "pending" and cafe_settlement.redemption_count == 2
    linked = world.count(
        SettlementRedemption, SettlementRedemption.settlement_id == cafe_settlement.id
    )
    assert linked == 2 and {r1, r2}
    # The ledger moved the credits from the partners' accounts to the settled account.
    assert account_balance(world, f"partner:{cafe.partner_id}") == 2  # this period's coffee
    assert account_balance(world, f"partner:{gym.partner_id}") == 0
    assert account_balance(world, "scheme:settled") == 7


def test_settling_twice_makes_nothing_more(world, last_week):
    cafe = world.shop()
    world.redeem(cafe, world.resident(), at=last_week)
    create(world)
    again = create(world)
    assert again.created == []
    assert len(settlements(world)) == 1
    assert account_balance(world, "scheme:settled") == 2
    assert world.count(Transaction, Transaction.kind == "settle") == 1


def test_two_settlement_runs_at_once_settle_each_redemption_once(app, world, last_week):
    from partners.settlement import create_settlements

    shops = [world.shop(f"Shop {n}") for n in range(4)]
    robin = world.resident()
    for shop in shops:
        world.redeem(shop, robin, at=last_week)
    errors = []
    barrier = threading.Barrier(2)

    def run():
        try:
            with app.app_context():
                barrier.wait()
                create_settlements()
        except Exception as error:  # pragma: no cover
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert len(settlements(world)) == 4
    assert world.count(Transaction, Transaction.kind == "settle") == 4
    assert account_balance(world, "scheme:settled") == 8


def test_a_cancelled_redemption_is_not_settled(world, last_week):
    from partners import operations as ops
    from partners.models import Redemption

    cafe = world.shop()
    robin = world.resident()
    kept = world.redeem(cafe, robin, at=last_week)
    cancelled = world.redeem(cafe, robin, at=last_week)
    with world.app.app_context():
        council = db.session.get(User, world.council.id)
        ops.cancel_redemption(council, db.session.get(Redemption, cancelled), "Wrong offer")
        db.session.commit()
        db.session.remove()
    create(world)
    ids = world.run(
        lambda: list(db.session.execute(select(SettlementRedemption.redemption_id)).scalars())
    )
    assert ids == [kept]


def test_illegal_transitions_raise_named_errors(world, last_week):
    cafe = world.shop()
    world.redeem(cafe, world.resident(), at=last_week)
    create(world)
    with world.app.app_context():
        settlement = db.session.execute(select(Settlement)).scalar_one()
        with pytest.raises(IllegalTransition) as caught:
            transition(settlement, SettlementStatus.PAID)
        assert caught.value.code == "illegal_settlement_transition"
        assert caught.value.status == 409
        transition(settlement, SettlementStatus.SUBMITTED)
        transition(settlement, SettlementStatus.FAILED)
        transition(settlement, SettlementStatus.SUBMITTED)  # a retry
        transition(settlement, SettlementStatus.PAID)
        with pytest.raises(IllegalTransition):
            transition(settlement, SettlementStatus.CANCELLED)
        db.session.rollback()
        db.session.remove()


def test_budget_cap_holds_what_does_not_fit_and_council_sees_the_shortfall(world, last_week):
    from partners.settlement import budget_view, set_budget

    shops = [world.shop(f"Shop {n}", rate=100, cost=3) for n in range(3)]  # 300p each
    robin = world.resident()
    for shop in shops:
        world.redeem(shop, robin, at=last_week)
    with world.app.app_context():
        _start, end = last_complete_period(utcnow())
        set_budget(db.session.get(User, world.council.id), end, 700)
        db.session.commit()
        db.session.remove()

    report = create(world)

    assert len(report.created) == 3 and len(report.held) == 1
    view = world.run(budget_view, end)
    assert (view.cap, view.committed, view.held, view.shortfall) == (700, 600, 300, 200)
    paid = pay(world)
    assert paid.batch_count == 2  # the held one is not paid
    # Council raises the budget: the held settlement is released and paid next run.
    with world.app.app_context():
        released = set_budget(db.session.get(User, world.council.id), end, 900)
        db.session.commit()
        db.session.remove()
    assert released == report.held
    assert pay(world).batch_count == 1


def test_payment_file_lists_settlements_and_council_marks_the_batch_paid(world, last_week, client):
    cafe = world.shop('Café, "the" best', rate=120, cost=2)
    world.redeem(cafe, world.resident(), at=last_week)
    create(world)
    report = pay(world)
    assert report.batch_id is not None and report.transfers == []
    (settlement,) = settlements(world)
    assert settlement.status == "submitted" and settlement.payment_batch_id == report.batch_id

    council = world.council
    sign_in(client, council)
    response = client.get(f"/council/settlements/batches/{report.batch_id}.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [(r["settlement_id"], r["partner_name"], r["amount_pence"]) for r in rows] == [
        (str(settlement.id), 'Café, "the" best', "240")
    ]
    page = client.get("/council/settlements")
    assert page.status_code == 200 and "Payment file" in page.get_data(as_text=True)
    done = post_form(
        client,
        f"/council/settlements/batches/{report.batch_id}/paid",
        {"reference": "FIN-123"},
        page="/council/settlements",
    )
    assert done.status_code == 302
    (settlement,) = settlements(world)
    assert settlement.status == "paid"
    batch = world.scalar(select(PaymentBatch.status).where(PaymentBatch.id == report.batch_id))
    assert batch == "paid"
    again = post_form(
        client,
        f"/council/settlements/batches/{report.batch_id}/paid",
        {},
        page="/council/settlements",
    )
    assert again.status_code == 302  # refused with a message, nothing changes


def test_statements_page_csv_and_api(world, last_week, client, api, create_user):
    cafe = world.shop("Café", rate=100, cost=2)
    world.redeem(cafe, world.resident(), at=last_week)
    create(world)
    (settlement,) = settlements(world)
    with world.app.app_context():
        staff = db.session.get(User, cafe.staff_id)
        email = staff.email
        db.session.remove()
    from tests.conftest import PASSWORD, MadeUser

    staff = MadeUser(cafe.staff_id, email, PASSWORD, "Staff")
    sign_in(client, staff)
    page = client.get(f"/business/{cafe.partner_id}/settlements")
    assert page.status_code == 200 and "£2.00" in page.get_data(as_text=True)
    detail = client.get(f"/business/{cafe.partner_id}/settlements/{settlement.id}")
    assert detail.status_code == 200 and "Coffee" in detail.get_data(as_text=True)
    sheet = client.get(f"/business/{cafe.partner_id}/settlements/{settlement.id}.csv")
    rows = list(csv.DictReader(io.StringIO(sheet.get_data(as_text=True))))
    assert [r["credits"] for r in rows] == ["2"]

    token = api.token(staff)
    listing = api.get(f"/api/v1/partners/{cafe.partner_id}/settlements", token)
    assert listing.status_code == 200
    body = listing.get_json()
    assert body["next_cursor"] is None
    assert [(i["id"], i["amount_pence"], i["status"]) for i in body["items"]] == [
        (settlement.id, 200, "pending")
    ]
    # Staff of another partner, and residents, are refused.
    other = world.shop("Other")
    with world.app.app_context():
        other_email = db.session.get(User, other.staff_id).email
        db.session.remove()
    other_token = api.token(MadeUser(other.staff_id, other_email, PASSWORD, "O"))
    refused = api.get(f"/api/v1/partners/{cafe.partner_id}/settlements", other_token)
    assert refused.status_code == 403
    resident = api.token(create_user(Role.RESIDENT))
    assert api.get(f"/api/v1/partners/{cafe.partner_id}/settlements", resident).status_code == 403
    council = api.token(world.council)
    assert api.get(f"/api/v1/partners/{cafe.partner_id}/settlements", council).status_code == 200
    assert api.get("/api/v1/partners/999/settlements", council).status_code == 404


def test_the_settlements_api_by_role(world, last_week, api, create_user):
    """``GET /api/v1/partners/{id}/settlements``: that partner's staff, council and admins
    see its settlements (and only its); other partners' staff, organisers and residents are
    refused; no token is a 401."""
    from tests.conftest import PASSWORD, MadeUser

    cafe = world.shop("Café", rate=100, cost=2)
    other = world.shop("Other", rate=50, cost=2)
    world.redeem(cafe, world.resident(), at=last_week)
    world.redeem(other, world.resident(), at=last_week)
    create(world)
    mine = {s.id for s in settlements(world) if s.partner_id == cafe.partner_id}

    def staff(shop):
        with world.app.app_context():
            email = db.session.get(User, shop.staff_id).email
            db.session.remove()
        return api.token(MadeUser(shop.staff_id, email, PASSWORD, "Staff"))

    path = f"/api/v1/partners/{cafe.partner_id}/settlements"
    allowed = {
        "that partner's staff": staff(cafe),
        "council": api.token(world.council),
        "admin": api.token(create_user(Role.ADMIN)),
    }
    for who, token in allowed.items():
        response = api.get(path, token)
        assert response.status_code == 200, who
        items = response.get_json()["items"]
        assert {i["id"] for i in items} == mine, who
        assert {i["partner_id"] for i in items} == {cafe.partner_id}, who
    refused = {
        "another partner's staff": staff(other),
        "organiser": api.token(create_user(Role.ORGANISER)),
        "resident": api.token(create_user(Role.RESIDENT)),
    }
    for who, token in refused.items():
        response = api.get(path, token)
        assert response.status_code == 403, who
        assert "items" not in response.get_json(), who
    assert api.get(path).status_code == 401
    filtered = api.get(f"{path}?status=paid", allowed["council"]).get_json()
    assert filtered["items"] == []


def test_the_cli_settles_and_pays_by_payment_file(app, world, last_week):
    cafe = world.shop()
    world.redeem(cafe, world.resident(), at=last_week)
    result = app.test_cli_runner().invoke(args=["partners", "settle"])
    assert result.exit_code == 0, result.output
    assert "1 settlements made" in result.output
    assert "payment file" in result.output
    (settlement,) = settlements(world)
    assert settlement.status == "submitted"


def test_council_cancels_a_settlement_and_its_redemptions_settle_again(world, last_week):
    from partners.settlement import cancel_settlement, create_settlements

    cafe = world.shop()
    world.redeem(cafe, world.resident(), at=last_week)
    create(world)
    (settlement,) = settlements(world)
    with world.app.app_context():
        council = db.session.get(User, world.council.id)
        cancel_settlement(council, db.session.get(Settlement, settlement.id), "Wrong rate")
        db.session.commit()
        db.session.remove()
    assert account_balance(world, "scheme:settled") == 0
    assert account_balance(world, f"partner:{cafe.partner_id}") == 2
    # The next period's run takes the redemption again.
    end = world.run(last_complete_period, utcnow())[1]
    later = world.run(
        create_settlements, period_end=end + timedelta(days=7), now=end + timedelta(days=7, hours=1)
    )
    assert len(later.created) == 1
    assert account_balance(world, "scheme:settled") == 2


def test_council_sets_the_budget_on_the_page_and_sees_what_waits(app, world, last_week, client):
    shops = [world.shop(f"Shop {n}", rate=100, cost=3) for n in range(2)]  # 300p each
    robin = world.resident()
    for shop in shops:
        world.redeem(shop, robin, at=last_week)
    with world.app.app_context():
        end = last_complete_period(utcnow())[1]
    app.config["SETTLEMENT_BUDGET_PENCE"] = 400
    try:
        report = create(world)
        assert len(report.held) == 1
        sign_in(client, world.council)
        page = client.get("/council/settlements").get_data(as_text=True)
        assert "Shop 1: £3.00" in page and "£2.00" in page  # held, and the shortfall
        saved = post_form(
            client,
            "/council/settlements/budget",
            {"period_end": end.isoformat(), "amount_gbp": "6.00"},
            page="/council/settlements",
        )
        assert saved.status_code == 302
        assert "1 settlements released" in client.get("/council/settlements").get_data(as_text=True)
        assert world.count(Settlement, Settlement.hold_reason.is_not(None)) == 0
        refused = post_form(
            client,
            "/council/settlements/budget",
            {"period_end": end.isoformat(), "amount_gbp": "lots"},
            page="/council/settlements",
        )
        assert refused.status_code == 302  # shown as a message; nothing changed
    finally:
        app.config["SETTLEMENT_BUDGET_PENCE"] = None
