"""Credit expiry: each due lot expires exactly once, in batches, with two runs at once,
and after a run killed halfway; the ledger still verifies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.extensions import db
from core.timeutil import utcnow
from rewards.models import Account, CreditLot, Transaction, TransactionKind

ROOT = Path(__file__).resolve().parents[2]


def expire_transactions(world) -> dict[str, int]:
    """Expire transactions by idempotency key, with how many there are of each."""
    with world.app.app_context():
        rows = db.session.execute(
            select(Transaction.idempotency_key, func.count())
            .where(Transaction.kind == TransactionKind.EXPIRE.value)
            .group_by(Transaction.idempotency_key)
        ).all()
        db.session.remove()
    return dict(rows)


def balance(world, user) -> int:
    return world.scalar(select(Account.balance).where(Account.key == f"user:{user.id}")) or 0


def verify(world):
    from rewards.verify import verify_ledger

    report = world.run(verify_ledger)
    assert not report.breaks, report.breaks


def make_due_lots(world, past, residents=3, lots_each=4, amount=5):
    """``residents`` residents, each with ``lots_each`` due lots; return the lot ids."""
    ids = []
    for _ in range(residents):
        person = world.resident()
        for _ in range(lots_each):
            ids.append(world.earn(person, amount, expires_at=past))
    return ids


def test_due_lots_expire_and_live_ones_stay(world, past):
    from rewards.expiry import expire_due_lots

    robin = world.resident("Robin")
    due = world.earn(robin, 5, expires_at=past)
    world.earn(robin, 3, expires_at=utcnow() + timedelta(days=30))

    report = world.run(expire_due_lots)

    assert (report.lots_expired, report.credits_expired) == (1, 5)
    assert balance(world, robin) == 3
    assert world.scalar(select(CreditLot.remaining).where(CreditLot.id == due)) == 0
    assert expire_transactions(world) == {f"expire:lot:{due}": 1}
    verify(world)


def test_running_twice_changes_nothing_more(world, past):
    from rewards.expiry import expire_due_lots

    lots = make_due_lots(world, past, residents=2, lots_each=2)
    first = world.run(expire_due_lots)
    second = world.run(expire_due_lots)

    assert first.lots_expired == len(lots)
    assert second.lots_expired == 0
    assert sorted(expire_transactions(world).values()) == [1] * len(lots)


def test_grace_period_delays_expiry(app, world):
    from rewards.expiry import expire_due_lots

    robin = world.resident()
    world.earn(robin, 4, expires_at=utcnow() - timedelta(days=1))
    app.config["CREDIT_EXPIRY_GRACE_DAYS"] = 2
    try:
        assert world.run(expire_due_lots).lots_expired == 0
        later = utcnow() + timedelta(days=2)
        assert world.run(expire_due_lots, later).lots_expired == 1
    finally:
        app.config["CREDIT_EXPIRY_GRACE_DAYS"] = 0


def test_work_is_done_in_bounded_batches_each_committed(world, past):
    from rewards.expiry import expire_due_lots

    lots = make_due_lots(world, past, residents=1, lots_each=5)
    seen = []

    def after_batch(report):
        # Each batch is committed before the next is read: another session sees it.
        seen.append(world.count(CreditLot, CreditLot.remaining == 0))

    report = world.run(expire_due_lots, batch_size=2, on_batch=after_batch)

    assert report.batches == 3
    assert seen == [2, 4, 5]
    assert report.lots_expired == len(lots)


def test_a_run_that_crashes_halfway_is_finished_by_the_next(world, past, monkeypatch):
    from rewards import expiry

    lots = make_due_lots(world, past, residents=2, lots_each=5)
    real = expiry.ops.expire_lots
    calls = {"n": 0}

    def crash_in_the_third_batch(lot_ids, now):
        calls["n"] += 1
        done = real(lot_ids, now)  # written, not committed
        if calls["n"] == 3:
            raise RuntimeError("worker lost")
        return done

    monkeypatch.setattr(expiry.ops, "expire_lots", crash_in_the_third_batch)
    with pytest.raises(RuntimeError):
        world.run(expiry.expire_due_lots, batch_size=3)
    # Two batches (6 lots) were committed; the third was rolled back whole.
    assert world.count(CreditLot, CreditLot.remaining == 0) == 6
    monkeypatch.setattr(expiry.ops, "expire_lots", real)

    report = world.run(expiry.expire_due_lots, batch_size=3)

    assert report.lots_expired == len(lots) - 6
    assert sorted(expire_transactions(world).values()) == [1] * len(lots)
    verify(world)


def test_two_runs_at_once_expire_each_lot_exactly_once(app, world, past):
    from rewards.expiry import expire_due_lots

    lots = make_due_lots(world, past, residents=6, lots_each=10, amount=2)
    reports, errors = [], []
    start = threading.Barrier(2)

    def run():
        try:
            with app.app_context():
                start.wait()
                reports.append(expire_due_lots(batch_size=7))
        except Exception as error:  # pragma: no cover - shown by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert not errors, errors
    assert sum(r.lots_expired for r in reports) == len(lots)
    assert sorted(expire_transactions(world).values()) == [1] * len(lots)
    expired = world.scalar(select(Account.balance).where(Account.key == "scheme:expired"))
    assert expired == 2 * len(lots)
    verify(world)


@pytest.mark.postgres
def test_two_runs_on_postgres_share_the_work_with_skip_locked(postgres_required, app, world, past):
    """With SKIP LOCKED neither run waits for the other's batch: both do part of it."""
    from rewards import expiry

    lots = make_due_lots(world, past, residents=4, lots_each=10, amount=1)
    reports = []
    real = expiry.ops.expire_lots

    def slow(*args):
        done = real(*args)
        time.sleep(0.1)
        return done

    expiry_module_patch = pytest.MonkeyPatch()
    expiry_module_patch.setattr(expiry.ops, "expire_lots", slow)
    try:

        def run():
            with app.app_context():
                reports.append(expiry.expire_due_lots(batch_size=5))

        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        expiry_module_patch.undo()
    assert sum(r.lots_expired for r in reports) == len(lots)
    assert all(r.lots_expired > 0 for r in reports), [r.lots_expired for r in reports]
    assert sorted(expire_transactions(world).values()) == [1] * len(lots)


KILLABLE_RUN = """
import sys, time
from core import create_app
from rewards import expiry
app = create_app()
real = expiry.ops.expire_lots
def slow(*args):
    done = real(*args)  # written, then a pause before the commit: killed in between
    time.sleep(0.3)
    return done
expiry.ops.expire_lots = slow
def progress(report):
    print(f"batch {report.batches}", flush=True)
with app.app_context():
    expiry.expire_due_lots(batch_size=2, on_batch=progress)
print("finished", flush=True)
"""


def test_a_run_killed_with_sigkill_mid_batch_is_finished_by_the_next(world, past, database_url):
    """A real process, killed (SIGKILL) between two commits; a second run finishes."""
    from rewards.expiry import expire_due_lots

    lots = make_due_lots(world, past, residents=2, lots_each=6, amount=1)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": "memory://",
        "SECRET_KEY": "expiry-kill-test-secret-long-enough-0123",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", KILLABLE_RUN],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        first = process.stdout.readline()
        assert first.startswith("batch"), first
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
    done_before = world.count(CreditLot, CreditLot.remaining == 0)
    assert 2 <= done_before < len(lots)

    report = world.run(expire_due_lots)

    assert report.lots_expired == len(lots) - done_before
    assert sorted(expire_transactions(world).values()) == [1] * len(lots)
    verify(world)


def test_the_cli_runs_one_pass(app, world, past):
    lots = make_due_lots(world, past, residents=1, lots_each=3)
    result = app.test_cli_runner().invoke(args=["credits", "expire"])
    assert result.exit_code == 0, result.output
    assert f"from {len(lots)} lots" in result.output
    again = app.test_cli_runner().invoke(args=["credits", "expire"])
    assert "from 0 lots" in again.output


def test_the_beat_task_is_scheduled_and_runs(app, world, past):
    from core.celery_app import BEAT_SCHEDULE

    assert BEAT_SCHEDULE["expire-credits"]["task"] == "rewards.tasks.expire_credits"
    make_due_lots(world, past, residents=1, lots_each=2)
    task = app.extensions["celery"].tasks["rewards.tasks.expire_credits"]
    assert task.apply().get() == 2


def test_the_batch_writes_what_expire_lot_writes(world, past):
    """The job's set-based batch and the ledger's own ``expire_lot`` leave the same rows."""
    from rewards import operations as ledger
    from rewards.models import Entry, LotMovement

    robin, sam = world.resident("Robin"), world.resident("Sam")
    by_ledger, by_batch = world.earn(robin, 4, expires_at=past), world.earn(sam, 4, expires_at=past)
    now = utcnow()
    with world.app.app_context():
        ledger.expire_lot(by_ledger, idempotency_key=ledger.expiry_key(by_ledger), now=now)
        assert ledger.expire_lots([by_batch], now) == {by_batch: 4}
        assert ledger.expire_lots([by_batch], now) == {}  # its key is taken: left alone
        db.session.commit()

        def written(lot_id):
            tx = db.session.execute(
                select(Transaction).where(Transaction.idempotency_key == ledger.expiry_key(lot_id))
            ).scalar_one()
            entries = db.session.execute(
                select(Entry.amount, Entry.memo).where(Entry.transaction_id == tx.id)
            ).all()
            moves = db.session.execute(
                select(LotMovement.amount).where(LotMovement.transaction_id == tx.id)
            ).scalars()
            return (
                tx.kind,
                tx.amount,
                tx.description.replace(str(lot_id), "N"),
                sorted((a, m.replace("Robin", "X").replace("Sam", "X")) for a, m in entries),
                list(moves),
            ), tx.request_hash

        (ledger_rows, ledger_hash), (batch_rows, batch_hash) = written(by_ledger), written(by_batch)
        assert ledger_rows == batch_rows
        # A later expire_lot with the key is a replay, not a conflict: same request hash.
        replay = ledger.expire_lot(by_batch, idempotency_key=ledger.expiry_key(by_batch), now=now)
        assert replay.request_hash == batch_hash != ledger_hash
        db.session.rollback()
        db.session.remove()
    verify(world)


def test_an_expiry_reversed_by_council_is_expired_again_by_the_next_run_once(world, past):
    from rewards import operations as ledger
    from rewards.expiry import expire_due_lots

    lot = world.earn(world.resident("Robin"), 5, expires_at=past)
    assert world.run(expire_due_lots).lots_expired == 1
    with world.app.app_context():
        first = db.session.execute(
            select(Transaction.id).where(Transaction.idempotency_key == ledger.expiry_key(lot))
        ).scalar_one()
        reversal = ledger.reverse(
            first, reason="expired in error", idempotency_key="undo-expiry", actor_id=None
        )
        reversal_id = reversal.id
        db.session.commit()
        db.session.remove()
    assert world.count(CreditLot, CreditLot.remaining == 5) == 1

    again = world.run(expire_due_lots)
    assert (again.lots_expired, again.credits_expired) == (1, 5)
    assert world.run(expire_due_lots).lots_expired == 0
    with world.app.app_context():
        keys = set(
            db.session.execute(
                select(Transaction.idempotency_key).where(Transaction.kind == "expire")
            ).scalars()
        )
        db.session.remove()
    assert keys == {ledger.expiry_key(lot), f"{ledger.expiry_key(lot)}:again:{reversal_id}"}
    verify(world)
