"""The ledger's demo data: two lots with different expiry dates, a short history, idempotent."""

from __future__ import annotations

from core.demo import load_demo_data
from core.extensions import db
from rewards import operations as ops
from rewards.verify import verify_ledger
from rewards.wallet import history, live_lots


def test_demo_resident_has_two_lots_and_a_short_history_and_loading_again_changes_nothing(
    ctx,
):
    users = load_demo_data()
    db.session.commit()
    load_demo_data()
    db.session.commit()
    wallet = ops.wallet_of(users["resident@example.org"].id)
    lots = live_lots(wallet.id)
    assert wallet.balance == 6
    assert len(lots) == 2 and lots[0].expires_at < lots[1].expires_at
    items, _ = history(wallet.id)
    assert [item.sentence for item in items] == [
        "\u22121 given to Food bank: For the winter appeal",
        "+4 for Lunch club, Chapeltown Community Centre",
        "+3 for Litter pick, Roundhay Park",
    ]
    assert verify_ledger().breaks == []
