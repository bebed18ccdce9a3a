"""The reference the check-in endpoint is measured against: the least a check-in can do.

A minimal Flask app whose one endpoint verifies a signed, timed token (itsdangerous, as the
real check-in does) and inserts one row, in one transaction on a pooled connection. Served
by gunicorn exactly like the real app in bench/checkin_bench.py:

    BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/civic_bench \\
    BENCH_SECRET_KEY=... gunicorn bench.checkin_reference:app
"""

from __future__ import annotations

import os

from flask import Flask, jsonify, request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import create_engine, text

#: The table the reference writes to (created by the benchmark before it starts).
TABLE = "bench_reference_checkins"
CREATE_TABLE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id bigserial PRIMARY KEY,
    session_id integer NOT NULL,
    resident_id integer NOT NULL,
    nonce varchar(100) NOT NULL,
    checked_in_at timestamptz NOT NULL DEFAULT now()
)
"""

app = Flask(__name__)
engine = create_engine(
    os.environ.get(
        "BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/civic_bench"
    ),
    pool_size=10,
    max_overflow=10,
)
serializer = URLSafeTimedSerializer(
    os.environ.get("BENCH_SECRET_KEY", "bench-secret"), salt="civic-credits.volunteering.checkin.v1"
)


@app.post("/ref/checkins")
def reference_checkin():
    """Verify the token, insert one row, answer 201."""
    body = request.get_json(silent=True) or {}
    try:
        data = serializer.loads(body.get("token", ""), max_age=3600)
    except SignatureExpired:
        return jsonify(error={"code": "token_expired"}), 422
    except BadSignature:
        return jsonify(error={"code": "token_invalid"}), 400
    with engine.begin() as conn:
        row_id = conn.execute(
            text(
                f"INSERT INTO {TABLE} (session_id, resident_id, nonce) "
                "VALUES (:s, :r, :n) RETURNING id"
            ),
            {"s": int(data["s"]), "r": int(body.get("resident_id", 0)), "n": body.get("nonce", "")},
        ).scalar_one()
    return jsonify(attendance_id=row_id, state="checked_in"), 201
