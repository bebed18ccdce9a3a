// The check-in screen: fetch a fresh rotating code before the current one expires and
// swap the QR image in place, so the screen never needs reloading.
const screen = document.querySelector("[data-checkin-code-url]");
if (screen) {
  const url = screen.dataset.checkinCodeUrl;
  const image = screen.querySelector("[data-qr]");
  const link = screen.querySelector("[data-checkin-url]");
  const status = screen.querySelector("[data-status]");
  let expiresAt = Date.parse(screen.dataset.expiresAt);

  async function refresh() {
    try {
      const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (!response.ok) throw new Error(`status ${response.status}`);
      const code = await response.json();
      image.innerHTML = code.qr_svg;
      image.dataset.token = code.token;
      if (link) link.href = code.url;
      expiresAt = Date.parse(code.expires_at);
      status.textContent = "";
    } catch (error) {
      status.textContent = "Could not fetch a new code. Check the connection; trying again.";
    }
    schedule();
  }

  function schedule() {
    // Refresh a third of the way before expiry, and at least every 5 seconds when late.
    const wait = Math.max(5000, (expiresAt - Date.now()) * 0.66);
    window.setTimeout(refresh, wait);
  }

  schedule();
}
