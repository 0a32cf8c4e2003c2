// The /dashboard page in headless Chromium (run by tests/cli/server_dashboard.sh, which starts
// `slm serve --config` with the local model "local" and the mock upstream "frontier", both priced,
// and creates the keys KEY_ADMIN (admin) and KEY_APP). The page is served with a strict
// Content-Security-Policy that allows only its own inline script and style (by hash): any external
// load, eval or inline handler would be refused and show up as a console error.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { chromium } from "playwright-core";

const URL = process.env.SLM_URL;
const CHROMIUM = process.env.SLM_CHROMIUM || "/usr/bin/chromium";
const { KEY_ADMIN, KEY_APP, SLM_LEDGER_DB } = process.env;
const HOSTILE_KEY = `<script>window.__xss=1</script><img src=x onerror="window.__xss=2">&amp; "key"`;
const HOSTILE_MODEL = `<svg onload="window.__xss=3"></svg>model`;

// the page's own formatting (asserted against the API's numbers)
const usd = (v) => (v < 0 ? "-$" : "$") + Math.abs(v).toFixed(6);
const pct = (v) => (100 * v).toFixed(1) + "%";
const int = (v) => Math.round(v).toLocaleString("en-US");

async function admin(path) {
  const r = await fetch(URL + path, { headers: { Authorization: `Bearer ${KEY_ADMIN}` } });
  assert.equal(r.status, 200, path);
  return r.json();
}
async function chat(model, content, extra = {}) {
  const r = await fetch(`${URL}/v1/chat/completions`, {
    method: "POST",
    headers: { Authorization: `Bearer ${KEY_APP}`, "Content-Type": "application/json" },
    body: JSON.stringify({ model, messages: [{ role: "user", content }], max_tokens: 6, ...extra }),
  });
  assert.equal(r.status, 200, await r.clone().text());
  const route = r.headers.get("x-slm-route");
  await r.text();
  return route;
}
async function waitForLedger(n) {
  for (let i = 0; i < 100; i++) {
    if ((await admin("/v1/ledger/summary")).requests === n) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`the ledger never reached ${n} requests`);
}
// rows written straight into the ledger: earlier buckets, and names a browser must not run
function insertRows() {
  const py = `
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=10)
now = time.time()
rows = [(now - 1500, sys.argv[2], "local", "local", 10, 20, 0.000005, 0.000225, 120.0),
        (now - 900, sys.argv[2], sys.argv[3], "upstream", 30, 40, 0.000475, 0.000475, 800.0),
        (now - 600, "", "local", "local", 7, 9, 0.0000025, 0.0001075, 60.0)]
for i, r in enumerate(rows):
    db.execute("INSERT INTO ledger (request_id, time, key, model, route, prompt_tokens, completion_tokens,"
               " cost, frontier_cost, latency_ms, status) VALUES (?,?,?,?,?,?,?,?,?,?,200)", ("test-%d" % i,) + r)
db.commit()
`;
  execFileSync("python3", ["-c", py, SLM_LEDGER_DB, HOSTILE_KEY, HOSTILE_MODEL]);
}

async function launch() {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run"],
  });
  const page = await browser.newPage();
  const log = { console: [], pageErrors: [], external: [], series: [], csp: [] };
  page.on("console", (m) => { if (m.type() === "error" || m.type() === "warning") log.console.push(m.text()); });
  page.on("pageerror", (e) => log.pageErrors.push(String(e)));
  page.on("request", (r) => {
    if (!r.url().startsWith(URL)) log.external.push(r.url());
    if (r.url().includes("/v1/ledger/series")) log.series.push(new globalThis.URL(r.url()));
  });
  // the server sends the page under a CSP that allows nothing but its own inline script and style
  await page.route(URL + "/dashboard", async (route) => {
    const res = await route.fetch();
    const body = await res.text();
    const hash = (re) => "sha256-" + createHash("sha256").update(body.match(re)[1]).digest("base64");
    const csp = `default-src 'none'; script-src '${hash(/<script>([\s\S]*?)<\/script>/)}'; ` +
                `style-src '${hash(/<style>([\s\S]*?)<\/style>/)}'; connect-src 'self'; img-src 'none'; ` +
                `base-uri 'none'; form-action 'none'; frame-ancestors 'none'`;
    log.csp.push({ sent: res.headers()["content-security-policy"], expected: csp });
    await route.fulfill({ response: res, body });
  });
  return { browser, page, log };
}

const text = (page, sel) => page.textContent(sel);
const marks = (page, sel) => page.$$eval(sel, (els) => els.map((e) => Number(e.getAttribute("data-v"))));

test("dashboard: asks for an admin key, empty state, then the ledger's totals, plots and groups", async () => {
  const { browser, page, log } = await launch();
  try {
    await page.goto(URL + "/dashboard");
    assert.equal(await page.title(), "slm dashboard");
    // no key: the page says what it needs and marks the field
    await page.waitForFunction(() => /admin API key/.test(document.getElementById("status").textContent));
    assert.equal(await page.getAttribute("#key", "aria-invalid"), "true");
    assert.equal(await page.evaluate(() => document.activeElement.id), "key");
    // a key no HTTP header can carry: said plainly, nothing sent
    const before = log.series.length;
    await page.fill("#key", "slm-clé secrète");
    await page.click("#keyform button");
    await page.waitForFunction(() => /printable ASCII/.test(document.getElementById("status").textContent));
    assert.equal(log.series.length, before);
    // a key that is not an admin key: the server's reason, still asking
    await page.fill("#key", KEY_APP);
    await page.click("#keyform button");
    await page.waitForFunction(() => /cannot read the ledger.*admin/.test(document.getElementById("status").textContent));
    assert.equal(await text(page, "#t-requests"), "–");
    // the 401/403 answers are the only console errors allowed, and only before the admin key
    assert.ok(log.console.every((m) => /status of 40[13]/.test(m)), log.console.join("\n"));
    log.console.length = 0;

    // the admin key: an empty ledger is an empty state, not an error
    await page.fill("#key", KEY_ADMIN);
    await page.click("#keyform button");
    await page.waitForFunction(() => document.getElementById("t-requests").textContent === "0");
    assert.equal(await text(page, "#status"), "");
    assert.equal(await page.evaluate(() => localStorage.getItem("slm-admin-key")), KEY_ADMIN);
    for (const id of ["chart-share", "chart-cost", "chart-tps", "chart-latency"]) {
      assert.equal(await text(page, `#${id} text.empty`), "No requests in this range yet", id);
      assert.ok((await text(page, `#${id} > title`)).length > 10, `${id} has a title`);
      assert.equal(await page.getAttribute(`#${id}`, "aria-describedby"), `${id}-desc`);
    }
    assert.equal(await text(page, "#groups-body td.empty"), "No requests in this range yet");
    assert.equal(await text(page, "#t-cost"), "$0.000000");

    // requests: 3 local (one streamed), 2 upstream (one streamed), and 3 older rows with hostile names
    const routes = [await chat("local", "Once upon a time"), await chat("local", "The cat sat", { stream: true }),
                    await chat("local", "Lily went"), await chat("frontier", "What is two plus two?"),
                    await chat("frontier", "Name a colour", { stream: true, stream_options: { include_usage: true } })];
    assert.deepEqual(routes, ["local", "local", "local", "upstream", "upstream"]);
    insertRows();
    await waitForLedger(8);
    const sum = await admin("/v1/ledger/summary?by=key");
    await page.click("button[data-range='1h']");
    await page.waitForFunction(() => document.getElementById("t-requests").textContent === "8");
    assert.equal(await text(page, "#t-local"), pct(sum.local_share));
    assert.equal(await text(page, "#t-split"), `local ${int(sum.local_share * 8)} · upstream ${int(8 - sum.local_share * 8)}`);
    assert.equal(await text(page, "#t-cost"), usd(sum.cost));
    assert.equal(await text(page, "#t-frontier"), usd(sum.frontier_cost));
    assert.equal(await text(page, "#t-savings"), usd(sum.savings));
    assert.equal(await text(page, "#t-savings-pct"), `${pct(sum.savings / sum.frontier_cost)} of the all-frontier cost`);
    assert.equal(await text(page, "#t-tokens"), int(sum.prompt_tokens + sum.completion_tokens));
    assert.ok(sum.cost > 0 && sum.frontier_cost > sum.cost, JSON.stringify(sum));

    // the plots: one mark per bucket and series of the same /v1/ledger/series the page asked for
    const asked = log.series.at(-1);
    assert.equal(asked.searchParams.get("bucket"), "60");
    const series = (await admin(asked.pathname + asked.search)).data;
    assert.ok(series.length >= 4, `buckets: ${series.length}`); // -25 min, -15 min, -10 min, now
    const localBars = await marks(page, "#chart-share g[data-series='local'] rect");
    const upstreamBars = await marks(page, "#chart-share g[data-series='upstream'] rect");
    assert.equal(localBars.length, series.filter((b) => b.local_requests > 0).length);
    assert.equal(upstreamBars.length, series.filter((b) => b.requests > b.local_requests).length);
    assert.equal(localBars.reduce((a, b) => a + b, 0) + upstreamBars.reduce((a, b) => a + b, 0), 8);
    const cost = await marks(page, "#chart-cost g[data-series='actual cost'] circle");
    const frontier = await marks(page, "#chart-cost g[data-series='all-frontier cost'] circle");
    assert.equal(cost.length, series.length);
    assert.equal(frontier.length, series.length);
    assert.ok(Math.abs(cost.at(-1) - sum.cost) < 1e-12 && Math.abs(frontier.at(-1) - sum.frontier_cost) < 1e-12);
    assert.ok(cost.every((v, i) => i === 0 || v >= cost[i - 1]), "the cost is cumulative");
    assert.equal(await page.$$eval("#chart-cost path.line", (p) => p.length), 2);
    assert.equal(await page.locator("#chart-cost polygon.saved").count(), 1);
    assert.deepEqual(await marks(page, "#chart-tps circle"), series.map((b) => b.tokens_per_s));
    assert.deepEqual(await marks(page, "#chart-latency g[data-series='p50'] circle"), series.map((b) => b.latency_p50_ms));
    assert.deepEqual(await marks(page, "#chart-latency g[data-series='p95'] circle"), series.map((b) => b.latency_p95_ms));
    for (const id of ["chart-share", "chart-cost", "chart-tps", "chart-latency"]) {
      assert.equal(await page.$$eval(`#${id} text.empty`, (e) => e.length), 0);
      assert.match(await text(page, `#${id} > desc`), /buckets of 1 min/);
    }
    assert.match(await text(page, "#chart-cost circle > title"), /actual cost: \$/);

    // the table per key: the hostile name is text, nothing of it runs or becomes an element
    const rows = async () => page.$$eval("#groups-body tr", (trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent)));
    let table = await rows();
    assert.equal(table.length, Object.keys(sum.groups).length);
    const hostile = table.find((r) => r[0] === HOSTILE_KEY);
    assert.ok(hostile, JSON.stringify(table));
    assert.deepEqual(hostile.slice(1, 5), [int(2), int(40), int(60), usd(sum.groups[HOSTILE_KEY].cost)]);
    assert.ok(table.some((r) => r[0] === "(no key)"), "the anonymous row");
    const app = table.find((r) => r[0] === "app");
    assert.deepEqual(app, ["app", int(5), int(sum.groups.app.prompt_tokens), int(sum.groups.app.completion_tokens),
                           usd(sum.groups.app.cost), usd(sum.groups.app.frontier_cost),
                           `${usd(sum.groups.app.savings)} (${pct(sum.groups.app.savings / sum.groups.app.frontier_cost)})`,
                           pct(sum.groups.app.local_share)]);
    await page.selectOption("#by", "model");
    await page.waitForFunction(() => document.getElementById("col-name").textContent === "Model");
    await page.waitForFunction((m) => [...document.querySelectorAll("#groups-body th")].some((t) => t.textContent === m), HOSTILE_MODEL);
    assert.equal(await page.evaluate(() => window.__xss), undefined);
    assert.equal(await page.$$eval("main img, main script, #groups-body svg", (e) => e.length), 0);
    await page.selectOption("#by", "route");
    await page.waitForFunction(() => document.getElementById("col-name").textContent === "Route");
    table = await rows();
    assert.deepEqual(table.map((r) => r[0]).sort(), ["local", "upstream"]);

    // auto refresh: a new request shows up without touching the page
    await chat("frontier", "one more");
    await waitForLedger(9);
    await page.waitForFunction(() => document.getElementById("t-requests").textContent === "9", null, { timeout: 8000 });

    // the range selector picks since and bucket; "all" sizes its buckets to the ledger
    await page.click("button[data-range='24h']");
    await page.waitForFunction(() => document.querySelector("button[data-range='24h']").getAttribute("aria-pressed") === "true");
    await page.waitForFunction(() => /buckets of 15 min/.test(document.querySelector("#chart-cost > desc").textContent));
    assert.equal(log.series.at(-1).searchParams.get("bucket"), "900");
    assert.ok(Math.abs(Number(log.series.at(-1).searchParams.get("since")) - (Date.now() / 1000 - 86400)) < 30);
    const asked_before_all = log.series.length;
    const clicked_all = Date.now() / 1000;
    await page.click("button[data-range='all']");
    await page.waitForFunction(() => document.querySelector("button[data-range='all']").getAttribute("aria-pressed") === "true");
    // a coarse look (1-day buckets) for where the ledger starts, then buckets that fit its length:
    // since the start of its first day (UTC) in <= 170 buckets, so 5 min until ~14:10 UTC and 15 min
    // after, or 15 min all day when the oldest row is from yesterday (the chart may then say "15 min"
    // as it did for 24h: wait for the requests, not the text)
    for (let i = 0; i < 200 && log.series.length < asked_before_all + 2; i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(log.series.length >= asked_before_all + 2, "'all' asks twice: coarse, then fine");
    const [coarse, fine] = log.series
      .slice(asked_before_all, asked_before_all + 2)
      .map((u) => [u.searchParams.get("since"), Number(u.searchParams.get("bucket"))]);
    assert.deepEqual(coarse, ["0", 86400]);
    assert.ok(fine[0] === "0" && [60, 300, 900].includes(fine[1]), `all: ${fine}`);
    // the ledger's first day is that of its oldest row, 25 minutes back (yesterday just after midnight)
    const oldest = (await admin("/v1/ledger/series?since=0&bucket=86400")).data[0].start;
    const ago = Date.now() / 1000 - oldest;
    assert.ok(oldest % 86400 === 0 && ago >= 1500 && ago < 1500 + 86400 + 120, `the oldest row's day: ${oldest}`);
    // the page chose between the click and now: near a size's limit either answer is right
    const fits = (span) => [60, 300, 900].find((b) => span / b <= 170);
    const want = [fits(clicked_all - oldest), fits(ago)];
    if (want[0] && want[1]) assert.ok(want.includes(fine[1]), `the smallest bucket that fits the ledger's days in 170: ${want}, not ${fine[1]}`);
    await page.waitForFunction((m) => document.querySelector("#chart-cost > desc").textContent.includes(`buckets of ${m} min`), fine[1] / 60);
    assert.equal(await text(page, "#t-requests"), "9");
    assert.equal(await page.evaluate(() => localStorage.getItem("slm-dashboard-range")), "all");

    if (process.env.SLM_DASHBOARD_SCREENSHOT) {
      await page.click("button[data-range='1h']");
      await page.waitForFunction(() => /buckets of 1 min/.test(document.querySelector("#chart-cost > desc").textContent));
      await page.setViewportSize({ width: 1300, height: 1000 });
      await page.screenshot({ path: process.env.SLM_DASHBOARD_SCREENSHOT, fullPage: true });
    }
    assert.deepEqual(log.pageErrors, []);
    assert.deepEqual(log.console, [], "no console errors or CSP violations");
    assert.ok(log.csp.length > 0 && log.csp.every((c) => c.sent === c.expected), JSON.stringify(log.csp));
    assert.deepEqual(log.external, [], "the page loads nothing from elsewhere");
  } finally {
    await browser.close();
  }
});
