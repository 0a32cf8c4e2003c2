"""Random, type-confused and truncated JSON bodies for every POST route of slm serve.
usage: fuzz_requests.py PORT COUNT SEED. Fails (exit 1) on any 5xx other than 503 or a dropped
connection; prints the status histogram."""
import json, random, sys, http.client
port = int(sys.argv[1]); n = int(sys.argv[2]); random.seed(int(sys.argv[3]))
paths = ["/v1/chat/completions","/v1/completions","/v1/embeddings","/api/chat","/api/generate","/api/embed","/api/embeddings","/api/show","/v1/classify","/v1/extract","/v1/summarize"]
fields = ["model","messages","prompt","input","stream","stream_options","temperature","top_p","top_k","min_p","max_tokens","max_completion_tokens","stop","seed","presence_penalty","frequency_penalty","logit_bias","logprobs","top_logprobs","n","ignore_eos","min_tokens","repeat_penalty","response_format","grammar","json_schema","options","format","system","raw","context","labels","schema","max_words","style","encoding_format","dimensions","tools","images","template","echo","suffix","name","multi_label"]
def rv(d=0):
    r = random.random()
    if d > 3 or r < 0.25: return random.choice([None, True, False, 0, -1, 1, 2**40, -2**63, 1.5, -0.0, 1e308, "", "x", "Once upon a time", "\u00e9\ud7ff", "stories260K", "../../etc/passwd", "<|im_start|>"])
    if r < 0.45: return [rv(d+1) for _ in range(random.randint(0,4))]
    if r < 0.6: return {random.choice(fields+["role","content","type","text","include_usage","schema","num_predict","temperature","stop","seed"]): rv(d+1) for _ in range(random.randint(0,4))}
    if r < 0.7: return [{"role": random.choice(["user","system","assistant","tool",5]), "content": rv(d+1)} for _ in range(random.randint(0,3))]
    if r < 0.8: return random.randint(-5, 600)
    return "".join(chr(random.randint(1, 0x2FF)) for _ in range(random.randint(0, 20)))
bad = 0; codes = {}
for i in range(n):
    body = {f: rv() for f in random.sample(fields, random.randint(0, 8))}
    if random.random() < 0.5: body["max_tokens"] = random.randint(1, 8); body.setdefault("options", {})
    if isinstance(body.get("options"), dict): body["options"]["num_predict"] = random.randint(1, 8)
    raw = json.dumps(body)
    if random.random() < 0.1: raw = raw[:random.randint(0, len(raw))]
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("POST", random.choice(paths), raw.encode("utf-8", "surrogatepass"), {"Content-Type": "application/json"})
        r = c.getresponse(); data = r.read()
        codes[r.status] = codes.get(r.status, 0) + 1
        if r.status >= 500 and r.status != 503:
            bad += 1; print("5xx", r.status, raw[:200], data[:200])
    except Exception as e:
        bad += 1; print("EXC", e, raw[:200]); break
    finally:
        c.close()
print("fuzz_requests: seed", sys.argv[3], "statuses", dict(sorted(codes.items())), "bad", bad)
sys.exit(1 if bad else 0)
