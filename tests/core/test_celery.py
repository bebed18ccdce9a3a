"""Celery wiring: tasks run in the app context, one beat schedule, a real worker on Redis."""

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from core.celery_app import BEAT_SCHEDULE
from core.extensions import db
from core.models import LoginSession
from core.timeutil import utcnow

ROOT = Path(__file__).resolve().parents[2]


def add_stale_session(app, user_id: int) -> str:
    with app.app_context():
        login = LoginSession(
            id=uuid.uuid4().hex, user_id=user_id, expires_at=utcnow() - timedelta(days=60)
        )
        db.session.add(login)
        db.session.commit()
        db.session.remove()
        return login.id


def session_exists(app, session_id: str) -> bool:
    with app.app_context():
        found = db.session.get(LoginSession, session_id) is not None
        db.session.remove()
        return found


def test_every_scheduled_task_is_a_registered_task(app):
    celery = app.extensions["celery"]
    for name, entry in BEAT_SCHEDULE.items():
        assert entry["task"] in celery.tasks, name


def test_tasks_run_inside_the_app_context(app, create_user):
    from core.tasks import purge_expired_credentials

    stale = add_stale_session(app, create_user().id)
    purge_expired_credentials.delay()
    assert not session_exists(app, stale)


@pytest.mark.redis
def test_a_real_worker_on_redis_runs_a_task_sent_through_the_broker(
    app, create_user, database_url, redis_url, tmp_path
):
    """Start ``celery -A celery_worker worker`` against Redis and send it a task.

    The worker is another process using the test's database (SQLite file or PostgreSQL).
    """
    queue = f"test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": redis_url,
        "SECRET_KEY": "worker-test-secret-long-enough-0123456789",
    }
    log = open(tmp_path / "worker.log", "w")  # noqa: SIM115 - closed in finally
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "celery_worker",
            "worker",
            "--pool=solo",
            "--loglevel=INFO",
            "-Q",
            queue,
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        stale = add_stale_session(app, create_user().id)
        from celery import Celery

        with Celery(broker=redis_url) as sender:
            sender.send_task("core.tasks.purge_expired_credentials", queue=queue)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and session_exists(app, stale):
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.3)
        assert not session_exists(app, stale), (tmp_path / "worker.log").read_text()[-3000:]
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        log.close()
