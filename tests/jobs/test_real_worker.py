"""The jobs on a real Celery worker against Redis (a private queue), and a worker killed
with SIGKILL in the middle of a settlement run: after a restart the task is delivered
again (acks_late) and Stripe holds exactly one transfer per settlement."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from partners.settlement import Settlement
from rewards.models import CreditLot
from tests.jobs.stripe_support import SECRET_KEY, connect_partner, settle_last_week
from tests.stripe_fake import FakeStripe

ROOT = Path(__file__).resolve().parents[2]

#: The worker module: the project's, with a short visibility timeout and a sweep every
#: second, so a message a killed worker took is given to the next worker within seconds
#: (production keeps Redis's hour).
WORKER_MODULE = """
from celery_worker import celery_app, flask_app  # noqa: F401

celery_app.conf.broker_transport_options = {
    "visibility_timeout": 4,
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}
"""


class Worker:
    """``celery worker`` in a subprocess on one private queue."""

    def __init__(self, tmp_path: Path, env: dict, queue: str, name: str):
        self.log_path = tmp_path / f"{name}.log"
        (tmp_path / "jobs_test_worker.py").write_text(WORKER_MODULE)
        self.log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "jobs_test_worker", "worker",
                "--pool=solo", "--loglevel=INFO", "-Q", queue, "-n", f"{name}@%h",
                "--without-heartbeat", "--without-gossip", "--without-mingle",
            ],
            cwd=ROOT,
            env={**env, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def output(self) -> str:
        return self.log_path.read_text()[-4000:]

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def wait_for(condition, worker: Worker, timeout: float = 90, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        assert worker.alive(), worker.output()
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}\n{worker.output()}")


def send(redis_url: str, task: str, queue: str) -> None:
    from celery import Celery

    with Celery(broker=redis_url) as sender:
        sender.send_task(task, queue=queue)


@pytest.fixture
def worker_env(database_url, redis_url):
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": redis_url,
        "SECRET_KEY": "jobs-worker-test-secret-long-enough-0123456789",
    }


@pytest.mark.redis
def test_a_real_worker_expires_credits_sent_through_redis(world, worker_env, redis_url, tmp_path):
    robin = world.resident()
    lot = world.earn(robin, 4, expires_at=world_now() - timedelta(days=1))
    queue = f"jobs-{uuid.uuid4().hex[:8]}"
    worker = Worker(tmp_path, worker_env, queue, "expiry")
    try:
        send(redis_url, "rewards.tasks.expire_credits", queue)
        wait_for(
            lambda: world.scalar(select(CreditLot.remaining).where(CreditLot.id == lot)) == 0,
            worker,
            what="the lot to expire",
        )
    finally:
        worker.stop()


def world_now():
    from core.timeutil import utcnow

    return utcnow()


@pytest.mark.redis
def test_a_worker_killed_mid_settlement_run_pays_each_settlement_exactly_once(
    app, world, worker_env, redis_url, tmp_path
):
    with FakeStripe() as fake:
        saved = {k: app.config.get(k) for k in ("STRIPE_SECRET_KEY", "STRIPE_API_BASE")}
        app.config.update(STRIPE_SECRET_KEY=SECRET_KEY, STRIPE_API_BASE=fake.url)
        try:
            ids = []
            for number in range(5):
                shop = world.shop(f"Shop {number}", rate=100, cost=2)
                connect_partner(world, fake, shop)
                ids.append(settle_last_week(world, shop))
        finally:
            app.config.update(saved)
        env = {**worker_env, "STRIPE_SECRET_KEY": SECRET_KEY, "STRIPE_API_BASE": fake.url}
        queue = f"jobs-{uuid.uuid4().hex[:8]}"
        # Stripe makes each transfer, then takes a while to answer: the worker is killed
        # while it waits for the third answer, its database transaction still open.
        fake.hold_transfers(1.0)
        first = Worker(tmp_path, env, queue, "first")
        try:
            send(redis_url, "partners.tasks.pay_settlements", queue)
            wait_for(lambda: fake.transfer_posts >= 3, first, what="the third transfer")
            first.kill()
        finally:
            first.stop()
        made_before_kill = len(fake.transfers)
        assert 3 <= made_before_kill < 5  # killed in the middle of the run
        fake.hold_transfers(0)

        second = Worker(tmp_path, env, queue, "second")
        try:
            # Nobody sends the task again: Redis gives the unacknowledged message to the
            # new worker once its visibility timeout has passed (acks_late).
            def all_recorded():
                return world.count(Settlement, Settlement.stripe_transfer_id.is_not(None)) == 5

            wait_for(all_recorded, second, what="every settlement to be sent")
        finally:
            second.stop()

        for settlement_id in ids:
            assert len(fake.transfers_for(f"settlement-{settlement_id}")) == 1, settlement_id
        assert len(fake.transfers) == 5
        assert "pay_settlements" in second.log_path.read_text()
