"""Wallet API time for a resident with 10 transactions and one with 100,000.

    .venv/bin/python bench/ledger_wallet.py --db postgresql
    .venv/bin/python bench/ledger_wallet.py --db sqlite --history 100000

The long history is written in bulk (earn 1, spend 1, alternately, then three live lots),
consistent, so ``ledger verify`` passes on it. Each API call goes through the whole Flask
stack in-process (bearer token, JSON), alternating between the two residents so other
load on the machine affects both alike. The aim: the long history costs at most 1.5 times
the short one, for GET /api/v1/wallet and for the first page of /wallet/transactions.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).parent)]

from ledger_common import bench_app, bench_database, machine, median_ms  # noqa: E402
from sqlalchemy import insert, text  # noqa: E402

from core import accounts  # noqa: E402
from core.extensions import db  # noqa: E402
from core.models import RoleMembership, User  # noqa: E402
from rewards import operations as ops  # noqa: E402
from rewards.models import CreditLot, Entry, LotMovement, Transaction  # noqa: E402

CHUNK = 5_000


def resident(email: str) -> User:
    user = User(email=email, password_hash="x", display_name=email[:5], postcode="LS8 2HE")
    user.memberships = [RoleMembership(role="resident")]
    db.session.add(user)
    db.session.flush()
    return user


def short_history(user: User, partner_id: int) -> None:
    """10 transactions through the operations: 6 earns, 4 spends."""
    for n in range(6):
        ops.earn(user.id, 2, idempotency_key=f"short-e{n}", description="Litter pick")
    for n in range(4):
        ops.spend(user.id, partner_id, 1, idempotency_key=f"short-s{n}", description="Tea")
    db.session.commit()


def long_history(user: User, partner_id: int, count: int) -> None:
    """``count`` transactions written in bulk: earn 1 then spend it, over and over."""
    wallet = ops.wallet_of(user.id)
    issuance = ops.system_account(ops.AccountKind.ISSUANCE)
    db.session.commit()
    first_tx = (db.session.execute(text("SELECT MAX(id) FROM ledger_transactions")).scalar()) + 1
    first_entry = (db.session.execute(text("SELECT MAX(id) FROM ledger_entries")).scalar()) + 1
    first_lot = (db.session.execute(text("SELECT MAX(id) FROM credit_lots")).scalar()) + 1
    issued = db.session.get(type(issuance), issuance.id).balance
    received = db.session.get(type(wallet), partner_id).balance
    now = datetime.now(UTC)
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(text("SET LOCAL session_replication_role = replica"))
    tx_rows, entry_rows, lot_rows, move_rows = [], [], [], []
    lot_id = first_lot - 1
    balance = 0
    for n in range(count):
        tx_id = first_tx + n
        created = now - timedelta(seconds=count - n)
        earning = n % 2 == 0 or n >= count - 3
        kind = "earn" if earning else "spend"
        tx_rows.append(
            dict(
                id=tx_id,
                kind=kind,
                idempotency_key=f"long-{n}",
                request_hash="bulk",
                amount=1,
                description="Bulk",
                source="",
                created_at=created,
            )
        )
        if earning:
            issued -= 1
            balance += 1
            lot_id += 1
            legs = [(issuance.id, -1, issued, "issued"), (wallet.id, 1, balance, "for Bulk")]
            lot_rows.append(
                dict(
                    id=lot_id,
                    account_id=wallet.id,
                    amount=1,
                    remaining=1,  # until the spend that follows takes it
                    earned_at=created,
                    expires_at=created + timedelta(days=365),
                    source="",
                    created_by_id=tx_id,
                )
            )
            move_rows.append(dict(transaction_id=tx_id, lot_id=lot_id, amount=1))
        else:
            balance -= 1
            received += 1
            legs = [(wallet.id, -1, balance, "at Café: tea"), (partner_id, 1, received, "tea")]
            lot_rows[-1]["remaining"] = 0
            move_rows.append(dict(transaction_id=tx_id, lot_id=lot_id, amount=-1))
        for account_id, amount, after, memo in legs:
            entry_rows.append(
                dict(
                    id=first_entry + len(entry_rows),
                    transaction_id=tx_id,
                    account_id=account_id,
                    amount=amount,
                    balance_after=after,
                    memo=memo,
                )
            )
    for model, rows in (
        (Transaction, tx_rows),
        (CreditLot, lot_rows),
        (Entry, entry_rows),
        (LotMovement, move_rows),
    ):
        for start in range(0, len(rows), CHUNK):
            connection.execute(insert(model.__table__), rows[start : start + CHUNK])
    connection.execute(
        text("UPDATE ledger_accounts SET balance = :b WHERE id = :i"),
        [
            {"b": issued, "i": issuance.id},
            {"b": balance, "i": wallet.id},
            {"b": received, "i": partner_id},
        ],
    )
    if connection.dialect.name == "postgresql":
        for table in ("ledger_transactions", "ledger_entries", "credit_lots"):
            connection.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), MAX(id)) FROM {table}"
                )
            )
    db.session.commit()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))


def measure(client, tokens: dict[str, str], path: str, requests: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in tokens}
    for _ in range(requests):
        for name, token in tokens.items():
            started = time.perf_counter()
            response = client.get(path, headers={"Authorization": f"Bearer {token}"})
            samples[name].append(time.perf_counter() - started)
            assert response.status_code == 200, response.get_json()
    return {name: median_ms(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--history", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    app = bench_app(bench_database(args.db, "ledger_bench_wallet"))
    with app.app_context():
        partner = ops.partner_account("partner:bench", "Bench Café")
        short, long_ = resident("short@example.org"), resident("long@example.org")
        db.session.commit()
        short_history(short, partner.id)
        started = time.perf_counter()
        long_history(long_, partner.id, args.history)
        loaded = time.perf_counter() - started
        tokens = {
            "10": accounts.issue_api_token(short)[0],
            f"{args.history:,}": accounts.issue_api_token(long_)[0],
        }
        db.session.commit()
        from rewards.verify import verify_ledger

        breaks = verify_ledger().break_count
        db.session.remove()
    client = app.test_client()
    print(f"wallet API, {args.db}, {args.requests} requests each, {machine()}")
    print(f"  long history written in {loaded:.0f}s; ledger verify: {breaks} breaks")
    # The short history has 10 entries: compare pages of 10, so only the history differs.
    for path in ("/api/v1/wallet", "/api/v1/wallet/transactions?limit=10"):
        medians = measure(client, tokens, path, args.requests)
        small, large = medians.values()
        print(
            f"  GET {path:<38} median {small:6.2f} ms (10 transactions)  "
            f"{large:6.2f} ms ({args.history:,})  ratio {large / small:.2f}"
        )
    with app.app_context():
        db.engine.dispose()


if __name__ == "__main__":
    main()
