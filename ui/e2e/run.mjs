// End-to-end run of the web UI against a running stack (t/ui/test_ui.py starts
// it): playwright-core driving Debian's chromium. Every wait is on an element or
// on the network, never a fixed sleep. Writes screenshots (light and dark, 1280
// and 390 px) and result.json to $VMX_ARTIFACTS; exits 1 on the first failed
// step or when axe-core finds a serious or critical violation on any page.
import { mkdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const AXE = require.resolve("axe-core/axe.min.js");
const env = process.env;
const URL = env.VMX_UI_URL;
const ART = env.VMX_ARTIFACTS;
mkdirSync(ART, { recursive: true });

const t0 = Date.now();
const log = (...a) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);
const axeProblems = [];
const result = {};

function check(cond, msg) {
  if (!cond) throw new Error("check failed: " + msg);
}

async function ready(page) {
  await page.waitForLoadState("load");
  await page.locator("h1, h2").first().waitFor({ state: "visible" });
  // no request of the UI in flight, no skeleton or loader shown (twice, a frame
  // apart: a query may start right after another ends)
  for (let i = 0; i < 2; i++) {
    await page.waitForFunction(
      () =>
        window.__vmxInflight === 0 &&
        !document.querySelector(".mantine-Skeleton-root, [aria-busy='true']"),
      null,
      { timeout: 15000, polling: "raf" },
    );
  }
}

async function axe(page, name) {
  await page.addScriptTag({ path: AXE });
  const r = await page.evaluate(async () =>
    // eslint-disable-next-line no-undef
    (await axe.run(document, { resultTypes: ["violations"] })).violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.slice(0, 6).map((n) => n.target.join(" ")),
    })),
  );
  for (const v of r) {
    if (v.impact === "serious" || v.impact === "critical") axeProblems.push({ page: name, ...v });
  }
}

/** screenshots of the page as it is, in both themes; axe in both */
async function shoot(page, name, { width = 1280 } = {}) {
  for (const scheme of ["light", "dark"]) {
    await page.emulateMedia({ colorScheme: scheme });
    await page.waitForFunction(
      (s) => document.documentElement.getAttribute("data-mantine-color-scheme") === s,
      scheme,
    );
    await page.screenshot({ path: join(ART, `${name}-${scheme}-${width}.png`), fullPage: true });
    await axe(page, `${name} (${scheme})`);
  }
  await page.emulateMedia({ colorScheme: "light" });
}

async function visit(page, path, name, opts) {
  await page.goto(URL + path);
  await ready(page);
  await shoot(page, name, opts);
}

async function signIn(page, user, password) {
  await page.goto(URL + "/signin");
  await page.getByLabel("Username").fill(user);
  await page.getByLabel(/^Password/).fill(password);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
}

async function signOut(page) {
  await page.getByTestId("account-menu").click();
  await page.getByRole("menuitem", { name: "Sign out" }).click();
  await page.getByRole("button", { name: "Sign in", exact: true }).waitFor();
}

const browser = await chromium.launch({
  executablePath: env.VMX_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
});
let failed = null;
try {
  const ctx = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    permissions: ["clipboard-read", "clipboard-write"],
  });
  ctx.setDefaultTimeout(15000);
  const page = await ctx.newPage();
  page.on("pageerror", (e) => log("page error:", e.message));

  // --- sign-in: its first load (empty cache) at most 300 KB compressed
  await page.goto(URL + "/signin");
  await ready(page);
  const bytes = await page.evaluate(() =>
    [...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")]
      .reduce((n, e) => n + e.transferSize, 0),
  );
  result.signinFirstLoadBytes = bytes;
  check((await page.getByText("Sign in with SSO").count()) === 0, "no SSO button while OIDC is off");
  log(`sign-in page first load: ${bytes} bytes transferred (${(bytes / 1024).toFixed(1)} KiB)`);
  check(bytes > 0 && bytes <= 300 * 1024, `sign-in first load ${bytes} bytes > 300 KiB`);

  // --- a wrong password is shown, then the admin signs in
  await visit(page, "/signin", "signin");
  await signIn(page, env.VMX_ADMIN_USER, "not-the-password");
  await page.getByTestId("signin-error").waitFor();
  log("sign-in: wrong password shown");
  // with the keyboard alone: the username field has the focus, Tab, Enter
  await page.goto(URL + "/signin");
  await page.getByLabel("Username").waitFor();
  check(await page.getByLabel("Username").evaluate((el) => el === document.activeElement), "username focused");
  await page.keyboard.type(env.VMX_ADMIN_USER);
  await page.keyboard.press("Tab");
  await page.keyboard.type(env.VMX_ADMIN_PASSWORD);
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Getting started" }).waitFor();
  log("signed in as admin, with the keyboard");

  // --- the wizard, end to end
  await ready(page);
  await shoot(page, "wizard");
  await page.getByLabel("Workspace name").fill(env.VMX_WS_NAME);
  await page.getByRole("button", { name: "Create workspace" }).click();
  await page.getByRole("button", { name: "Create environment" }).click();
  await page.getByLabel("Connection name").waitFor();
  await page.getByLabel("apiKey").fill(env.VMX_FAKE_KEY);
  await page.getByLabel("baseUrl").fill(env.VMX_FAKE_URL);
  await shoot(page, "wizard-connection");
  await page.getByRole("button", { name: "Create connection" }).click();
  await page.getByLabel("Resource name").waitFor();
  await page.getByRole("button", { name: "Create resource" }).click();
  await page.getByLabel("API key name").waitFor();
  await page.getByRole("button", { name: "Create API key" }).click();
  const done = page.getByTestId("wizard-done");
  await done.waitFor();
  const key = (await done.locator("pre, code").first().innerText()).trim();
  check(key.startsWith("vmx-"), "the wizard shows the key: " + key);
  const curl = await done.getByRole("tabpanel").locator("pre, code").first().innerText();
  check(curl.includes(`${URL}/v1/chat/completions`), "curl snippet has the base URL: " + curl);
  check(curl.includes(key), "curl snippet has the key");
  check(curl.includes('"model": "chat"'), "curl snippet has the model");
  await page.getByRole("tab", { name: "Python" }).click();
  const py = await done.getByRole("tabpanel").locator("pre, code").first().innerText();
  check(py.includes(`base_url="${URL}/v1"`), "python snippet has the base URL");
  await shoot(page, "wizard-ready");
  Object.assign(result, { key, model: "chat", snippetBaseUrl: `${URL}/v1` });
  log("wizard done");

  // the key works (once the data plane runs the new configuration): traffic for the usage page
  let status = 0;
  let chatAnswer = "";
  for (let i = 0; i < 100 && status !== 200; i++) {
    const r = await fetch(`${URL}/v1/chat/completions`, {
      method: "POST",
      headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
      body: JSON.stringify({ model: "chat", messages: [{ role: "user", content: "hello" }] }),
    });
    status = r.status;
    const text = await r.text();
    if (status === 200) chatAnswer = JSON.parse(text).choices?.[0]?.message?.content ?? "";
    if (status !== 200) await new Promise((ok) => setTimeout(ok, 200)); // the config push, polled
  }
  check(status === 200, "a chat completion with the wizard's key: " + status);
  log("the wizard's key answers a chat completion");

  // --- the chat playground (reached in-app: the wizard's key, kept in the tab's
  // memory only, is offered), a streamed answer and its x-vmx-* headers
  await page.getByRole("link", { name: "Chat playground" }).click();
  await page.getByRole("heading", { name: "Chat playground" }).waitFor();
  await ready(page);
  check((await page.getByLabel("API key", { exact: true }).inputValue()) === key, "the wizard's key is offered");
  await page.getByLabel("Message 1: content").fill("hello from the playground");
  await page.getByRole("button", { name: "Send", exact: true }).click();
  const hdrs = page.getByRole("table", { name: "Gateway headers" });
  await hdrs.getByRole("rowheader", { name: "x-vmx-model" }).waitFor();
  await page.locator("[data-testid='playground-text'][aria-busy='false']").waitFor();
  const streamed = (await page.getByTestId("playground-text").innerText()).trim();
  check(streamed.length > 0 && streamed !== "…", "the streamed answer is shown: " + streamed);
  await ready(page);
  await shoot(page, "playground");
  // an error in OpenAI's envelope
  await page.getByLabel("API key", { exact: true }).fill("vmx-not-a-key");
  await page.getByRole("button", { name: "Send", exact: true }).click();
  await page.getByTestId("playground-error").waitFor();
  await shoot(page, "playground-error");
  log("playground: streamed answer with x-vmx-model, error envelope shown");

  // --- every page, both themes
  const pages = [
    ["/workspaces", "workspaces"],
    ["/environments", "environments"],
    ["/connections", "connections"],
    ["/resources", "resources"],
    ["/api-keys", "api-keys"],
    ["/users", "users"],
    ["/roles", "roles"],
    ["/dataplanes", "dataplanes"],
    ["/prices", "prices"],
    ["/batches", "batches"],
    ["/pools", "pools"],
    ["/profile", "profile"],
    ["/password", "password"],
  ];
  for (const [path, name] of pages) {
    await visit(page, path, name);
    log("page", name);
  }
  // usage and audit: the chat completion above, once ingested
  for (let i = 0; ; i++) {
    await page.goto(URL + "/usage");
    await ready(page);
    if ((await page.getByRole("table", { name: "Audit log" }).getByText("200", { exact: true }).count()) > 0) break;
    check(i < 30, "the chat completion in the audit log");
    await page.waitForTimeout(500); // ingestion runs every second: poll
  }
  // the audit filters (SPEC §7): a correlation id no request has, then none
  await page.getByLabel("Correlation id").fill("no-such-correlation");
  await page.getByRole("button", { name: "Filter", exact: true }).click();
  await page.getByRole("table", { name: "Audit log" }).getByText("No request in this range.").waitFor();
  await page.getByLabel("Correlation id").fill("");
  await page.getByRole("button", { name: "Filter", exact: true }).click();
  await page.getByRole("table", { name: "Audit log" }).getByText("200", { exact: true }).first().waitFor();
  // by resource: the key's requests under "chat"; latency percentiles charted
  await page.getByRole("textbox", { name: "Group by" }).click();
  await page.getByRole("option", { name: "Resource" }).click();
  await page.getByRole("table", { name: "Usage by resourceId" }).getByRole("cell", { name: "chat", exact: true }).waitFor();
  await page.getByRole("img", { name: "Request duration (p50, p95, p99) chart" }).waitFor();
  await ready(page);
  await shoot(page, "usage");
  await page
    .getByRole("table", { name: "Audit log" })
    .getByRole("row")
    .filter({ has: page.getByText("200", { exact: true }) })
    .first()
    .getByRole("button", { name: /^Details of the request/ })
    .click();
  // the drawer: summary, the request's user message, the response text, events, raw JSON
  const drawer = page.getByRole("dialog");
  await drawer.getByRole("region", { name: "Summary" }).waitFor();
  // the newest 200: the playground's streamed request, or the wizard key's
  await drawer.getByTestId("audit-messages").getByText(/^hello( from the playground)?$/).waitFor();
  check(chatAnswer.length > 0, "the chat completion answered a text");
  const asked = await drawer.getByTestId("audit-messages").innerText();
  const answered = asked.includes("from the playground") ? streamed : chatAnswer;
  const drawerText = await drawer.getByTestId("audit-response").innerText();
  check(drawerText.includes(answered.trim().slice(0, 40)), `the drawer shows the response text (${answered.slice(0, 40)})`);
  await drawer.getByRole("region", { name: "Events" }).waitFor();
  await ready(page);
  await shoot(page, "audit-drawer");
  await drawer.getByRole("button", { name: "Show raw JSON" }).click();
  await drawer.getByText('"statusCode": 200').waitFor();
  // replay it: its messages in the playground, sent again (non-streaming)
  await page.getByRole("dialog").getByRole("button", { name: "Open in playground" }).click();
  await page.getByRole("heading", { name: "Chat playground" }).waitFor();
  check((await page.getByLabel("Message 1: content").inputValue()).length > 0, "the audit record's messages loaded");
  await page.getByLabel("API key", { exact: true }).fill(key);
  await page.getByRole("switch", { name: "Stream" }).focus();
  await page.keyboard.press("Space"); // streaming off, with the keyboard
  check(!(await page.getByRole("switch", { name: "Stream" }).isChecked()), "stream switched off");
  await page.getByRole("button", { name: "Send", exact: true }).click();
  await page.getByRole("table", { name: "Gateway headers" }).getByRole("rowheader", { name: "x-vmx-model" }).waitFor();
  await page.locator("[data-testid='playground-text'][aria-busy='false']").waitFor();
  log("usage and audit; a record replayed in the playground");

  // the audit list is virtualised: 10,000 records (answered here, in pages of the
  // size asked) keep a few dozen rows in the DOM, and more load as it scrolls
  const fakeAudit = async (route) => {
    const u = new globalThis.URL(route.request().url());
    const size = Number(u.searchParams.get("pageSize")), idx = Number(u.searchParams.get("pageIndex"));
    const data = [];
    for (let i = idx * size; i < Math.min(10000, (idx + 1) * size); i++) {
      data.push({ id: `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`, timestamp: new Date(Date.now() - i * 1000).toISOString(),
        resource: "chat", provider: "openai", model: "gpt-4o-mini", statusCode: i % 7 ? 200 : 502, duration: 100 + (i % 50) });
    }
    await route.fulfill({ json: { data, total: 10000, pageIndex: idx, pageSize: size } });
  };
  await page.route(/\/audit\?/, fakeAudit);
  await page.goto(URL + "/usage");
  await ready(page);
  const auditRows = page.getByRole("table", { name: "Audit log" }).locator("tbody tr");
  await page.getByText(/^10,000 record\(s\) in range; 500 loaded/).waitFor();
  const domRows = await auditRows.count();
  check(domRows < 80, `virtualised: ${domRows} rows in the DOM for 10,000`);
  const region = page.getByRole("region", { name: "Audit log, scrollable" });
  const t1 = Date.now();
  for (let i = 0; i < 4; i++) await region.evaluate((el) => el.scrollTo(0, el.scrollHeight));
  await page.getByText(/^10,000 record\(s\) in range; (1,000|1,500|2,000) loaded/).waitFor();
  check((await auditRows.count()) < 80, "still virtualised after scrolling");
  result.auditScrollMs = Date.now() - t1;
  await page.unroute(/\/audit\?/, fakeAudit);
  log(`audit list: 10,000 records with ${domRows} rows in the DOM; more loaded on scroll`);

  // a workspace's members
  await page.goto(URL + "/workspaces");
  await ready(page);
  await page.getByRole("link", { name: env.VMX_WS_NAME }).click();
  await page.getByRole("heading", { name: "Members" }).waitFor();
  await ready(page);
  await shoot(page, "workspace-members");

  // --- forms: a connection (provider fields from the catalog), a resource
  // (fallback chain), an API key created (shown once) and rotated, a role
  // whose policy the API refuses (the error at the policy editor)
  await page.goto(URL + "/connections");
  await ready(page);
  await page.getByRole("button", { name: "Edit openai" }).click();
  let dlg = page.getByRole("dialog");
  await dlg.getByText("Discovered capacity").waitFor();
  check((await dlg.getByLabel(/^apiKey/).inputValue()) === "********", "secret shown masked");
  await shoot(page, "connection-edit");
  // its usage over the last 24 hours: the wizard's chat completion went through it, or the empty state
  await dlg.getByRole("region", { name: "Usage over the last 24 hours" }).waitFor();
  await dlg
    .getByRole("img", { name: "Requests chart" })
    .or(dlg.getByTestId("connection-usage-empty"))
    .first()
    .waitFor();
  await dlg.getByRole("region", { name: "Usage over the last 24 hours" }).scrollIntoViewIfNeeded();
  await shoot(page, "connection-usage");
  log("connection usage:", (await dlg.getByRole("img", { name: "Requests chart" }).count()) ? "chart" : "empty state");
  await dlg.getByLabel(/^baseUrl/).fill("http://169.254.169.254/v1");
  await dlg.getByRole("button", { name: "Save" }).click();
  // a new destination with the kept secret, or the link-local address: a 400 at a config field
  await dlg.locator(".mantine-InputWrapper-error").first().waitFor();
  await shoot(page, "connection-field-error");
  await dlg.getByRole("button", { name: "Cancel" }).click();
  await page.getByRole("button", { name: "Quick add" }).click();
  dlg = page.getByRole("dialog");
  await dlg.getByLabel("Name 1").waitFor();
  await shoot(page, "connection-quick-add");
  await dlg.getByRole("button", { name: "Close" }).first().click();
  log("connection forms");

  await page.goto(URL + "/resources");
  await ready(page);
  await page.getByRole("button", { name: "Edit chat" }).click();
  dlg = page.getByRole("dialog");
  await dlg.getByRole("button", { name: "Add a fallback model" }).click();
  await dlg.getByLabel("Fallback 1: model").fill("gpt-4o");
  await dlg.getByRole("button", { name: "Add a fallback model" }).click();
  await dlg.getByLabel("Fallback 2: model").fill("gpt-4.1-mini");
  await dlg.getByRole("button", { name: "Move fallback 2 up" }).click();
  check((await dlg.getByLabel("Fallback 1: model").inputValue()) === "gpt-4.1-mini", "fallback reordered");
  await dlg.getByRole("button", { name: "Add a routing rule" }).click();
  await dlg.getByLabel("Rule 1: expression").fill("tokens.input >");
  await dlg.getByRole("button", { name: "Save" }).click();
  // the compiler's error, at the expression it is about
  await dlg.locator(".mantine-InputWrapper-error").filter({ hasText: "routing.conditions[0].expression" }).waitFor();
  await shoot(page, "resource-edit");
  await dlg.getByLabel("Rule 1: expression").fill("tokens.input > 4000");
  await dlg.getByRole("button", { name: "Save" }).click();
  await dlg.waitFor({ state: "detached" });
  await page.getByRole("cell", { name: "gpt-4.1-mini → gpt-4o" }).waitFor();
  log("resource fallback chain and routing rule saved, the routing error shown at its field");

  // --- the routing test bench: the saved rule (no match for a short prompt),
  // then the unsaved routing that picks the group, then a compile error at the expression
  await page.getByRole("button", { name: "Edit chat" }).click();
  dlg = page.getByRole("dialog");
  const bench = dlg.getByTestId("route-test");
  await bench.getByRole("button", { name: "Test routing" }).click();
  await bench.getByTestId("route-test-group").filter({ hasText: /Routing is off|No group matched/ }).waitFor();
  const routingOn = dlg.getByRole("switch", { name: /^Routing enabled/ });
  if (!(await routingOn.isChecked())) {
    await routingOn.focus();
    await page.keyboard.press("Space");
  }
  await dlg.getByLabel("Rule 1: expression").fill("tokens.input > 1");
  await bench.getByRole("button", { name: "Test routing" }).click();
  await bench.getByTestId("route-test-group").filter({ hasText: "Group 1" }).waitFor();
  await bench.getByText("unsaved routing").waitFor();
  check((await bench.getByRole("table", { name: "Group 1 conditions" }).getByText("true", { exact: true }).count()) > 0, "the condition shown true");
  await dlg.getByLabel("Rule 1: expression").fill("tokens.input >");
  await bench.getByRole("button", { name: "Test routing" }).click();
  await dlg.locator(".mantine-InputWrapper-error").filter({ hasText: "character" }).waitFor();
  await dlg.getByLabel("Rule 1: expression").fill("tokens.input > 1");
  await bench.getByRole("button", { name: "Test routing" }).click();
  await bench.getByTestId("route-test-group").filter({ hasText: "Group 1" }).waitFor();
  await ready(page);
  await shoot(page, "route-test");
  await dlg.getByRole("button", { name: "Cancel" }).click();
  await dlg.waitFor({ state: "detached" });
  log("routing test bench: stored routing, unsaved routing picked, error at the expression");

  await page.goto(URL + "/api-keys");
  await ready(page);
  await page.getByRole("button", { name: "New API key" }).click();
  dlg = page.getByRole("dialog");
  await dlg.getByLabel(/^Name/).fill("second-key");
  await dlg.getByRole("button", { name: "Create" }).click();
  let shown = page.getByTestId("new-key");
  await shown.waitFor();
  const k2 = (await shown.locator("pre, code").first().innerText()).trim();
  check(k2.startsWith("vmx-"), "a created key is shown once");
  await shoot(page, "api-key-created");
  await page.getByRole("button", { name: "I have copied it" }).click();
  await page.getByRole("button", { name: "Rotate second-key" }).click();
  dlg = page.getByRole("dialog");
  await dlg.getByRole("button", { name: "Rotate" }).click();
  shown = page.getByTestId("new-key");
  await shown.waitFor();
  const k3 = (await shown.locator("pre, code").first().innerText()).trim();
  check(k3.startsWith("vmx-") && k3 !== k2, "a rotated key is a new one");
  await page.getByRole("button", { name: "I have copied it" }).click();
  await page.getByRole("button", { name: "Disable second-key" }).click();
  await page.getByRole("button", { name: "Enable second-key" }).waitFor();
  log("API key created, rotated, disabled");

  await page.goto(URL + "/roles");
  await ready(page);
  await page.getByRole("button", { name: "New role" }).click();
  dlg = page.getByRole("dialog");
  await dlg.getByLabel(/^Name/).fill("bad-policy");
  await dlg.getByLabel(/^Policy/).fill(
    JSON.stringify({ statements: [{ effect: "allow", actions: ["no-such:action"], resources: ["*"] }] }),
  );
  await dlg.getByRole("button", { name: "Create" }).click();
  await dlg.locator(".mantine-InputWrapper-error").filter({ hasText: "policy.statements[0].actions[0]" }).waitFor();
  await shoot(page, "role-policy-error");
  await dlg.getByRole("button", { name: "Cancel" }).click();
  log("policy error shown at the editor");

  // prioritization: a pool whose minimum exceeds its maximum is refused at its field, then saved
  await page.goto(URL + "/pools");
  await ready(page);
  await page.getByRole("button", { name: "Add a pool" }).click();
  await page.getByLabel("Min %").fill("60");
  await page.getByLabel("Max %").fill("40");
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByRole("alert").filter({ hasText: "pools[0]" }).waitFor();
  check((await page.getByLabel("Max %").getAttribute("aria-invalid")) === "true", "Max % marked invalid");
  await shoot(page, "pools-error");
  await page.getByLabel("Min %").fill("20");
  await page.getByLabel("Max %").fill("80");
  await page.getByRole("textbox", { name: "Resources" }).click({ force: true });
  await page.getByRole("option", { name: "chat" }).click();
  await page.keyboard.press("Escape");
  // a bar per pool (min filled, max outlined), in rank order; minimums over 100 % warned
  await page.getByRole("img", { name: /: minimum 20%, maximum 80%$/ }).first().waitFor();
  const bars = await page.getByTestId("pool-overview").getByTestId("pool-bar").count();
  check(bars === (await page.getByLabel("Min %").count()), `a bar per pool in the overview (${bars})`);
  await page.getByLabel("Min %").first().fill("120");
  await page.getByRole("alert").filter({ hasText: "Minimums over 100%" }).waitFor();
  await shoot(page, "pools-bars-warning");
  await page.getByLabel("Min %").first().fill("20");
  await ready(page);
  await shoot(page, "pools-bars");
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByText("Saved.", { exact: true }).waitFor();
  log("pool definition: error at its field, then saved");

  // --- an API error at its field: a workspace name taken (409 naming name)
  await page.goto(URL + "/workspaces");
  await ready(page);
  await page.getByRole("button", { name: "New workspace" }).click();
  const dialog = page.getByRole("dialog");
  await dialog.getByLabel("Name").fill(env.VMX_WS_NAME);
  await dialog.getByRole("button", { name: "Create" }).click();
  await dialog.locator(".mantine-InputWrapper-error, [role='alert']").first().waitFor();
  await shoot(page, "workspace-form-error");
  await page.keyboard.press("Escape");
  log("field error shown");

  // --- the activity log lists the changes made above, with their fields
  await page.goto(URL + "/activity");
  await ready(page);
  const act = page.getByRole("table", { name: "Activity log" });
  await act.getByText("api-key:rotate", { exact: true }).first().waitFor();
  await act.getByRole("button", { name: /^Changes of ai-resource:update chat/ }).first().click();
  await page.getByRole("table", { name: /^Changes of ai-resource:update/ }).getByText("fallbackModels", { exact: true }).waitFor();
  await ready(page);
  await shoot(page, "activity");
  await page.getByLabel("Action").fill("api-key:rotate");
  await page.getByRole("button", { name: "Filter" }).click();
  await ready(page);
  check((await act.getByText("ai-resource:update", { exact: true }).count()) === 0, "the action filter applies");
  await act.getByText("api-key:rotate", { exact: true }).first().waitFor();
  await page.getByLabel("From").fill("yesterday");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.locator(".mantine-InputWrapper-error").first().waitFor(); // the API's 400 at its field
  await shoot(page, "activity-filter-error");
  log("activity log: the resource update and key rotation listed, changes shown, filters");

  // --- narrow screen
  await page.setViewportSize({ width: 390, height: 844 });
  for (const [path, name] of [
    ["/setup", "wizard"],
    ["/connections", "connections"],
    ["/api-keys", "api-keys"],
    ["/playground", "playground"],
    ["/activity", "activity"],
  ]) {
    await visit(page, path, name, { width: 390 });
  }
  await page.getByRole("button", { name: "Navigation" }).click();
  await page.getByRole("link", { name: "AI resources" }).click();
  await page.getByRole("heading", { name: "AI resources" }).waitFor();
  await ready(page);
  await shoot(page, "resources", { width: 390 });
  await page.setViewportSize({ width: 1280, height: 800 });
  await signOut(page);
  await page.setViewportSize({ width: 390, height: 844 });
  await visit(page, "/signin", "signin", { width: 390 });
  await page.setViewportSize({ width: 1280, height: 800 });
  log("narrow screens");

  // --- a read-only user: no edit buttons, and the API's 403 when forced
  await signIn(page, env.VMX_VIEWER, env.VMX_VIEWER_PASSWORD);
  await page.getByRole("heading", { name: "Getting started" }).waitFor();
  for (const [path, create] of [
    ["/connections", "New connection"],
    ["/resources", "New resource"],
    ["/api-keys", "New API key"],
    ["/environments", "New environment"],
    ["/workspaces", "New workspace"],
    ["/users", "New user"],
    ["/roles", "New role"],
    ["/prices", "New price"],
  ]) {
    await page.goto(URL + path);
    await ready(page);
    await page.locator("tbody tr").first().waitFor();
    check((await page.getByRole("button", { name: create }).count()) === 0, `no "${create}" for read-only`);
    for (const label of ["Edit", "Delete", "Revoke", "Rotate", "Disable", "Enable", "Quick add", "Add member", "Remove"]) {
      const n = await page.getByRole("button", { name: new RegExp(`^${label}\\b`) }).count();
      check(n === 0, `no ${label} button on ${path} for read-only (found ${n})`);
    }
  }
  await shoot(page, "readonly-workspaces");
  await page.goto(URL + "/pools");
  await ready(page);
  check((await page.getByRole("button", { name: /Add a pool|Save/ }).count()) === 0, "no pool editing for read-only");
  await page.goto(URL + "/setup");
  await ready(page);
  await page.getByLabel("Workspace name").fill("forced-" + Date.now());
  await page.getByRole("button", { name: "Create workspace" }).click();
  const alert = page.getByRole("alert").filter({ hasText: /workspace:create|forbidden|not allowed/i });
  await alert.waitFor();
  await shoot(page, "readonly-forced-403");
  log("read-only: no edit buttons; forced 403 shown:", (await alert.innerText()).slice(0, 120));
  await signOut(page);

  // --- a user with a temporary password must change it first
  await signIn(page, env.VMX_NEWBIE, env.VMX_NEWBIE_PASSWORD);
  await page.getByRole("heading", { name: "Change password" }).waitFor();
  await shoot(page, "password-required");
  await page.getByLabel("Current password").fill(env.VMX_NEWBIE_PASSWORD);
  await page.getByLabel(/^New password( \*)?$/).fill("short");
  await page.getByLabel("New password again").fill("short");
  await page.getByRole("button", { name: "Change password" }).click();
  await page.locator(".mantine-InputWrapper-error").filter({ hasText: /12|characters/ }).waitFor();
  const np = "a-new-password-" + Date.now();
  await page.getByLabel(/^New password( \*)?$/).fill(np);
  await page.getByLabel("New password again").fill(np);
  await page.getByRole("button", { name: "Change password" }).click();
  await page.getByRole("heading", { name: "Getting started" }).waitFor();
  log("temporary password changed");

  await ctx.close();
} catch (e) {
  failed = e;
  for (const p of browser.contexts().flatMap((c) => c.pages())) {
    await p.screenshot({ path: join(ART, "failure.png"), fullPage: true }).catch(() => {});
  }
  console.error("FAILED:", e.stack || e);
} finally {
  await browser.close();
}

writeFileSync(join(ART, "result.json"), JSON.stringify({ ...result, axe: axeProblems }, null, 2));
if (axeProblems.length) {
  console.error("axe-core: serious or critical violations:");
  for (const v of axeProblems) console.error(`  ${v.page}: ${v.id} (${v.impact}) ${v.help} @ ${v.nodes.join(", ")}`);
}
log(failed ? "failed" : axeProblems.length ? "axe violations" : "all good");
process.exit(failed || axeProblems.length ? 1 : 0);
