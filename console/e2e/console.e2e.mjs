// The console end to end in a real headless Chromium (Debian's, driven by playwright-core),
// against a running mesh: tests/e2e/test_console.py starts the mesh, makes the tenant, a model
// on the scripted model server and a viewer, then runs this script with:
//   MESH_URL, ADMIN_EMAIL, ADMIN_PASSWORD, VIEWER_EMAIL, VIEWER_PASSWORD, MODEL_NAME,
//   REPLY (the words the scripted model streams), SCREENSHOTS (a directory, optional)
// It prints one JSON line per measurement ("metric") and exits non-zero at the first failure.
// Any API answer >= 400 that the test did not provoke, and any error in the page, fails it:
// the page may not hide an error.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const MESH = env("MESH_URL");
const SHOTS = process.env.SCREENSHOTS || "";
if (SHOTS) mkdirSync(SHOTS, { recursive: true });
const started = Date.now();
const step = (text) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${text}`);
const metric = (name, value, unit) => console.log(JSON.stringify({ metric: name, value, unit }));

const profile = mkdtempSync(join(tmpdir(), "console-chromium-"));
// A fresh profile (--user-data-dir) of its own, removed at the end.
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1280, height: 860 },
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});

const expected = []; // API errors the test provokes: [method, path regexp, status]
const unexpected = [];
const pageErrors = [];

async function newPage(colorScheme = "light") {
  const page = await browser.newPage();
  await page.emulateMedia({ colorScheme });
  page.setDefaultTimeout(15000);
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("console", (m) => m.type() === "error" && !/Failed to load resource/.test(m.text()) && pageErrors.push(m.text()));
  page.on("response", (r) => {
    const url = new URL(r.url());
    if (r.status() < 400 || !(url.pathname.startsWith("/api/") || url.pathname.startsWith("/console"))) return;
    const i = expected.findIndex(([m, p, s]) => m === r.request().method() && p.test(url.pathname) && s === r.status());
    if (i >= 0) expected.splice(i, 1);
    else unexpected.push(`${r.request().method()} ${url.pathname} -> ${r.status()}`);
  });
  return page;
}

/** Waits until `check()` is true (playwright-core has no `expect`). */
async function until(what, check, timeout = 15000) {
  const deadline = Date.now() + timeout;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function shot(page, name, mask = []) {
  if (SHOTS) await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: false, mask });
}

async function signIn(page, email, password) {
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByTestId("who").waitFor();
}

let failed = false;
try {
  // ---- first load: sizes, and time until the sign-in form answers ---------------------------
  const page = await newPage();
  const t0 = Date.now();
  const assets = [];
  page.on("response", async (r) => {
    if (new URL(r.url()).pathname.startsWith("/console")) assets.push(r);
  });
  await page.goto(`${MESH}/console`);
  await page.getByRole("button", { name: "Sign in" }).waitFor();
  const interactive = Date.now() - t0;
  // What the browser received (the gateway compresses the console's files) and what it unpacked.
  let raw = 0, compressed = 0;
  for (const r of assets) {
    raw += (await r.body()).length;
    compressed += (await r.request().sizes()).responseBodySize;
    const big = (await r.body()).length > 10000;
    if (big && (await r.headerValue("content-encoding")) !== "gzip") throw new Error(`${r.url()} was sent uncompressed`);
  }
  metric("console_first_load_bytes", raw, "bytes");
  metric("console_first_load_gzip_bytes", compressed, "bytes");
  metric("console_time_to_interactive_ms", interactive, "ms");
  await shot(page, "sign-in");

  // ---- sign in: a wrong password is shown, then the right one --------------------------------
  expected.push(["POST", /^\/api\/v1\/auth\/login$/, 401]);
  await page.getByLabel("Email").fill(env("ADMIN_EMAIL"));
  await page.getByLabel("Password").fill("not-the-password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByTestId("api-error").filter({ hasText: "wrong email or password" }).waitFor();
  await page.getByLabel("Password").fill(env("ADMIN_PASSWORD"));
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByTestId("role").filter({ hasText: "admin" }).waitFor();
  await page.getByTestId("tenant").waitFor();
  step("signed in as admin");

  // A reload keeps the session (the tab's refresh token), without the password.
  await page.reload();
  await page.getByTestId("role").filter({ hasText: "admin" }).waitFor();
  step("a reload kept the session");
  await page.waitForSelector(".figures");

  // ---- create a tool ---------------------------------------------------------------------------
  const toolName = `console-calc-${Date.now().toString(36)}`;
  await page.getByRole("link", { name: "Tools" }).click();
  await page.getByRole("button", { name: "New tool" }).click();
  const toolForm = page.getByRole("form", { name: "New tool" });
  await toolForm.getByLabel("Name").fill(toolName);
  await toolForm.getByLabel("Type").selectOption("TOOL_TYPE_BUILTIN");
  await toolForm.getByLabel("Built-in function").selectOption("math");
  await toolForm.getByRole("button", { name: "Create tool" }).click();
  await page.getByRole("table", { name: "Tools" }).getByText(toolName).waitFor();
  await shot(page, "tools");
  step(`created tool ${toolName}`);

  // ---- create an agent: the API's validation message at the field, then fixed ---------------
  await page.getByRole("link", { name: "Agents" }).click();
  // Another tenant's agent never appears.
  await page.getByLabel("Search agents").fill(env("OTHER_AGENT"));
  await page.getByRole("button", { name: "Search" }).click();
  await page.getByRole("table", { name: "Agents" }).getByText("No agents matching").waitFor();
  await page.getByRole("button", { name: "New agent" }).click();
  const form = page.getByRole("form", { name: "New agent" });
  await form.getByLabel("Name").fill("not a valid name!");
  await form.getByLabel("Model").fill(env("MODEL_NAME"));
  await form.getByLabel("System prompt").fill("Be brief.");
  await form.getByLabel("Tools").selectOption({ label: toolName });
  expected.push(["POST", /^\/api\/v1\/agents$/, 400]);
  await form.getByRole("button", { name: "Create agent" }).click();
  const nameError = form.locator('.field-error[data-field="name"]');
  await nameError.waitFor();
  const message = await nameError.textContent();
  if (!/must match/.test(message)) throw new Error(`the name's error says ${message}`);
  if ((await form.getByLabel("Name").getAttribute("aria-invalid")) !== "true") throw new Error("Name is not marked invalid");
  await shot(page, "agent-validation");
  const agentName = `console-agent-${Date.now().toString(36)}`;
  await form.getByLabel("Name").fill(agentName);
  await form.getByRole("button", { name: "Create agent" }).click();
  await page.getByRole("heading", { name: agentName }).waitFor();
  step(`created agent ${agentName} after the validation error (${message.trim()})`);

  // Edit it (only the fields of the form change: ?update_mask=).
  await page.getByRole("button", { name: "Edit" }).click();
  const edit = page.getByRole("form", { name: "Edit agent" });
  await edit.getByLabel("Description").fill("Edited in the console");
  await edit.getByRole("button", { name: "Save" }).click();
  await page.getByTestId("agent-description").filter({ hasText: "Edited in the console" }).waitFor();
  step("edited");

  // Activate and deploy it.
  await page.getByRole("button", { name: "Activate" }).click();
  await page.getByTestId("agent-status").filter({ hasText: "active" }).waitFor();
  await page.getByRole("button", { name: "Deploy" }).click();
  await page.getByTestId("agent-status").filter({ hasText: "deployed" }).waitFor();
  step("deployed");

  // ---- chat: the reply streams in, in a thread -----------------------------------------------
  const words = env("REPLY"); // the scripted model calls the tool first, then writes these words
  await page.getByLabel("Message").fill("Hello there");
  const sent = Date.now();
  await page.getByLabel("Message").press("Enter");
  const reply = page.getByTestId("reply").last();
  // Part of the reply while the call is still streaming: tokens arrive before the end.
  await page.locator('.turn.assistant[data-status="streaming"] [data-testid="reply"]').filter({ hasText: words.split(" ")[0] }).waitFor();
  const partial = await reply.textContent();
  const firstToken = Date.now() - sent;
  await page.locator('.turn.assistant[data-status="CALL_STATUS_COMPLETED"]').waitFor({ timeout: 30000 });
  const whole = Date.now() - sent;
  const final = (await reply.textContent()).trim();
  if (!final.startsWith(words) || !final.includes("42")) throw new Error(`the reply is ${JSON.stringify(final)}`);
  const tool = page.getByTestId("tool-call").last();
  const toolText = await tool.textContent();
  if (!toolText.includes(toolName) || !/completed/i.test(toolText)) throw new Error(`the tool call shows ${toolText}`);
  if (!(partial.replace("▍", "").trim().length < words.length)) throw new Error(`no partial reply seen (${partial})`);
  metric("chat_first_token_ms", firstToken, "ms");
  metric("chat_whole_reply_ms", whole, "ms");
  step(`chat: the tool call (${toolText.trim()}), "${partial.replace("▍", "").trim()}" then "${final}"`);
  await shot(page, "agent-chat");
  const threadLabel = await page.getByLabel("Thread").locator("option:checked").textContent();
  if (!/Hello there/.test(threadLabel)) throw new Error(`the chat is not in a thread (${threadLabel})`);

  // ---- a workflow with an approval step: run, approve in the browser, completed ---------------
  await page.getByRole("link", { name: "Workflows" }).click();
  await page.getByRole("button", { name: "New workflow" }).click();
  const wf = page.getByRole("form", { name: "New workflow" });
  const flowName = `console-flow-${Date.now().toString(36)}`;
  await wf.getByLabel("Name").fill(flowName);
  await wf.getByRole("button", { name: "Create and activate" }).click();
  await page.getByRole("heading", { name: flowName }).waitFor();
  await page.locator('svg.graph [data-step="approve"]').waitFor();
  await shot(page, "workflow");
  await page.getByLabel("Inputs (JSON)").fill('{"name": "console"}');
  await page.getByRole("button", { name: "Run workflow" }).click();
  await page.getByRole("button", { name: "Approve approve" }).waitFor({ timeout: 30000 });
  await page.locator('svg.graph [data-step="approve"][data-state="waiting_approval"]').waitFor();
  await shot(page, "execution-waiting");
  step("the execution waits for approval");
  await page.getByRole("button", { name: "Approve approve" }).click();
  await page.getByTestId("execution-status").filter({ hasText: "completed" }).waitFor({ timeout: 30000 });
  await until("the outputs hold the input", async () => (await page.getByTestId("execution-outputs").textContent()).includes("console"));
  await page.locator('svg.graph [data-step="done"][data-state="completed"]').waitFor();
  step("approved in the browser; the execution completed");
  await shot(page, "execution-completed");

  // Run it again and reject the step: the execution fails with the rejection.
  await page.getByRole("link", { name: /^← / }).click();
  await page.getByRole("heading", { name: flowName }).waitFor();
  await page.getByRole("button", { name: "Run workflow" }).click();
  await page.getByRole("button", { name: "Reject approve" }).click({ timeout: 30000 });
  await page.getByTestId("execution-status").filter({ hasText: "failed" }).waitFor({ timeout: 30000 });
  await page.getByText("APPROVAL_REJECTED").first().waitFor();
  step("rejected in the browser; the execution failed with APPROVAL_REJECTED");

  // And once more, cancelled while it waits.
  await page.getByRole("link", { name: /^← / }).click();
  await page.getByRole("heading", { name: flowName }).waitFor();
  await page.getByRole("button", { name: "Run workflow" }).click();
  await page.getByRole("button", { name: "Approve approve" }).waitFor({ timeout: 30000 });
  await page.getByRole("button", { name: "Cancel" }).click();
  await page.getByTestId("execution-status").filter({ hasText: "cancelled" }).waitFor({ timeout: 30000 });
  step("cancelled in the browser");

  // ---- the call's transcript ------------------------------------------------------------------
  await page.getByRole("link", { name: "Calls" }).click();
  await page.getByRole("table", { name: "Calls" }).locator("tbody a").first().click();
  await page.getByTestId("transcript").getByText("Hello there").waitFor();
  await page.getByTestId("transcript").getByText(words).first().waitFor();
  await shot(page, "call");
  step("the call's transcript shows the chat");

  // ---- the actions in the audit log ------------------------------------------------------------
  await page.getByRole("link", { name: "Audit" }).click();
  const audit = page.getByRole("table", { name: "Audit events" });
  for (const action of ["tool.create", "agent.create"]) {
    await audit.locator(`tr[data-action="${action}"]`).first().waitFor();
  }
  await page.getByLabel("Action").fill("agent.create");
  await page.getByRole("button", { name: "Filter" }).click();
  await audit.locator('tr[data-action="agent.create"]').filter({ hasText: agentName }).waitFor();
  await until("the filter leaves only agent.create", async () => (await audit.locator('tbody tr:not([data-action="agent.create"])').count()) === 0);
  await shot(page, "audit");
  step("the actions are in the audit log");

  // ---- a prompt: two versions, a label moved, the diff between them ------------------------------
  await page.getByRole("link", { name: "Prompts" }).click();
  await page.getByRole("button", { name: "New prompt" }).click();
  const promptName = `console-prompt-${Date.now().toString(36)}`;
  const promptForm = page.getByRole("form", { name: "New prompt" });
  await promptForm.getByLabel("Name").fill(promptName);
  await promptForm.getByLabel("Content").fill("You are helpful.\nAnswer in English.");
  await promptForm.getByRole("button", { name: "Create prompt" }).click();
  await page.getByRole("heading", { name: promptName }).waitFor();
  await page.getByLabel("Version content").fill("You are helpful.\nAnswer in French.");
  await page.getByLabel("Changelog").fill("French");
  await page.getByRole("button", { name: "Save version" }).click();
  await page.getByRole("table", { name: "Versions" }).getByText("French").waitFor();
  await page.getByLabel("To version").selectOption("2");
  await page.getByRole("button", { name: "Set label" }).click();
  await page.getByTestId("prompt-labels").filter({ hasText: "production → 2" }).waitFor();
  // Each picked as a user would, from the other value (so each pick is a change even when the
  // page already showed it: one CI run saw v1 against v1 after picking what was shown).
  await page.getByRole("table", { name: "Versions" }).getByText("production").waitFor();
  for (const [label, first, then] of [["From", "2", "1"], ["To", "1", "2"]]) {
    const select = label === "To" ? page.getByLabel("To", { exact: true }) : page.getByLabel(label);
    await select.selectOption(first);
    await select.selectOption(then);
  }
  await page.getByTestId("diff").locator(".removed").filter({ hasText: "- Answer in English." }).waitFor();
  await page.getByTestId("diff").locator(".added").filter({ hasText: "+ Answer in French." }).waitFor();
  await shot(page, "prompt-diff");
  step("a prompt's second version, its label moved, the diff shown");

  // ---- governance: the decisions of this session are in the log ---------------------------------------
  await page.getByRole("link", { name: "Governance" }).click();
  await page.getByRole("table", { name: "Decisions" }).locator('tbody tr[data-allowed="true"]').first().waitFor();
  await page.getByRole("table", { name: "Budgets" }).waitFor();
  await shot(page, "governance");
  step("the governance decisions are in the decision log");

  // ---- a template: preview, then create the agent it describes ---------------------------------
  await page.getByRole("link", { name: "Templates" }).click();
  await page.getByRole("link", { name: env("TEMPLATE_NAME") }).click();
  const fromTemplate = `console-from-template-${Date.now().toString(36)}`;
  await page.getByLabel("agent_name (required)").fill(fromTemplate);
  await page.getByLabel("team (required)").fill("billing");
  await page.getByRole("button", { name: "Preview" }).click();
  await page.getByTestId("template-preview").filter({ hasText: "You help the billing team." }).waitFor();
  await page.getByRole("button", { name: "Create the agent" }).click();
  await page.getByTestId("template-made").getByRole("link").click();
  await page.getByRole("heading", { name: fromTemplate }).waitFor();
  step("a template previewed, then instantiated as an agent");

  // ---- models and secrets: a secret is write only -----------------------------------------------
  await page.getByRole("link", { name: "Models" }).click();
  await page.getByRole("table", { name: "Models" }).getByText(env("MODEL_NAME")).waitFor();
  const secretName = `console-secret-${Date.now().toString(36)}`;
  const secretValue = `sv-${Math.random().toString(36).slice(2)}-${Date.now()}`;
  await page.getByLabel("Secret name").fill(secretName);
  await page.getByLabel("Secret value").fill(secretValue);
  await page.getByRole("button", { name: "Add secret" }).click();
  const secretRow = page.getByRole("table", { name: "Secrets" }).getByRole("row", { name: new RegExp(secretName) });
  await secretRow.waitFor();
  await page.getByRole("button", { name: `Rotate ${secretName}` }).click();
  await page.getByLabel("New value").fill(`${secretValue}-2`);
  await page.getByRole("button", { name: "Save new value" }).click();
  await until("the secret's version is 2", async () => (await secretRow.locator("td").nth(2).textContent()) === "2");
  if ((await page.content()).includes(secretValue)) throw new Error("a secret's value is on the page");
  await shot(page, "models-secrets");
  step("a secret added and rotated, its value never shown");

  // ---- settings: an API key shown once, then revoked -------------------------------------------
  await page.getByRole("link", { name: "Settings" }).click();
  const keyName = `console-key-${Date.now().toString(36)}`;
  await page.getByLabel("Key name").fill(keyName);
  await page.getByLabel("Scopes (space-separated)").fill("agents:read calls:read");
  await page.getByRole("button", { name: "Create key" }).click();
  const shown = (await page.getByTestId("new-key").locator("pre").textContent()).trim();
  if (shown.length < 20) throw new Error(`the new key shows ${shown}`);
  await page.getByRole("heading", { name: "API keys" }).scrollIntoViewIfNeeded();
  await shot(page, "settings", [page.getByTestId("new-key").locator("pre")]); // no key in the docs
  await page.getByRole("button", { name: "I have copied it" }).click();
  if (await page.getByText(shown).count()) throw new Error("the key is still shown");
  const keyRow = page.getByRole("table", { name: "API keys" }).getByRole("row", { name: new RegExp(keyName) });
  await keyRow.waitFor();
  page.once("dialog", (d) => d.accept());
  await page.getByRole("button", { name: `Revoke ${keyName}` }).click();
  await until("the revoked key leaves the list", async () => (await keyRow.count()) === 0);
  step("an API key shown once, then revoked");

  // ---- settings: a webhook added, its secret never shown, then deleted ----------------------
  const hookName = `console-hook-${Date.now().toString(36)}`;
  await page.getByLabel("Webhook name").fill(hookName);
  await page.getByLabel("URL", { exact: true }).fill("http://127.0.0.1:9/hook");
  await page.getByLabel("Events (space-separated; empty: every event)").fill("agent.*");
  await page.getByRole("button", { name: "Add webhook" }).click();
  const hookRow = page.getByRole("table", { name: "Webhooks" }).getByRole("row", { name: new RegExp(hookName) });
  await hookRow.waitFor();
  if (!(await hookRow.textContent()).includes("agent.*")) throw new Error("the webhook's events are not shown");
  await page.getByRole("button", { name: `Deliveries of ${hookName}` }).click();
  await page.getByRole("table", { name: "Deliveries" }).waitFor();
  page.once("dialog", (d) => d.accept());
  await page.getByRole("button", { name: `Delete ${hookName}` }).click();
  await until("the deleted webhook leaves the list", async () => (await hookRow.count()) === 0);
  step("a webhook added and deleted");

  // ---- the overview's charts, now with a call and an execution -----------------------------
  await page.getByRole("link", { name: "Overview" }).click();
  await page.getByRole("list", { name: "Summary" }).getByText("Calls", { exact: true }).waitFor();
  await page.locator(".recharts-surface").first().waitFor();
  await page.waitForTimeout(400);
  await shot(page, "overview");

  // ---- sign out; a viewer sees nothing that would change anything ------------------------------
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("button", { name: "Sign in" }).waitFor();
  await page.reload();
  await page.getByRole("button", { name: "Sign in" }).waitFor(); // signed out stays signed out
  const viewer = await newPage("dark");
  await viewer.goto(`${MESH}/console`);
  await signIn(viewer, env("VIEWER_EMAIL"), env("VIEWER_PASSWORD"));
  await viewer.getByTestId("role").filter({ hasText: "viewer" }).waitFor();
  await viewer.getByRole("link", { name: "Agents" }).click();
  await viewer.getByRole("link", { name: agentName }).click();
  await viewer.getByRole("heading", { name: agentName }).waitFor();
  for (const name of ["New agent", "New tool", "New prompt", "Add model", "Add secret", "Create the agent", "Edit", "Deploy", "Undeploy", "Retire", "Activate", "Deactivate", "Send"]) {
    if (await viewer.getByRole("button", { name }).count()) throw new Error(`a viewer is offered "${name}"`);
  }
  if (await viewer.getByLabel("Message").count()) throw new Error("a viewer is offered the chat");
  await shot(viewer, "viewer-agent-dark");
  await viewer.getByRole("link", { name: "Workflows" }).click();
  await viewer.getByRole("link", { name: flowName }).click();
  await viewer.getByRole("heading", { name: flowName }).waitFor();
  for (const name of ["New workflow", "Edit", "Run workflow", "Deactivate", "Activate"]) {
    if (await viewer.getByRole("button", { name }).count()) throw new Error(`a viewer is offered "${name}"`);
  }
  if (await viewer.getByRole("link", { name: "Settings" }).count()) throw new Error("a viewer is offered the settings");
  await viewer.getByRole("link", { name: "Models" }).click();
  await viewer.getByRole("table", { name: "Models" }).waitFor();
  if (await viewer.getByRole("button", { name: "Add model" }).count()) throw new Error("a viewer is offered Add model");
  if (await viewer.getByRole("heading", { name: "Secrets", exact: true }).count()) throw new Error("a viewer is shown the secrets");
  step("a viewer is offered no control that changes anything");

  if (expected.length) throw new Error(`provoked errors never seen: ${expected.map(String).join(", ")}`);
  if (unexpected.length) throw new Error(`the API answered errors: ${unexpected.join("; ")}`);
  if (pageErrors.length) throw new Error(`errors in the page: ${pageErrors.join("; ")}`);
  step("passed");
} catch (error) {
  failed = true;
  console.error(`FAILED: ${error.stack || error}`);
  if (unexpected.length) console.error(`API errors seen: ${unexpected.join("; ")}`);
  if (pageErrors.length) console.error(`page errors: ${pageErrors.join("; ")}`);
  {
    for (const p of browser.pages()) {
      if (SHOTS) await p.screenshot({ path: join(SHOTS, `failure-${Date.now()}.png`) }).catch(() => {});
      console.error(`page ${p.url()}:\n${(await p.locator("main").innerText().catch(() => "")).slice(0, 2000)}`);
    }
  }
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
