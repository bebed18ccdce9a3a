"""The council's reports dashboard in Chromium: charts with their data tables, and axe."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.support import axe_violations, describe_violations, sign_in
from tests.reports.history import build_known_history

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def forget_saved_settings(app):
    """The known history saves a setting: put every process back on the defaults after."""
    yield
    from core import settings
    from core.extensions import db
    from core.models import SchemeSetting

    with app.app_context():
        db.session.execute(db.delete(SchemeSetting))
        db.session.commit()
        settings.refresh(app, force=True)
        db.session.remove()


@pytest.mark.parametrize("width", [320, 1280])
def test_dashboard_renders_charts_and_tables_and_passes_axe(app, page, create_user, width):
    known = build_known_history(app, create_user)
    council = known["history"].council
    page.set_viewport_size({"width": width, "height": 800})
    sign_in(page, council.email, council.password)
    page.goto("/council/reports?from=2026-01-01&to=2026-10-31")
    expect(page.get_by_role("heading", name="How the scheme is doing")).to_be_visible()
    charts = page.get_by_role("img")
    expect(charts).to_have_count(4)
    expect(page.get_by_role("img", name="Hours given by category")).to_be_visible()
    # Every chart has its data table; the figures are the known history's.
    expect(page.locator("table")).to_have_count(5)
    expect(page.locator('[data-measure="hours"]')).to_have_text("5.50")
    expect(page.locator('[data-measure="credits_expired"]')).to_have_text("7")
    categories = page.locator("#categories-table")
    expect(categories.get_by_role("row", name="Environment 3.00 3 2 1")).to_be_visible()
    bars = page.locator("svg rect.cc-chart__bar")
    assert bars.count() > 10
    # A chart's bars are as long as their figures say: 3 hours of environment vs 2.5 of lunch.
    environment = page.locator("#chart-categories-title ~ rect").first.get_attribute("width")
    assert float(environment) == 300.0
    with page.expect_download() as download:
        page.get_by_role("link", name="Download by category as CSV").click()
    assert download.value.suggested_filename == "categories-2026-01-01-2026-10-31.csv"
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, f"the dashboard is {scroll_width}px wide on a {width}px screen"
    violations = axe_violations(page)
    assert not violations, describe_violations(f"/council/reports ({width}px)", violations)


def test_organisation_report_passes_axe(app, page, create_user):
    known = build_known_history(app, create_user)
    organiser = known["history"].organiser
    sign_in(page, organiser.email, organiser.password)
    page.goto(f"/reports/organisations/{known['organisation_id']}?from=2026-01-01&to=2026-10-31")
    expect(page.locator('[data-measure="hours"]')).to_have_text("5.50")
    violations = axe_violations(page)
    assert not violations, describe_violations("/reports/organisations", violations)
