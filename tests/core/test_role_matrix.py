"""Role x endpoint matrix: every page and API operation refuses the roles it does not name.

Pages and operations declare their roles (``roles_required`` / ``api_auth``); the matrix is
read from the URL map, so what later issues add is covered without editing this file.
"""

import re

import pytest

from core.models import Role
from core.security import view_function_of
from tests.conftest import sign_in

ROLES = list(Role)


def fill(rule: str) -> str:
    return re.sub(r"<(?:[^:>]+:)?[^>]+>", "1", rule)


def page_rules(app):
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(("/api/", "/static")) or "GET" not in rule.methods:
            continue
        yield rule


def api_operations(app):
    """Every guarded API operation; revoking one's own token comes last."""
    operations = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            view = view_function_of(app, rule.endpoint, method)
            operations.append((rule, method, getattr(view, "required_roles", None)))
    return sorted(operations, key=lambda op: op[0].rule == "/api/v1/auth/token")


def test_every_page_and_operation_says_who_may_use_it(app):
    """A page with no declaration must be one of the deliberately public ones."""
    public_pages = set()
    for rule in page_rules(app):
        view = app.view_functions[rule.endpoint]
        if getattr(view, "required_roles", None) is None:
            public_pages.add(rule.endpoint)
    assert public_pages <= {
        "core.home",
        "core.register",
        "core.sign_in",
        "core.accessibility",
        "core.privacy",
        "health.healthz",
    } | getattr(app, "public_endpoints", set()), public_pages


@pytest.mark.parametrize("role", ROLES, ids=[r.value for r in ROLES])
def test_pages_refuse_roles_they_do_not_name(app, create_user, role):
    client = app.test_client()
    sign_in(client, create_user(role))
    wrong = []
    for rule in page_rules(app):
        needed = getattr(app.view_functions[rule.endpoint], "required_roles", None)
        if needed is None:
            continue
        response = client.get(fill(rule.rule))
        allowed = not needed or role in needed
        if not allowed and response.status_code != 403:
            wrong.append((rule.rule, role.value, response.status_code, "expected 403"))
        has_params = "<" in rule.rule
        if allowed and not has_params and response.status_code in (401, 403):
            wrong.append((rule.rule, role.value, response.status_code, "expected access"))
        if response.status_code >= 500:
            wrong.append((rule.rule, role.value, response.status_code, "server error"))
    assert not wrong, wrong


def test_signed_out_visitors_are_sent_to_sign_in(app, client):
    for rule in page_rules(app):
        needed = getattr(app.view_functions[rule.endpoint], "required_roles", None)
        if needed is None:
            continue
        response = client.get(fill(rule.rule))
        assert response.status_code == 302 and "/sign-in" in response.location, rule.rule


@pytest.mark.parametrize("role", ROLES, ids=[r.value for r in ROLES])
def test_api_refuses_roles_it_does_not_name(app, api, create_user, role):
    token = api.token(create_user(role))
    wrong = []
    for rule, method, needed in api_operations(app):
        if needed is None:
            continue
        response = api.call(method, fill(rule.rule), token, json={})
        allowed = not needed or role in needed
        code = response.status_code
        if not allowed and code != 403:
            wrong.append((method, rule.rule, role.value, code, "expected 403"))
        if allowed and code in (401, 403) and "<" not in rule.rule:
            wrong.append((method, rule.rule, role.value, code, "expected access"))
        if code >= 500:
            wrong.append((method, rule.rule, role.value, code, "server error"))
    assert not wrong, wrong


def test_api_without_a_token_is_401_everywhere_it_is_guarded(app, api):
    for rule, method, needed in api_operations(app):
        if needed is None:
            continue
        response = api.call(method, fill(rule.rule), json={})
        assert response.status_code == 401, (method, rule.rule, response.status_code)
        assert response.get_json()["error"]["code"] == "unauthenticated"
