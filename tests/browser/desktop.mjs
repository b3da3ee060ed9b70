// The agent desktop in a real browser: bob logs in, goes available, a known
// customer calls the support queue, the screen pop shows who it is, bob answers on
// his (test) phone, follows the queue's agent script to its end, hangs up from the
// page and saves a disposition that ends wrap-up. Then, on break, a caller leaves a
// message in the support queue's mailbox: the voicemail panel lists it, plays it,
// marks it heard and deletes it.
// Usage: node desktop.mjs http://127.0.0.1:PORT/  (DESK_CALL and SIP_ADDR set by run.sh)
import assert from "node:assert/strict";
import { launch } from "./browser.mjs";
import { deskCall } from "./desk-call.mjs";

const base = process.argv[2];
assert.ok(base, "usage: node desktop.mjs BASE_URL");

const browser = await launch();
let call = null, message = null;
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(15_000);
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  await page.goto(base + "agent");

  // A wrong password is refused on the page, with the server's reason.
  await page.fill("#agent-id", "bob");
  await page.fill("#password", "not-bobs");
  await page.click("#login-form button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#login-error").textContent.includes("Login refused"));

  await page.fill("#password", "bob-pw");
  await page.click("#login-form button[type=submit]");
  await page.waitForSelector("#desk:not([hidden])");
  assert.equal(await page.textContent("#who"), "bob");
  await page.waitForFunction(() => document.querySelector("#vm-list").textContent === "no messages");

  await page.click("#available");
  await page.waitForSelector('#status[data-status="1"]');

  // Caller ID in national form; the store has the customer under E.164.
  call = deskCall("answer", "bob", "bob-phone-pw", "02079460958", "800");
  // The pop comes with the offer; the test phone answers at once, so the card may
  // already say "connected" by the time it is read.
  await page.waitForSelector("#pop:not([hidden])");
  assert.equal(await page.textContent("#customer-name"), "Ada Lovelace");
  assert.equal(await page.textContent("#customer-account"), "42");
  assert.equal(await page.textContent("#queue"), "support");
  assert.match(await page.textContent("#caller-number"), /2079460958/);

  await call.step("connected");
  await page.waitForSelector('#call[data-state="connected"]');
  assert.equal(await page.textContent("#ivr-answers"), "—", "no IVR on this line");

  // The queue's agent script opens with the call and walks the agent through it.
  await page.waitForSelector("#script-form:not([hidden])");
  assert.match(await page.textContent("#script-steps"), /Greet Ada Lovelace by name/);
  assert.equal(await page.textContent("#script-question"), "Why is the customer calling today?");
  await page.selectOption("#script-choice", "cancel");
  await page.click("#script-form button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#script-question").textContent.includes("respond to the offer"));
  assert.match(await page.textContent("#script-steps"), /25% loyalty discount/);
  await page.selectOption("#script-choice", "declined");
  await page.click("#script-form button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#script-question").textContent.includes("leaving"));
  assert.ok(await page.isVisible("#script-answer"), "a text question gets a text box");
  await page.fill("#script-answer", "moving abroad");
  await page.click("#script-form button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#script-outcome").textContent === "Script ended: cancelled");
  assert.ok(await page.isHidden("#script-form"));
  assert.equal(await page.textContent("#desk-error"), "");

  await page.click("#hangup");
  await call.step("ended");
  await page.waitForSelector('#call[data-state="wrap-up"]');
  await page.waitForSelector("#disposition:not([hidden])");

  await page.fill("#disp-code", "resolved");
  await page.fill("#disp-notes", "card replaced");
  await page.click("#disposition button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#call-state").textContent === "Wrap-up ended: resolved");
  assert.equal(await page.getAttribute("#call", "data-state"), "idle");
  assert.ok(await page.isHidden("#disposition"), "the form closes when wrap-up ends");
  assert.equal(await page.textContent("#desk-error"), "");
  assert.equal(await call.exited, 0, "the phone and the caller saw the hang-up");

  // Voicemail, on break so the message's task is not offered meanwhile.
  await page.click("#break");
  await page.waitForSelector('#status[data-status="2"]');
  message = deskCall("message", "02079460958", "850");
  await message.step("left");
  assert.equal(await message.exited, 0);
  // Stored once the server has the hang-up: refresh until it is listed.
  for (let i = 0; i < 50 && !(await page.$("#vm-list li[data-id]")); i++) {
    await page.click("#vm-refresh");
    await page.waitForTimeout(200);
  }
  const item = "#vm-list li[data-id]";
  assert.match(await page.textContent(item), /02079460958 · support-messages · .* · new/);
  assert.equal(await page.getAttribute(item, "data-heard"), "false");
  await page.click(`${item} .vm-play`);
  await page.waitForSelector("#vm-audio:not([hidden])");
  // The browser decoded the WAV: about 3 s of message after the beep.
  await page.waitForFunction(() => document.querySelector("#vm-audio").duration > 2);
  assert.equal(await page.getAttribute("#vm-audio", "data-message"), await page.getAttribute(item, "data-id"));
  await page.click(`${item} .vm-heard`);
  await page.waitForSelector('#vm-list li[data-heard="true"]');
  assert.doesNotMatch(await page.textContent(item), /· new/);
  assert.ok(await page.isDisabled(`${item} .vm-heard`));
  await page.click(`${item} .vm-delete`);
  await page.waitForFunction(() => document.querySelector("#vm-list").textContent === "no messages");
  assert.equal(await page.textContent("#desk-error"), "");

  await page.click("#logout");
  await page.waitForSelector("#login:not([hidden])");
  assert.deepEqual(pageErrors, []);
  console.log("desktop: login, available, screen pop, agent script, answer, hang-up, disposition and the voicemail panel in chromium");
} finally {
  call?.kill();
  message?.kill();
  await browser.close();
}
