// The organiser's card scanner: the camera reads a card's QR code (qr-scanner, served by
// us) and sends it through the same form as a typed card number.
import QrScanner from "../vendor/qr-scanner.min.js";

const area = document.querySelector("[data-card-scanner]");
if (area) {
  const video = area.querySelector("video");
  const start = area.querySelector("[data-start-camera]");
  const status = area.querySelector("[data-camera-status]");
  const form = document.querySelector("[data-card-form]");
  const input = form.querySelector("input[name='card']");
  let scanner = null;
  let sent = false;

  start.addEventListener("click", async () => {
    start.disabled = true;
    status.textContent = "Starting the camera…";
    scanner = new QrScanner(
      video,
      (result) => {
        if (sent) return;
        sent = true;
        status.textContent = "Card read. Recording…";
        input.value = typeof result === "string" ? result : result.data;
        form.requestSubmit();
      },
      { returnDetailedScanResult: true, preferredCamera: "environment" },
    );
    try {
      await scanner.start();
      status.textContent = "Point the camera at the card's QR code.";
    } catch (error) {
      status.textContent = "The camera could not start. Type the card number instead.";
      start.disabled = false;
    }
  });

  if (area.dataset.autostart === "true") start.click();
}
