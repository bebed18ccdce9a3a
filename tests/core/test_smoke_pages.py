"""Every page of the kernel renders for the people allowed to see it."""

import pytest

from core.models import Role
from tests.conftest import sign_in

PUBLIC_PAGES = ["/", "/register", "/sign-in", "/accessibility", "/privacy"]


@pytest.mark.parametrize("path", PUBLIC_PAGES)
def test_public_pages_render_for_anyone(client, path):
    response = client.get(path)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Civic Credits" in html
    assert "Skip to main content" in html
    assert "/accessibility" in html and "/privacy" in html


def test_unknown_page_is_a_styled_404(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert "Page not found" in response.get_data(as_text=True)


def test_navigation_fits_the_roles_of_the_signed_in_user(client, create_user):
    sign_in(client, create_user(Role.RESIDENT, Role.ORGANISER))
    html = client.get("/account").get_data(as_text=True)
    assert "Your credits" in html and "Organise" in html
    assert "Council" not in html and ">Roles<" not in html


def test_the_footer_names_the_licence_and_links_the_source_when_configured(app, client):
    html = client.get("/").get_data(as_text=True)
    assert "GNU Affero General Public License" in html
    assert "Source code" not in html
    app.config["SOURCE_CODE_URL"] = "https://git.example.org/council/civic-credits"
    try:
        html = client.get("/").get_data(as_text=True)
    finally:
        app.config["SOURCE_CODE_URL"] = ""
    assert 'href="https://git.example.org/council/civic-credits">Source code</a>' in html


def test_the_licence_file_is_the_agpl():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "LICENSE").read_text()
    assert text.startswith("GNU AFFERO GENERAL PUBLIC LICENSE\nVersion 3, 19 November 2007")
    assert "13. Remote Network Interaction" in text
