// Aggregate generation speed of an OpenAI-compatible server: N concurrent completions of T tokens
// each (EOS ignored), best of R rounds. Works against slm serve and llama-server alike.
//   node throughput.mjs URL N T [ROUNDS]
const [url, n = "8", t = "128", rounds = "3"] = process.argv.slice(2);
async function one(i) {
  const r = await fetch(url + "/v1/completions", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ prompt: `Story ${i}: once upon a time`, max_tokens: Number(t), n_predict: Number(t),
                           ignore_eos: true, temperature: 0 }),
  });
  const j = await r.json();
  if (!r.ok) throw new Error(JSON.stringify(j));
  return j.usage.completion_tokens;
}
let best = 0, bestTokens = 0, bestSecs = 0;
await one(0); // warm-up
for (let k = 0; k < Number(rounds); k++) {
  const t0 = performance.now();
  const counts = await Promise.all(Array.from({ length: Number(n) }, (_, i) => one(i)));
  const secs = (performance.now() - t0) / 1000;
  const tokens = counts.reduce((a, b) => a + b, 0);
  if (tokens / secs > best) { best = tokens / secs; bestTokens = tokens; bestSecs = secs; }
}
console.log(JSON.stringify({ streams: Number(n), tokens: bestTokens, seconds: +bestSecs.toFixed(3), tok_per_s: +best.toFixed(1) }));
