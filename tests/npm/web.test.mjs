// The chat page at GET / in headless Chromium (run by tests/cli/server_web.sh): type a message,
// see the reply stream in piece by piece and the tok/s figure appear.
import { test } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const URL = process.env.SLM_URL;
const KEY = process.env.SLM_KEY;
const CHROMIUM = process.env.SLM_CHROMIUM || "/usr/bin/chromium";

test("chat page streams a reply and shows tok/s", async () => {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run"],
  });
  try {
    const page = await browser.newPage();
    const consoleErrors = [];
    page.on("pageerror", (e) => consoleErrors.push(String(e)));
    const external = [];
    page.on("request", (r) => { if (!r.url().startsWith(URL)) external.push(r.url()); });
    const chatBodies = [];
    page.on("request", (r) => { if (r.url().endsWith("/v1/chat/completions")) chatBodies.push(r.postData() || ""); });
    await page.goto(URL + "/");
    assert.equal(await page.title(), "slm chat");
    // the server wants a key: without it the model name cannot load
    await page.waitForFunction(() => /API key/.test(document.getElementById("model").textContent));
    await page.click("summary");
    await page.fill("#key", KEY);
    await page.dispatchEvent("#key", "change");
    await page.waitForFunction(() => document.getElementById("model").textContent === "stories260K");
    await page.fill("#temp", "0");
    await page.fill("#maxtok", "300");
    // count how many times the reply text changes: streaming means many small updates
    await page.evaluate(() => {
      window.__updates = 0;
      new MutationObserver(() => { window.__updates++; })
        .observe(document.getElementById("log"), { subtree: true, characterData: true, childList: true });
    });
    await page.fill("#input", "Once upon a time there was a cat.");
    await page.press("#input", "Enter");
    await page.waitForFunction(() => /tok\/s/.test(document.querySelector(".assistant .stats")?.textContent || ""), null, { timeout: 30000 });
    const user = await page.textContent(".user .text");
    const reply = await page.textContent(".assistant .text");
    const stats = await page.textContent(".assistant .stats");
    const updates = await page.evaluate(() => window.__updates);
    assert.equal(user, "Once upon a time there was a cat.");
    assert.ok(reply.length > 20, `reply: ${JSON.stringify(reply)}`);
    assert.match(stats, /^\d+ tokens · [\d.]+ tok\/s/);
    // A tiny model streams a whole reply in a few network reads, so the browser may coalesce it into
    // a handful of DOM updates: require that the page asked for a stream and rendered more than once.
    assert.ok(chatBodies.length === 1 && JSON.parse(chatBodies[0]).stream === true, `page request: ${chatBodies}`);
    assert.ok(updates >= 2, `the reply arrived in ${updates} updates`);
    assert.match(await page.textContent("#speed"), /[\d.]+ tok\/s/);
    // the same question through the API, greedy, gives the same text
    const api = await fetch(URL + "/v1/chat/completions", {
      method: "POST", headers: { Authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ messages: [{ role: "user", content: "Once upon a time there was a cat." }], temperature: 0, max_tokens: 300 }),
    }).then((r) => r.json());
    assert.equal(reply, api.choices[0].message.content);
    if (process.env.SLM_WEB_SCREENSHOT) await page.screenshot({ path: process.env.SLM_WEB_SCREENSHOT });
    assert.deepEqual(consoleErrors, []);
    assert.deepEqual(external, [], "the page loads nothing from elsewhere");
  } finally {
    await browser.close();
  }
});
