// Times the dashboard's logs page in headless chromium: for each filter view, from the
// hash change to the table drawn (main[data-ready]), 30 times; then whole page loads.
// Run by `aitrail-bench dashboard`; uses the browser test's playwright-core
// (npm ci --prefix crates/cli/tests/browser) and Debian's chromium.
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "../cli/tests/browser/package.json"));
const { chromium } = require("playwright-core");

const base = process.env.AITRAIL_URL;
const views = process.env.VIEWS.split("\n");
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox"] });
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
await page.goto(base);
await page.getByLabel("API key").fill(process.env.AITRAIL_KEY);
await page.getByRole("button", { name: "Sign in" }).click();
await page.locator("main[data-ready]").waitFor();

const pct = (xs, p) => xs.sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))].toFixed(1);
console.log("| logs page in chromium: hash change → table drawn | p50 ms | p99 ms |");
console.log("|---|---|---|");
const nav = (hash) =>
  page.evaluate(async (hash) => {
    const main = document.getElementById("main");
    const t = performance.now();
    location.hash = hash;
    while (main.dataset.ready !== location.hash) await new Promise((r) => requestAnimationFrame(r));
    return performance.now() - t;
  }, hash);
for (const view of views) {
  const times = [];
  for (let i = 0; i < 30; i++) {
    await nav("#/logs?cursor=1"); // another view first (an empty page), so each is fetched anew
    times.push(await nav(`#/logs?${view}`));
  }
  console.log(`| \`${view || "(no filter)"}\` | ${pct(times, 0.5)} | ${pct(times, 0.99)} |`);
}
const loads = [];
for (let i = 0; i < 20; i++) {
  const t = Date.now();
  await page.goto(`${base}/?load=${i}#/logs`);
  await page.locator("main[data-ready]").waitFor();
  loads.push(Date.now() - t);
}
console.log(`| full page load (HTML, scripts, session, 50 records) | ${pct(loads, 0.5)} | ${pct(loads, 0.99)} |`);
await browser.close();
