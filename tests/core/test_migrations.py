"""The migrations are the schema: a fresh database upgraded by them matches the models."""

import os
import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from core.extensions import db
from tests.conftest import (
    ON_POSTGRES,
    drop_postgres_database,
    recreate_postgres_database,
    worker_id,
)

ROOT = Path(__file__).resolve().parents[2]


def upgrade_with_the_cli(database_url: str) -> subprocess.CompletedProcess:
    """``flask --app wsgi db upgrade`` as an operator would run it."""
    env = {**os.environ, "DATABASE_URL": database_url, "CELERY_BROKER_URL": "memory://"}
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def schema_differences(make_app, database_url: str) -> list:
    app = make_app(DATABASE_URL=database_url)
    with app.app_context():
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, db.metadata)
        db.engine.dispose()
    return differences


def database_functions(make_app, database_url: str) -> set:
    app = make_app(DATABASE_URL=database_url)
    with app.app_context():
        with db.engine.connect() as conn:
            names = conn.execute(
                text("SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace")
            ).scalars()
            found = set(names)
        db.engine.dispose()
    return found


def test_migrations_build_the_models_schema_on_a_fresh_database(make_app, tmp_path):
    if ON_POSTGRES:
        name = f"civic_migrations_{worker_id()}_{os.getpid()}"
        url = recreate_postgres_database(name)
    else:
        url = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    try:
        result = upgrade_with_the_cli(url)
        assert result.returncode == 0, result.stderr[-3000:]
        differences = schema_differences(make_app, url)
        assert differences == [], (
            "models and migrations disagree; write a migration "
            f"(flask --app wsgi db migrate): {differences}"
        )
        if ON_POSTGRES:
            assert database_functions(make_app, url) >= {
                "civic_redeem_at_once",
                "ledger_check_transaction_balanced",
                "ledger_refuse_change",
            }
    finally:
        if ON_POSTGRES:
            drop_postgres_database(name)


def test_migrations_form_one_line_of_history():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(ROOT / "migrations"))
    heads = ScriptDirectory.from_config(config).get_heads()
    assert len(heads) == 1, f"several migration heads: {heads}"
