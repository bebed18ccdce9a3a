"""Benchmark ``POST /api/v1/checkins`` under gunicorn on PostgreSQL, next to a reference.

    .venv/bin/python bench/checkin_bench.py                      # 8, 32 and 64 clients
    .venv/bin/python bench/checkin_bench.py --clients 32 --requests 3000 --workers 2

What it does, all on 127.0.0.1:
1. Recreates the database ``civic_bench`` (``--admin-url`` server), builds the schema from
   the models, and seeds an approved organisation and activity, one session open now per
   concurrency level, and ``--requests`` residents with bearer tokens (rows written in bulk).
2. Starts the app (``wsgi:app``) and the reference (``bench/checkin_reference.py``: verify
   a signed token, insert one row) under gunicorn with the same workers and threads.
3. At each level, ``--rounds`` times, the reference and then the app: ``clients`` threads
   with keep-alive connections send the requests as fast as answers come; every request is
   a resident's first scan of that round's session (a real check-in, 201). It prints the
   median round's requests/s, p50 and p99 latency, and checks every answer was 201 and
   every check-in was recorded once. (The machine is shared: alternating rounds and the
   median keep a neighbour's burst from deciding the result.)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SECRET_KEY = "bench-" + "x" * 48
APP_PORT = 5391
REFERENCE_PORT = 5392


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database", default="civic_bench")
    parser.add_argument("--clients", default="8,32,64", help="concurrency levels, comma-separated")
    parser.add_argument("--requests", type=int, default=2000, help="requests per level and target")
    add_gunicorn_arguments(parser)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="alternate reference and app this many times per level; report the median round",
    )
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--app", default="wsgi:app", help="the app gunicorn serves (e.g. a variant in bench/)"
    )
    return parser.parse_args()


def add_gunicorn_arguments(parser) -> None:
    """How both servers run: the same gunicorn workers for the app and the reference."""
    parser.add_argument(
        "--workers",
        type=int,
        default=2 * (os.cpu_count() or 1) + 1,
        help="gunicorn workers (default: gunicorn's advice, 2 per core + 1)",
    )
    parser.add_argument(
        "--worker-class",
        default="sync",
        help="gunicorn worker class (sync, as README deploys; gthread with --threads)",
    )
    parser.add_argument("--threads", type=int, default=1, help="gunicorn threads per worker")


def database_urls(args) -> tuple[str, str]:
    """(psycopg SQLAlchemy URL, plain URL) of the bench database."""
    base = args.admin_url.rsplit("/", 1)[0] + "/" + args.database
    return base.replace("postgresql://", "postgresql+psycopg://", 1), base


def recreate_database(args) -> None:
    admin = create_engine(
        args.admin_url.replace("postgresql://", "postgresql+psycopg://", 1),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{args.database}"'))
    admin.dispose()


def app_environment(url: str) -> dict:
    return {
        **os.environ,
        "DATABASE_URL": url,
        "SECRET_KEY": SECRET_KEY,
        "CIVIC_CREDITS_ENV": "production",
        "CELERY_BROKER_URL": "memory://",
        "RATELIMIT_STORAGE_URI": "memory://",
        # Codes stay valid for the whole run (the screen would fetch a new one each minute).
        "CIVIC_CREDITS_CHECKIN_TOKEN_TTL_SECONDS": "3600",
        "BENCH_DATABASE_URL": url,
        "BENCH_SECRET_KEY": SECRET_KEY,
    }


def seed(url: str, levels: list, residents: int) -> dict:
    """Schema, one open session per level, residents with bearer tokens; tokens to send."""
    os.environ.update(app_environment(url))
    from bench.checkin_reference import CREATE_TABLE
    from core import create_app
    from core.extensions import db
    from core.models import ApiToken, Role, RoleMembership, User
    from core.security import token_digest
    from core.timeutil import utcnow
    from volunteering import operations as ops
    from volunteering import tokens

    app = create_app({"DATABASE_URL": url, "SECRET_KEY": SECRET_KEY})
    with app.test_request_context():
        db.create_all()
        db.session.execute(text(CREATE_TABLE))
        organiser = User(
            email="organiser@bench.example", password_hash="-", display_name="O", postcode="LS8 2HE"
        )
        council = User(
            email="council@bench.example", password_hash="-", display_name="C", postcode="LS8 2HE"
        )
        organiser.memberships.append(RoleMembership(role=Role.ORGANISER.value))
        council.memberships.append(RoleMembership(role=Role.COUNCIL.value))
        db.session.add_all([organiser, council])
        db.session.flush()
        organisation = ops.propose_organisation(organiser, "Bench group")
        ops.approve_organisation(council, organisation)
        activity = ops.propose_activity(
            organiser,
            organisation,
            title="Litter pick",
            category=app.config["VOLUNTEERING_CATEGORIES"][0],
            location="Park",
        )
        ops.approve_activity(council, activity)
        now = utcnow()
        sessions = {
            level: ops.schedule_session(
                organiser, activity, now - timedelta(hours=1), now + timedelta(hours=6)
            ).id
            for level in levels
        }
        db.session.commit()
        first_id = db.session.execute(text("SELECT coalesce(max(id), 0) FROM users")).scalar()
        ids = list(range(first_id + 1, first_id + 1 + residents))
        db.session.execute(
            User.__table__.insert(),
            [
                {
                    "id": i,
                    "email": f"r{i}@bench.example",
                    "password_hash": "-",
                    "display_name": f"R{i}",
                    "postcode": "LS8 2HE",
                    "created_at": now,
                }
                for i in ids
            ],
        )
        db.session.execute(text("SELECT setval('users_id_seq', :v)"), {"v": ids[-1]})
        db.session.execute(
            RoleMembership.__table__.insert(),
            [{"user_id": i, "role": Role.RESIDENT.value, "granted_at": now} for i in ids],
        )
        bearer = {i: secrets.token_urlsafe(32) for i in ids}
        db.session.execute(
            ApiToken.__table__.insert(),
            [
                {
                    "token_digest": token_digest(bearer[i]),
                    "user_id": i,
                    "created_at": now,
                    "expires_at": now + timedelta(hours=6),
                }
                for i in ids
            ],
        )
        db.session.commit()
        codes = {level: tokens.rotating_token(session)[0] for level, session in sessions.items()}
        db.engine.dispose()
    return {"residents": ids, "bearer": bearer, "codes": codes, "sessions": sessions}


def start_gunicorn(target: str, port: int, args, env: dict) -> subprocess.Popen:
    process = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/gunicorn"),
            "--workers",
            str(args.workers),
            "--worker-class",
            args.worker_class,
            "--threads",
            str(args.threads),
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            target,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"{target} did not start: {process.stderr.read().decode()[-2000:]}")


def run_level(port: int, path: str, jobs: list[tuple[dict, dict]], clients: int) -> dict:
    """Send ``jobs`` (headers, body) with ``clients`` keep-alive connections; time each."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    shares = [jobs[i::clients] for i in range(clients)]
    barrier = threading.Barrier(clients + 1)

    def client(share):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine, codes = [], {}
        barrier.wait()
        for headers, body in share:
            payload = json.dumps(body)
            started = time.perf_counter()
            conn.request("POST", path, body=payload, headers=headers)
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - started)
            codes[response.status] = codes.get(response.status, 0) + 1
        conn.close()
        with lock:
            latencies.extend(mine)
            for status, count in codes.items():
                statuses[status] = statuses.get(status, 0) + count

    threads = [threading.Thread(target=client, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "seconds": round(elapsed, 3),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
        "statuses": statuses,
    }


def warm_up(world) -> None:
    """A few requests to each server first, so imports and pools are ready."""
    bearer = next(iter(world["bearer"].values()))
    for _ in range(20):
        for port, method, path, headers in (
            (APP_PORT, "GET", "/api/v1/me", {"Authorization": f"Bearer {bearer}"}),
            (REFERENCE_PORT, "POST", "/ref/checkins", {"Content-Type": "application/json"}),
        ):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request(method, path, body="{}" if method == "POST" else None, headers=headers)
            conn.getresponse().read()
            conn.close()


def median_round(rounds: list[dict]) -> dict:
    """The round with the median throughput (its latencies are reported with it)."""
    return sorted(rounds, key=lambda r: r["rps"])[len(rounds) // 2]


def level_result(level: int, rounds: list, name: str, path: str) -> dict:
    """One level's median rounds (reference, app), printed as a line; for the JSON file."""
    ref = median_round([r[0] for r in rounds])
    real = median_round([r[1] for r in rounds])
    ratio = real["rps"] / ref["rps"]
    print(
        f"{level:>3} clients | reference {ref['rps']:>7.1f} req/s "
        f"p50 {ref['p50_ms']:>6.1f} ms p99 {ref['p99_ms']:>6.1f} ms | "
        f"{path} {real['rps']:>7.1f} req/s p50 {real['p50_ms']:>6.1f} ms "
        f"p99 {real['p99_ms']:>6.1f} ms | {ratio:.0%} of reference",
        flush=True,
    )
    return {"clients": level, "reference": ref, name: real, "ratio": ratio, "all": rounds}


def run_target(world, key, clients: int, engine, args, check: bool = True):
    """One round at one level: the reference, then the app, on session ``key``."""
    code = world["codes"][key]
    tag = f"{key}"
    app_jobs = [
        (
            {"Content-Type": "application/json", "Authorization": f"Bearer {world['bearer'][r]}"},
            {"token": code, "nonce": f"n-{tag}-{r}"},
        )
        for r in world["residents"]
    ]
    reference_jobs = [
        (
            {"Content-Type": "application/json"},
            {"token": code, "nonce": f"n-{tag}-{r}", "resident_id": r},
        )
        for r in world["residents"]
    ]
    if not check:
        app_jobs, reference_jobs = app_jobs[:200], reference_jobs[:200]
    ref = run_level(REFERENCE_PORT, "/ref/checkins", reference_jobs, clients)
    real = run_level(APP_PORT, "/api/v1/checkins", app_jobs, clients)
    if check:
        with engine.connect() as conn:
            recorded = conn.execute(
                text(
                    "SELECT count(*), count(DISTINCT resident_id) FROM attendances "
                    "WHERE session_id = :s"
                ),
                {"s": world["sessions"][key]},
            ).one()
        assert real["statuses"] == {201: args.requests}, real["statuses"]
        assert tuple(recorded) == (args.requests, args.requests), recorded
    return ref, real


def main() -> None:
    args = parse_args()
    levels = [int(level) for level in args.clients.split(",")]
    url, plain_url = database_urls(args)
    recreate_database(args)
    keys = ["warm"] + [(level, n) for level in levels for n in range(args.rounds)]
    print(f"seeding {args.requests} residents and {len(keys)} sessions…", flush=True)
    world = seed(url, keys, args.requests)
    env = app_environment(plain_url)
    app = start_gunicorn(args.app, APP_PORT, args, env)
    reference = start_gunicorn("bench.checkin_reference:app", REFERENCE_PORT, args, env)
    results = []
    try:
        warm_up(world)
        engine = create_engine(url)
        # Every worker thread of both servers runs the real path once before measuring.
        run_target(world, "warm", 16, engine, args, check=False)
        for level in levels:
            rounds = [
                run_target(world, (level, n), level, engine, args) for n in range(args.rounds)
            ]
            results.append(level_result(level, rounds, "checkins", "/api/v1/checkins"))
        engine.dispose()
    finally:
        for process in (app, reference):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
