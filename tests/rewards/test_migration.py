"""Migration a1ledger0001 builds the ledger on a fresh database, triggers included."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from core.extensions import db
from tests.conftest import drop_postgres_database, recreate_postgres_database, worker_id

ROOT = Path(__file__).resolve().parents[2]
LEDGER_TABLES = {
    "ledger_accounts",
    "ledger_transactions",
    "ledger_entries",
    "credit_lots",
    "credit_lot_movements",
}


def migrate_fresh(other_app, url: str):
    """``flask --app wsgi db upgrade`` on ``url``, as an operator runs it; an app on it."""
    env = {**os.environ, "DATABASE_URL": url, "CELERY_BROKER_URL": "memory://"}
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    fresh = other_app(DATABASE_URL=url)
    with fresh.app_context():
        assert set(inspect(db.engine).get_table_names()) >= LEDGER_TABLES
    return fresh


def test_migrations_build_the_ledger_on_a_fresh_sqlite_file(other_app, tmp_path):
    fresh = migrate_fresh(other_app, f"sqlite:///{tmp_path / 'fresh.sqlite'}")
    with fresh.app_context():
        checks = {c["name"] for c in inspect(db.engine).get_check_constraints("ledger_accounts")}
        assert "ck_ledger_accounts_balance_not_negative" in checks
        db.engine.dispose()


def post(conn, key: str, legs: list[tuple[int, int]]) -> None:
    """A transaction and its entries in plain SQL."""
    transaction_id = conn.execute(
        text(
            "INSERT INTO ledger_transactions (kind, idempotency_key, request_hash, amount, "
            "description, source, created_at) VALUES ('gift', :key, 'h', 5, '', '', now()) "
            "RETURNING id"
        ),
        {"key": key},
    ).scalar()
    for account_id, amount in legs:
        conn.execute(
            text(
                "INSERT INTO ledger_entries (transaction_id, account_id, amount, balance_after, "
                "memo) VALUES (:t, :a, :n, 0, '')"
            ),
            {"t": transaction_id, "a": account_id, "n": amount},
        )


@pytest.mark.postgres
def test_migrations_install_the_triggers_on_a_fresh_postgresql_database(
    postgres_required, other_app
):
    name = f"civic_ledger_migration_{worker_id()}_{os.getpid()}"
    fresh = migrate_fresh(other_app, recreate_postgres_database(name))
    try:
        with fresh.app_context(), db.engine.connect() as conn:
            conn.execute(
                text(
                    "INSERT INTO ledger_accounts (key, kind, name, description, balance, "
                    "created_at) VALUES ('pot:a', 'pot', 'A', '', 0, now()), "
                    "('pot:b', 'pot', 'B', '', 0, now())"
                )
            )
            post(conn, "balanced", [(1, -5), (2, 5)])
            conn.commit()
            post(conn, "unbalanced", [(1, 5)])
            with pytest.raises(IntegrityError, match="does not balance"):
                conn.commit()
            conn.rollback()
            with pytest.raises(DBAPIError, match="append-only"):
                conn.execute(text("DELETE FROM ledger_entries"))
            conn.rollback()
            with pytest.raises(DBAPIError, match="append-only"):
                conn.execute(text("UPDATE ledger_transactions SET amount = 6"))
            conn.rollback()
        with fresh.app_context():
            db.engine.dispose()
    finally:
        drop_postgres_database(name)
