"""Every page passes axe-core's WCAG 2.2 AA rules, signed out and signed in with every role.

The pages come from the app's URL map, so a page added later is checked without anyone
editing this file. The ids in URLs are filled by argument name with real rows made through
the operations (tests/browser/world.py); a test fails when an argument name is new there.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from core.models import Role
from tests.browser.support import axe_violations, describe_violations, sign_in
from tests.browser.world import FILLERS, World

pytestmark = pytest.mark.browser

#: Paths that are not pages for people: machines, the API and static files.
NOT_PAGES = ("/healthz", "/api/", "/static/")
#: Downloads (``/redemptions.csv``) are files, not pages.
DOWNLOAD = re.compile(r"\.[a-z0-9]+$")

#: Widths the pages are checked at: WCAG's reflow width (a small phone) and a desktop.
VIEWPORTS = {"mobile": {"width": 320, "height": 640}, "desktop": {"width": 1280, "height": 800}}

#: Tags shown as text: HTML escaped by mistake (a Jinja string joined with ``~``, say).
ESCAPED_MARKUP = re.compile(r"</?(a|p|span|div|strong|b|ul|li|h[1-6])\b[^>]*>")


#: The innermost elements past the screen's right edge, as tag.class selectors. Data tables
#: are left out: WCAG 1.4.10 lets content laid out in two dimensions scroll sideways.
TOO_WIDE_ELEMENTS = """width => {
  const name = e => e.tagName.toLowerCase() + [...e.classList].map(c => '.' + c).join('');
  const found = new Set();
  for (const e of document.body.querySelectorAll('*')) {
    if (e.closest('table')) continue;
    if (e.getBoundingClientRect().right > width + 0.5) found.add(name(e));
    // Text a box clips (visually hidden text, for one) cannot push the page wider.
    if (getComputedStyle(e).overflowX !== 'visible') continue;
    for (const node of e.childNodes) {
      if (node.nodeType !== Node.TEXT_NODE || !node.textContent.trim()) continue;
      const range = document.createRange();
      range.selectNodeContents(node);
      if (range.getBoundingClientRect().right > width + 0.5) found.add(name(e));
    }
  }
  return [...found].slice(0, 5);
}"""


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
            if "GET" in rule.methods
            and not rule.rule.startswith(NOT_PAGES)
            and not DOWNLOAD.search(rule.rule)
        ),
        key=lambda rule: rule.rule,
    )


def page_paths(app, world: World) -> list[str]:
    """The path of every page, its URL's ids those of rows in ``world``.

    A page with a URL argument nobody has said how to fill is left out here and reported by
    ``test_every_page_with_url_parameters_has_a_way_to_fill_them``.
    """
    paths = []
    for rule in page_rules(app):
        if not rule.arguments <= FILLERS.keys():
            continue
        values = {name: FILLERS[name](world) for name in sorted(rule.arguments)}
        with app.test_request_context():
            paths.append(app.url_for(rule.endpoint, **values))
    return paths


def is_html(response) -> bool:
    """Whether the response is a page (a JSON or image endpoint is not)."""
    return "text/html" in (response.headers.get("content-type") or "")


def layout_problems(page: Page, where: str) -> list[str]:
    """What looks broken on the page as shown now, beyond axe's rules."""
    problems = []
    width = page.viewport_size["width"]
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    too_wide = page.evaluate(TOO_WIDE_ELEMENTS, width) if scroll_width > width else []
    if too_wide:
        problems.append(
            f"{where}: the page is {scroll_width}px wide on a {width}px screen "
            f"(content must reflow, WCAG 1.4.10); sticking out: {', '.join(too_wide)}"
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
    unfilled = [rule.rule for rule in page_rules(app) if not rule.arguments <= FILLERS.keys()]
    assert not unfilled, (
        "these pages cannot be checked with axe until tests/browser/world.py FILLERS says "
        f"how to fill their URL arguments: {unfilled}"
    )


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_every_public_page_passes_axe_signed_out(app, page, create_user, viewport):
    page.set_viewport_size(VIEWPORTS[viewport])
    everyone = make_everyone(create_user)
    checked, failures = [], []
    for path in page_paths(app, World(app, everyone, create_user)):
        if page.request.get(path, max_redirects=0).status in (301, 302, 303, 307, 308):
            continue  # a page for people signed in: the sign-in page is checked on its own
        response = page.goto(path)
        assert response is not None
        if not is_html(response):
            continue
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
    world = World(app, everyone, create_user)
    paths = page_paths(app, world)  # rows made before signing in, in case they change roles
    sign_in(page, everyone.email, everyone.password)
    failures = []
    for path in paths:
        response = page.goto(path)
        assert response is not None
        if not is_html(response):
            continue
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


def test_the_layout_check_reports_what_it_finds(page):
    # A guard for layout_problems: a word wider than a phone, and tags shown as text; a data
    # table wider than the phone is allowed (WCAG 1.4.10), and so is the box holding it.
    page.set_viewport_size(VIEWPORTS["mobile"])
    page.set_content(
        f'<div><p class="too-wide">{"x" * 200}</p></div>'
        "<p>&lt;a href=&quot;/&quot;&gt;Home&lt;/a&gt;</p>"
        f'<div class="holds-table"><table><tr><td>{"y" * 200}</td></tr></table></div>'
    )
    problems = layout_problems(page, "broken page")
    assert len(problems) == 2, problems
    assert "on a 320px screen" in problems[0]
    assert problems[0].endswith("sticking out: p.too-wide"), problems[0]
    assert "HTML shown as text: '<a href=\"/\">'" in problems[1]
