"""Earn and spend operations per second, next to plain SQL doing the same writes.

    .venv/bin/python bench/ledger_ops.py --db sqlite --ops 500
    .venv/bin/python bench/ledger_ops.py --db postgresql --ops 500

Each operation is one database transaction, committed, as a request would. The reference
does the same statements by hand through the DB-API cursor (lock the wallet, read its live
lots, insert the transaction, two entries, the lot or lot change and its movement, update
both balances, commit) with nothing else: no idempotency check, no ORM. The ratio is
operations/s over reference/s (the aim is at least 0.5).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).parent)]

from ledger_common import bench_app, bench_database, machine  # noqa: E402

from core.extensions import db  # noqa: E402
from core.models import User  # noqa: E402
from rewards import operations as ops  # noqa: E402


def make_residents(count: int) -> list[int]:
    users = [
        User(email=f"bench{n}@example.org", password_hash="x", display_name=f"R{n}", postcode="LS8")
        for n in range(count)
    ]
    db.session.add_all(users)
    db.session.commit()
    return [user.id for user in users]


def operations_earn(residents: list[int], numbers: range) -> float:
    """Seconds for earns number ``numbers`` through rewards.operations, one commit each."""
    started = time.perf_counter()
    for n in numbers:
        ops.earn(residents[n % len(residents)], 3, idempotency_key=f"e{n}", description="Bench")
        db.session.commit()
    return time.perf_counter() - started


def operations_spend(residents: list[int], partner_id: int, numbers: range) -> float:
    started = time.perf_counter()
    for n in numbers:
        ops.spend(
            residents[n % len(residents)], partner_id, 1, idempotency_key=f"s{n}", description="B"
        )
        db.session.commit()
    return time.perf_counter() - started


class Reference:
    """The same writes in plain SQL through one DB-API connection."""

    def __init__(self, accounts: list[int], issuance: int, partner: int, postgres: bool):
        self.raw = db.engine.raw_connection()
        self.earn, self.spend = reference_steps(self.raw, accounts, issuance, partner, postgres)


def reference_steps(raw, accounts: list[int], issuance: int, partner: int, postgres: bool):
    """(earn(numbers), spend(numbers)) functions returning seconds."""
    cursor = raw.cursor()
    mark = "%s" if postgres else "?"
    lock = " FOR UPDATE" if postgres else ""

    def sql(statement: str) -> str:
        return statement.replace("?", mark)

    def now():
        value = datetime.now(UTC)
        return value if postgres else value.replace(tzinfo=None).isoformat(" ")

    def post(kind, key, debit, credit, amount):
        cursor.execute(
            sql(
                "INSERT INTO ledger_transactions (kind, idempotency_key, request_hash, amount, "
                "description, source, created_at) VALUES (?, ?, 'h', ?, 'Bench', '', ?) "
                "RETURNING id"
            ),
            (kind, key, amount, now()),
        )
        transaction_id = cursor.fetchone()[0]
        balances = {}
        for account, delta in ((debit, -amount), (credit, amount)):
            cursor.execute(
                sql(
                    "UPDATE ledger_accounts SET balance = balance + ? WHERE id = ? "
                    "RETURNING balance"
                ),
                (delta, account),
            )
            balances[account] = cursor.fetchone()[0]
        cursor.executemany(
            sql(
                "INSERT INTO ledger_entries (transaction_id, account_id, amount, balance_after, "
                "memo) VALUES (?, ?, ?, ?, 'Bench')"
            ),
            [
                (transaction_id, debit, -amount, balances[debit]),
                (transaction_id, credit, amount, balances[credit]),
            ],
        )
        return transaction_id

    def earn(numbers: range) -> float:
        started = time.perf_counter()
        for n in numbers:
            earn_one(n)
        return time.perf_counter() - started

    def spend(numbers: range) -> float:
        started = time.perf_counter()
        for n in numbers:
            spend_one(n)
        return time.perf_counter() - started

    def earn_one(n):
        wallet = accounts[n % len(accounts)]
        cursor.execute(sql(f"SELECT balance FROM ledger_accounts WHERE id = ?{lock}"), (wallet,))
        transaction_id = post("earn", f"re{n}", issuance, wallet, 3)
        expires = datetime.now(UTC) + timedelta(days=365)
        cursor.execute(
            sql(
                "INSERT INTO credit_lots (account_id, amount, remaining, earned_at, expires_at, "
                "source, created_by_id) VALUES (?, 3, 3, ?, ?, '', ?) RETURNING id"
            ),
            (wallet, now(), expires if postgres else expires.replace(tzinfo=None), transaction_id),
        )
        lot_id = cursor.fetchone()[0]
        cursor.execute(
            sql(
                "INSERT INTO credit_lot_movements (transaction_id, lot_id, amount) VALUES (?, ?, 3)"
            ),
            (transaction_id, lot_id),
        )
        raw.commit()

    def spend_one(n):
        wallet = accounts[n % len(accounts)]
        cursor.execute(sql(f"SELECT balance FROM ledger_accounts WHERE id = ?{lock}"), (wallet,))
        cursor.fetchone()
        cursor.execute(
            sql(
                "SELECT id, remaining FROM credit_lots WHERE account_id = ? AND remaining > 0 "
                "ORDER BY expires_at, id LIMIT 1"
            ),
            (wallet,),
        )
        lot_id, remaining = cursor.fetchone()
        transaction_id = post("spend", f"rs{n}", wallet, partner, 1)
        cursor.execute(
            sql("UPDATE credit_lots SET remaining = ? WHERE id = ?"), (remaining - 1, lot_id)
        )
        cursor.execute(
            sql(
                "INSERT INTO credit_lot_movements (transaction_id, lot_id, amount) "
                "VALUES (?, ?, -1)"
            ),
            (transaction_id, lot_id),
        )
        raw.commit()

    return earn, spend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--ops", type=int, default=300, help="earns, then as many spends")
    parser.add_argument("--residents", type=int, default=50)
    args = parser.parse_args()
    url = bench_database(args.db)
    app = bench_app(url)
    with app.app_context():
        residents = make_residents(args.residents)
        partner = ops.partner_account("partner:bench", "Bench Café")
        issuance = ops.system_account(ops.AccountKind.ISSUANCE)
        # Warm up (opens every wallet), so both sides start with the same rows.
        for user_id in residents:
            ops.wallet_of(user_id)
        db.session.commit()
        wallets = [ops.find_wallet(user_id).id for user_id in residents]
        reference = Reference(wallets, issuance.id, partner.id, args.db == "postgresql")
        # Alternate rounds of each, so a busy machine slows both sides alike.
        rounds = [range(start, min(start + 25, args.ops)) for start in range(0, args.ops, 25)]
        timings = {"earn": [], "spend": []}
        for numbers in rounds:
            timings["earn"].append((operations_earn(residents, numbers), reference.earn(numbers)))
        for numbers in rounds:
            timings["spend"].append(
                (operations_spend(residents, partner.id, numbers), reference.spend(numbers))
            )
        reference.raw.close()
        db.session.remove()
        from rewards.verify import verify_ledger

        breaks = verify_ledger().break_count
        db.engine.dispose()
    print(f"ledger operations, {args.db}, {args.ops} of each, {machine()}")
    for name, pairs in timings.items():
        ours_rate = args.ops / sum(ours for ours, _ in pairs)
        ref_rate = args.ops / sum(ref for _, ref in pairs)
        # Each round of 25 ran next to its reference round: the median of their ratios is
        # the figure least moved by other load on the machine.
        paired = statistics.median(ref / ours for ours, ref in pairs)
        print(
            f"  {name:<5} operations {ours_rate:7.0f}/s   plain SQL {ref_rate:7.0f}/s   "
            f"ratio {ours_rate / ref_rate:.2f} (median of paired rounds {paired:.2f})"
        )
    print(f"  ledger verify afterwards: {breaks} breaks")


if __name__ == "__main__":
    main()
