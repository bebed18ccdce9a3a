"""Benchmark ``POST /api/v1/redemptions`` under gunicorn on PostgreSQL, next to a reference.

    .venv/bin/python bench/redemption_bench.py                   # 8, 32 and 64 clients
    .venv/bin/python bench/redemption_bench.py --clients 32 --requests 3000 --partners 1

What it does, all on 127.0.0.1:
1. Recreates the database ``civic_bench_redemption`` (``--admin-url`` server), builds the
   schema from the models and seeds ``--partners`` approved partners (one member of staff
   with a bearer token and one 1-credit offer each), ``--residents`` residents with credits
   earned through the ledger, and one fresh one-time code per request (rows in bulk).
2. Starts the app (``wsgi:app``) and the reference (``bench/redemption_reference.py``: lock
   a balance row, check, update, insert a ledger row) under gunicorn with the same workers
   and threads.
3. At each level, ``--rounds`` times, the reference and then the app: ``clients`` threads
   with keep-alive connections send the requests as fast as answers come; every request
   redeems a fresh code at one of the partners (round robin), so it is a real spend (201).
   It prints the median round's requests/s, p50 and p99 latency, checks every answer was
   201, and checks the ledger: the residents' balances fell by exactly the credits redeemed.
   (The machine is shared: alternating rounds and the median keep a neighbour's burst from
   deciding the result.)

The HTTP plumbing (scratch database, gunicorn, the keep-alive load, the median round) is
bench/checkin_bench.py's.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import signal
import sys
from datetime import timedelta
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.checkin_bench import (  # noqa: E402 - after the path is set
    add_gunicorn_arguments,
    database_urls,
    level_result,
    recreate_database,
    run_level,
    start_gunicorn,
)

SECRET_KEY = "bench-" + "y" * 48
APP_PORT = 5393
REFERENCE_PORT = 5394
CREDITS_EACH = 100_000


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database", default="civic_bench_redemption")
    parser.add_argument("--clients", default="8,32,64", help="concurrency levels, comma-separated")
    parser.add_argument(
        "--requests", type=int, default=2000, help="requests per round, level and target"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="alternate reference and app this many times per level; report the median round",
    )
    parser.add_argument("--partners", type=int, default=16, help="partners the tills belong to")
    parser.add_argument("--residents", type=int, default=500, help="residents spending")
    add_gunicorn_arguments(parser)
    parser.add_argument("--json", help="also write the results to this file")
    return parser.parse_args()


def app_environment(url: str) -> dict:
    return {
        **os.environ,
        "DATABASE_URL": url,
        "SECRET_KEY": SECRET_KEY,
        "CIVIC_CREDITS_ENV": "production",
        "CELERY_BROKER_URL": "memory://",
        "RATELIMIT_STORAGE_URI": "memory://",
        "BENCH_DATABASE_URL": url,
    }


def seed(url: str, args, codes_needed: int) -> dict:
    """Schema, partners with staff tokens and offers, residents with credits, codes."""
    os.environ.update(app_environment(url))
    from bench.redemption_reference import CREATE_TABLES
    from core import create_app
    from core.extensions import db
    from core.models import ApiToken, Role, RoleMembership, User
    from core.security import token_digest
    from core.timeutil import utcnow
    from partners import operations as ops
    from partners.models import PartnerStatus, RedemptionCode
    from rewards import operations as ledger

    app = create_app({"DATABASE_URL": url, "SECRET_KEY": SECRET_KEY})
    now = utcnow()
    with app.test_request_context():
        db.create_all()
        for statement in CREATE_TABLES:
            db.session.execute(text(statement))

        def person(email: str, role: Role) -> User:
            user = User(email=email, password_hash="-", display_name=email[:8], postcode="LS8 2HE")
            user.memberships.append(RoleMembership(role=role.value))
            db.session.add(user)
            return user

        council = person("council@bench.example", Role.COUNCIL)
        tills = []
        for number in range(args.partners):
            staff = person(f"till{number}@bench.example", Role.PARTNER_STAFF)
            db.session.flush()
            partner = ops.register_partner(staff, name=f"Bench Café {number}", address="1 Road")
            ops.decide_partner(council, partner, PartnerStatus.APPROVED)
            offer = ops.create_offer(staff, partner, ops.OfferFields(title="Tea", credit_cost=1))
            bearer = secrets.token_urlsafe(32)
            db.session.add(
                ApiToken(
                    token_digest=token_digest(bearer),
                    user=staff,
                    expires_at=now + timedelta(hours=6),
                )
            )
            tills.append({"bearer": bearer, "offer_id": offer.id})
        residents = [person(f"r{n}@bench.example", Role.RESIDENT) for n in range(args.residents)]
        db.session.flush()
        for resident in residents:
            ledger.earn(
                resident.id,
                CREDITS_EACH,
                idempotency_key=f"bench-earn-{resident.id}",
                description="Bench",
            )
        resident_ids = [resident.id for resident in residents]
        codes = []
        rows = []
        for number in range(codes_needed):
            code = "".join(secrets.choice(ops.CODE_ALPHABET) for _ in range(ops.CODE_LENGTH))
            codes.append((ops.format_code(code), resident_ids[number % len(resident_ids)]))
            rows.append(
                {
                    "code_digest": ops.code_digest(code),
                    "resident_id": resident_ids[number % len(resident_ids)],
                    "created_at": now,
                    "expires_at": now + timedelta(hours=2),
                }
            )
        db.session.execute(RedemptionCode.__table__.insert(), rows)
        db.session.execute(
            text("INSERT INTO bench_reference_balances (id, balance) VALUES (:i, :b)"),
            [{"i": rid, "b": CREDITS_EACH} for rid in resident_ids],
        )
        db.session.commit()
        db.engine.dispose()
    return {"tills": tills, "codes": codes, "residents": resident_ids}


def jobs_for(world, batch: int, requests: int) -> tuple[list, list]:
    """A round's (app jobs, reference jobs): each app job redeems its own fresh code."""
    tills, codes = world["tills"], world["codes"]
    app_jobs, reference_jobs = [], []
    for number in range(requests):
        code, resident_id = codes[batch * requests + number]
        till = tills[number % len(tills)]
        key = f"bench-{batch}-{number}"
        app_jobs.append(
            (
                {"Content-Type": "application/json", "Authorization": f"Bearer {till['bearer']}"},
                {"code": code, "offer_id": till["offer_id"], "idempotency_key": key},
            )
        )
        reference_jobs.append(
            (
                {"Content-Type": "application/json"},
                {"account_id": resident_id, "amount": 1, "idempotency_key": key},
            )
        )
    return app_jobs, reference_jobs


def warm_up(world) -> None:
    """A few requests to each server first, so imports and pools are ready."""
    bearer = world["tills"][0]["bearer"]
    for _ in range(20):
        for port, method, path, headers in (
            (APP_PORT, "GET", "/api/v1/me", {"Authorization": f"Bearer {bearer}"}),
            (REFERENCE_PORT, "GET", "/healthz", {}),
        ):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request(method, path, headers=headers)
            conn.getresponse().read()
            conn.close()


def spent_credits(engine) -> int:
    """Credits the residents' wallets hold less than they earned (the ledger's view)."""
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT coalesce(sum(:each - balance), 0) FROM ledger_accounts "
                "WHERE key LIKE 'user:%'"
            ),
            {"each": CREDITS_EACH},
        ).scalar_one()


def run_round(world, batch: int, clients: int, engine, args) -> tuple[dict, dict]:
    """One round at one level: the reference, then the app, each on fresh codes."""
    app_jobs, reference_jobs = jobs_for(world, batch, args.requests)
    before = spent_credits(engine)
    ref = run_level(REFERENCE_PORT, "/ref/redemptions", reference_jobs, clients)
    real = run_level(APP_PORT, "/api/v1/redemptions", app_jobs, clients)
    assert real["statuses"] == {201: args.requests}, real["statuses"]
    assert spent_credits(engine) - before == args.requests
    return ref, real


def main() -> None:
    args = parse_args()
    levels = [int(level) for level in args.clients.split(",")]
    url, plain_url = database_urls(args)
    recreate_database(args)
    batches = 1 + len(levels) * args.rounds  # the first one warms both servers up
    print(
        f"seeding {args.partners} partners, {args.residents} residents and "
        f"{args.requests * batches} codes…",
        flush=True,
    )
    world = seed(url, args, args.requests * batches)
    env = app_environment(plain_url)
    app = start_gunicorn("wsgi:app", APP_PORT, args, env)
    reference = start_gunicorn("bench.redemption_reference:app", REFERENCE_PORT, args, env)
    results = []
    try:
        warm_up(world)
        engine = create_engine(url)
        # Every worker thread of both servers runs the real path once before measuring.
        run_round(world, 0, 16, engine, args)
        batch = 1
        for level in levels:
            rounds = []
            for _ in range(args.rounds):
                rounds.append(run_round(world, batch, level, engine, args))
                batch += 1
            results.append(level_result(level, rounds, "redemptions", "/api/v1/redemptions"))
        engine.dispose()
    finally:
        for process in (app, reference):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
