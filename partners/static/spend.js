// The resident's code page: a countdown to the code's expiry, and a check every few seconds
// whether the till has used it, so the page can say "Done" without a reload.
const root = document.getElementById("spend-code");

if (root) {
  const deadline = Date.now() + Number(root.dataset.seconds) * 1000;
  const left = document.getElementById("countdown-left");
  const state = document.getElementById("code-state");
  const qr = document.getElementById("code-qr");
  const shortCode = document.getElementById("short-code");
  let finished = false;

  const finish = (html) => {
    finished = true;
    qr.hidden = true;
    shortCode.hidden = true;
    state.innerHTML = html;
  };

  const tick = () => {
    if (finished) return;
    const seconds = Math.max(0, Math.round((deadline - Date.now()) / 1000));
    if (seconds === 0) {
      finish(
        '<div class="govuk-inset-text">This code has expired. Choose "Get a new code" to spend credits.</div>',
      );
      return;
    }
    const minutes = Math.floor(seconds / 60);
    const rest = String(seconds % 60).padStart(2, "0");
    // Only announce whole minutes to screen readers, not every second.
    left.textContent = ` (${minutes}:${rest} left)`;
  };

  const escape = (text) =>
    String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

  const poll = async () => {
    if (finished) return;
    try {
      const response = await fetch(root.dataset.statusUrl, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (response.ok) {
        const body = await response.json();
        if (body.state === "used") {
          finish(
            '<div class="govuk-panel govuk-panel--confirmation" id="spent">' +
              '<h2 class="govuk-panel__title">Done</h2>' +
              `<div class="govuk-panel__body">${escape(body.credits)} credits spent: ${escape(body.description)}.` +
              `<br>Your balance is now <strong id="new-balance">${escape(body.balance)}</strong>.</div></div>`,
          );
          return;
        }
      }
    } catch (error) {
      // Offline for a moment: try again at the next poll.
    }
    setTimeout(poll, 2500);
  };

  left.setAttribute("aria-hidden", "true");
  tick();
  setInterval(tick, 1000);
  setTimeout(poll, 2500);
}
