"""What browser tests do again and again: sign in through the form, run axe-core."""

from __future__ import annotations

from axe_playwright_python.base import AXE_SCRIPT
from playwright.sync_api import Page, expect

#: axe-core rule tags for WCAG 2.2 level AA (every A and AA rule up to 2.2).
WCAG_22_AA_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
AXE_OPTIONS = {
    "runOnly": {"type": "tag", "values": WCAG_22_AA_TAGS},
    "resultTypes": ["violations"],
}


def sign_in(page: Page, email: str, password: str) -> None:
    """Sign in through the sign-in form, as a person would, and land on the account page."""
    page.goto("/sign-in")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your account")


def sign_out(page: Page) -> None:
    """Sign out with the button on the account page; the home page says so."""
    page.goto("/account")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url("/")
    expect(page.locator(".govuk-notification-banner__heading")).to_have_text("You have signed out.")


def axe_violations(page: Page) -> list[dict]:
    """The WCAG 2.2 AA violations axe-core finds on the page as it is now.

    axe-core comes from axe-playwright-python; only the violations travel back from the
    browser (not every rule that passed), which halves the time a page takes.
    """
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE_SCRIPT)
    return page.evaluate(
        "options => axe.run(document, options).then(r => r.violations)", AXE_OPTIONS
    )


def describe_violations(where: str, violations: list[dict]) -> str:
    """One readable block per violation: its id, impact, what it means and every target."""
    lines = [f"{where}: {len(violations)} axe violation(s)"]
    for violation in violations:
        lines.append(
            f"  - {violation['id']} ({violation['impact']}): {violation['help']}"
            f" [{violation['helpUrl']}]"
        )
        for node in violation["nodes"]:
            target = " ".join(str(part) for part in node["target"])
            summary = " ".join(node.get("failureSummary", "").split())
            lines.append(f"      at {target}: {summary}")
    return "\n".join(lines)
