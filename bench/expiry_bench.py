"""Expire N due lots with the expiry job, next to set-based SQL doing the same work.

    .venv/bin/python bench/expiry_bench.py --db sqlite --lots 20000
    .venv/bin/python bench/expiry_bench.py --db postgresql --lots 20000
    .venv/bin/python bench/expiry_bench.py --db postgresql --lots 1000000   # the issue's size

Both runs start from the same seeded database (residents' wallets holding N due lots,
seeded set-based). The job is ``rewards.expiry.expire_due_lots`` (batches of 2,000 lots
through ``rewards.operations.expire_lots``, each committed). The reference does the same writes
set-based in one transaction: an expire transaction per lot, its two entries with
``balance_after``, its lot movement, lots to zero, balances; on PostgreSQL as one statement
(data-modifying CTEs), on SQLite (which has none) as nine set-based statements. Peak memory is the
process's resident set during the run, sampled after every batch, less the set before it.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).parent)]

from ledger_common import bench_app, bench_database, machine  # noqa: E402
from sqlalchemy import text  # noqa: E402

from core.extensions import db  # noqa: E402

NOW = datetime.now(UTC)
DUE = NOW - timedelta(days=1)


def rss_mb() -> float:
    """The resident set size now, in MB (Linux /proc)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def seed(lots: int, residents: int) -> None:
    """``residents`` wallets holding ``lots`` due lots of 3 credits; balanced entries."""
    postgres = db.engine.dialect.name == "postgresql"
    series = (
        "SELECT generate_series(1, :n) AS n"
        if postgres
        else "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < :n) "
        "SELECT n FROM s"
    )
    stamp = NOW.replace(tzinfo=None) if not postgres else NOW
    due = DUE.replace(tzinfo=None) if not postgres else DUE
    statements = [
        (
            "INSERT INTO ledger_accounts (key, kind, name, description, balance, created_at) "
            "VALUES ('scheme:issuance', 'issuance', 'Issued', '', :total, :now), "
            "('scheme:expired', 'expired', 'Expired', '', 0, :now)",
            {"total": -3 * lots, "now": stamp},
        ),
        (
            "INSERT INTO ledger_accounts (key, kind, name, description, balance, created_at) "
            f"SELECT 'user:' || n, 'resident', 'Resident ' || n, '', 0, :now FROM ({series}) s",
            {"n": residents, "now": stamp},
        ),
        # The transaction the lots name as their maker (it has no entries of its own).
        (
            "INSERT INTO ledger_transactions (kind, idempotency_key, request_hash, amount, "
            "description, source, created_at) VALUES ('earn', 'seed-lots', '', 0, 'seed', '', "
            ":now)",
            {"now": stamp},
        ),
        (
            "INSERT INTO credit_lots (account_id, amount, remaining, earned_at, expires_at, "
            "source, created_by_id) SELECT (SELECT min(id) FROM ledger_accounts WHERE kind = "
            "'resident') + (n % :r), 3, 3, :due, :due, 'seed', (SELECT id FROM "
            f"ledger_transactions WHERE idempotency_key = 'seed-lots') FROM ({series}) s",
            {"n": lots, "r": residents, "due": due},
        ),
        (
            "UPDATE ledger_accounts SET balance = (SELECT COALESCE(SUM(remaining), 0) "
            "FROM credit_lots WHERE account_id = ledger_accounts.id) WHERE kind = 'resident'",
            {},
        ),
        # One earn per resident, so the balanced-transaction trigger (PostgreSQL) sums two
        # entries per transaction, not a million.
        (
            "INSERT INTO ledger_transactions (kind, idempotency_key, request_hash, amount, "
            "description, source, created_at) SELECT 'earn', 'seed:' || key, '', balance, "
            "'seed', '', :now FROM ledger_accounts WHERE kind = 'resident'",
            {"now": stamp},
        ),
    ]
    join = (
        " FROM ledger_transactions t JOIN ledger_accounts a"
        " ON a.key = substr(t.idempotency_key, 6)"
        " WHERE t.idempotency_key LIKE 'seed:%'"
    )
    statements += [
        (
            "INSERT INTO ledger_entries (transaction_id, account_id, amount, balance_after, memo)"
            " SELECT t.id, a.id, a.balance, a.balance, 'seed'" + join,
            {},
        ),
        (
            "INSERT INTO ledger_entries (transaction_id, account_id, amount, balance_after, memo)"
            " SELECT t.id, (SELECT id FROM ledger_accounts WHERE key = 'scheme:issuance'),"
            " -a.balance, 0, 'issued'" + join,
            {},
        ),
    ]
    with db.engine.begin() as conn:
        for statement, params in statements:
            conn.execute(text(statement), params)
    if not postgres:
        with db.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    else:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))


#: PostgreSQL: the whole expiry as one statement.
REFERENCE_POSTGRES = """
WITH due AS (
    SELECT l.id, l.account_id, l.remaining AS amount
      FROM credit_lots l
     WHERE l.remaining > 0 AND l.expires_at <= :now
       FOR UPDATE
), zeroed AS (
    UPDATE credit_lots l SET remaining = 0 FROM due WHERE l.id = due.id RETURNING l.id
), tx AS (
    INSERT INTO ledger_transactions
        (kind, idempotency_key, request_hash, amount, description, source, created_at)
    SELECT 'expire', 'ref:expire:lot:' || due.id, '', due.amount,
           'credits expired on lot ' || due.id, '', :now
      FROM due
    RETURNING id, idempotency_key, amount
), joined AS (
    SELECT tx.id AS tx_id, due.id AS lot_id, due.account_id, due.amount,
           a.balance - SUM(due.amount) OVER (PARTITION BY due.account_id ORDER BY due.id)
               AS owner_after,
           x.balance + SUM(due.amount) OVER (ORDER BY due.id) AS expired_after
      FROM tx
      JOIN due ON tx.idempotency_key = 'ref:expire:lot:' || due.id
      JOIN ledger_accounts a ON a.id = due.account_id
     CROSS JOIN (SELECT balance FROM ledger_accounts WHERE key = 'scheme:expired') x
), entries AS (
    INSERT INTO ledger_entries (transaction_id, account_id, amount, balance_after, memo)
    SELECT tx_id, account_id, -amount, owner_after, 'expired unused' FROM joined
    UNION ALL
    SELECT tx_id, (SELECT id FROM ledger_accounts WHERE key = 'scheme:expired'), amount,
           expired_after, 'expired' FROM joined
), movements AS (
    INSERT INTO credit_lot_movements (transaction_id, lot_id, amount)
    SELECT tx_id, lot_id, -amount FROM joined
), owners AS (
    UPDATE ledger_accounts a SET balance = a.balance - t.total
      FROM (SELECT account_id, SUM(amount) AS total FROM due GROUP BY account_id) t
     WHERE a.id = t.account_id
)
UPDATE ledger_accounts SET balance = balance + (SELECT COALESCE(SUM(amount), 0) FROM due)
 WHERE key = 'scheme:expired'
"""

#: SQLite: the same work in set-based statements (it has no data-modifying CTEs).
REFERENCE_SQLITE = [
    "CREATE TEMP TABLE due AS SELECT id, account_id, remaining AS amount FROM credit_lots "
    "WHERE remaining > 0 AND expires_at <= :now",
    "INSERT INTO ledger_transactions (kind, idempotency_key, request_hash, amount, description,"
    " source, created_at) SELECT 'expire', 'ref:expire:lot:' || id, '', amount,"
    " 'credits expired on lot ' || id, '', :now FROM due",
    "CREATE TEMP TABLE due_tx AS SELECT d.id AS lot_id, d.account_id, d.amount, t.id AS tx_id"
    " FROM due d CROSS JOIN ledger_transactions t"
    " WHERE t.idempotency_key = 'ref:expire:lot:' || d.id",
    "CREATE INDEX temp.due_tx_account ON due_tx (account_id)",
    """INSERT INTO ledger_entries (transaction_id, account_id, amount, balance_after, memo)
    SELECT d.tx_id, d.account_id, -d.amount,
           a.balance - SUM(d.amount) OVER (PARTITION BY d.account_id ORDER BY d.lot_id),
           'expired unused'
      FROM due_tx d JOIN ledger_accounts a ON a.id = d.account_id
    UNION ALL
    SELECT d.tx_id, x.id, d.amount, x.balance + SUM(d.amount) OVER (ORDER BY d.lot_id),
           'expired'
      FROM due_tx d, (SELECT id, balance FROM ledger_accounts WHERE key = 'scheme:expired') x""",
    "INSERT INTO credit_lot_movements (transaction_id, lot_id, amount)"
    " SELECT tx_id, lot_id, -amount FROM due_tx",
    "UPDATE credit_lots SET remaining = 0 WHERE id IN (SELECT lot_id FROM due_tx)",
    "UPDATE ledger_accounts SET balance = balance - (SELECT SUM(amount) FROM due_tx"
    " WHERE due_tx.account_id = ledger_accounts.id)"
    " WHERE id IN (SELECT account_id FROM due_tx)",
    "UPDATE ledger_accounts SET balance = balance + (SELECT SUM(amount) FROM due_tx)"
    " WHERE key = 'scheme:expired'",
]


def reference(now: datetime) -> float:
    """Seconds for the set-based expiry."""
    postgres = db.engine.dialect.name == "postgresql"
    started = time.perf_counter()
    with db.engine.begin() as conn:
        if postgres:
            conn.execute(text(REFERENCE_POSTGRES), {"now": now})
        else:
            for statement in REFERENCE_SQLITE:
                conn.execute(text(statement), {"now": now.replace(tzinfo=None)})
    return time.perf_counter() - started


def check(lots: int) -> None:
    """Every lot expired once, balances moved: the same end state for both runs."""
    with db.engine.connect() as conn:
        left = conn.execute(text("SELECT COUNT(*) FROM credit_lots WHERE remaining > 0")).scalar()
        expired = conn.execute(
            text("SELECT balance FROM ledger_accounts WHERE key = 'scheme:expired'")
        ).scalar()
        transactions = conn.execute(
            text("SELECT COUNT(*) FROM ledger_transactions WHERE kind = 'expire'")
        ).scalar()
    assert (left, expired, transactions) == (0, 3 * lots, lots), (left, expired, transactions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--lots", type=int, default=20_000)
    parser.add_argument("--residents", type=int, default=0, help="default: lots / 10")
    parser.add_argument("--batch-size", type=int, default=2000)
    args = parser.parse_args()
    residents = args.residents or max(1, args.lots // 10)
    print(f"{args.lots} due lots, {residents} residents, {args.db}; {machine()}")

    from rewards.expiry import expire_due_lots

    for label in ("job", "reference"):
        app = bench_app(bench_database(args.db, "expiry_bench"))
        with app.app_context():
            started = time.perf_counter()
            seed(args.lots, residents)
            print(f"  seeded in {time.perf_counter() - started:.1f} s")
            before = rss_mb()
            peak = [before]
            if label == "job":
                started = time.perf_counter()
                report = expire_due_lots(
                    NOW,
                    batch_size=args.batch_size,
                    on_batch=lambda _report, samples=peak: samples.append(rss_mb()),
                )
                seconds = time.perf_counter() - started
                assert report.lots_expired == args.lots, report
            else:
                seconds = reference(NOW)
                peak.append(rss_mb())
            check(args.lots)
            print(
                f"  {label:<9} {seconds:8.1f} s  {args.lots / seconds:9.0f} lots/s  "
                f"peak memory +{max(peak) - before:.1f} MB"
            )
            if label == "job":
                job_seconds = seconds
            db.session.remove()
            db.engine.dispose()
    print(f"  job / reference: {job_seconds / seconds:.1f}x")


if __name__ == "__main__":
    main()
