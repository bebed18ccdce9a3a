// The page a check-in QR code opens: record the scan at once (the button stays for anyone
// whose browser runs no scripts). The form's nonce makes a repeat record nothing new.
const form = document.querySelector("[data-auto-submit]");
if (form) form.requestSubmit();
