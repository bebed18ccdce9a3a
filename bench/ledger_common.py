"""Shared set-up of the ledger benchmarks: a throwaway database and an app bound to it.

Run the benchmarks by hand from the repository root (see bench/README.md). They create and
drop their own database (PostgreSQL: ``ledger_bench`` on the DATABASE_URL server; SQLite: a
file in /tmp), never touching the development or test databases.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from core import create_app
from core.config import normalise_database_url
from core.extensions import db

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


def bench_database(kind: str, name: str = "ledger_bench") -> str:
    """A fresh, empty database URL of ``kind`` (``postgresql`` or ``sqlite``)."""
    if kind == "sqlite":
        path = Path(f"/tmp/{name}.sqlite")  # noqa: S108 - a scratch file by design
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{path}"
    assert re.fullmatch(r"[a-z0-9_]+", name)
    server = os.environ.get("DATABASE_URL", DEFAULT_POSTGRES)
    if not server.startswith("postgres"):
        server = DEFAULT_POSTGRES
    url = make_url(normalise_database_url(server))
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def bench_app(database_url: str):
    """The application on ``database_url``, with the schema (and PostgreSQL triggers)."""
    app = create_app(
        {
            "CIVIC_CREDITS_ENV": "test",
            "SECRET_KEY": "benchmark-secret-key-long-enough-0123456789",
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": "memory://",
            "RATELIMIT_STORAGE_URI": "memory://",
            "TESTING": True,
        }
    )
    with app.app_context():
        db.create_all()
    return app


def machine() -> str:
    """One line about where the figures were measured."""
    cpus = os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{platform.processor() or platform.machine()}, {cpus} cores, load {load:.1f}"


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000
