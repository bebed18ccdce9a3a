// Build the front-end assets into core/static from the npm packages (nothing built is committed).
import { cpSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as sass from "sass";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const govuk = join(root, "node_modules", "govuk-frontend", "dist", "govuk");
const staticDir = join(root, "core", "static");

mkdirSync(join(staticDir, "govuk"), { recursive: true });
mkdirSync(join(staticDir, "css"), { recursive: true });
cpSync(join(govuk, "assets"), join(staticDir, "govuk", "assets"), { recursive: true });
cpSync(join(govuk, "govuk-frontend.min.js"), join(staticDir, "govuk", "govuk-frontend.min.js"));

// The QR scanner for check-in cards and till codes (uses the device camera in the browser).
const scanner = join(root, "node_modules", "qr-scanner");
mkdirSync(join(staticDir, "vendor"), { recursive: true });
for (const file of ["qr-scanner.min.js", "qr-scanner-worker.min.js"]) {
  cpSync(join(scanner, file), join(staticDir, "vendor", file));
}

const result = sass.compile(join(root, "assets", "app.scss"), {
  loadPaths: [join(root, "node_modules")],
  style: "compressed",
  quietDeps: true,
  silenceDeprecations: ["import"],
});
writeFileSync(join(staticDir, "css", "app.css"), result.css);
console.log("assets built into core/static");
