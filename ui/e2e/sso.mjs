// Sign in with SSO against the test OpenID provider (t/ui/test_ui.py starts it,
// with a control plane whose VMX_OIDC_UI_URL is "/"). Waits on elements only.
import { mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const AXE = require.resolve("axe-core/axe.min.js");
const { VMX_UI_URL: URL, VMX_ARTIFACTS: ART, VMX_SSO_SUB: SUB } = process.env;
mkdirSync(ART, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.VMX_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
});
let code = 0;
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.setDefaultTimeout(15000);
  await page.goto(URL + "/signin");
  const sso = page.getByRole("link", { name: "Sign in with SSO" });
  await sso.waitFor();
  for (const scheme of ["light", "dark"]) {
    await page.emulateMedia({ colorScheme: scheme });
    await page.screenshot({ path: join(ART, `signin-sso-${scheme}-1280.png`) });
  }
  await page.addScriptTag({ path: AXE });
  const bad = await page.evaluate(async () =>
    (await axe.run(document)).violations.filter((v) => v.impact === "serious" || v.impact === "critical").map((v) => v.id),
  );
  if (bad.length) throw new Error("axe-core: " + bad.join(", "));
  await sso.click();
  // the provider's own sign-in form
  await page.locator("input[name=login]").waitFor();
  await page.locator("input[name=login]").fill(SUB);
  await page.locator("input[name=claims]").fill(JSON.stringify({ preferred_username: SUB, name: "SSO User" }));
  await page.evaluate(() => document.forms[0].submit());
  await page.getByRole("heading", { name: "Getting started" }).waitFor();
  const state = await page.evaluate(() => ({
    hash: location.hash,
    href: location.href,
    token: sessionStorage.getItem("vmx.token"),
  }));
  if (state.hash !== "" || state.href.includes("token=")) throw new Error("the fragment was not cleared: " + state.href);
  if (!state.token) throw new Error("no token kept");
  await page.getByTestId("account-menu").getByText(SUB).waitFor();
  console.log(`signed in as ${SUB}; fragment cleared; token kept`);
} catch (e) {
  console.error("FAILED:", e.stack || e);
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
