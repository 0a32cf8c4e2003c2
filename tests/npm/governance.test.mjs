// Governance and routing through the official OpenAI client (run by tests/cli/server_governance.sh,
// which creates the keys, starts a mock upstream and `slm serve --config` with model "local" and
// upstream "frontier").
import { test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";

const URL = process.env.SLM_URL;
const MOCK = process.env.MOCK_URL.replace(/\/v1$/, "");
const client = (key) => new OpenAI({ baseURL: `${URL}/v1`, apiKey: key, maxRetries: 0 });
const ask = (key, model, content, extra = {}) =>
  client(key).chat.completions.create({ model, messages: [{ role: "user", content }], max_tokens: 8, ...extra });
const mockLog = async () => (await (await fetch(`${MOCK}/control/log`)).json()).requests;
const mockReset = () => fetch(`${MOCK}/control/reset`, { method: "POST" });

test("401: unknown and missing keys", async () => {
  await assert.rejects(ask("slm-nonsense", "local", "hi"), (e) => e.status === 401 && e.code === "invalid_api_key");
  const none = await fetch(`${URL}/v1/chat/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ model: "local", messages: [{ role: "user", content: "hi" }] }) });
  assert.equal(none.status, 401);
  assert.equal((await none.json()).error.code, "invalid_api_key");
});

test("models: the local model, the route and the upstream are listed", async () => {
  const ids = (await client(process.env.KEY_APP).models.list()).data.map((m) => m.id);
  assert.deepEqual(ids, ["local", "auto", "careful", "thrifty", "smart", "frugal", "frontier"]);
});

test("local and upstream calls say where they went", async () => {
  const local = await client(process.env.KEY_APP).chat.completions.create({ model: "local", messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 4 }).withResponse();
  assert.equal(local.response.headers.get("x-slm-route"), "local");
  assert.ok(local.response.headers.get("x-request-id"));
  await mockReset();
  const up = await client(process.env.KEY_APP).chat.completions.create({ model: "frontier", messages: [{ role: "user", content: "Capital of France?" }], max_tokens: 50 }).withResponse();
  assert.equal(up.response.headers.get("x-slm-route"), "upstream");
  assert.equal(up.data.choices[0].message.content, "Mock reply to: Capital of France? — ünïcødé ✓");
  const log = await mockLog();
  assert.equal(log.length, 1);
  assert.equal(log[0].body.model, "gpt-mock");
  assert.equal(log[0].headers["Authorization"] ?? log[0].headers["authorization"], `Bearer ${process.env.SLM_TEST_FRONTIER_KEY}`);
});

test("403: a model outside the key's scope, an upstream for a local-only key", async () => {
  await assert.rejects(ask(process.env.KEY_SCOPED, "frontier", "hi"), (e) => e.status === 403 && e.code === "model_not_allowed" && /frontier/.test(e.message));
  const ok = await ask(process.env.KEY_SCOPED, "local", "Once upon a time");
  assert.ok(ok.choices[0].message.content.length > 0);
  await assert.rejects(ask(process.env.KEY_LOCAL_ONLY, "frontier", "hi"), (e) => e.status === 403 && e.code === "local_only");
});

test("429: requests per minute, with Retry-After", async () => {
  await ask(process.env.KEY_RPM, "local", "a");
  await ask(process.env.KEY_RPM, "local", "b");
  await assert.rejects(ask(process.env.KEY_RPM, "local", "c"), (e) => {
    assert.equal(e.status, 429);
    assert.equal(e.code, "rate_limit_exceeded");
    const ra = Number(e.headers.get("retry-after"));
    assert.ok(ra >= 1 && ra <= 60, `retry-after ${ra}`);
    return true;
  });
});

test("429: a spent budget is insufficient_quota", async () => {
  await ask(process.env.KEY_BUDGET, "frontier", "one two three four five six seven eight", { max_tokens: 50 });
  await assert.rejects(ask(process.env.KEY_BUDGET, "frontier", "again"), (e) => e.status === 429 && e.code === "insufficient_quota" && e.type === "insufficient_quota");
});

test("mask: the upstream sees placeholders, the client gets its values back", async () => {
  await mockReset();
  const text = "Please email jane.doe@mailbox.org and call +1 415 555 0134 today";
  const r = await ask(process.env.KEY_MASK, "frontier", text, { max_tokens: 200 });
  assert.equal(r.choices[0].message.content, `Mock reply to: ${text} — ünïcødé ✓`);
  const sent = (await mockLog())[0].body.messages.at(-1).content;
  assert.ok(!sent.includes("jane.doe@mailbox.org") && !sent.includes("555 0134"), sent);
  assert.match(sent, /\[EMAIL_1\]/);
  assert.match(sent, /\[PHONE_1\]/);
  // streamed: the same restored text, however the placeholders are cut into chunks
  const stream = await client(process.env.KEY_MASK).chat.completions.create({ model: "frontier", messages: [{ role: "user", content: text }], max_tokens: 200, stream: true });
  let got = "";
  for await (const c of stream) got += c.choices[0]?.delta?.content ?? "";
  assert.equal(got, `Mock reply to: ${text} — ünïcødé ✓`);
});

test("block: 400 naming the types found", async () => {
  await assert.rejects(ask(process.env.KEY_BLOCK, "local", "My card is 4111 1111 1111 1111"), (e) => e.status === 400 && e.code === "pii_blocked" && /CREDIT_CARD/.test(e.message));
  const fine = await ask(process.env.KEY_BLOCK, "local", "Once upon a time");
  assert.ok(fine.choices.length === 1);
});

test("admin: keys listed without secrets, the ledger counts both routes", async () => {
  const res = await fetch(`${URL}/v1/ledger/summary?by=route`, { headers: { Authorization: `Bearer ${process.env.KEY_ADMIN}` } });
  assert.equal(res.status, 200);
  const d = await res.json();
  assert.ok(d.groups.local.requests >= 3 && d.groups.upstream.requests >= 3, JSON.stringify(d));
  assert.ok(d.groups.upstream.cost > 0 && d.frontier_cost >= d.cost);
  const denied = await fetch(`${URL}/v1/keys`, { headers: { Authorization: `Bearer ${process.env.KEY_APP}` } });
  assert.equal(denied.status, 403);
});

test("route auto: short prompts stay local, a prompt longer than the local context goes upstream", async () => {
  const short = await client(process.env.KEY_APP).chat.completions.create({ model: "auto", messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 4 }).withResponse();
  assert.equal(short.response.headers.get("x-slm-route"), "local");
  assert.equal(short.data.route, "local");
  const long = "word ".repeat(400).trim();
  const up = await client(process.env.KEY_APP).chat.completions.create({ model: "auto", messages: [{ role: "user", content: long }], max_tokens: 300 }).withResponse();
  assert.equal(up.response.headers.get("x-slm-route"), "upstream");
  assert.equal(up.data.route, "upstream");
  assert.ok(up.data.choices[0].message.content.startsWith("Mock reply to: word word"));
  assert.equal(up.data.usage.prompt_tokens, 400); // the upstream's own count (the mock counts words)
  // a local-only key cannot send it anywhere: the context error, not a silent truncation
  await assert.rejects(ask(process.env.KEY_LOCAL_ONLY, "auto", long), (e) => e.status === 400 && e.code === "context_length_exceeded" && /local_only/.test(e.message));
});

test("cascade: the local answer first, the upstream when the cascade router doubts it", async () => {
  const q = [{ role: "user", content: "Tom has 3 apples and buys 4 more. How many apples does he have?" }];
  const doubt = await client(process.env.KEY_APP).chat.completions.create({ model: "careful", messages: q, max_tokens: 200 }).withResponse();
  assert.equal(doubt.response.headers.get("x-slm-route"), "upstream");
  assert.equal(doubt.data.choices[0].message.content, `Mock reply to: ${q[0].content} — ünïcødé ✓`);
  const trust = await client(process.env.KEY_APP).chat.completions.create({ model: "thrifty", messages: q, max_tokens: 8 }).withResponse();
  assert.equal(trust.response.headers.get("x-slm-route"), "local");
  assert.equal(trust.data.usage.completion_tokens, 8);
  assert.ok(!trust.data.choices[0].message.content.startsWith("Mock reply"));
  // a stream cannot be taken back once sent: streamed calls on a cascade route are answered locally
  const stream = await client(process.env.KEY_APP).chat.completions.create({ model: "careful", messages: q, max_tokens: 8, stream: true }).withResponse();
  let text = "";
  for await (const c of stream.data) text += c.choices[0]?.delta?.content ?? "";
  assert.equal(stream.response.headers.get("x-slm-route"), "local");
  assert.ok(text.length > 0 && !text.startsWith("Mock reply"));
});

test("the shipped prompt router: a share of 1 sends everything up, 0 nothing; personal data stays local", async () => {
  const q = [{ role: "user", content: "What is the capital of Australia?" }];
  const up = await client(process.env.KEY_APP).chat.completions.create({ model: "smart", messages: q, max_tokens: 100 }).withResponse();
  assert.equal(up.response.headers.get("x-slm-route"), "upstream");
  const down = await client(process.env.KEY_APP).chat.completions.create({ model: "frugal", messages: q, max_tokens: 4 }).withResponse();
  assert.equal(down.response.headers.get("x-slm-route"), "local");
  const pii = [{ role: "user", content: "My IBAN is DE89 3704 0044 0532 0130 00, what is the capital of Australia?" }];
  const kept = await client(process.env.KEY_APP).chat.completions.create({ model: "smart", messages: pii, max_tokens: 4 }).withResponse();
  assert.equal(kept.response.headers.get("x-slm-route"), "local");
});
