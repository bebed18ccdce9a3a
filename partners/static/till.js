// The till: read the customer's QR code with the device camera (qr-scanner, served from our
// own static files), put it in the code box and send the form. Typing the code always works,
// with or without a camera or JavaScript.
const script = document.getElementById("till-script");
const form = document.getElementById("code-form");
const input = document.getElementById("code");
const panel = document.getElementById("scanner");
const video = document.getElementById("scanner-video");
const message = document.getElementById("scanner-message");
const startButton = document.getElementById("scanner-start");
const stopButton = document.getElementById("scanner-stop");

const { default: QrScanner } = await import(script.dataset.scanner);

let scanner = null;

const stop = () => {
  if (scanner) {
    scanner.stop();
    scanner.destroy();
    scanner = null;
  }
  panel.hidden = true;
  startButton.hidden = false;
};

const start = async () => {
  startButton.hidden = true;
  panel.hidden = false;
  message.textContent = "Starting the camera…";
  scanner = new QrScanner(
    video,
    (result) => {
      const code = (result.data || "").trim();
      if (!code) return;
      input.value = code;
      message.textContent = "Code read. Checking it…";
      stop();
      form.requestSubmit();
    },
    { returnDetailedScanResult: true, preferredCamera: "environment", maxScansPerSecond: 10 },
  );
  try {
    await scanner.start();
    message.textContent = "Looking for a code…";
  } catch (error) {
    stop();
    message.textContent = "";
    startButton.hidden = true;
    input.focus();
    const note = document.createElement("p");
    note.className = "govuk-body";
    note.textContent = "The camera could not start. Type the customer's code instead.";
    form.prepend(note);
  }
};

if (await QrScanner.hasCamera()) {
  startButton.hidden = false;
  startButton.addEventListener("click", start);
  stopButton.addEventListener("click", stop);
}
