// Ollama's model management API through the official `ollama` client (run by
// tests/cli/server_ollama_models.sh: `slm serve` with stories260K, a data directory, and Debian's
// docker-registry on loopback holding stories260K as library/stories:v1): pull with streamed
// progress, blobs, create, copy, push then pull back, delete, list, ps, and the errors.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { Ollama } from "ollama";

const URL = process.env.SLM_URL;
const KEY = process.env.SLM_KEY;
const REG = process.env.SLM_REGISTRY; // host:port of the registry
const DATA = process.env.SLM_DATA; // the server's data directory
const BIN = process.env.SLM_BIN;
const OTHER = process.env.SLM_OTHER_MODEL; // a second GGUF to upload as a blob
assert.ok(URL && KEY && REG && DATA && BIN && OTHER, "SLM_URL, SLM_KEY, SLM_REGISTRY, SLM_DATA, SLM_BIN, SLM_OTHER_MODEL");
const ollama = new Ollama({ host: URL, headers: { Authorization: `Bearer ${KEY}` } });
const auth = { Authorization: `Bearer ${KEY}` };

const storeList = () =>
  execFileSync(BIN, ["list", "--json", "--data-dir", DATA], { encoding: "utf8" })
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l));
const stored = (name) => storeList().find((m) => m.name === name);
const sha256 = (buf) => createHash("sha256").update(buf).digest("hex");
const manifest = (name, tag) => JSON.parse(readFileSync(`${DATA}/models/manifests/${name}/${tag}.json`, "utf8"));

const other = readFileSync(OTHER);
const otherDigest = `sha256:${sha256(other)}`;

test("pull streams Ollama's progress and stores the verified model", async () => {
  const statuses = [];
  let last;
  for await (const p of await ollama.pull({ model: `${REG}/library/stories:v1`, stream: true })) {
    statuses.push(p.status);
    if (p.digest) last = p;
  }
  assert.equal(statuses[0], "pulling manifest");
  assert.ok(last && /^sha256:[0-9a-f]{64}$/.test(last.digest), JSON.stringify(statuses));
  assert.equal(last.status, `pulling ${last.digest.slice(7, 19)}`);
  assert.ok(last.total > 0 && last.completed === last.total, JSON.stringify(last));
  assert.deepEqual(statuses.slice(-3), ["verifying sha256 digest", "writing manifest", "success"]);
  const m = stored("stories:v1");
  assert.ok(m, JSON.stringify(storeList()));
  assert.equal(m.digest, last.digest);
});

test("pull with stream:false answers one object; an unknown tag is a 404 with Ollama's error shape", async () => {
  assert.deepEqual(await ollama.pull({ model: `${REG}/library/stories:v1`, stream: false }), { status: "success" });
  await assert.rejects(ollama.pull({ model: `${REG}/library/stories:nope` }), (e) => {
    assert.equal(e.status_code, 404);
    assert.match(e.error, /has no library\/stories:nope/);
    return true;
  });
  // streamed, the error arrives as an {"error"} line, which the client throws
  await assert.rejects(async () => {
    for await (const p of await ollama.pull({ model: `${REG}/library/stories:nope`, stream: true })) void p;
  }, /has no library\/stories:nope/);
  await assert.rejects(ollama.pull({ model: "not a reference!" }), (e) => e.status_code === 400);
});

test("blobs: HEAD says whether it is there; POST checks the bytes against the digest", async () => {
  const url = `${URL}/api/blobs/${otherDigest}`;
  assert.equal((await fetch(url, { method: "HEAD", headers: auth })).status, 404);
  const wrong = await fetch(`${URL}/api/blobs/sha256:${"0".repeat(64)}`, { method: "POST", headers: auth, body: other });
  assert.equal(wrong.status, 400);
  assert.match((await wrong.json()).error, /hash to/);
  assert.equal((await fetch(url, { method: "POST", headers: auth, body: other })).status, 201);
  assert.equal((await fetch(url, { method: "HEAD", headers: auth })).status, 200);
  assert.equal((await fetch(`${URL}/api/blobs/sha256:xyz`, { method: "HEAD", headers: auth })).status, 400);
});

test("create from an uploaded blob with template, system and parameters", async () => {
  const res = await ollama.create({
    model: "tiny",
    files: { "tiny.gguf": otherDigest },
    template: "{{ .System }} {{ .Prompt }}",
    system: "You are terse.",
    parameters: { temperature: 0.5, stop: ["\n"] },
    stream: false,
  });
  assert.deepEqual(res, { status: "success" });
  assert.equal(stored("tiny:latest")?.digest, otherDigest);
  const m = manifest("tiny", "latest");
  assert.equal(m.template, "{{ .System }} {{ .Prompt }}");
  assert.equal(m.system, "You are terse.");
  assert.deepEqual(JSON.parse(m.params), { temperature: 0.5, stop: ["\n"] });
  // streamed: Ollama's steps
  const steps = [];
  for await (const p of await ollama.create({ model: "tiny:s", from: "tiny", stream: true })) steps.push(p.status);
  assert.equal(steps.at(-1), "success");
  assert.equal(manifest("tiny", "s").system, "You are terse.", "from keeps the extras");
});

test("create refuses what it cannot do, with 4xx", async () => {
  await assert.rejects(ollama.create({ model: "q", files: { "a.gguf": otherDigest }, quantize: "q4_K_M" }), (e) => {
    assert.equal(e.status_code, 400);
    assert.match(e.error, /not a multiple of the .* block size/); // 8-wide rows: no Q4_K_M (server_ollama_models.sh quantizes)
    return true;
  });
  await assert.rejects(ollama.create({ model: "x", files: { "a.gguf": `sha256:${"1".repeat(64)}` } }), (e) => {
    assert.equal(e.status_code, 400);
    assert.match(e.error, /upload it first/);
    return true;
  });
  await assert.rejects(ollama.create({ model: "../evil", files: { "a.gguf": otherDigest } }), (e) => e.status_code === 400);
  await assert.rejects(ollama.create({ model: "y", from: "no-such-model" }), (e) => e.status_code === 404);
  assert.equal(stored("q:latest") || stored("x:latest") || stored("y:latest"), undefined);
});

test("copy, then delete", async () => {
  assert.deepEqual(await ollama.copy({ source: "tiny", destination: "tiny2" }), { status: "success" });
  assert.equal(stored("tiny2:latest")?.digest, otherDigest);
  assert.equal(manifest("tiny2", "latest").template, "{{ .System }} {{ .Prompt }}", "copy keeps the extras");
  await assert.rejects(ollama.copy({ source: "nothing", destination: "z" }), (e) => e.status_code === 404);
  assert.deepEqual(await ollama.delete({ model: "tiny2" }), { status: "success" });
  assert.equal(stored("tiny2:latest"), undefined);
  await assert.rejects(ollama.delete({ model: "tiny2" }), (e) => e.status_code === 404);
});

test("push to the registry, then pull back: the same bytes and extras", async () => {
  const statuses = [];
  for await (const p of await ollama.push({ model: `${REG}/test/tiny:latest`, stream: true })) statuses.push(p.status);
  assert.equal(statuses.at(-1), "success", JSON.stringify(statuses));
  assert.ok(statuses.includes("pushing manifest"));
  await ollama.delete({ model: "tiny" });
  await ollama.delete({ model: "tiny:s" });
  assert.equal(stored("tiny:latest"), undefined);
  assert.deepEqual(await ollama.pull({ model: `${REG}/test/tiny`, stream: false }), { status: "success" });
  assert.equal(stored("tiny:latest")?.digest, otherDigest);
  assert.equal(sha256(readFileSync(`${DATA}/models/blobs/sha256-${otherDigest.slice(7)}`)), otherDigest.slice(7));
  const m = manifest("tiny", "latest");
  assert.equal(m.template, "{{ .System }} {{ .Prompt }}");
  assert.equal(m.system, "You are terse.");
  assert.deepEqual(JSON.parse(m.params), { temperature: 0.5, stop: ["\n"] });
  await assert.rejects(ollama.push({ model: "tiny" }), (e) => e.status_code === 400);
});

test("list shows stored models; one loads by name on first use, ps shows it with its expiry, keep_alive 0 unloads it", async () => {
  const list = await ollama.list();
  assert.ok(list.models.some((m) => m.name.startsWith("stories260K")), JSON.stringify(list));
  const pulled = list.models.find((m) => m.name === "stories:v1");
  assert.ok(pulled && pulled.digest === stored("stories:v1").digest.slice(7), JSON.stringify(list));
  let ps = await ollama.ps();
  assert.ok(!ps.models.some((m) => m.name === "stories:v1"), "not loaded before it is used: " + JSON.stringify(ps));
  const t0 = Date.now();
  const r = await ollama.generate({ model: "stories:v1", prompt: "Once upon a time", options: { num_predict: 4 }, keep_alive: "10m" });
  assert.equal(r.model, "stories:v1");
  assert.ok(r.response.length > 0, JSON.stringify(r));
  ps = await ollama.ps();
  const loaded = ps.models.find((m) => m.name === "stories:v1");
  assert.ok(loaded, JSON.stringify(ps));
  const left = new Date(loaded.expires_at).getTime() - t0;
  assert.ok(left > 9 * 60e3 && left < 11 * 60e3, `expires in ${left} ms: ${loaded.expires_at}`);
  assert.ok(loaded.size > 0 && loaded.digest === pulled.digest, JSON.stringify(loaded));
  const u = await ollama.generate({ model: "stories:v1", prompt: "", keep_alive: 0 });
  assert.equal(u.done_reason, "unload");
  for (let i = 0; i < 50 && (await ollama.ps()).models.some((m) => m.name === "stories:v1"); i++)
    await new Promise((res) => setTimeout(res, 20));
  assert.ok(!(await ollama.ps()).models.some((m) => m.name === "stories:v1"), "unloaded");
});

test("without the key: refused before anything happens", async () => {
  const anon = new Ollama({ host: URL });
  await assert.rejects(anon.pull({ model: `${REG}/library/stories:v1` }), (e) => e.status_code === 401);
  await assert.rejects(anon.delete({ model: "stories:v1" }), (e) => e.status_code === 401);
  assert.ok(stored("stories:v1"));
});
