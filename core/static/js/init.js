// Start GOV.UK Frontend's components (service navigation menu, error summary focus...).
import { initAll } from "../govuk/govuk-frontend.min.js";

initAll();

// "Print this" buttons (the Content-Security-Policy allows no inline onclick).
for (const button of document.querySelectorAll("[data-print-page]")) {
  button.addEventListener("click", () => window.print());
}
