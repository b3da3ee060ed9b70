// The wallboard in a real browser: the supervisor logs in, a caller starts waiting
// in a queue nobody serves, and the board shows the call within a second, with no
// reload (the status stream pushes it); then the supervisor starts and pauses the
// configured campaign from the board.
// Usage: node wallboard.mjs http://127.0.0.1:PORT/  (DESK_CALL and SIP_ADDR set by run.sh)
import assert from "node:assert/strict";
import { launch } from "./browser.mjs";
import { deskCall } from "./desk-call.mjs";

const base = process.argv[2];
assert.ok(base, "usage: node wallboard.mjs BASE_URL");

const browser = await launch();
let call = null;
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(10_000);
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  let navigations = 0;
  page.on("framenavigated", (f) => { if (f === page.mainFrame()) navigations++; });
  await page.goto(base + "wallboard");

  await page.fill("#sup-id", "sue");
  await page.fill("#sup-password", "sue-pw");
  await page.click("#login-form button[type=submit]");
  await page.waitForSelector('#board:not([hidden]) [data-queue="sales"]');
  await page.waitForSelector('[data-queue="support"]');
  await page.waitForSelector('tr[data-agent="bob"]');
  assert.equal(await page.textContent("#total-waiting"), "0");

  call = deskCall("wait", "02071234567", "801");
  await call.step("waiting");
  // The queue answered the caller; the board must show them promptly.
  await page.waitForSelector('[data-queue="sales"] tr[data-call]', { timeout: 1_000 });
  assert.match(await page.textContent('[data-queue="sales"] tr[data-call]'), /2071234567/);
  assert.equal(await page.textContent("#total-waiting"), "1");
  assert.match(await page.textContent('[data-queue="sales"] .count'), /^1 waiting$/);
  // The wait keeps counting between updates.
  await page.waitForFunction(() => /^[1-9]\d*s$/.test(document.querySelector('[data-queue="sales"] .wait').textContent));

  // The campaign is listed from the stream; the supervisor starts and pauses it.
  const state = () => page.textContent('tr[data-campaign="renewals"] .campaign-state');
  await page.waitForSelector('#campaigns-box:not([hidden]) tr[data-campaign="renewals"]');
  assert.equal(await state(), "draft");
  await page.click('tr[data-campaign="renewals"] button[data-command="START"]');
  await page.waitForFunction(() => document.querySelector('tr[data-campaign="renewals"] .campaign-state')?.textContent === "running");
  await page.click('tr[data-campaign="renewals"] button[data-command="PAUSE"]');
  await page.waitForFunction(() => document.querySelector('tr[data-campaign="renewals"] .campaign-state')?.textContent === "paused");
  assert.equal(navigations, 1, "no reloads");
  assert.deepEqual(pageErrors, []);
  console.log("wallboard: a waiting call appeared live in chromium");
} finally {
  call?.kill();
  await browser.close();
}
