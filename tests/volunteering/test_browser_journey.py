"""The volunteering journey in Chromium, and card scanning with Chromium's fake camera.

The organiser shows the check-in screen; the test decodes the QR *image* drawn on that page
(with the qr-scanner library the app serves, run in the page on the SVG's pixels); the
resident's browser opens the decoded URL, signs in and is checked in, later checks out; the
council approves the claim; the wallet shows the credits. axe-core runs on each new page.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from playwright.sync_api import Page, expect

from core.models import Role
from core.timeutil import utcnow
from tests.browser.conftest import CHROMIUM_ARGS, CHROMIUM_PATH
from tests.browser.support import axe_violations, describe_violations

pytestmark = pytest.mark.browser

DECODE_QR_ON_PAGE = """
async (selector) => {
  const { default: QrScanner } = await import('/static/vendor/qr-scanner.min.js');
  const svg = document.querySelector(selector);
  // A data: address: the page's Content-Security-Policy allows images from data:, not blob:.
  const bytes = new TextEncoder().encode(svg.outerHTML);
  const url = 'data:image/svg+xml;base64,' + btoa(String.fromCharCode(...bytes));
  const image = new Image();
  image.width = 400;
  image.height = 400;
  await new Promise((resolve, reject) => {
    image.onload = resolve;
    image.onerror = reject;
    image.src = url;
  });
  const canvas = document.createElement('canvas');
  canvas.width = 400;
  canvas.height = 400;
  const context = canvas.getContext('2d');
  context.fillStyle = '#fff';
  context.fillRect(0, 0, 400, 400);
  context.drawImage(image, 0, 0, 400, 400);
  const result = await QrScanner.scanImage(canvas, { returnDetailedScanResult: true });
  return result.data;
}
"""


def check_axe(page: Page, where: str) -> None:
    violations = axe_violations(page)
    assert not violations, describe_violations(where, violations)


def sign_in_here(page: Page, user) -> None:
    """Fill the sign-in form the browser has been sent to."""
    page.get_by_label("Email address").fill(user.email)
    page.get_by_label("Password", exact=True).fill(user.password)
    page.get_by_role("button", name="Sign in").click()


def sign_in_at(page: Page, user) -> None:
    page.goto("/sign-in")
    sign_in_here(page, user)
    expect(page.get_by_role("heading", level=1)).to_have_text("Your account")


def decoded_checkin_url(page: Page) -> str:
    """The URL in the QR image of the check-in screen, read from its pixels."""
    return page.evaluate(DECODE_QR_ON_PAGE, "[data-qr] svg")


@pytest.fixture
def other_context(browser, live_server):
    """A second browser (another person's phone), with no cookies."""
    context = browser.new_context(base_url=live_server, viewport={"width": 390, "height": 844})
    context.set_default_timeout(10_000)
    yield context
    context.close()


def test_qr_check_in_and_out_then_council_approval_reaches_the_wallet(
    app, page, other_context, scene, create_user, live_server, monkeypatch
):
    # Claims over 30 minutes wait for the council here, so the journey includes approval.
    monkeypatch.setitem(app.config, "CLAIM_AUTO_APPROVE_MAX_MINUTES", 30)
    # Short-lived codes, so the screen's refresh is seen within seconds.
    monkeypatch.setitem(app.config, "CHECKIN_TOKEN_TTL_SECONDS", 12)
    sign_in_at(page, scene.organiser)
    page.goto(f"/organise/sessions/{scene.session_id}")
    check_axe(page, "session page")
    page.get_by_role("link", name="Show the check-in QR code").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Check in to Litter pick")
    check_axe(page, "check-in screen")
    url = decoded_checkin_url(page)
    assert re.fullmatch(re.escape(live_server) + r"/c/[\w.-]+", url), url

    phone = other_context.new_page()
    phone.goto(url)
    expect(phone.get_by_role("heading", level=1)).to_have_text("Sign in")
    sign_in_here(phone, scene.resident)
    expect(phone.get_by_role("heading", level=1)).to_have_text("You are checked in")
    check_axe(phone, "checked-in page")

    # The screen's script swaps in a fresh code without reloading the page.
    first_token = page.locator("[data-qr]").get_attribute("data-token")
    page.evaluate("window.__same_page = true")
    expect(page.locator("[data-qr]")).not_to_have_attribute(
        "data-token", first_token, timeout=60_000
    )
    assert page.evaluate("window.__same_page") is True

    with time_machine.travel(utcnow() + timedelta(minutes=50), tick=True):
        page.reload()
        url = decoded_checkin_url(page)
        phone.goto(url)
        expect(phone.get_by_role("heading", level=1)).to_have_text("Check out")
        check_axe(phone, "check-out page")
        phone.get_by_role("button", name="Check out now").click()
        expect(phone.get_by_role("heading", level=1)).to_have_text("You are checked out")
        expect(phone.locator("main")).to_contain_text("1 credit")

    council = other_context.browser.new_context(base_url=live_server)
    council.set_default_timeout(10_000)
    desk = council.new_page()
    sign_in_at(desk, scene.council)
    desk.goto("/council/claims")
    check_axe(desk, "claims queue")
    desk.get_by_label(re.compile("Select claim")).first.check()
    desk.get_by_role("button", name="Approve selected claims").click()
    expect(desk.locator(".govuk-notification-banner")).to_contain_text("1 claim approved")
    council.close()

    phone.goto("/wallet")
    expect(phone.locator(".govuk-panel__title")).to_have_text("1 credit")


def write_y4m(path: Path, matrix: list[list[bool]], size: int = 480, frames: int = 10) -> None:
    """A Y4M video of a QR code (black on white, centred) for Chromium's fake camera."""
    width, height = 640, size
    modules = len(matrix)
    scale = (size - 40) // modules
    left = (width - modules * scale) // 2
    top = (height - modules * scale) // 2
    luma = bytearray(b"\xeb" * (width * height))
    for row, cells in enumerate(matrix):
        for col, dark in enumerate(cells):
            if not dark:
                continue
            for y in range(top + row * scale, top + (row + 1) * scale):
                start = y * width + left + col * scale
                luma[start : start + scale] = b"\x10" * scale
    chroma = b"\x80" * ((width // 2) * (height // 2))
    with path.open("wb") as video:
        video.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            video.write(b"FRAME\n" + bytes(luma) + chroma + chroma)


def test_scan_cards_page_reads_a_card_with_the_fake_camera(
    app, playwright_driver, live_server, scene, tmp_path
):
    import qrcode

    from volunteering.tokens import card_token

    with app.test_request_context():
        token = card_token(scene.resident.id)
    code = qrcode.QRCode(border=4, error_correction=qrcode.constants.ERROR_CORRECT_M)
    code.add_data(token)
    code.make(fit=True)
    video = tmp_path / "card.y4m"
    write_y4m(video, code.get_matrix())
    camera_browser = playwright_driver.chromium.launch(
        executable_path=CHROMIUM_PATH,
        headless=True,
        args=[
            *CHROMIUM_ARGS,
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={video}",
        ],
    )
    try:
        context = camera_browser.new_context(base_url=live_server)
        context.grant_permissions(["camera"], origin=live_server)
        context.set_default_timeout(20_000)
        organiser_page = context.new_page()
        sign_in_at(organiser_page, scene.organiser)
        organiser_page.goto(f"/organise/sessions/{scene.session_id}/scan-cards")
        check_axe(organiser_page, "scan cards page")
        organiser_page.get_by_role("button", name="Start the camera").click()
        expect(organiser_page.locator("[data-scan-result]")).to_contain_text(
            f"{scene.resident.display_name} is checked in"
        )
        context.close()
    finally:
        camera_browser.close()


def test_new_pages_pass_axe(page, scene, create_user):
    sign_in_at(page, scene.organiser)
    s = scene.session_id
    for path in [
        "/organise",
        "/organise/organisations/new",
        f"/organise/organisations/{scene.organisation_id}",
        f"/organise/organisations/{scene.organisation_id}/activities/new",
        f"/organise/activities/{scene.activity_id}",
        f"/organise/sessions/{s}/poster",
        f"/organise/sessions/{s}/attendance",
        "/activities",
        "/cards",
    ]:
        page.goto(path)
        check_axe(page, path)
    page.context.clear_cookies()
    sign_in_at(page, scene.council)
    for path in ["/council/claims", "/council/activities", "/council/organisations"]:
        page.goto(path)
        check_axe(page, path)
    page.context.clear_cookies()
    sign_in_at(page, create_user(Role.RESIDENT))
    for path in ["/activities", "/card", "/my-hours"]:
        page.goto(path)
        check_axe(page, path)
