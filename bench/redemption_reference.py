"""The reference ``POST /api/v1/redemptions`` is measured against: the least a spend can do.

A minimal Flask app whose one endpoint, in one transaction on a pooled connection, locks a
balance row (``SELECT ... FOR UPDATE``), checks it covers the amount, updates it and inserts
one ledger row. No authentication, no codes, no lots. Served by gunicorn exactly like the
real app in bench/redemption_bench.py:

    BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/civic_bench_redemption \\
    gunicorn bench.redemption_reference:app
"""

from __future__ import annotations

import os

from flask import Flask, jsonify, request
from sqlalchemy import create_engine, text

#: The tables the reference uses (created and filled by the benchmark before it starts).
CREATE_TABLES = [
    """CREATE TABLE IF NOT EXISTS bench_reference_balances (
        id integer PRIMARY KEY,
        balance integer NOT NULL CHECK (balance >= 0)
    )""",
    """CREATE TABLE IF NOT EXISTS bench_reference_ledger (
        id bigserial PRIMARY KEY,
        account_id integer NOT NULL,
        amount integer NOT NULL,
        idempotency_key varchar(255) NOT NULL UNIQUE,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
]

app = Flask(__name__)
engine = create_engine(
    os.environ.get(
        "BENCH_DATABASE_URL",
        "postgresql+psycopg://postgres@127.0.0.1:5432/civic_bench_redemption",
    ),
    pool_size=10,
    max_overflow=10,
)


@app.post("/ref/redemptions")
def reference_redemption():
    """Lock the balance, check, update, insert a ledger row; answer 201 (or 422)."""
    body = request.get_json(silent=True) or {}
    account_id, amount = int(body.get("account_id", 0)), int(body.get("amount", 1))
    with engine.begin() as conn:
        balance = conn.execute(
            text("SELECT balance FROM bench_reference_balances WHERE id = :a FOR UPDATE"),
            {"a": account_id},
        ).scalar()
        if balance is None or balance < amount:
            return jsonify(error={"code": "insufficient_credits"}), 422
        conn.execute(
            text("UPDATE bench_reference_balances SET balance = balance - :m WHERE id = :a"),
            {"a": account_id, "m": amount},
        )
        row_id = conn.execute(
            text(
                "INSERT INTO bench_reference_ledger (account_id, amount, idempotency_key) "
                "VALUES (:a, :m, :k) RETURNING id"
            ),
            {"a": account_id, "m": -amount, "k": body.get("idempotency_key", "")},
        ).scalar_one()
    return jsonify(id=row_id, credits=amount), 201


@app.get("/healthz")
def healthz():
    return jsonify(status="ok")
