// The OpenAI Responses API and n > 1 through the official `openai` client (run by
// tests/cli/server_responses.sh: `slm serve` with stories260K and two stored keys, SLM_KEY and
// SLM_KEY_OTHER).
import { test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";

const URL = process.env.SLM_URL;
const KEY = process.env.SLM_KEY;
const KEY_OTHER = process.env.SLM_KEY_OTHER;
assert.ok(URL && KEY && KEY_OTHER, "SLM_URL, SLM_KEY and SLM_KEY_OTHER must be set");
const model = "stories260K";

const openai = new OpenAI({ baseURL: `${URL}/v1`, apiKey: KEY, maxRetries: 0 });
const other = new OpenAI({ baseURL: `${URL}/v1`, apiKey: KEY_OTHER, maxRetries: 0 });

const weather = {
  type: "function",
  name: "get_weather",
  description: "The weather in a city",
  parameters: {
    type: "object",
    properties: { city: { type: "string", maxLength: 12 }, days: { type: "integer", minimum: 1, maximum: 7 } },
    required: ["city"],
    additionalProperties: false,
  },
};

function checkWeatherArgs(text) {
  const args = JSON.parse(text);
  assert.equal(typeof args.city, "string");
  assert.ok([...args.city].length <= 12, `city ${JSON.stringify(args.city)} longer than 12`);
  if ("days" in args) assert.ok(Number.isInteger(args.days) && args.days >= 1 && args.days <= 7, `days ${args.days}`);
  for (const k of Object.keys(args)) assert.ok(k === "city" || k === "days", `unexpected key ${k}`);
  return args;
}

// The status code and the param an API error names.
async function rejects(promise, status, param) {
  try {
    await promise;
  } catch (e) {
    assert.equal(e.status, status, `${e.message}`);
    if (param !== undefined) assert.equal(e.error?.param ?? e.param, param, JSON.stringify(e.error));
    return e;
  }
  assert.fail(`expected HTTP ${status}`);
}

function checkUsage(u) {
  assert.ok(Number.isInteger(u.input_tokens) && u.input_tokens > 0, JSON.stringify(u));
  assert.ok(Number.isInteger(u.output_tokens) && u.output_tokens >= 0, JSON.stringify(u));
  assert.equal(u.total_tokens, u.input_tokens + u.output_tokens);
}

test("responses.create: a text reply (not streamed)", async () => {
  const r = await openai.responses.create({ model, input: "Once upon a time", max_output_tokens: 24, seed: 5 });
  assert.match(r.id, /^resp_[0-9a-f]{32}$/);
  assert.equal(r.object, "response");
  assert.equal(r.model, model);
  assert.ok(["completed", "incomplete"].includes(r.status));
  if (r.status === "incomplete") assert.deepEqual(r.incomplete_details, { reason: "max_output_tokens" });
  assert.equal(r.output.length, 1);
  const msg = r.output[0];
  assert.equal(msg.type, "message");
  assert.equal(msg.role, "assistant");
  assert.match(msg.id, /^msg_/);
  assert.equal(msg.content[0].type, "output_text");
  assert.ok(msg.content[0].text.length > 0);
  assert.equal(r.output_text, msg.content[0].text); // the client's own concatenation
  checkUsage(r.usage);
  assert.ok(r.usage.output_tokens <= 24);
  assert.equal(r.store, true);
  assert.equal(r.max_output_tokens, 24);
  // the same seed gives the same text
  const again = await openai.responses.create({ model, input: "Once upon a time", max_output_tokens: 24, seed: 5 });
  assert.equal(again.output_text, r.output_text);
  assert.notEqual(again.id, r.id);
});

test("responses.create: instructions are part of the prompt", async () => {
  const bare = await openai.responses.create({ model, input: "Tom", max_output_tokens: 4, seed: 1 });
  const told = await openai.responses.create({ model, input: "Tom", instructions: "Tell a story about a dog.", max_output_tokens: 4, seed: 1 });
  assert.ok(told.usage.input_tokens > bare.usage.input_tokens, `${told.usage.input_tokens} vs ${bare.usage.input_tokens}`);
  assert.equal(told.instructions, "Tell a story about a dog.");
  assert.equal(bare.instructions, null);
});

test("responses.create: streamed events in order, deltas add up to the text", async () => {
  const stream = await openai.responses.create({ model, input: "Lily went to the park", max_output_tokens: 30, seed: 9, stream: true });
  const events = [];
  for await (const e of stream) events.push(e);
  const types = events.map((e) => e.type);
  assert.deepEqual(types.slice(0, 4), ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]);
  const last = events.at(-1);
  assert.ok(["response.completed", "response.incomplete"].includes(last.type), last.type);
  assert.deepEqual(types.slice(-4, -1), ["response.output_text.done", "response.content_part.done", "response.output_item.done"]);
  const deltas = events.filter((e) => e.type === "response.output_text.delta");
  assert.ok(deltas.length >= 1); // how many depends on how fast the client reads: output waiting is sent as one delta
  assert.deepEqual(new Set(types.slice(4, -4)), new Set(["response.output_text.delta"]));
  events.forEach((e, i) => assert.equal(e.sequence_number, i));
  const text = deltas.map((e) => e.delta).join("");
  const done = events.find((e) => e.type === "response.output_text.done");
  assert.equal(done.text, text);
  assert.equal(last.response.output[0].content[0].text, text);
  assert.equal(events[0].response.status, "in_progress");
  assert.deepEqual(events[0].response.output, []);
  checkUsage(last.response.usage);
  const item = events.find((e) => e.type === "response.output_item.added").item;
  assert.equal(item.id, done.item_id);
  assert.equal(item.id, last.response.output[0].id);
  // the same request unstreamed gives the same text
  const plain = await openai.responses.create({ model, input: "Lily went to the park", max_output_tokens: 30, seed: 9 });
  assert.equal(plain.output_text, text);
  // the stored object is the final one
  const stored = await openai.responses.retrieve(last.response.id);
  assert.equal(stored.output[0].content[0].text, text);
  assert.equal(stored.status, last.response.status);
});

test("responses.stream helper: the client's accumulator rebuilds the final response", async () => {
  const stream = openai.responses.stream({ model, input: "The cat", max_output_tokens: 20, seed: 3 });
  let snapshot = "";
  stream.on("response.output_text.delta", (e) => (snapshot = e.snapshot));
  const final = await stream.finalResponse();
  assert.equal(final.output_text, snapshot);
  assert.ok(final.output_text.length > 0);
});

test("previous_response_id: the second call continues the stored conversation", async () => {
  const first = await openai.responses.create({ model, input: "Tom had a red ball.", max_output_tokens: 12, seed: 2 });
  const alone = await openai.responses.create({ model, input: "Where was it?", max_output_tokens: 12, seed: 2, store: false });
  const second = await openai.responses.create({
    model, input: "Where was it?", previous_response_id: first.id, max_output_tokens: 12, seed: 2,
  });
  assert.equal(second.previous_response_id, first.id);
  // the prompt holds the first turn, its reply and the new turn
  assert.ok(second.usage.input_tokens >= alone.usage.input_tokens + first.usage.input_tokens,
    `${second.usage.input_tokens} < ${alone.usage.input_tokens} + ${first.usage.input_tokens}`);
  // a chain of three: the third sees both earlier turns
  const third = await openai.responses.create({ model, input: "And then?", previous_response_id: second.id, max_output_tokens: 4, seed: 2 });
  assert.ok(third.usage.input_tokens > second.usage.input_tokens + second.usage.output_tokens - 2);
  // the stored first response is what was returned
  const got = await openai.responses.retrieve(first.id);
  assert.equal(got.id, first.id);
  assert.equal(got.output_text ?? got.output[0].content[0].text, first.output_text);
  assert.deepEqual(got.usage, first.usage);
  // input_items: the conversation the second response was generated from, newest first
  const items = await openai.responses.inputItems.list(second.id);
  const listed = [];
  for await (const it of items) listed.push(it);
  assert.deepEqual(listed.map((it) => [it.type, it.role]), [["message", "user"], ["message", "assistant"], ["message", "user"]]);
  assert.equal(listed[0].content[0].text, "Where was it?");
  assert.equal(listed[1].content[0].text, first.output_text);
  assert.equal(listed[1].id, first.output[0].id);
  assert.equal(listed[2].content[0].text, "Tom had a red ball.");
  for (const it of listed) assert.match(it.id, /^msg_/);
  const asc = await openai.responses.inputItems.list(second.id, { order: "asc", limit: 2 });
  assert.deepEqual(asc.data.map((it) => it.id), [listed[2].id, listed[1].id]);
  assert.equal(asc.has_more, true);
  const rest = await openai.responses.inputItems.list(second.id, { order: "asc", after: listed[1].id });
  assert.deepEqual(rest.data.map((it) => it.id), [listed[0].id]);
  assert.equal(rest.has_more, false);
  await rejects(other.responses.inputItems.list(second.id), 404);
});

test("function tools: call → function_call_output → final answer", async () => {
  const r = await openai.responses.create({
    model, input: "What is the weather in Paris?", tools: [weather], tool_choice: "required", parallel_tool_calls: false,
    max_output_tokens: 200, seed: 11,
  });
  assert.equal(r.status, "completed");
  const calls = r.output.filter((o) => o.type === "function_call");
  assert.equal(calls.length, 1, JSON.stringify(r.output));
  const call = calls[0];
  assert.equal(call.name, "get_weather");
  assert.match(call.call_id, /^call_[0-9a-f]{24}$/);
  assert.match(call.id, /^fc_/);
  assert.equal(call.status, "completed");
  checkWeatherArgs(call.arguments);
  assert.equal(r.tools[0].name, "get_weather");
  assert.equal(r.tool_choice, "required");
  // the result goes back through previous_response_id
  const answer = await openai.responses.create({
    model, previous_response_id: r.id, tools: [weather], tool_choice: "none", max_output_tokens: 16, seed: 11,
    input: [{ type: "function_call_output", call_id: call.call_id, output: "Sunny, 21 degrees" }],
  });
  assert.equal(answer.output[0].type, "message");
  assert.ok(answer.output_text.length > 0);
  // its prompt holds the question, the call and its result
  const question = await openai.responses.create({ model, input: "What is the weather in Paris?", store: false, max_output_tokens: 1 });
  assert.ok(answer.usage.input_tokens >= question.usage.input_tokens + r.usage.output_tokens,
    `${answer.usage.input_tokens} < ${question.usage.input_tokens} + ${r.usage.output_tokens}`);
  // and the same conversation written out as input items, without the store
  const manual = await openai.responses.create({
    model, store: false, tools: [weather], tool_choice: "none", max_output_tokens: 16, seed: 11,
    input: [
      { role: "user", content: "What is the weather in Paris?" },
      { type: "function_call", call_id: call.call_id, name: call.name, arguments: call.arguments },
      { type: "function_call_output", call_id: call.call_id, output: "Sunny, 21 degrees" },
    ],
  });
  assert.equal(manual.output_text, answer.output_text);
  assert.equal(manual.usage.input_tokens, answer.usage.input_tokens);
});

test("function tools streamed: argument deltas add up to the call", async () => {
  const stream = await openai.responses.create({
    model, input: "Weather in Rome for 3 days?", tools: [weather], tool_choice: { type: "function", name: "get_weather" }, parallel_tool_calls: false,
    max_output_tokens: 200, seed: 4, stream: true,
  });
  const events = [];
  for await (const e of stream) events.push(e);
  events.forEach((e, i) => assert.equal(e.sequence_number, i));
  const added = events.find((e) => e.type === "response.output_item.added" && e.item.type === "function_call");
  assert.ok(added, events.map((e) => e.type).join(" "));
  assert.equal(added.item.name, "get_weather");
  assert.equal(added.item.arguments, "");
  const last = events.at(-1);
  assert.equal(last.type, "response.completed");
  const calls = last.response.output.filter((o) => o.type === "function_call");
  assert.ok(calls.length >= 1);
  assert.equal(calls[0].id, added.item.id);
  assert.equal(calls[0].call_id, added.item.call_id);
  // per call (parallel calls are allowed): its deltas add up to its arguments
  for (const call of calls) {
    const deltas = events.filter((e) => e.type === "response.function_call_arguments.delta" && e.item_id === call.id);
    assert.ok(deltas.length > 0);
    const done = events.find((e) => e.type === "response.function_call_arguments.done" && e.item_id === call.id);
    assert.equal(deltas.map((e) => e.delta).join(""), done.arguments);
    assert.equal(call.arguments, done.arguments);
    assert.equal(call.name, "get_weather");
    checkWeatherArgs(done.arguments);
  }
});

test("text.format json_schema: the output parses and validates", async () => {
  const schema = {
    type: "object",
    properties: { name: { type: "string", maxLength: 10 }, age: { type: "integer", minimum: 0, maximum: 120 } },
    required: ["name", "age"],
    additionalProperties: false,
  };
  for (const seed of [1, 2, 3]) {
    const r = await openai.responses.create({
      model, input: "A person as JSON", max_output_tokens: 120, seed, temperature: 1,
      text: { format: { type: "json_schema", name: "person", schema, strict: true } },
    });
    assert.equal(r.status, "completed", r.output_text);
    const v = JSON.parse(r.output_text);
    assert.deepEqual(Object.keys(v).sort(), ["age", "name"]);
    assert.equal(typeof v.name, "string");
    assert.ok([...v.name].length <= 10);
    assert.ok(Number.isInteger(v.age) && v.age >= 0 && v.age <= 120);
    assert.equal(r.text.format.type, "json_schema");
    assert.equal(r.text.format.name, "person");
  }
  const o = await openai.responses.create({ model, input: "JSON", max_output_tokens: 60, seed: 1, text: { format: { type: "json_object" } } });
  if (o.status === "completed") assert.equal(typeof JSON.parse(o.output_text), "object");
});

test("GET and DELETE /v1/responses/{id}; a key sees only its own", async () => {
  const r = await openai.responses.create({ model, input: "Ben", max_output_tokens: 6, seed: 8 });
  const got = await openai.responses.retrieve(r.id);
  assert.equal(got.id, r.id);
  assert.equal(got.output_text ?? got.output[0].content[0].text, r.output_text);
  await rejects(other.responses.retrieve(r.id), 404);
  await rejects(other.responses.delete(r.id), 404);
  await rejects(other.responses.create({ model, input: "x", previous_response_id: r.id, max_output_tokens: 2 }), 400, "previous_response_id");
  const del = await fetch(`${URL}/v1/responses/${r.id}`, { method: "DELETE", headers: { Authorization: `Bearer ${KEY}` } });
  assert.equal(del.status, 200);
  assert.deepEqual(await del.json(), { id: r.id, object: "response.deleted", deleted: true });
  await rejects(openai.responses.retrieve(r.id), 404);
  await rejects(openai.responses.delete(r.id), 404);
  await rejects(openai.responses.create({ model, input: "x", previous_response_id: r.id, max_output_tokens: 2 }), 400, "previous_response_id");
  // store: false keeps nothing
  const unstored = await openai.responses.create({ model, input: "Ann", max_output_tokens: 2, store: false });
  assert.equal(unstored.store, false);
  await rejects(openai.responses.retrieve(unstored.id), 404);
});

test("errors: bad input items and fields are 400s naming the field", async () => {
  await rejects(openai.responses.create({ model, input: "x", previous_response_id: "resp_0000000000000000nothere" }), 400, "previous_response_id");
  await rejects(openai.responses.create({ model, input: [{ role: "user", content: "hi" }, { type: "bogus" }] }), 400, "input[1].type");
  await rejects(openai.responses.create({ model, input: [{ role: "wizard", content: "hi" }] }), 400, "input[0].role");
  await rejects(openai.responses.create({ model, input: [{ role: "user", content: [{ type: "input_image", image_url: "http://x/y.png" }] }] }), 400, "input[0].content[0].type");
  await rejects(openai.responses.create({ model, input: [{ type: "function_call_output", call_id: "call_nope", output: "1" }] }), 400, "input[0].call_id");
  await rejects(openai.responses.create({ model, input: [{ type: "function_call", call_id: "c1", name: "f", arguments: "not json" }] }), 400, "input[0].arguments");
  await rejects(openai.responses.create({ model, input: 42 }), 400, "input");
  await rejects(openai.responses.create({ model, input: [] }), 400, "input");
  await rejects(openai.responses.create({ model, input: "x", tools: [{ type: "web_search" }] }), 400, "tools");
  await rejects(openai.responses.create({ model, input: "x", tools: [weather, weather] }), 400, "tools");
  await rejects(openai.responses.create({ model, input: "x", tools: [weather], tool_choice: { type: "function", name: "nope" } }), 400, "tool_choice.name");
  await rejects(openai.responses.create({ model, input: "x", text: { format: { type: "json_schema", schema: 5 } } }), 400, "text.format.schema");
  await rejects(openai.responses.create({ model, input: "x", text: { format: { type: "xml" } } }), 400, "text.format.type");
  await rejects(openai.responses.create({ model, input: "x", max_output_tokens: 0 }), 400, "max_output_tokens");
  await rejects(openai.responses.create({ model, input: "x", temperature: 9 }), 400, "temperature");
  await rejects(openai.responses.create({ model, input: "x", background: true }), 400, "background");
  await rejects(openai.responses.create({ model: "no-such-model", input: "x" }), 404, "model");
  await rejects(openai.responses.retrieve("resp_../../etc"), 404);
  // hostile sizes are refused fast, naming the field
  const t0 = Date.now();
  await rejects(openai.responses.create({ model, input: Array.from({ length: 5000 }, () => ({ role: "user", content: "x" })) }), 400, "input");
  await rejects(openai.responses.create({ model, input: "x", tools: Array.from({ length: 10000 }, (_, i) => ({ ...weather, name: `f${i}` })) }), 400, "tools");
  assert.ok(Date.now() - t0 < 5000, `hostile sizes took ${Date.now() - t0} ms`);
  const bad = await fetch(`${URL}/v1/responses`, { method: "POST", headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" }, body: "{" });
  assert.equal(bad.status, 400);
  const anon = await fetch(`${URL}/v1/responses`, { method: "POST", headers: { "Content-Type": "application/json" }, body: '{"input":"x"}' });
  assert.equal(anon.status, 401);
});

// ---------- n > 1 ----------

test("chat n=3: three choices with indices 0..2, seeds seed+i, usage counts the prompt once", async () => {
  const messages = [{ role: "user", content: "Tell me a story" }];
  const r = await openai.chat.completions.create({ model, messages, n: 3, seed: 40, max_tokens: 16 });
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2]);
  const texts = r.choices.map((c) => c.message.content);
  assert.ok(new Set(texts).size >= 2, `three seeds gave ${JSON.stringify(texts)}`);
  // each choice is the one-choice request with its seed
  let completion = 0;
  for (let i = 0; i < 3; i++) {
    const one = await openai.chat.completions.create({ model, messages, seed: 40 + i, max_tokens: 16 });
    assert.equal(one.choices[0].message.content, texts[i], `choice ${i}`);
    assert.equal(one.choices[0].finish_reason, r.choices[i].finish_reason);
    assert.equal(one.usage.prompt_tokens, r.usage.prompt_tokens);
    completion += one.usage.completion_tokens;
  }
  assert.equal(r.usage.completion_tokens, completion);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + completion);
  const again = await openai.chat.completions.create({ model, messages, n: 3, seed: 40, max_tokens: 16 });
  assert.deepEqual(again.choices.map((c) => c.message.content), texts);
});

test("chat n=3 streamed: chunks per index add up to the unstreamed choices", async () => {
  const messages = [{ role: "user", content: "A dog" }];
  const plain = await openai.chat.completions.create({ model, messages, n: 3, seed: 7, max_tokens: 20 });
  const stream = await openai.chat.completions.create({ model, messages, n: 3, seed: 7, max_tokens: 20, stream: true, stream_options: { include_usage: true } });
  const texts = ["", "", ""], finish = [null, null, null], roles = [0, 0, 0];
  let usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      assert.ok(c.index >= 0 && c.index < 3, `index ${c.index}`);
      if (c.delta.role) roles[c.index]++;
      texts[c.index] += c.delta.content ?? "";
      if (c.finish_reason) finish[c.index] = c.finish_reason;
    }
  }
  assert.deepEqual(roles, [1, 1, 1]);
  assert.deepEqual(texts, plain.choices.map((c) => c.message.content));
  assert.deepEqual(finish, plain.choices.map((c) => c.finish_reason));
  for (const k of ["prompt_tokens", "completion_tokens", "total_tokens"]) assert.equal(usage[k], plain.usage[k], k);
});

test("completions n=2 (plain and streamed)", async () => {
  const r = await openai.completions.create({ model, prompt: "Once upon a time", n: 2, seed: 3, max_tokens: 12 });
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1]);
  const one = await openai.completions.create({ model, prompt: "Once upon a time", seed: 4, max_tokens: 12 });
  assert.equal(r.choices[1].text, one.choices[0].text);
  const stream = await openai.completions.create({ model, prompt: "Once upon a time", n: 2, seed: 3, max_tokens: 12, stream: true });
  const texts = ["", ""];
  for await (const chunk of stream) for (const c of chunk.choices) texts[c.index] += c.text;
  assert.deepEqual(texts, r.choices.map((c) => c.text));
});

test("chat n=2 with a required tool call: every choice calls", async () => {
  const r = await openai.chat.completions.create({
    model, messages: [{ role: "user", content: "Weather?" }], n: 2, seed: 21, max_tokens: 200, tool_choice: "required", parallel_tool_calls: false,
    tools: [{ type: "function", function: { name: weather.name, parameters: weather.parameters } }],
  });
  assert.equal(r.choices.length, 2);
  for (const c of r.choices) {
    assert.equal(c.finish_reason, "tool_calls");
    assert.equal(c.message.tool_calls[0].function.name, "get_weather");
    checkWeatherArgs(c.message.tool_calls[0].function.arguments);
  }
});

test("chat n=2 streamed with tools: tool-call deltas per index", async () => {
  const tools = [{ type: "function", function: { name: weather.name, parameters: weather.parameters } }];
  const req = { model, messages: [{ role: "user", content: "Weather?" }], n: 2, seed: 30, max_tokens: 200, tool_choice: "required", parallel_tool_calls: false, tools };
  const plain = await openai.chat.completions.create(req);
  const stream = await openai.chat.completions.create({ ...req, stream: true });
  const args = ["", ""], names = ["", ""], finish = [null, null];
  for await (const chunk of stream)
    for (const c of chunk.choices) {
      for (const t of c.delta.tool_calls ?? []) {
        if (t.function?.name) names[c.index] += t.function.name;
        args[c.index] += t.function?.arguments ?? "";
      }
      if (c.finish_reason) finish[c.index] = c.finish_reason;
    }
  assert.deepEqual(finish, ["tool_calls", "tool_calls"]);
  assert.deepEqual(names, ["get_weather", "get_weather"]);
  assert.deepEqual(args.map((a) => JSON.parse(a)), plain.choices.map((c) => JSON.parse(c.message.tool_calls[0].function.arguments)));
});

test("n=3 with stop strings and logit_bias: every choice obeys them", async () => {
  const r = await openai.completions.create({ model, prompt: "Once upon a time", n: 3, seed: 50, max_tokens: 40, stop: ["."], logit_bias: { 13: -100 } });
  assert.equal(r.choices.length, 3);
  for (const c of r.choices) {
    assert.ok(!c.text.includes("."), JSON.stringify(c.text));
    assert.ok(["stop", "length"].includes(c.finish_reason));
  }
});

test("n=2 under an output filter (a PII-masking key): every choice, streamed and not", async () => {
  const masked = new OpenAI({ baseURL: `${URL}/v1`, apiKey: process.env.SLM_KEY_MASK, maxRetries: 0 });
  const req = { model, messages: [{ role: "user", content: "My email is john@example.com" }], n: 2, seed: 12, max_tokens: 10 };
  const plain = await masked.chat.completions.create(req);
  const texts = plain.choices.map((c) => c.message.content);
  assert.equal(texts.length, 2);
  for (const t of texts) assert.ok(t.length > 0 && !t.includes("\x1e"), JSON.stringify(t));
  const stream = await masked.chat.completions.create({ ...req, stream: true });
  const got = ["", ""];
  for await (const chunk of stream) for (const c of chunk.choices) got[c.index] += c.delta.content ?? "";
  assert.deepEqual(got, texts);
  const r = await masked.responses.create({ model, input: "My email is john@example.com", max_output_tokens: 10, seed: 12, stream: false });
  assert.ok(r.output_text.length > 0);
});

test("n out of range is a 400 naming n", async () => {
  const messages = [{ role: "user", content: "x" }];
  await rejects(openai.chat.completions.create({ model, messages, n: 17 }), 400, "n");
  await rejects(openai.chat.completions.create({ model, messages, n: 5 }), 400, "n"); // more than the 4 slots
  await rejects(openai.chat.completions.create({ model, messages, n: 0 }), 400, "n");
  await rejects(openai.completions.create({ model, prompt: "x", n: 1000 }), 400, "n");
  await rejects(openai.chat.completions.create({ model, messages, n: 1.5 }), 400, "n");
});
