// Drives the dashboard in Debian's headless Chromium. Run by crates/cli/tests/cli/browser.rs
// (`dashboard_in_a_real_browser`), which starts the server, seeds records and keys, and
// afterwards checks the downloaded export with `aitrail verify --export`.
//
// Env: AITRAIL_URL, ADMIN_KEY (admin of tenant acme), VIEWER_KEY (viewer of acme),
// SCREENSHOTS (dir), DOWNLOAD (path for the export), CHROMIUM (default /usr/bin/chromium).
// Prints one JSON line of what it found; any failed expectation throws (exit 1).

import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import path from "node:path";

const base = process.env.AITRAIL_URL;
const shots = process.env.SCREENSHOTS;
const step = (what) => console.error(`browser: ${what}`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
const errors = [];

async function open(viewport) {
  const context = await browser.newContext({ viewport, acceptDownloads: true });
  const page = await context.newPage();
  page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
  page.on("console", (m) => m.type() === "error" && !/401|403|404/.test(m.text()) && errors.push(`console: ${m.text()}`));
  await page.goto(base);
  return page;
}

async function signIn(page, key) {
  await page.getByLabel("API key").fill(key);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("button", { name: "Sign out" }).waitFor();
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

const found = {};
try {
  // ---- sign in (a wrong key first)
  const page = await open({ width: 1280, height: 860 });
  step("sign in");
  await page.getByLabel("API key").fill("ait_0000000000000000_" + "A".repeat(43));
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").filter({ hasText: "invalid API key" }).waitFor();
  await shot(page, "signin");
  await signIn(page, process.env.ADMIN_KEY);
  const cookies = await page.context().cookies();
  const cookie = cookies.find((c) => c.name === "aitrail_session");
  assert.ok(cookie, "a session cookie is set");
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, "Strict");
  assert.ok(!cookie.value.includes(process.env.ADMIN_KEY.split("_").slice(2).join("_")), "the cookie does not hold the key's secret");

  // ---- create a log through the conversation-audit-log service's form
  step("new log");
  await page.getByRole("link", { name: "New log" }).click();
  await page.getByLabel("Agent ID").fill("support-bot");
  await page.getByLabel("Session ID").fill("browser-session");
  await page.getByLabel("Channel").fill("web");
  await page.getByLabel("Prompt").fill("What is our refund policy for the browser test?");
  await page.getByLabel("Response").fill("Refunds within 30 days, said the browser test.");
  const meta = page.getByRole("group", { name: "Model Metadata (Optional)" });
  await meta.getByLabel("Model Provider").fill("anthropic");
  await meta.getByLabel("Model Name").fill("claude-3-sonnet");
  await meta.getByLabel("Model Version").fill("20240229");
  await meta.getByLabel("Deployment ID").fill("eu-west");
  await meta.getByLabel("Temperature").fill("0.5");
  await meta.getByLabel("Safety Mode").selectOption("strict");
  await meta.getByLabel("Model Config (JSON)").fill('{"top_p": 0.9}');
  await shot(page, "new-log");
  await page.getByRole("button", { name: "Create log" }).click();
  const logged = page.getByRole("status").filter({ hasText: "Logged:" });
  await logged.waitFor();
  const id = (await logged.getByRole("link").textContent()).replace("record ", "");
  found.id = id;

  // ---- find it in the table, then filter by provider
  step("logs");
  await page.getByRole("link", { name: "Logs", exact: true }).click();
  await page.locator(`tr[data-id="${id}"]`).waitFor();
  const providers = () => page.locator('table.logs td[data-label="Model Provider"]').allTextContents();
  assert.ok((await providers()).includes("openai"), "seeded openai records are listed");
  // The list is newest logged first, and says so; the seeded batch's event times run the
  // other way (12 days back), shown in their own column.
  const headers = await page.locator("table.logs th").allTextContents();
  assert.deepEqual(headers.slice(0, 2), ["Recorded ↓", "Event time"]);
  const column = (label) => page.locator(`table.logs td[data-label="${label}"]`).allTextContents();
  const recorded = await column("Recorded ↓");
  assert.ok(recorded.every((t, i) => i === 0 || recorded[i - 1] >= t), `recorded, newest first: ${recorded}`);
  const events = await column("Event time");
  assert.ok(events.some((t, i) => i > 0 && events[i - 1] < t), `event times differ from the order: ${events}`);
  assert.match(await page.getByRole("status").first().textContent(), /newest logged first/);
  await shot(page, "logs");
  await page.locator("summary", { hasText: "Filters" }).click();
  await page.getByLabel("Model Provider", { exact: true }).fill("anthropic");
  await page.getByRole("button", { name: "Apply filters" }).click();
  await page.locator('main[data-ready*="model_provider=anthropic"]').waitFor();
  await page.locator(`tr[data-id="${id}"]`).waitFor();
  const filtered = await providers();
  assert.ok(filtered.length >= 1 && filtered.every((p) => p === "anthropic"), `only anthropic rows: ${filtered}`);
  // The form shows the active filters, read from the URL: after a reload too.
  await page.reload();
  await page.locator('main[data-ready*="model_provider=anthropic"]').waitFor();
  assert.equal(await page.getByLabel("Model Provider", { exact: true }).inputValue(), "anthropic");
  await page.locator("summary", { hasText: "Filters (1 active)" }).waitFor();
  // Claude vs GPT: two values of one filter, any of them matching.
  await page.getByRole("button", { name: "Model Provider: add another value" }).click();
  await page.getByLabel("Model Provider 2", { exact: true }).fill("openai");
  await page.getByRole("button", { name: "Apply filters" }).click();
  await page.locator('main[data-ready*="model_provider=anthropic&model_provider=openai"]').waitFor();
  assert.deepEqual([...new Set(await providers())].sort(), ["anthropic", "openai"]);
  assert.equal(await page.getByLabel("Model Provider 2", { exact: true }).inputValue(), "openai");
  // Strictly above 0.5 leaves out the record logged at 0.5; at least 0.5 finds it alone.
  await page.getByLabel("Temperature >", { exact: true }).fill("0.5");
  await page.getByRole("button", { name: "Apply filters" }).click();
  await page.locator('main[data-ready*="temperature_gt=0.5"]').waitFor();
  await page.getByText("No records match these filters.").waitFor();
  assert.ok(page.url().includes("model_provider=anthropic&model_provider=openai"), page.url());
  await page.getByLabel("Temperature >", { exact: true }).fill("");
  await page.getByLabel("Temperature ≥", { exact: true }).fill("0.5");
  await page.getByRole("button", { name: "Apply filters" }).click();
  await page.locator('main[data-ready*="temperature_min=0.5"]').waitFor();
  assert.deepEqual(await page.locator("table.logs tbody tr").evaluateAll((rows) => rows.map((r) => r.dataset.id)), [id]);
  // A filter the form has no input for (tenant_id, for a tenant's key) is shown and kept.
  await page.goto(`${base}/#/logs?tenant_id=acme&model_provider=anthropic`);
  await page.locator('main[data-ready*="tenant_id=acme"]').waitFor();
  await page.locator(".kept code", { hasText: "tenant_id=acme" }).waitFor();
  await page.getByRole("button", { name: "Apply filters" }).click();
  await page.locator('main[data-ready="#/logs?model_provider=anthropic&tenant_id=acme"]').waitFor();
  await page.locator(`tr[data-id="${id}"]`).waitFor();
  await shot(page, "logs-filtered");
  await page.goto(`${base}/#/logs`);
  await page.locator(`tr[data-id="${id}"]`).waitFor();

  // ---- keyboard: the row's link opens the record; the browser checks its integrity
  step("record");
  await page.locator(`tr[data-id="${id}"] a`).focus();
  await page.keyboard.press("Enter");
  await page.waitForURL(new RegExp(`#/records/${id}$`));
  const integrity = page.locator(".integrity");
  await page.locator('.integrity[data-state="verified"], .integrity[data-state="failed"]').waitFor({ timeout: 15000 });
  const steps = await integrity.locator("li").allTextContents();
  assert.equal(await integrity.getAttribute("data-state"), "verified", steps.join("\n"));
  assert.ok(steps.some((s) => s.startsWith("✓ Checkpoint signature")), steps.join("\n"));
  assert.ok(steps.some((s) => s.startsWith("✓ Content")), steps.join("\n"));
  await page.getByText("What is our refund policy for the browser test?").waitFor();
  // Fields are labelled as the Logs table labels them, not by their API names.
  const terms = await page.locator("dt").allTextContents();
  assert.ok(terms.includes("Model Provider") && terms.includes("Model Name"), terms.join(", "));
  assert.ok(!terms.some((t) => /_/.test(t)), `API names shown: ${terms}`);
  found.integrity = steps;
  await shot(page, "record");

  // ---- the same check fails, naming the step, for each way the data can be wrong
  step("tampered proofs");
  const failures = await page.evaluate(async (id) => {
    const { checkRecord } = await import("/ui/proof.js");
    const get = async (p) => (p.endsWith("log-key") ? (await fetch(p)).text() : (await fetch(p)).json());
    const [record, proof, key] = await Promise.all([get(`/v1/records/${id}`), get(`/v1/records/${id}/proof`), get("/v1/log-key")]);
    const failed = async (r, p, k) => (await checkRecord(r, p, k)).filter((s) => !s.ok).map((s) => s.step);
    const flip = (b64) => {
      const b = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      b[b.length - 3] ^= 1;
      return btoa(String.fromCharCode(...b));
    };
    // The proof's tree, re-signed by a key made here, for its own log and for another's.
    const resign = async (origin) => {
      const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
      const raw = new Uint8Array([1, ...new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey))]);
      const name = key.split("+")[0];
      const id = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array([...new TextEncoder().encode(name), 10, ...raw]))).slice(0, 4);
      const [, size, root] = proof.checkpoint.split("\n");
      const body = `${origin}\n${size}\n${root}\n`;
      const sig = new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, pair.privateKey, new TextEncoder().encode(body)));
      const b64 = (bytes) => btoa(String.fromCharCode(...bytes));
      const hex = [...id].map((b) => b.toString(16).padStart(2, "0")).join("");
      return [{ ...proof, checkpoint: `${body}\n\u2014 ${name} ${b64([...id, ...sig])}\n` }, `${name}+${hex}+${b64(raw)}`];
    };
    const ownLog = proof.checkpoint.split("\n")[0];
    const [resigned, resignedKey] = await resign(ownLog);
    const [moved, movedKey] = await resign(ownLog.replace(/\/[^/]*$/, "/another-tenant"));
    // A record logged without a prompt, shown with one.
    const page = await get("/v1/records?limit=50");
    const bare = page.records.find((r) => r.prompt === undefined);
    const bareProof = await get(`/v1/records/${bare.id}/proof`);
    return {
      reSigned: await failed(record, resigned, resignedKey),
      otherTenantsLog: await failed(record, moved, movedKey),
      contentWithoutCommitment: await failed({ ...bare, prompt: "never logged" }, bareProof, key),
      untouched: await failed(record, proof, key),
      field: await failed({ ...record, model_name: "gpt-4o" }, proof, key),
      content: await failed({ ...record, prompt: `${record.prompt}!` }, proof, key),
      entry: await failed(record, { ...proof, entry: flip(proof.entry) }, key),
      path: await failed(record, { ...proof, audit_path: proof.audit_path.map((h, i) => (i === 0 ? flip(h) : h)) }, key),
      size: await failed(record, { ...proof, checkpoint: proof.checkpoint.replace(/\n(\d+)\n/, (m, n) => `\n${Number(n) + 1}\n`) }, key),
      // A key whose id does not match it.
      key: await failed(record, proof, ((k) => k.slice(0, -10) + (k.at(-10) === "A" ? "B" : "A") + k.slice(-9))(key.trim())),
    };
  }, id);
  assert.deepEqual(failures.untouched, []);
  assert.deepEqual(failures.field, ["Record shown = record logged"]);
  assert.deepEqual(failures.content, ["Content"]);
  assert.ok(failures.entry.includes("Inclusion") || failures.entry.includes("Entry"), JSON.stringify(failures));
  assert.deepEqual(failures.path, ["Inclusion"]);
  assert.deepEqual(failures.size, ["Checkpoint signature"]);
  assert.deepEqual(failures.key, ["Log key"]);
  assert.deepEqual(failures.reSigned, [], "the checks are relative to the key given");
  assert.deepEqual(failures.otherTenantsLog, ["Record shown = record logged"]);
  assert.deepEqual(failures.contentWithoutCommitment, ["Content"]);
  found.tampered = failures;

  // ---- usage charts from the seeded data
  step("usage");
  await page.getByRole("link", { name: "Usage" }).click();
  await page.locator("svg.chart rect").first().waitFor();
  const series = await page.locator("svg.chart rect[data-series]").evaluateAll((rects) => [...new Set(rects.map((r) => r.dataset.series))].sort());
  assert.deepEqual(series, ["anthropic", "openai"]);
  found.usage = await page.getByRole("status").first().textContent();
  // The page says its window: the API's default, the last 30 days.
  const period = page.locator("#usage-period");
  assert.match(await period.textContent(), /the last 30 days, \d{4}-\d\d-\d\d .* to now/);
  await shot(page, "usage");
  // ... and lets the user change it: from 5½ days ago, 6 seeded records and the new one.
  await page.getByRole("button", { name: "Change period" }).click();
  const from = await page.evaluate(() => {
    const d = new Date(Date.now() - 5.5 * 86400e3);
    return new Date(d - d.getTimezoneOffset() * 60e3).toISOString().slice(0, 16);
  });
  await page.getByLabel("From", { exact: true }).fill(from);
  await page.getByRole("button", { name: "Show", exact: true }).click();
  await page.locator('main[data-ready*="since="]').waitFor();
  assert.match(await page.getByRole("status").first().textContent(), /^7 records/);
  assert.doesNotMatch(await period.textContent(), /30 days/);
  assert.equal(await page.getByLabel("From", { exact: true }).inputValue(), from);

  // ---- integrity: verify now
  step("integrity");
  await page.getByRole("link", { name: "Integrity" }).click();
  await page.locator("#checkpoint-signature", { hasText: "valid: signed by the log key" }).waitFor();
  await page.getByRole("button", { name: "Verify now" }).click();
  await page.locator('#verification[data-state="verified"]').waitFor({ timeout: 60000 });
  await shot(page, "integrity");

  // ---- export: a zip download
  step("export");
  await page.getByRole("link", { name: "Export" }).click();
  // The format select is as wide as its longest option (it used to cut it off).
  const cut = await page.getByLabel("Format").evaluate((select) => {
    const style = getComputedStyle(select);
    const ctx = document.createElement("canvas").getContext("2d");
    ctx.font = style.font;
    const text = Math.max(...[...select.options].map((o) => ctx.measureText(o.text).width));
    const room = select.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight) - 20; // the arrow
    return { text, room };
  });
  assert.ok(cut.text <= cut.room, `the format select cuts its text: ${JSON.stringify(cut)}`);
  await page.getByRole("button", { name: "Prepare export" }).click();
  const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("link", { name: "Download zip export" }).click()]);
  await download.saveAs(process.env.DOWNLOAD);
  found.export = download.suggestedFilename();
  await shot(page, "export");

  // ---- settings, keys and the access log render
  step("settings, keys, access log");
  await page.getByRole("link", { name: "Settings" }).click();
  await page.getByLabel("Content kept").waitFor();
  await shot(page, "settings");
  await page.getByRole("link", { name: "API keys" }).click();
  await page.getByRole("button", { name: "Make key" }).waitFor();
  await shot(page, "keys");
  await page.getByRole("link", { name: "Access log" }).click();
  await page.locator('td[data-label="Operation"]', { hasText: "export" }).first().waitFor();
  // Key ids come with their labels, from the keys table.
  await page.locator('td[data-label="Key"] .key-label', { hasText: "browser admin" }).first().waitFor();
  await shot(page, "access-log");

  // ---- CSRF: the session alone does not make a change
  step("csrf");
  const refused = await page.evaluate(async () => {
    const res = await fetch("/v1/keys", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ role: "admin" }) });
    return { status: res.status, body: await res.json() };
  });
  assert.equal(refused.status, 403, JSON.stringify(refused));
  assert.match(refused.body.detail, /CSRF/);
  const formPost = await page.evaluate(async () => {
    const res = await fetch("/v1/records", { method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: "tenant_id=acme&model_name=forged" });
    return res.status;
  });
  assert.equal(formPost, 403);
  found.csrf = [refused.status, formPost];

  // ---- sign out ends the session
  step("sign out");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("API key").waitFor();
  assert.equal(await page.evaluate(async () => (await fetch("/v1/session")).status), 401);

  // ---- a viewer sees no export, and cannot reach it
  step("viewer");
  const viewer = await open({ width: 1280, height: 860 });
  await signIn(viewer, process.env.VIEWER_KEY);
  assert.equal(await viewer.getByRole("link", { name: "Export" }).count(), 0);
  assert.equal(await viewer.getByRole("link", { name: "API keys" }).count(), 0);
  await viewer.goto(`${base}/#/export`);
  await viewer.getByText("A viewer key cannot use this page.").waitFor();
  assert.equal(await viewer.evaluate(async () => (await fetch("/v1/export?format=zip")).status), 403);
  await viewer.goto(`${base}/#/records/${id}`);
  await viewer.locator('.integrity[data-state="verified"]').waitFor({ timeout: 15000 });
  assert.equal(await viewer.getByText("What is our refund policy for the browser test?").count(), 0, "a viewer sees no content");
  // The browser pinned the log key on first use; another key later is a failure, said so.
  await viewer.evaluate(() => localStorage.setItem("aitrail.logKeyFingerprint", "00".repeat(32)));
  await viewer.goto(`${base}/#/logs`);
  await viewer.goto(`${base}/#/records/${id}`);
  await viewer.locator('.integrity[data-state="failed"]').waitFor({ timeout: 15000 });
  await viewer.getByText("is not the one this browser pinned").first().waitFor();

  // ---- a phone: 390 px wide, nothing wider than the screen
  step("390 px");
  const phone = await open({ width: 390, height: 844 });
  await signIn(phone, process.env.ADMIN_KEY);
  await phone.locator(`tr[data-id="${id}"]`).waitFor();
  for (const [hash, ready] of [["#/logs", "table.logs"], [`#/records/${id}`, '.integrity[data-state="verified"]'], ["#/usage", "svg.chart rect"]]) {
    await phone.goto(`${base}/${hash}`);
    await phone.locator(ready).first().waitFor({ timeout: 15000 });
    const width = await phone.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 390, `${hash} is ${width} px wide at 390`);
  }
  await phone.goto(`${base}/#/logs`);
  await phone.locator("table.logs").waitFor();
  await shot(phone, "logs-390");

  assert.deepEqual(errors, []);
  console.log(JSON.stringify(found));
} finally {
  await browser.close();
}
