"""Benchmark: the council's summary report for a year over a big scheme, on PostgreSQL.

Builds (with set-based SQL, in a database of its own, ``reports_bench``) two years of a
scheme: 50,000 residents, 1,000 activities, 50,000 sessions, 1,000,000 attendances with
their claims, and a ledger of 2.5 million transactions and 5,000,000 entries (earns for
approved claims, spends with their redemptions, gifts, expiries, settlements, reversals),
and a settlement per partner and week (most paid), then times ``reports.queries.summary``
and the dashboard's other queries for one year, and the pages a person opens: the council
dashboard, each of its CSV downloads, and an organisation's and a partner's report page,
each a whole request through the Flask test client (signed in as council staff).

Run by hand from the repository root (not part of the test suite):

    .venv/bin/python bench/reports_bench.py            # build, then time
    .venv/bin/python bench/reports_bench.py --reuse    # time again on the built data
    .venv/bin/python bench/reports_bench.py --reuse --pages-only
    .venv/bin/python bench/reports_bench.py --reuse --without-report-indexes

``--reuse`` keeps the database built before (it adds the settlements if a build from an
older version of this script has none). ``--without-report-indexes`` drops the indexes
reports/models.py adds (the "before"); by default they are (re)created first (the
"after"). Results go to bench/README.md by hand.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from core import create_app  # noqa: E402
from core.config import normalise_database_url  # noqa: E402
from core.extensions import db  # noqa: E402

NAME = "reports_bench"
RESIDENTS = 50_000
ORGANISATIONS = 100
ACTIVITIES = 1_000
SESSIONS = 50_000
ATTENDANCES = 1_000_000
PARTNERS = 200
SPENDS = 700_000
GIFTS = 300_000
EXPIRES = 400_000
SETTLES = 50_000
REVERSALS = 100_000
WEEKS = 104  # one settlement per partner and week: 20,800
COUNCIL_ID = RESIDENTS + 2
START = "2025-01-01"  # two years of history: 2025 and 2026


def database_url(create: bool) -> str:
    server = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    url = make_url(normalise_database_url(server))
    assert re.fullmatch(r"[a-z0-9_]+", NAME)
    if create:
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{NAME}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{NAME}"'))
        admin.dispose()
    return url.set(database=NAME).render_as_string(hide_password=False)


def make_app(url: str):
    return create_app(
        {
            "CIVIC_CREDITS_ENV": "test",
            "SECRET_KEY": "benchmark-secret-key-long-enough-0123456789",
            "DATABASE_URL": url,
            "CELERY_BROKER_URL": "memory://",
            "RATELIMIT_STORAGE_URI": "memory://",
            "TESTING": True,
        }
    )


GENERATE = [
    # People: residents 1..RESIDENTS, then organisers, staff and council.
    f"""
    INSERT INTO users (id, email, password_hash, display_name, postcode, created_at)
    SELECT g, 'person' || g || '@example.org', 'x', 'Person ' || g, 'LS8 2HE',
           timestamptz '{START}' - interval '400 days' + (g % 1000) * interval '1 day'
    FROM generate_series(1, {RESIDENTS + 10}) g
    """,
    f"""
    INSERT INTO role_memberships (user_id, role, granted_at)
    SELECT g, 'resident', now() FROM generate_series(1, {RESIDENTS}) g
    """,
    f"""
    INSERT INTO organisations (id, name, description, status, created_by_id, created_at)
    SELECT g, 'Group ' || g, '', 'approved', {RESIDENTS + 1}, timestamptz '{START}'
    FROM generate_series(1, {ORGANISATIONS}) g
    """,
    f"""
    INSERT INTO activities (id, organisation_id, title, description, category, location, ward,
        credits_per_hour, status, created_by_id, created_at)
    SELECT g, 1 + g % {ORGANISATIONS}, 'Activity ' || g, '',
        (ARRAY['Environment','Food and lunch clubs','Gardening','Health and wellbeing',
               'Older people','Children and young people','Sport and leisure',
               'Arts and culture','Community support'])[1 + g % 9],
        'Somewhere',
        (ARRAY['City and Hunslet','Chapel Allerton','Gipton and Harehills',
               'Headingley and Hyde Park','Killingbeck and Seacroft','Roundhay'])[1 + g % 6],
        1 + g % 2, 'approved', {RESIDENTS + 1}, timestamptz '{START}'
    FROM generate_series(1, {ACTIVITIES}) g
    """,
    # Sessions spread over two years, two hours long.
    f"""
    INSERT INTO volunteering_sessions (id, activity_id, starts_at, ends_at, created_by_id,
        created_at)
    SELECT g, 1 + g % {ACTIVITIES},
        timestamptz '{START}' + (g * interval '730 days' / {SESSIONS}),
        timestamptz '{START}' + (g * interval '730 days' / {SESSIONS}) + interval '2 hours',
        {RESIDENTS + 1}, timestamptz '{START}'
    FROM generate_series(1, {SESSIONS}) g
    """,
    # Twenty residents a session, distinct within it.
    f"""
    INSERT INTO attendances (id, session_id, resident_id, checked_in_at, checked_out_at, source,
        created_at)
    SELECT g, 1 + (g - 1) / 20,
        1 + ((g * 37) + ((g - 1) / 20) * 13) % {RESIDENTS},
        s.starts_at, s.starts_at + (30 + g % 90) * interval '1 minute', 'qr', s.starts_at
    FROM generate_series(1, {ATTENDANCES}) g
    JOIN volunteering_sessions s ON s.id = 1 + (g - 1) / 20
    """,
    # A claim each: 95% approved.
    """
    INSERT INTO claims (id, attendance_id, session_id, resident_id, minutes, credits, status,
        flags, created_at, decided_at)
    SELECT a.id, a.id, a.session_id, a.resident_id,
        (30 + a.id % 90), greatest(1, (30 + a.id % 90) / 60),
        CASE WHEN a.id % 20 = 0 THEN 'rejected' ELSE 'approved' END,
        '[]'::json, a.checked_out_at, a.checked_out_at
    FROM attendances a
    """,
    # The ledger's accounts: the scheme's three, a wallet each, and the partners'.
    """
    INSERT INTO ledger_accounts (id, key, kind, name, description, balance, created_at) VALUES
        (1, 'scheme:issuance', 'issuance', 'Credits issued', '', 0, now()),
        (2, 'scheme:expired', 'expired', 'Expired credits', '', 0, now()),
        (3, 'scheme:settled', 'settled', 'Settled', '', 0, now())
    """,
    f"""
    INSERT INTO ledger_accounts (id, key, kind, name, description, user_id, balance, created_at)
    SELECT 10 + g, 'user:' || g, 'resident', 'Person ' || g, '', g, 0, now()
    FROM generate_series(1, {RESIDENTS}) g
    """,
    f"""
    INSERT INTO partners (id, name, address, category, ward, opening_hours, contact_name,
        contact_email, contact_phone, status, settlement_rate_pence, payout_method, created_at)
    SELECT g, 'Shop ' || g, 'High Street', 'Café',
        (ARRAY['City and Hunslet','Chapel Allerton','Gipton and Harehills',
               'Headingley and Hyde Park','Killingbeck and Seacroft','Roundhay'])[1 + g % 6],
        '', '', '', '', 'approved', 80 + g % 40, 'payment_file', timestamptz '{START}'
    FROM generate_series(1, {PARTNERS}) g
    """,
    f"""
    INSERT INTO offers (id, partner_id, title, description, credit_cost, status, days,
        limit_period, created_at)
    SELECT g, g, 'Offer ' || g, '', 2, 'active', '0123456', 'week', timestamptz '{START}'
    FROM generate_series(1, {PARTNERS}) g
    """,
    f"""
    INSERT INTO ledger_accounts (id, key, kind, name, description, balance, created_at)
    SELECT 100000 + g, 'partner:' || g, 'partner', 'Shop ' || g, '', 0, now()
    FROM generate_series(1, {PARTNERS}) g
    """,
    # Earns: one per approved claim.
    """
    INSERT INTO ledger_transactions (id, kind, idempotency_key, request_hash, amount,
        description, source, created_at)
    SELECT c.id, 'earn', 'volunteering-claim:' || c.id, 'x', c.credits, 'Activity', 'volunteering',
        c.decided_at
    FROM claims c WHERE c.status = 'approved'
    """,
    # Spends, gifts, expiries, settlements: ids above the claims'.
    f"""
    INSERT INTO ledger_transactions (id, kind, idempotency_key, request_hash, amount,
        description, source, created_at)
    SELECT 2000000 + g,
        CASE WHEN g <= {SPENDS} THEN 'spend'
             WHEN g <= {SPENDS + GIFTS} THEN 'gift'
             WHEN g <= {SPENDS + GIFTS + EXPIRES} THEN 'expire'
             ELSE 'settle' END,
        'bench-' || g, 'x', 1 + g % 2, 'x', '',
        timestamptz '{START}' + ((g::bigint * 7919) % {SPENDS + GIFTS + EXPIRES + SETTLES})
            * interval '730 days' / {SPENDS + GIFTS + EXPIRES + SETTLES}
    FROM generate_series(1, {SPENDS + GIFTS + EXPIRES + SETTLES}) g
    """,
    # Reversals of some spends (cancelled redemptions), the next day.
    f"""
    INSERT INTO ledger_transactions (id, kind, idempotency_key, request_hash, amount,
        description, source, reason, reverses_id, created_at)
    SELECT 4000000 + g, 'reverse', 'bench-reverse-' || g, 'x', t.amount, 'x', '', 'cancelled',
        t.id, t.created_at + interval '1 hour'
    FROM generate_series(1, {REVERSALS}) g
    JOIN ledger_transactions t ON t.id = 2000000 + g * 7
    """,
    # Two entries each.
    """
    INSERT INTO ledger_entries (transaction_id, account_id, amount, balance_after, memo)
    SELECT t.id, leg.account_id, leg.amount, 0, ''
    FROM ledger_transactions t
    LEFT JOIN claims c ON t.kind = 'earn' AND c.id = t.id
    LEFT JOIN ledger_transactions o ON o.id = t.reverses_id
    CROSS JOIN LATERAL (
        SELECT * FROM (VALUES
          (CASE coalesce(o.kind, t.kind)
             WHEN 'earn' THEN 1
             WHEN 'settle' THEN 100001 + t.id % 200
             ELSE 11 + t.id % 50000 END,
           -t.amount),
          (CASE coalesce(o.kind, t.kind)
             WHEN 'earn' THEN 10 + c.resident_id
             WHEN 'spend' THEN 100001 + t.id % 200
             WHEN 'gift' THEN 11 + (t.id + 1) % 50000
             WHEN 'expire' THEN 2
             ELSE 3 END,
           t.amount)
        ) v(account_id, amount)
    ) leg
    """,
    # Reversals flip their original's legs.
    """
    UPDATE ledger_entries SET amount = -amount
    WHERE transaction_id >= 4000000
    """,
    f"""
    INSERT INTO redemptions (id, partner_id, offer_id, resident_id, idempotency_key, credits,
        settlement_rate_pence, description, transaction_id, status, created_at)
    SELECT t.id, 1 + t.id % 200, 1 + t.id % 200, 1 + t.id % {RESIDENTS}, 'till-' || t.id,
        t.amount, 80 + (1 + t.id % 200) % 40, 'Offer', t.id,
        CASE WHEN r.id IS NULL THEN 'completed' ELSE 'cancelled' END, t.created_at
    FROM ledger_transactions t
    LEFT JOIN ledger_transactions r ON r.reverses_id = t.id
    WHERE t.kind = 'spend'
    """,
    """
    UPDATE ledger_accounts a
    SET balance = CASE WHEN a.kind = 'issuance' THEN s.total ELSE greatest(s.total, 0) END
    FROM (SELECT account_id, sum(amount) AS total FROM ledger_entries GROUP BY account_id) s
    WHERE s.account_id = a.id
    """,
]


# A settlement per partner and week (UNIQUE partner and period end): 90% paid three days
# after the week, the rest pending, sent or failed. Each points at one of the bench's
# settle transactions (the foreign key only asks that it exists).
SETTLEMENTS = f"""
    INSERT INTO settlements (partner_id, period_start, period_end, credits, redemption_count,
        amount_pence, status, ledger_transaction_id, payout_method, transfer_attempt, attempts,
        created_at, submitted_at, paid_at, failed_at)
    SELECT p, s.period_end - interval '7 days', s.period_end, 30 + (p * w) % 50, 15,
        (30 + (p * w) % 50) * (80 + p % 40), s.status,
        2000000 + {SPENDS + GIFTS + EXPIRES} + 1 + (p * {WEEKS} + w) % {SETTLES},
        'payment_file', 0, 1, s.period_end, s.period_end + interval '1 day',
        CASE WHEN s.status = 'paid' THEN s.period_end + interval '3 days' END,
        CASE WHEN s.status = 'failed' THEN s.period_end + interval '2 days' END
    FROM generate_series(1, {PARTNERS}) p
    CROSS JOIN generate_series(1, {WEEKS}) w
    CROSS JOIN LATERAL (
        SELECT timestamptz '2024-12-30' + w * interval '7 days' AS period_end,
            CASE (p + w) % 10 WHEN 0 THEN 'pending' WHEN 1 THEN 'failed'
                ELSE 'paid' END AS status
    ) s
"""


def ensure_settlements(app) -> None:
    """Add the settlements (once): a database built by an older version has none."""
    with app.app_context():
        if db.session.execute(text("SELECT count(*) FROM settlements")).scalar():
            db.session.remove()
            return
        db.session.execute(text(SETTLEMENTS))
        db.session.commit()
        db.session.execute(text("ANALYZE settlements"))
        db.session.commit()
        db.session.remove()


def build(app) -> None:
    with app.app_context():
        db.create_all()
        with db.engine.begin() as conn:
            # Bulk load: the per-row balance trigger would check 5 million sums one by one.
            conn.execute(text("ALTER TABLE ledger_entries DISABLE TRIGGER ALL"))
            conn.execute(text("ALTER TABLE ledger_transactions DISABLE TRIGGER ALL"))
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            for number, statement in enumerate(GENERATE, 1):
                started = time.perf_counter()
                conn.execute(text(statement))
                print(f"  step {number}/{len(GENERATE)}: {time.perf_counter() - started:.1f} s")
            conn.execute(text("ALTER TABLE ledger_entries ENABLE TRIGGER ALL"))
            conn.execute(text("ALTER TABLE ledger_transactions ENABLE TRIGGER ALL"))
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        db.engine.dispose()


def counts(app) -> dict:
    with app.app_context():
        result = {
            table: db.session.execute(text(f"SELECT count(*) FROM {table}")).scalar()
            for table in (
                "attendances",
                "claims",
                "ledger_transactions",
                "ledger_entries",
                "settlements",
            )
        }
        db.session.remove()
    return result


def report_indexes(app, present: bool) -> None:
    """Create (or drop) the indexes reports/models.py declares on other packages' tables."""
    from reports.models import REPORT_INDEXES

    with app.app_context(), db.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        for index in REPORT_INDEXES:
            conn.execute(text(f'DROP INDEX IF EXISTS "{index.name}"'))
            if present:
                index.create(conn)
        conn.execute(text("ANALYZE"))
        db.engine.dispose()


def timed(function, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
        db.session.rollback()
    return times


def run_reports(app, repeat: int) -> dict[str, list[float]]:
    from reports import queries
    from reports.queries import Period

    year = Period.from_dates(date(2026, 1, 1), date(2026, 12, 31))
    results = {}
    with app.test_request_context():
        # Start without the ledger rollup: the first report rolls up every closed day.
        db.create_all()
        db.session.execute(text("DELETE FROM report_ledger_days"))
        db.session.execute(text("DELETE FROM report_rollups"))
        db.session.commit()
        started = time.perf_counter()
        queries.summary(year)
        db.session.commit()
        results["summary, first run"] = [time.perf_counter() - started]
        for name, function in [
            ("summary (API)", lambda: queries.summary(year)),
            ("by month", lambda: queries.by_month(year)),
            ("by category", lambda: queries.by_category(year)),
            ("by ward", lambda: queries.by_ward(year)),
            ("by partner", lambda: queries.by_partner(year)),
            ("dashboard, all tables", lambda: queries.dashboard(year)),
            ("organisation report", lambda: queries.organisation_report(7, year)),
            ("partner report", lambda: queries.partner_report(7, year)),
        ]:
            function()  # warm the cache once: the figures are for a warm database
            results[name] = timed(function, repeat)
        db.session.remove()
        db.engine.dispose()
    return results


def signed_in_council(app):
    """A test client signed in, through the sign-in form, as council staff."""
    from werkzeug.security import generate_password_hash

    password = "benchmark-council-password"
    with app.app_context():
        db.session.execute(
            text(
                "INSERT INTO role_memberships (user_id, role, granted_at) "
                "SELECT :user, 'council', now() WHERE NOT EXISTS (SELECT 1 FROM role_memberships"
                " WHERE user_id = :user AND role = 'council')"
            ),
            {"user": COUNCIL_ID},
        )
        db.session.execute(
            text("UPDATE users SET password_hash = :hash WHERE id = :user"),
            {"user": COUNCIL_ID, "hash": generate_password_hash(password)},
        )
        db.session.commit()
        db.session.remove()
    client = app.test_client()
    html = client.get("/sign-in").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)
    response = client.post(
        "/sign-in",
        data={
            "email": f"person{COUNCIL_ID}@example.org",
            "password": password,
            "csrf_token": token,
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return client


def run_pages(app, repeat: int) -> dict[str, list[float]]:
    """Whole requests: the dashboard, its CSVs and one organisation's and partner's page."""
    from reports.tables import TABLES

    year = "from=2026-01-01&to=2026-12-31"
    client = signed_in_council(app)
    pages = [("dashboard page", f"/council/reports?{year}")]
    pages += [(f"{name}.csv", f"/council/reports/{name}.csv?{year}") for name in TABLES]
    pages += [
        ("organisation page", f"/reports/organisations/7?{year}"),
        ("organisation CSV", f"/reports/organisations/7/months.csv?{year}"),
        ("partner page", f"/reports/partners/7?{year}"),
        ("partner CSV", f"/reports/partners/7/months.csv?{year}"),
    ]
    results = {}
    for name, url in pages:
        times = []
        for number in range(repeat + 1):  # the first warms the cache and is not counted
            started = time.perf_counter()
            response = client.get(url)
            elapsed = time.perf_counter() - started
            assert response.status_code == 200, (url, response.status_code)
            if number:
                times.append(elapsed)
        results[name] = times
    with app.app_context():
        db.engine.dispose()
    return results


def show(results: dict[str, list[float]]) -> None:
    for name, times in results.items():
        print(
            f"  {name:<22} median {statistics.median(times) * 1000:7.0f} ms"
            f"   min {min(times) * 1000:7.0f} ms   max {max(times) * 1000:7.0f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reuse", action="store_true", help="time the data built before")
    parser.add_argument("--without-report-indexes", action="store_true")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pages-only", action="store_true", help="time the pages, not queries")
    args = parser.parse_args()
    url = database_url(create=not args.reuse)
    app = make_app(url)
    if not args.reuse:
        print("Building the scheme (set-based SQL)...")
        started = time.perf_counter()
        build(app)
        print(f"Built in {time.perf_counter() - started:.0f} s")
    ensure_settlements(app)
    print("Rows:", counts(app))
    report_indexes(app, present=not args.without_report_indexes)
    label = "without" if args.without_report_indexes else "with"
    if not args.pages_only:
        print(f"Timing the reports for 2026, {label} the report indexes ({args.repeat} runs):")
        show(run_reports(app, args.repeat))
    print(f"Timing the pages for 2026 (whole requests, {args.repeat} runs after one to warm):")
    show(run_pages(app, args.repeat))
    print(f"Machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print("Load average (1, 5, 15 min): {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
