"""Every page passes axe-core's WCAG 2.2 AA rules, signed out and signed in with every role.

The pages come from the app's URL map, so a page added later is checked without anyone
editing this file; a page whose URL has parameters needs a way to fill them in
``PARAMETER_VALUES`` below, and a test fails until it has one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from core.models import Role
from tests.browser.support import axe_violations, describe_violations, sign_in

pytestmark = pytest.mark.browser

#: Paths that are not pages for people: machines, the API and static files.
NOT_PAGES = ("/healthz", "/api/", "/static/")

#: For each rule with URL parameters, how to fill them: given the app and the signed-in user
#: holding every role (a ``MadeUser``), the values of the rule's arguments. A filler may make
#: rows (inside ``app.app_context()``, committed); they are emptied after the test.
PARAMETER_VALUES: dict[str, Callable] = {
    "/admin/roles/<int:user_id>": lambda app, everyone: {"user_id": everyone.id},
}

#: Widths the pages are checked at: WCAG's reflow width (a small phone) and a desktop.
VIEWPORTS = {"mobile": {"width": 320, "height": 640}, "desktop": {"width": 1280, "height": 800}}

#: Tags shown as text: HTML escaped by mistake (a Jinja string joined with ``~``, say).
ESCAPED_MARKUP = re.compile(r"</?(a|p|span|div|strong|b|ul|li|h[1-6])\b[^>]*>")


def make_everyone(create_user):
    """Someone holding every role, with a long email address and name, as real people have."""
    return create_user(
        *Role,
        email="everyone.with.every.role@community-group.example.org",
        name="Oluwaseun Fitzgerald-Abernethy",
    )


def page_rules(app) -> list:
    """Rules of the URL map that show a page on GET."""
    return sorted(
        (
            rule
            for rule in app.url_map.iter_rules()
            if "GET" in rule.methods and not rule.rule.startswith(NOT_PAGES)
        ),
        key=lambda rule: rule.rule,
    )


def page_paths(app, everyone) -> list[str]:
    """The path of every page, parameters filled in for the ``everyone`` user.

    A page whose parameters nobody has said how to fill is left out here and reported by
    ``test_every_page_with_url_parameters_has_a_way_to_fill_them``.
    """
    paths = []
    for rule in page_rules(app):
        if rule.arguments and rule.rule not in PARAMETER_VALUES:
            continue
        values = PARAMETER_VALUES[rule.rule](app, everyone) if rule.arguments else {}
        with app.test_request_context():
            paths.append(app.url_for(rule.endpoint, **values))
    return paths


def layout_problems(page: Page, where: str) -> list[str]:
    """What looks broken on the page as shown now, beyond axe's rules."""
    problems = []
    width = page.viewport_size["width"]
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    if scroll_width > width:
        problems.append(
            f"{where}: the page is {scroll_width}px wide on a {width}px screen "
            "(content must reflow, WCAG 1.4.10)"
        )
    shown = ESCAPED_MARKUP.search(page.locator("body").inner_text())
    if shown:
        problems.append(f"{where}: HTML shown as text: {shown.group(0)!r}")
    return problems


def check_with_axe(page: Page, path: str, expected_status: int = 200) -> str | None:
    """Open ``path`` and run axe; a description of what is wrong, or None."""
    response = page.goto(path)
    assert response is not None
    if response.status != expected_status:
        return f"{path}: HTTP {response.status}, expected {expected_status}"
    violations = axe_violations(page)
    return describe_violations(path, violations) if violations else None


def assert_no_failures(failures: list[str | None]) -> None:
    failures = [failure for failure in failures if failure]
    assert not failures, "\n\n".join(failures)


def test_every_page_with_url_parameters_has_a_way_to_fill_them(app):
    unfilled = [rule.rule for rule in page_rules(app) if rule.arguments]
    unfilled = [rule for rule in unfilled if rule not in PARAMETER_VALUES]
    assert not unfilled, (
        "these pages cannot be checked with axe until tests/browser/test_accessibility.py "
        f"PARAMETER_VALUES says how to fill their URL: {unfilled}"
    )


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_every_public_page_passes_axe_signed_out(app, page, create_user, viewport):
    page.set_viewport_size(VIEWPORTS[viewport])
    everyone = make_everyone(create_user)
    checked, failures = [], []
    for path in page_paths(app, everyone):
        response = page.goto(path)
        assert response is not None
        if urlsplit(page.url).path != path:
            continue  # a page for people signed in: the sign-in page is checked on its own
        checked.append(path)
        if response.status != 200:
            failures.append(f"{path}: HTTP {response.status}")
            continue
        where = f"{path} (signed out, {viewport})"
        violations = axe_violations(page)
        if violations:
            failures.append(describe_violations(where, violations))
        failures.extend(layout_problems(page, where))
    assert {"/", "/register", "/sign-in", "/accessibility", "/privacy"} <= set(checked)
    assert_no_failures(failures)


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_every_page_passes_axe_for_someone_holding_every_role(app, page, create_user, viewport):
    page.set_viewport_size(VIEWPORTS[viewport])
    everyone = make_everyone(create_user)
    create_user(Role.RESIDENT, email="a.resident.with.a.long.address@community-group.example.org")
    sign_in(page, everyone.email, everyone.password)
    failures = []
    for path in page_paths(app, everyone):
        response = page.goto(path)
        assert response is not None
        if response.status != 200:
            failures.append(f"{path}: HTTP {response.status} for someone with every role")
            continue
        where = f"{path} (every role, {viewport})"
        violations = axe_violations(page)
        if violations:
            failures.append(describe_violations(where, violations))
        failures.extend(layout_problems(page, where))
    assert_no_failures(failures)


def test_forbidden_and_not_found_pages_pass_axe(page, create_user):
    resident = create_user(Role.RESIDENT)
    assert_no_failures([check_with_axe(page, "/no-such-page", expected_status=404)])
    sign_in(page, resident.email, resident.password)
    assert_no_failures(
        [
            check_with_axe(page, "/admin/roles", expected_status=403),
            check_with_axe(page, "/no-such-page", expected_status=404),
        ]
    )


def test_register_form_with_errors_passes_axe(page):
    page.goto("/register")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("alert")).to_contain_text("There is a problem")
    expect(page).to_have_title("Error: Create an account – Civic Credits")
    violations = axe_violations(page)
    assert not violations, describe_violations("/register with errors", violations)


def test_sign_in_form_with_errors_passes_axe(page):
    page.goto("/sign-in")
    page.get_by_label("Email address").fill("nobody@example.org")
    page.get_by_label("Password", exact=True).fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_be_visible()
    violations = axe_violations(page)
    assert not violations, describe_violations("/sign-in with errors", violations)


def test_too_many_sign_in_attempts_page_passes_axe(page, create_user):
    resident = create_user(Role.RESIDENT)
    for _ in range(10):
        page.goto("/sign-in")
        page.get_by_label("Email address").fill(resident.email)
        page.get_by_label("Password", exact=True).fill("not-the-password")
        with page.expect_navigation() as navigation:
            page.get_by_role("button", name="Sign in").click()
        if navigation.value.status == 429:
            break
    else:
        pytest.fail("ten failed sign-ins in a row were never refused with 429")
    expect(page.get_by_role("heading", level=1)).to_have_text("Too many attempts")
    violations = axe_violations(page)
    assert not violations, describe_violations("429 too many sign-in attempts", violations)


def test_the_axe_check_reports_what_it_finds(page):
    # A guard for the checks above: an image without a text alternative on a page without
    # a language must be reported, so "no violations" really means none.
    page.set_content('<title>Broken</title><main><img src="/static/icon.svg"></main>')
    found = {violation["id"] for violation in axe_violations(page)}
    assert {"image-alt", "html-has-lang"} <= found
    report = describe_violations("broken page", axe_violations(page))
    assert "image-alt (critical)" in report and "at img" in report
