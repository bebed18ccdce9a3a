"""A newcomer finds the scheme, creates an account, signs out and comes back."""

import pytest
from playwright.sync_api import expect

from tests.browser.support import sign_out

pytestmark = pytest.mark.browser


def test_newcomer_registers_signs_out_and_signs_back_in(page):
    page.goto("/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Give time to your community")

    page.get_by_role("button", name="Create an account").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Create an account")
    page.get_by_label("Email address").fill("amina@example.org")
    page.get_by_label("Your name").fill("Amina")
    page.get_by_label("Postcode").fill("LS8 2HE")
    page.get_by_label("Create a password").fill("lentils-and-sunflowers")
    page.get_by_role("button", name="Create account").click()

    expect(page).to_have_url("/account")
    expect(page.locator(".govuk-notification-banner__heading")).to_have_text(
        "Your account has been created. Welcome!"
    )
    expect(page.get_by_role("heading", level=1)).to_have_text("Your account")
    expect(page.locator(".govuk-summary-list")).to_contain_text("Amina")
    expect(page.locator(".govuk-summary-list")).to_contain_text("amina@example.org")

    sign_out(page)
    page.goto("/account")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")

    page.get_by_role("navigation", name="Menu").get_by_role("link", name="Sign in").click()
    page.get_by_label("Email address").fill("amina@example.org")
    page.get_by_label("Password", exact=True).fill("lentils-and-sunflowers")
    page.get_by_role("button", name="Sign in").click()

    expect(page).to_have_url("/account")
    expect(page.get_by_role("heading", level=1)).to_have_text("Your account")
    expect(page.locator(".govuk-summary-list")).to_contain_text("Amina")

    sign_out(page)
    expect(page.get_by_role("navigation", name="Menu")).to_contain_text("Sign in")
