// Tool calling through the official OpenAI and Ollama JavaScript clients (run by
// tests/cli/server_tools.sh: `slm serve` with stories260K and, when present, tiny-smollm2), and
// through two frameworks built on them: LangChain (bindTools, an agent loop) and the Vercel AI SDK
// (generateText with tools over several steps).
import { test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { Ollama } from "ollama";
import { ChatOpenAI } from "@langchain/openai";
import { tool as lcTool } from "@langchain/core/tools";
import { HumanMessage, ToolMessage } from "@langchain/core/messages";
import { generateText, tool as aiTool, stepCountIs } from "ai";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { z } from "zod";

const URL = process.env.SLM_URL;
const KEY = process.env.SLM_KEY;
assert.ok(URL && KEY, "SLM_URL and SLM_KEY must be set");
const MODELS = ["stories260K", ...(process.env.SLM_TOOLS_SMOLLM ? ["tiny-smollm2-f32"] : [])];

const openai = new OpenAI({ baseURL: `${URL}/v1`, apiKey: KEY, maxRetries: 0 });
const ollama = new Ollama({ host: URL, headers: { Authorization: `Bearer ${KEY}` } });

const weather = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The weather in a city",
    parameters: {
      type: "object",
      properties: { city: { type: "string", maxLength: 12 }, days: { type: "integer", minimum: 1, maximum: 7 } },
      required: ["city"],
      additionalProperties: false,
    },
  },
};
const add = {
  type: "function",
  function: {
    name: "add",
    parameters: { type: "object", properties: { a: { type: "integer", minimum: -99, maximum: 99 }, b: { enum: [1, 2, 3] } }, required: ["a", "b"] },
  },
};
const TOOLS = [weather, add];

// The arguments object is valid against the schema of the function it names (the two above).
function checkArgs(name, args) {
  assert.equal(typeof args, "object");
  assert.ok(args && !Array.isArray(args), `arguments ${JSON.stringify(args)} must be an object`);
  if (name === "get_weather") {
    assert.equal(typeof args.city, "string");
    assert.ok([...args.city].length <= 12, `city ${JSON.stringify(args.city)} longer than 12`);
    if ("days" in args) assert.ok(Number.isInteger(args.days) && args.days >= 1 && args.days <= 7, `days ${args.days}`);
    for (const k of Object.keys(args)) assert.ok(k === "city" || k === "days", `unexpected key ${k}`);
  } else if (name === "add") {
    assert.ok(Number.isInteger(args.a) && args.a >= -99 && args.a <= 99, `a ${args.a}`);
    assert.ok([1, 2, 3].includes(args.b), `b ${args.b}`);
  } else {
    assert.fail(`call names an unknown function ${name}`);
  }
}

function checkCall(c) {
  assert.match(c.id, /^call_[0-9a-f]{24}$/);
  assert.equal(c.type, "function");
  assert.equal(typeof c.function.arguments, "string");
  checkArgs(c.function.name, JSON.parse(c.function.arguments));
}

const ask = [{ role: "user", content: "What is the weather in Paris?" }];

for (const model of MODELS) {
  test(`${model}: required call → tool result → final answer (not streamed)`, async () => {
    const r = await openai.chat.completions.create({
      model, messages: ask, tools: TOOLS, tool_choice: "required", parallel_tool_calls: false, seed: 11, max_tokens: 300,
    });
    const choice = r.choices[0];
    assert.equal(choice.finish_reason, "tool_calls");
    assert.equal(choice.message.role, "assistant");
    assert.equal(choice.message.content, null);
    assert.equal(choice.message.tool_calls.length, 1);
    checkCall(choice.message.tool_calls[0]);
    // the call and its result go back; the answer is text
    const messages = [...ask, choice.message, { role: "tool", tool_call_id: choice.message.tool_calls[0].id, content: '{"temp": 21}' }];
    const fin = await openai.chat.completions.create({ model, messages, tools: TOOLS, tool_choice: "none", seed: 1, max_tokens: 12 });
    assert.equal(fin.choices[0].message.tool_calls, undefined);
    assert.equal(typeof fin.choices[0].message.content, "string");
    assert.ok(["stop", "length"].includes(fin.choices[0].finish_reason));
    // the history is in the prompt: more prompt tokens than the question alone
    const bare = await openai.chat.completions.create({ model, messages: ask, max_tokens: 1 });
    assert.ok(fin.usage.prompt_tokens > bare.usage.prompt_tokens + 20, `${fin.usage.prompt_tokens} vs ${bare.usage.prompt_tokens}`);
  });

  test(`${model}: a named call streamed as OpenAI streams it equals the unstreamed one`, async () => {
    const req = {
      model, messages: ask, tools: TOOLS, tool_choice: { type: "function", function: { name: "add" } }, parallel_tool_calls: false,
      seed: 5, max_tokens: 200,
    };
    const whole = await openai.chat.completions.create(req);
    assert.equal(whole.choices[0].finish_reason, "tool_calls");
    const call = whole.choices[0].message.tool_calls[0];
    assert.equal(call.function.name, "add");
    checkCall(call);
    const stream = await openai.chat.completions.create({ ...req, stream: true });
    let id = null, name = null, args = "", pieces = 0, finish = null, content = "";
    for await (const chunk of stream) {
      const d = chunk.choices[0]?.delta ?? {};
      if (d.content) content += d.content;
      for (const tc of d.tool_calls ?? []) {
        assert.equal(tc.index, 0);
        if (tc.id) {
          assert.equal(id, null, "the id comes once, in the first delta");
          id = tc.id;
          name = tc.function.name;
          assert.equal(tc.type, "function");
          assert.equal(tc.function.arguments, "");
        } else {
          assert.ok(id, "arguments come after the first delta");
          args += tc.function.arguments;
          pieces++;
        }
      }
      if (chunk.choices[0]?.finish_reason) finish = chunk.choices[0].finish_reason;
    }
    assert.equal(content, "");
    assert.equal(finish, "tool_calls");
    assert.match(id, /^call_[0-9a-f]{24}$/);
    assert.equal(name, "add");
    // (how many pieces depends on how far the engine got between two reads of the stream: on a
    // loaded machine the whole call can arrive in one)
    assert.ok(pieces >= 1, `arguments after the id (got ${pieces} pieces)`);
    assert.deepEqual(JSON.parse(args), JSON.parse(call.function.arguments));
  });

  test(`${model}: parallel required calls are each valid; streamed round trip`, async () => {
    const r = await openai.chat.completions.create({ model, messages: ask, tools: TOOLS, tool_choice: "required", seed: 2, max_tokens: 600 });
    const c = r.choices[0];
    if (c.finish_reason === "tool_calls") {
      assert.ok(c.message.tool_calls.length >= 1 && c.message.tool_calls.length <= 8);
      c.message.tool_calls.forEach(checkCall);
      assert.equal(new Set(c.message.tool_calls.map((t) => t.id)).size, c.message.tool_calls.length);
    } else {
      assert.equal(c.finish_reason, "length"); // eight calls did not fit: the text comes back whole
      assert.match(c.message.content, /^<tool_call>/);
    }
    // streamed: the openai helper assembles the calls; they go back with their results
    const stream = openai.beta?.chat?.completions?.stream
      ? openai.beta.chat.completions.stream({ model, messages: ask, tools: TOOLS, tool_choice: "required", parallel_tool_calls: false, seed: 9, max_tokens: 300 })
      : openai.chat.completions.stream({ model, messages: ask, tools: TOOLS, tool_choice: "required", parallel_tool_calls: false, seed: 9, max_tokens: 300 });
    const done = await stream.finalChatCompletion();
    const msg = done.choices[0].message;
    assert.equal(done.choices[0].finish_reason, "tool_calls");
    msg.tool_calls.forEach(checkCall);
    const results = msg.tool_calls.map((t) => ({ role: "tool", tool_call_id: t.id, content: "ok" }));
    const fin = await openai.chat.completions.create({ model, messages: [...ask, msg, ...results], tools: TOOLS, seed: 3, max_tokens: 40, stream: true });
    let text = "", calls = 0;
    for await (const chunk of fin) {
      text += chunk.choices[0]?.delta?.content ?? "";
      calls += chunk.choices[0]?.delta?.tool_calls?.length ?? 0;
    }
    assert.ok(!text.includes("<tool_call>"), "auto mode: free text never holds the trigger");
    assert.ok(text.length > 0 || calls > 0);
  });

  test(`${model}: auto: text without the trigger, or valid calls`, async () => {
    for (const seed of [1, 2, 3, 4]) {
      const r = await openai.chat.completions.create({ model, messages: ask, tools: TOOLS, seed, max_tokens: 60 });
      const m = r.choices[0].message;
      if (m.tool_calls) {
        assert.equal(r.choices[0].finish_reason, "tool_calls");
        m.tool_calls.forEach(checkCall);
      } else if (r.choices[0].finish_reason === "stop") {
        assert.ok(!m.content.includes("<tool_call>"), `seed ${seed}: ${m.content}`);
      }
    }
  });
}

test("tool_choice none: no calls, tools not in the prompt", async () => {
  const none = await openai.chat.completions.create({ model: "stories260K", messages: ask, tools: TOOLS, tool_choice: "none", max_tokens: 5, seed: 1 });
  const bare = await openai.chat.completions.create({ model: "stories260K", messages: ask, max_tokens: 5, seed: 1 });
  assert.equal(none.choices[0].message.tool_calls, undefined);
  assert.equal(none.usage.prompt_tokens, bare.usage.prompt_tokens);
  assert.equal(none.choices[0].message.content, bare.choices[0].message.content);
});

test("ollama client: tools, tool_calls with object arguments, streamed and not, round trip", async () => {
  const model = MODELS[MODELS.length - 1];
  const r = await ollama.chat({ model, messages: ask, tools: TOOLS, tool_choice: "required", parallel_tool_calls: false, options: { seed: 4, num_predict: 300 } });
  assert.equal(r.done, true);
  assert.equal(r.message.tool_calls.length, 1);
  const call = r.message.tool_calls[0];
  checkArgs(call.function.name, call.function.arguments);
  const parts = await ollama.chat({ model, messages: ask, tools: TOOLS, tool_choice: "required", parallel_tool_calls: false, options: { seed: 4, num_predict: 300 }, stream: true });
  const streamed = [];
  let last = null;
  for await (const p of parts) {
    streamed.push(...(p.message?.tool_calls ?? []));
    last = p;
  }
  assert.equal(last.done, true);
  assert.deepEqual(streamed, r.message.tool_calls);
  const fin = await ollama.chat({
    model, messages: [...ask, { role: "assistant", content: "", tool_calls: r.message.tool_calls }, { role: "tool", content: "21 degrees", tool_name: call.function.name }],
    tools: TOOLS, options: { seed: 1, num_predict: 10 },
  });
  assert.equal(fin.done, true);
  assert.equal(typeof fin.message.content, "string");
});

// ---------- hostile tool lists: one fast 400 naming the place ----------

async function refused(body, param, pattern) {
  const t0 = Date.now();
  const res = await fetch(`${URL}/v1/chat/completions`, {
    method: "POST", headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" },
    body: JSON.stringify({ model: "stories260K", messages: ask, max_tokens: 5, ...body }),
  });
  const j = await res.json();
  assert.equal(res.status, 400, JSON.stringify(j));
  assert.equal(j.error.param, param, JSON.stringify(j));
  assert.match(j.error.message, pattern);
  return Date.now() - t0;
}

test("hostile: 10,000 tools, huge schemas, duplicates, wrong types, bad schemas, unknown ids", async () => {
  const many = Array.from({ length: 10000 }, (_, i) => ({ type: "function", function: { name: `f${i}`, parameters: { type: "object" } } }));
  const ms = await refused({ tools: many }, "tools", /10000 entries; at most 128/);
  assert.ok(ms < 2000, `10,000 tools refused in ${ms} ms`);
  const big = Array.from({ length: 100 }, (_, i) => ({ type: "function", function: { name: `g${i}`, description: "x".repeat(3000) } }));
  await refused({ tools: big }, "tools", /exceed 262144 bytes/);
  await refused({ tools: [weather, weather] }, "tools", /tools\[1\]\.function\.name.*already defined by tools\[0\]/);
  await refused({ tools: [{ type: "code_interpreter" }] }, "tools", /tools\[0\]\.type' must be "function"/);
  await refused({ tools: [{ type: "function", function: { name: "bad name!" } }] }, "tools", /tools\[0\]\.function\.name/);
  await refused({ tools: [{ type: "function", function: { name: "f", parameters: "{}" } }] }, "tools", /tools\[0\]\.function\.parameters' must be a JSON Schema object/);
  await refused({ tools: [weather, { type: "function", function: { name: "g", parameters: { type: "object", properties: { x: { allOf: [{ type: "string" }] } } } } }], tool_choice: "required" },
    "tools", /tools\[1\]\.function\.parameters' of tool g: .*allOf/);
  await refused({ tools: TOOLS, tool_choice: { type: "function", function: { name: "nope" } } }, "tool_choice.function.name", /names no tool/);
  await refused({ tools: TOOLS, response_format: { type: "json_object" } }, "tool_choice", /cannot be combined/);
  await refused({ tool_choice: "required" }, "tool_choice", /'tools' is empty/);
  await refused({ tools: TOOLS, messages: [...ask, { role: "tool", tool_call_id: "call_x", content: "1" }] }, "messages[1].tool_call_id", /matches no tool call/);
  await refused({ messages: [...ask, { role: "assistant", content: null, tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: "{not json" } }] }] },
    "messages[1].tool_calls[0].function.arguments", /JSON object encoded as a string/);
  await refused({ functions: [{ name: "f" }] }, "functions", /not supported/);
  // the server is fine afterwards
  const ok = await openai.chat.completions.create({ model: "stories260K", messages: ask, tools: TOOLS, tool_choice: "required", parallel_tool_calls: false, seed: 1, max_tokens: 300 });
  assert.equal(ok.choices[0].finish_reason, "tool_calls");
});

// ---------- frameworks ----------

test("LangChain bindTools: an agent loop (call → tool result → answer)", async () => {
  const seen = [];
  const getWeather = lcTool(async ({ city }) => { seen.push(city); return `21 degrees in ${city}`; }, {
    name: "get_weather", description: "The weather in a city", schema: z.object({ city: z.string().max(12), days: z.number().int().min(1).max(7).optional() }),
  });
  const llm = new ChatOpenAI({ model: "stories260K", apiKey: KEY, configuration: { baseURL: `${URL}/v1` }, temperature: 1, maxTokens: 200, maxRetries: 0 });
  const withTools = llm.bindTools([getWeather], { tool_choice: "required", parallel_tool_calls: false });
  const messages = [new HumanMessage("What is the weather in Paris?")];
  const ai = await withTools.invoke(messages, { seed: 3 });
  assert.equal(ai.tool_calls.length, 1);
  const call = ai.tool_calls[0];
  assert.equal(call.name, "get_weather");
  assert.match(call.id, /^call_[0-9a-f]{24}$/);
  assert.equal(typeof call.args.city, "string");
  assert.ok([...call.args.city].length <= 12);
  messages.push(ai, await getWeather.invoke(call));
  assert.equal(seen.length, 1);
  assert.ok(messages[2] instanceof ToolMessage);
  const final = await llm.bindTools([getWeather], { tool_choice: "none" }).invoke(messages, { seed: 1 });
  assert.equal(final.tool_calls.length, 0);
  assert.equal(typeof final.content, "string");
  assert.ok(final.content.length > 0);
});

test("Vercel AI SDK generateText: tools over several steps", async () => {
  const slm = createOpenAICompatible({ name: "slm", baseURL: `${URL}/v1`, apiKey: KEY });
  const calls = [];
  const result = await generateText({
    model: slm.chatModel("stories260K"),
    prompt: "What is the weather in Paris?",
    tools: {
      get_weather: aiTool({
        description: "The weather in a city",
        inputSchema: z.object({ city: z.string().max(12) }),
        execute: async ({ city }) => { calls.push(city); return { city, celsius: 21 }; },
      }),
    },
    prepareStep: ({ stepNumber }) => ({ toolChoice: stepNumber === 0 ? "required" : "none" }),
    stopWhen: stepCountIs(3),
    maxOutputTokens: 150,
    seed: 4,
    maxRetries: 0,
    // one call per reply (the tiny model would otherwise fill the reply with parallel calls)
    providerOptions: { slm: { parallel_tool_calls: false } },
  });
  assert.equal(result.steps.length, 2);
  assert.equal(result.steps[0].finishReason, "tool-calls");
  assert.equal(result.steps[0].toolCalls[0].toolName, "get_weather");
  assert.equal(calls.length, result.steps[0].toolCalls.length);
  assert.equal(typeof result.text, "string");
  assert.ok(result.text.length > 0);
});
