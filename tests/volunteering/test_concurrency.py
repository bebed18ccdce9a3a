"""Fifty residents checking in to one session at the same instant, on PostgreSQL."""

import threading

import pytest

from core.extensions import db
from core.models import Role
from volunteering.models import Attendance

pytestmark = pytest.mark.postgres

RESIDENTS = 50


def test_fifty_residents_check_in_at_once_each_recorded_once(
    app, api, scene, create_user, tokens_of, postgres_required
):
    code = api.get(
        f"/api/v1/sessions/{scene.session_id}/checkin-code", tokens_of(scene.organiser)
    ).get_json()
    residents = [create_user(Role.RESIDENT) for _ in range(RESIDENTS)]
    bearer = [api.token(resident) for resident in residents]
    # Every resident's phone sends its scan twice (a retry on a flaky network): 100 requests.
    requests = [(token, f"nonce-{n}") for n, token in enumerate(bearer)] * 2
    barrier = threading.Barrier(len(requests))
    answers: list = [None] * len(requests)

    def scan(index: int, token: str, nonce: str) -> None:
        client = app.test_client()
        barrier.wait()
        response = client.post(
            "/api/v1/checkins",
            json={"token": code["token"], "nonce": nonce},
            headers={"Authorization": f"Bearer {token}"},
        )
        answers[index] = (response.status_code, response.get_json())

    threads = [
        threading.Thread(target=scan, args=(index, token, nonce))
        for index, (token, nonce) in enumerate(requests)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(answer is not None for answer in answers)
    assert {status for status, _ in answers} == {201}, answers
    first, retry = answers[:RESIDENTS], answers[RESIDENTS:]
    assert first == retry  # the same nonce got the same answer
    with app.app_context():
        rows = (
            db.session.execute(
                db.select(Attendance.resident_id).where(Attendance.session_id == scene.session_id)
            )
            .scalars()
            .all()
        )
        db.session.remove()
    assert sorted(rows) == sorted(r.id for r in residents)
