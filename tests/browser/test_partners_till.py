"""Spending credits in Chromium: a resident shows a code, the till reads it through
Chromium's fake camera (fed a video of that QR code), staff confirm, and the resident's
balance and history update. axe-core checks each new page on the way."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from core.models import Role
from tests.browser.conftest import CHROMIUM_ARGS, CHROMIUM_PATH, STEP_TIMEOUT_MS
from tests.browser.support import axe_violations, describe_violations, sign_in
from tests.partners import conftest as partner_fixtures

pytestmark = pytest.mark.browser

# The partners tests' fixtures, here beside the browser fixtures of tests/browser/conftest.py.
make_partner = partner_fixtures.make_partner
give_credits = partner_fixtures.give_credits


def qr_video(text: str, path, *, width=640, height=480, frames=30) -> None:
    """A YUV4MPEG2 video of ``text`` as a black-on-white QR code, for Chromium's fake camera
    (``--use-file-for-fake-video-capture``); no imaging library needed."""
    import qrcode

    qr = qrcode.QRCode(border=4, error_correction=qrcode.constants.ERROR_CORRECT_M)
    qr.add_data(text)
    qr.make(fit=True)
    matrix = qr.get_matrix()
    scale = (height - 40) // len(matrix)
    size = scale * len(matrix)
    left, top = (width - size) // 2, (height - size) // 2
    luma = bytearray([235]) * (width * height)
    for row, cells in enumerate(matrix):
        for column, dark in enumerate(cells):
            if not dark:
                continue
            for y in range(top + row * scale, top + (row + 1) * scale):
                start = y * width + left + column * scale
                luma[start : start + scale] = bytes([16]) * scale
    chroma = bytes([128]) * ((width // 2) * (height // 2))
    frame = b"FRAME\n" + bytes(luma) + chroma + chroma
    with open(path, "wb") as video:
        video.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            video.write(frame)


def assert_accessible(shown, where: str) -> None:
    violations = axe_violations(shown)
    assert not violations, describe_violations(where, violations)


def test_till_scans_the_residents_code_with_the_camera_and_the_balance_updates(
    page, live_server, playwright_driver, tmp_path, make_partner, create_user, give_credits
):
    shop = make_partner(offers=[("Coffee", 2), ("Banquet", 40)])
    resident = create_user(Role.RESIDENT, name="Robin Resident")
    give_credits(resident, 10)

    # The resident asks for a code.
    sign_in(page, resident.email, resident.password)
    page.goto("/offers")
    assert_accessible(page, "/offers")
    page.goto("/spend")
    assert_accessible(page, "/spend")
    page.get_by_role("button", name="Show my code").click()
    code = page.locator("#short-code").inner_text().strip()
    assert re.fullmatch(r"[A-Z2-9]{4}-[A-Z2-9]{4}", code)
    expect(page.locator("#countdown-left")).to_contain_text("left")
    assert_accessible(page, "the code page")

    # The till's camera sees that code.
    video = tmp_path / "code.y4m"
    qr_video(code, video)
    till_browser = playwright_driver.chromium.launch(
        executable_path=CHROMIUM_PATH,
        headless=True,
        args=CHROMIUM_ARGS
        + [
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={video}",
        ],
    )
    try:
        context = till_browser.new_context(base_url=live_server)
        context.set_default_timeout(STEP_TIMEOUT_MS)
        context.grant_permissions(["camera"], origin=live_server)
        till = context.new_page()
        errors = []
        till.on("pageerror", lambda error: errors.append(str(error)))
        sign_in(till, shop.staff.email, shop.staff.password)
        till.goto(f"/business/{shop.partner_id}/till")
        assert_accessible(till, "the till")
        till.get_by_role("button", name="Scan the code with the camera").click()
        expect(till.get_by_role("heading", level=1)).to_have_text("Serving Robin", timeout=20_000)
        assert_accessible(till, "the confirm page")
        expect(till.get_by_text("Banquet: Not enough credits")).to_be_visible()
        till.get_by_label("Coffee – 2 credits").check()
        till.get_by_role("button", name="Take credits").click()
        expect(till.locator("#receipt")).to_contain_text("2 credits taken")
        expect(till.locator("#receipt")).to_contain_text("Coffee for Robin")
        assert_accessible(till, "the receipt")
        till.goto(f"/business/{shop.partner_id}")
        expect(till.locator("table")).to_contain_text("Coffee")
        assert_accessible(till, "the dashboard")
        assert not errors, errors
        context.close()
    finally:
        till_browser.close()

    # The resident's code page notices, and the wallet shows the spend.
    expect(page.locator("#spent")).to_contain_text("Your balance is now 8", timeout=10_000)
    page.goto("/wallet")
    expect(page.locator("main")).to_contain_text("8")
    expect(page.locator("main")).to_contain_text("The Corner Café")
