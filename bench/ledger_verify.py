"""``flask ledger verify`` over millions of entries on PostgreSQL: time and peak memory.

    .venv/bin/python bench/ledger_verify.py                      # 200,000 entries
    .venv/bin/python bench/ledger_verify.py --entries 5000000    # the figure in README
    .venv/bin/python bench/ledger_verify.py --entries 5000000 --plant-every 50

The ledger is generated on the server with generate_series (2 entries per transaction,
10,000 wallets, one lot and one lot movement per transaction), consistent, so verify
should find no break; ``--plant-every N`` corrupts every Nth entry's balance_after to show
that a long list of breaks streams out without memory growing. verify runs as an operator
runs it, ``flask --app wsgi ledger verify`` in a child process, whose peak RSS is reported.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).parent)]

from ledger_common import bench_app, bench_database, machine  # noqa: E402
from sqlalchemy import text  # noqa: E402

from core.extensions import db  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

GENERATE = [
    "SET session_replication_role = replica",  # bulk load: skip per-row triggers
    "INSERT INTO ledger_accounts (id, key, kind, name, description, balance, created_at) "
    "VALUES (1, 'scheme:issuance', 'issuance', 'Issued', '', -:t, now())",
    "INSERT INTO ledger_accounts (id, key, kind, name, description, balance, created_at) "
    "SELECT a, 'bench:' || a, 'resident', 'R' || a, '', 0, now() "
    "FROM generate_series(2, :a + 1) a",
    "INSERT INTO ledger_transactions (id, kind, idempotency_key, request_hash, amount, "
    "description, source, created_at) "
    "SELECT t, 'earn', 'b' || t, 'h', 1, '', '', now() FROM generate_series(1, :t) t",
    "INSERT INTO ledger_entries (id, transaction_id, account_id, amount, balance_after, memo) "
    "SELECT 2 * t - 1, t, 1, -1, -t, '' FROM generate_series(1, :t) t",
    "INSERT INTO ledger_entries (id, transaction_id, account_id, amount, balance_after, memo) "
    "SELECT 2 * t, t, 2 + (t - 1) % :a, 1, (t - 1) / :a + 1, 'for Bench' "
    "FROM generate_series(1, :t) t",
    "UPDATE ledger_accounts SET balance = s.total FROM (SELECT account_id, SUM(amount) AS "
    "total FROM ledger_entries WHERE account_id > 1 GROUP BY account_id) s "
    "WHERE s.account_id = ledger_accounts.id",
    "INSERT INTO credit_lots (id, account_id, amount, remaining, earned_at, expires_at, "
    "source, created_by_id) SELECT t, 2 + (t - 1) % :a, 1, 1, now(), "
    "now() + interval '365 days', '', t FROM generate_series(1, :t) t",
    "INSERT INTO credit_lot_movements (id, transaction_id, lot_id, amount) "
    "SELECT t, t, t, 1 FROM generate_series(1, :t) t",
]
SEQUENCES = ["ledger_accounts", "ledger_transactions", "ledger_entries", "credit_lots"]


def generate(entries: int, wallets: int, plant_every: int) -> float:
    started = time.perf_counter()
    transactions = entries // 2
    with db.engine.begin() as conn:
        for statement in GENERATE:
            conn.execute(text(statement), {"t": transactions, "a": wallets})
        if plant_every:
            conn.execute(
                text(
                    "UPDATE ledger_entries SET balance_after = balance_after + 1 WHERE id % :n = 0"
                ),
                {"n": plant_every},
            )
        for table in [*SEQUENCES, "credit_lot_movements"]:
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), MAX(id)) FROM {table}"
                )
            )
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    return time.perf_counter() - started


def run_verify(url: str) -> tuple[float, int, int, str]:
    """(seconds, exit code, child peak RSS in MiB, last line) of flask ledger verify."""
    env = {**os.environ, "DATABASE_URL": url, "CELERY_BROKER_URL": "memory://"}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "ledger", "verify"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines = 0
    last = ""
    for line in process.stdout:  # read as it streams; count the breaks named
        lines += line.startswith("BREAK")
        last = line.strip()
    code = process.wait()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    return seconds, code, peak, f"{last} ({lines} BREAK lines)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--wallets", type=int, default=10_000)
    parser.add_argument("--plant-every", type=int, default=0)
    args = parser.parse_args()
    url = bench_database("postgresql", "ledger_bench_verify")
    app = bench_app(url)
    with app.app_context():
        generated = generate(args.entries, args.wallets, args.plant_every)
        size = db.session.execute(
            text("SELECT pg_size_pretty(pg_database_size(current_database()))")
        )
        size = size.scalar()
        db.session.remove()
        db.engine.dispose()
    seconds, code, peak, last = run_verify(url)
    print(f"ledger verify, postgresql, {args.entries:,} entries ({size}), {machine()}")
    print(f"  generated in {generated:.0f}s")
    print(f"  verify: {seconds:.1f}s, exit {code}, peak RSS {peak} MiB")
    print(f"  {last}")


if __name__ == "__main__":
    main()
