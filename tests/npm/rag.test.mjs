// Retrieval through the official OpenAI JavaScript client (run by tests/cli/server_rag.sh: `slm
// serve` with stories260K, a data directory and an API key). A document goes in over
// /v1/rag/collections; a chat completion with the extension field "rag" (passed through the client
// as an extra body parameter) answers with `citations` whose quote is the document's own bytes at
// the cited offsets, streamed and not.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import OpenAI from "openai";

const URL = process.env.SLM_URL;
const KEY = process.env.SLM_KEY;
const BIN = process.env.SLM_BIN;
const MODEL_PATH = process.env.SLM_MODEL_PATH;
const MODEL = "stories260K";
assert.ok(URL && KEY && BIN && MODEL_PATH, "SLM_URL, SLM_KEY, SLM_BIN and SLM_MODEL_PATH must be set");

const openai = new OpenAI({ baseURL: `${URL}/v1`, apiKey: KEY, maxRetries: 0 });
const COLLECTION = `npm${process.pid}`;
const DOCS = {
  "engines.md": "# Engines\n\nThe turbine compresses air before combustion.\n\n## Fuel\n\nKerosene burns in the combustor of the jet engine.\n",
  "wings.txt": "Wings make lift.\n\nA swept wing delays compressibility effects at high speed.\n",
};
const QUESTION = "Which fuel burns in the combustor of a jet engine?";

// The token id of "[" in the model (a bias on it makes the tiny model cite at once; the grammar
// then allows only the numbers of the retrieved sources).
function bracketToken() {
  const out = execFileSync(BIN, ["tokenize", MODEL_PATH, "[", "--no-bos", "--ids"], { encoding: "utf8" }).trim().split(/\s+/);
  return out[out.length - 1];
}

async function api(method, path, body) {
  const res = await fetch(`${URL}/v1/rag${path}`, {
    method,
    headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

// Every citation quotes the cited document's bytes [start, end) exactly and points at a retrieved source.
function checkCitations(citations, answer) {
  assert.ok(Array.isArray(citations), `citations must be an array, got ${JSON.stringify(citations)}`);
  assert.ok(citations.length > 0, `the answer ${JSON.stringify(answer)} cites nothing`);
  for (const c of citations) {
    const doc = Object.keys(DOCS).find((n) => n.replace(/\.[^.]+$/, "") === c.document);
    assert.ok(doc, `citation names an unknown document ${c.document}`);
    const bytes = Buffer.from(DOCS[doc], "utf8");
    assert.ok(Number.isInteger(c.start) && Number.isInteger(c.end) && c.start >= 0 && c.end <= bytes.length && c.start < c.end);
    assert.equal(bytes.subarray(c.start, c.end).toString("utf8"), c.quote, `quote of [${c.index}] is not the document's text at ${c.start}-${c.end}`);
    assert.ok(answer.includes(`[${c.index}]`), `citation [${c.index}] is not in the answer ${JSON.stringify(answer)}`);
    assert.ok(Number.isInteger(c.chunk_id) && Number.isInteger(c.document_id));
  }
  // and every marker in the answer is a source that exists
  for (const m of answer.matchAll(/\[(\d+)\]/g)) assert.ok(citations.some((c) => c.index === Number(m[1])), `marker ${m[0]} has no citation`);
}

before(async () => {
  let r = await api("POST", "/collections", { name: COLLECTION, chunk_tokens: 32 });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  for (const [name, text] of Object.entries(DOCS)) {
    r = await api("POST", `/collections/${COLLECTION}/documents`, { name, text });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.equal(r.body.status, "added");
  }
});

test("chat with rag: citations quote the document verbatim at their offsets", async () => {
  const bias = { [bracketToken()]: 30 };
  const resp = await openai.chat.completions.create({
    model: MODEL,
    messages: [{ role: "user", content: QUESTION }],
    max_tokens: 12,
    temperature: 0,
    logit_bias: bias,
    rag: { collection: COLLECTION, top_k: 2 }, // extension field: the client sends it as is
  });
  const answer = resp.choices[0].message.content;
  assert.match(answer, /\[[12]\]/);
  checkCitations(resp.citations, answer);
});

test("streamed chat with rag: the last chunk carries the citations", async () => {
  const stream = await openai.chat.completions.create({
    model: MODEL,
    messages: [{ role: "user", content: QUESTION }],
    max_tokens: 12,
    temperature: 0,
    logit_bias: { [bracketToken()]: 30 },
    stream: true,
    rag: { collection: COLLECTION, top_k: 2 },
  });
  let answer = "";
  let citations;
  for await (const chunk of stream) {
    answer += chunk.choices[0]?.delta?.content ?? "";
    if (chunk.citations !== undefined) {
      assert.equal(citations, undefined, "citations came in more than one chunk");
      assert.ok(chunk.choices[0]?.finish_reason, "citations ride on the chunk with finish_reason");
      citations = chunk.citations;
    }
  }
  checkCitations(citations, answer);
});

test("chat with rag: markers never point past the sources, unbiased and at temperature 1", async () => {
  for (const seed of [1, 2, 3]) {
    const resp = await openai.chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: QUESTION }],
      max_tokens: 24,
      temperature: 1,
      seed,
      logit_bias: { [bracketToken()]: 4 },
      rag: { collection: COLLECTION, top_k: 1 },
    });
    const answer = resp.choices[0].message.content;
    for (const m of answer.matchAll(/\[/g)) {
      const marker = answer.slice(m.index, m.index + 3); // "[1]", or its start when max_tokens cut the answer there
      assert.ok(marker === "[1]" || ("[1]".startsWith(marker) && m.index + marker.length === answer.length), `answer ${JSON.stringify(answer)}`);
    }
    assert.ok(resp.citations.length <= 1);
    if (resp.citations.length) checkCitations(resp.citations, answer);
  }
});

test("rag errors come back as the client's typed errors", async () => {
  await assert.rejects(
    openai.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "x" }], rag: { collection: "no-such" } }),
    (e) => e instanceof OpenAI.NotFoundError && e.param === "rag.collection",
  );
  await assert.rejects(
    openai.chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "x" }],
      response_format: { type: "json_object" },
      rag: { collection: COLLECTION },
    }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === "rag",
  );
});
