// The reports page in a real browser: the supervisor logs in, runs the calls report
// for today (the earlier page tests made calls to both queues), sees each queue's
// row and a drawn chart, charts calls by hour, and reads the campaign report.
// Usage: node reports.mjs http://127.0.0.1:PORT/
import assert from "node:assert/strict";
import { launch } from "./browser.mjs";

const base = process.argv[2];
assert.ok(base, "usage: node reports.mjs BASE_URL");

const browser = await launch();
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(10_000);
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  await page.goto(base + "reports");

  await page.fill("#sup-id", "sue");
  await page.fill("#sup-password", "wrong");
  await page.click("#login-form button[type=submit]");
  await page.waitForFunction(() => /Login refused/.test(document.querySelector("#login-error").textContent));
  await page.fill("#sup-password", "sue-pw");
  await page.click("#login-form button[type=submit]");
  await page.waitForSelector("#reports:not([hidden])");

  // Calls per queue, today: the desktop test's answered call and the wallboard's
  // waiting caller.
  await page.selectOption("#kind", "CALLS");
  await page.click("#report-form button[type=submit]");
  await page.waitForSelector("#result:not([hidden]) #report-table tbody tr");
  const table = await page.$$eval("#report-table tr", (rows) =>
    rows.map((r) => [...r.children].map((c) => c.textContent)));
  const header = table[0];
  const col = (name) => header.indexOf(name);
  const row = (queue) => table.find((r) => r[0] === queue);
  assert.ok(row("support"), `support row in ${JSON.stringify(table)}`);
  assert.ok(row("sales"), `sales row in ${JSON.stringify(table)}`);
  assert.ok(Number(row("support")[col("answered")]) >= 1, "the desktop test's call was answered");
  assert.ok(Number(row("sales")[col("offered")]) >= 1, "the wallboard test's caller was offered");
  assert.match(row("support")[col("service_level")], /%$/, "ratios read as percentages");

  // The chart draws the chosen column.
  await page.selectOption("#chart-column", "offered");
  const inked = await page.$eval("#report-chart", (c) => {
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return n;
  });
  assert.ok(inked > 500, `the bar chart is drawn (${inked} pixels)`);

  // Calls by hour of today add up to the day's offered calls.
  await page.click("#by-hour");
  await page.waitForSelector("#hourly:not([hidden])");
  const hours = JSON.parse(await page.$eval("#hourly", (e) => e.dataset.hours));
  assert.equal(hours.length, 24);
  const offered = table.slice(1).reduce((n, r) => n + Number(r[col("offered")]), 0);
  assert.equal(hours.reduce((n, h) => n + h.offered, 0), offered, "hours add up to the day");

  // The campaign report lists the configured campaign, not dialled yet.
  await page.selectOption("#kind", "CAMPAIGNS");
  await page.click("#report-form button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#report-table thead th")?.textContent === "campaign");
  const campaign = await page.$$eval("#report-table tbody tr", (rows) =>
    rows.map((r) => [...r.children].map((c) => c.textContent)));
  assert.equal(campaign[0][0], "renewals");
  assert.deepEqual(pageErrors, []);
  console.log("reports: tables, charts and calls by hour in chromium");
} finally {
  await browser.close();
}
