// The web self-service page in a real browser: a visitor picks the outage line,
// answers its questions (one answer wrong first) and reaches the script's end.
// Usage: node self-service.mjs http://127.0.0.1:PORT/
import assert from "node:assert/strict";
import { launch } from "./browser.mjs";

const base = process.argv[2];
assert.ok(base, "usage: node self-service.mjs BASE_URL");

const browser = await launch();
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(10_000);
  await page.goto(base);

  await page.click('[data-script="utility-outage"]');
  await page.waitForSelector("#answer");
  assert.equal(await page.textContent("#title"), "Power outage line");
  assert.match(await page.textContent("#transcript"), /Example Energy outage line/);

  // A postcode that is too short: the script's no-match message, asked again.
  await page.fill("#answer", "12");
  await page.press("#answer", "Enter");
  await page.waitForFunction(() => document.querySelector("#transcript").textContent.includes("A postcode has five digits."));
  await page.waitForSelector("#answer:not([disabled])");
  assert.match(await page.textContent("#question"), /Try 2 of/);

  await page.fill("#answer", "12345");
  await page.press("#answer", "Enter");
  await page.waitForFunction(() => document.querySelector("label[for=answer]")?.textContent.includes("house number"));

  await page.fill("#answer", "12");
  await page.click("#question button[type=submit]");
  await page.waitForSelector("#outcome:not([hidden])");
  assert.equal(await page.textContent("#outcome"), "This conversation has ended.");
  const transcript = await page.textContent("#transcript");
  assert.match(transcript, /12345/, "the visitor's answers are in the transcript");
  assert.match(transcript, /Goodbye\./, "the script's last words are shown");
  console.log("self-service: the outage script ran to its end in chromium");
} finally {
  await browser.close();
}
