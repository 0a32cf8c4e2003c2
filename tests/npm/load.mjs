// Load generator for slm serve (no dependencies): C concurrent clients stream chat completions
// for S seconds; some abort mid-stream on purpose. Prints one JSON summary line.
//   node load.mjs URL CLIENTS SECONDS [MAX_TOKENS] [ABORT_EVERY]
// A 503 is the documented overload answer: the client waits Retry-After and tries again.
// Everything else that is not a complete, well-formed stream counts as an error.
const [url, clients = "64", seconds = "10", maxTokens = "64", abortEvery = "10"] = process.argv.slice(2);
if (!url) {
  console.error("usage: node load.mjs URL CLIENTS SECONDS [MAX_TOKENS] [ABORT_EVERY]");
  process.exit(2);
}
const key = process.env.SLM_KEY;
const deadline = Date.now() + Number(seconds) * 1000;
const stats = { ok: 0, aborted_on_purpose: 0, overloaded_503: 0, errors: 0, tokens: 0, chunks: 0, error_samples: [], ttft_ms: [] };
const prompts = ["Once upon a time", "The little dog", "Tom had a red ball", "One day, Lily went to the park", "The sun was hot"];

async function one(worker, n) {
  const abortAfter = Number(abortEvery) > 0 && (worker * 7 + n) % Number(abortEvery) === 0 ? 3 : -1;
  const controller = new AbortController();
  const t0 = Date.now();
  const res = await fetch(url + "/v1/chat/completions", {
    method: "POST",
    headers: { "Content-Type": "application/json", ...(key ? { Authorization: `Bearer ${key}` } : {}) },
    body: JSON.stringify({
      messages: [{ role: "user", content: prompts[(worker + n) % prompts.length] }],
      stream: true, stream_options: { include_usage: true }, max_tokens: Number(maxTokens), temperature: 0.8, seed: worker * 1000 + n,
    }),
    signal: controller.signal,
  });
  if (res.status === 503) {
    stats.overloaded_503++;
    await res.arrayBuffer();
    const wait = Number(res.headers.get("retry-after") || "1");
    await new Promise((r) => setTimeout(r, Math.min(wait, 1) * 1000 * Math.random()));
    return;
  }
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`);
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = "", chunks = 0, done = false, first = 0;
  for (;;) {
    const { value, done: eof } = await reader.read();
    if (eof) break;
    buf += dec.decode(value, { stream: true });
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const ev = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      if (!ev.startsWith("data: ")) throw new Error(`bad SSE event: ${ev.slice(0, 100)}`);
      const data = ev.slice(6);
      if (data === "[DONE]") { done = true; continue; }
      const j = JSON.parse(data);
      if (j.error) throw new Error(`stream error: ${j.error.message}`);
      if (j.usage) stats.tokens += j.usage.completion_tokens;
      if (j.choices?.[0]?.delta?.content) {
        if (!first) { first = Date.now(); stats.ttft_ms.push(first - t0); }
        chunks++;
        stats.chunks++;
      }
      if (abortAfter > 0 && chunks >= abortAfter) {
        controller.abort();
        stats.aborted_on_purpose++;
        return;
      }
    }
  }
  if (!done) throw new Error("stream ended without [DONE]");
  stats.ok++;
}

async function worker(w) {
  for (let n = 0; Date.now() < deadline; n++) {
    try {
      await one(w, n);
    } catch (e) {
      if (e.name === "AbortError") { continue; }
      stats.errors++;
      if (stats.error_samples.length < 5) stats.error_samples.push(String(e.message || e));
    }
  }
}

const t0 = Date.now();
await Promise.all(Array.from({ length: Number(clients) }, (_, w) => worker(w)));
const wall = (Date.now() - t0) / 1000;
const ttft = stats.ttft_ms.sort((a, b) => a - b);
const pct = (p) => (ttft.length ? ttft[Math.min(ttft.length - 1, Math.floor(p * ttft.length))] : null);
console.log(JSON.stringify({
  clients: Number(clients), seconds: wall, ok: stats.ok, aborted_on_purpose: stats.aborted_on_purpose,
  overloaded_503: stats.overloaded_503, errors: stats.errors, error_samples: stats.error_samples,
  completed_stream_tokens: stats.tokens, content_chunks: stats.chunks, tokens_per_second: Math.round(stats.tokens / wall),
  ttft_ms_p50: pct(0.5), ttft_ms_p99: pct(0.99),
}));
