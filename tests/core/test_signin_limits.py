"""Repeated failed sign-ins are throttled per account and per address, with a clear message."""

import pytest

from tests.conftest import csrf_token_from, need, redis_available


def fail_sign_in(client, email: str, ip: str = "127.0.0.1"):
    token = csrf_token_from(client.get("/sign-in").get_data(as_text=True))
    return client.post(
        "/sign-in",
        data={"email": email, "password": "wrong password", "csrf_token": token},
        environ_base={"REMOTE_ADDR": ip},
    )


def test_page_says_too_many_attempts_after_five_failures(client, create_user):
    user = create_user()
    statuses = [fail_sign_in(client, user.email).status_code for _ in range(6)]
    assert statuses == [401] * 5 + [429]
    response = fail_sign_in(client, user.email)
    assert response.status_code == 429
    assert "Too many attempts" in response.get_data(as_text=True)


def test_the_right_password_is_refused_while_the_account_is_throttled(client, create_user):
    from tests.conftest import post_form

    user = create_user()
    for _ in range(5):
        fail_sign_in(client, user.email)
    response = post_form(client, "/sign-in", {"email": user.email, "password": user.password})
    assert response.status_code == 429


def test_api_gives_429_rate_limited_after_repeated_failures(api, create_user):
    user = create_user()
    body = {"email": user.email, "password": "wrong password"}
    statuses = [api.post("/api/v1/auth/token", json=body).status_code for _ in range(6)]
    assert statuses == [401] * 5 + [429]
    error = api.post("/api/v1/auth/token", json=body).get_json()["error"]
    assert error["code"] == "rate_limited" and "Wait" in error["message"]


def test_other_accounts_are_not_throttled_by_one_account(client, create_user):
    target, other = create_user(), create_user()
    for _ in range(5):
        fail_sign_in(client, target.email)
    assert fail_sign_in(client, other.email).status_code == 401


def test_one_address_trying_many_accounts_is_throttled(app, client, create_user):
    app.config["SIGNIN_LIMIT_PER_IP"] = "8 per 15 minutes"
    try:
        statuses = [
            fail_sign_in(client, f"guess{i}@example.org", ip="10.9.9.9").status_code
            for i in range(9)
        ]
        # Another address is not affected.
        other = fail_sign_in(client, "someone@example.org", ip="10.9.9.10").status_code
    finally:
        app.config["SIGNIN_LIMIT_PER_IP"] = "30 per 15 minutes"
    assert statuses[:8] == [401] * 8 and statuses[8] == 429
    assert other == 401


def test_successful_sign_ins_do_not_count(client, create_user):
    from tests.conftest import sign_in

    user = create_user()
    for _ in range(7):
        sign_in(client, user)
        client.get("/account")


@pytest.mark.redis
def test_limits_are_kept_in_redis_when_configured(make_app, create_user):
    import uuid

    need("Redis", redis_available(), "no Redis at REDIS_URL")
    from tests.conftest import REDIS_URL

    prefix = f"test-{uuid.uuid4().hex}"
    app = make_app(RATELIMIT_STORAGE_URI=f"{REDIS_URL}/15", RATELIMIT_KEY_PREFIX=prefix)
    user = create_user()
    client = app.test_client()
    statuses = [fail_sign_in(client, user.email).status_code for _ in range(6)]
    assert statuses[-1] == 429
    # A second app (another gunicorn worker) shares the count through Redis.
    second = make_app(RATELIMIT_STORAGE_URI=f"{REDIS_URL}/15", RATELIMIT_KEY_PREFIX=prefix)
    assert fail_sign_in(second.test_client(), user.email).status_code == 429
