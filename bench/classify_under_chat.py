#!/usr/bin/env python3
"""64 /v1/classify requests sent while 8 chat streams run: wall time of the classify burst, the
chat streams' tokens, and the server's thread count (sampled from /proc while the load runs).

usage: bench/classify_under_chat.py SLM_BIN MODEL [--rounds N] [--parallel P] [--threads T]
Starts `SLM_BIN serve` on a loopback port for each round, prints one JSON object per round and a
summary with medians. Loopback only; every request has a timeout; the server is killed at the end.
"""
import argparse
import concurrent.futures as cf
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

LABELS = ["sport", "politics", "cooking", "science"]
TEXTS = ["The team won the final match in extra time.", "Parliament passed the budget after a long debate.",
         "Whisk the eggs and fold in the flour gently.", "The telescope found a planet around a nearby star."]


def post(port, path, body, timeout=600):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def chat_stream(port, max_tokens, out):
    body = {"messages": [{"role": "user", "content": "Tell me a long story about a dragon."}], "stream": True,
            "max_tokens": max_tokens, "ignore_eos": True, "temperature": 0}
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    chunks = 0
    for line in r:
        if line.startswith(b"data: {"):
            chunks += 1
    c.close()
    out.append((r.status, chunks))


def threads_of(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


def one_round(args):
    tmp = tempfile.mkdtemp()
    port_file = os.path.join(tmp, "port")
    cmd = [args.slm, "serve", "--model", args.model, "--port", "0", "--port-file", port_file, "--parallel",
           str(args.parallel), "--threads", str(args.threads), "--queue", "256", "--ctx-size", "1024"]
    srv = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(600):
            if os.path.exists(port_file):
                break
            time.sleep(0.05)
        port = int(open(port_file).read())
        for _ in range(600):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/health")
                ok = c.getresponse().status == 200
                c.close()
                if ok:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        idle_threads = threads_of(srv.pid)
        peak = [idle_threads]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], threads_of(srv.pid))
                time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        sampler.start()
        chats = []
        chat_threads = [threading.Thread(target=chat_stream, args=(port, args.chat_tokens, chats)) for _ in range(8)]
        for t in chat_threads:
            t.start()
        time.sleep(0.5)  # the streams are running
        t0 = time.monotonic()
        statuses = []
        with cf.ThreadPoolExecutor(max_workers=64) as ex:
            futs = [ex.submit(post, port, "/v1/classify", {"input": TEXTS[i % 4], "labels": LABELS}) for i in range(64)]
            for f in futs:
                statuses.append(f.result()[0])
        classify_s = time.monotonic() - t0
        for t in chat_threads:
            t.join()
        stop.set()
        sampler.join()
        return {"classify_wall_s": round(classify_s, 3), "classify_ok": statuses.count(200),
                "classify_statuses": sorted(set(statuses)), "chat_ok": sum(1 for s, _ in chats if s == 200),
                "chat_chunks": sum(n for _, n in chats), "threads_idle": idle_threads, "threads_peak": peak[0]}
    finally:
        srv.kill()
        srv.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("slm")
    ap.add_argument("model")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--parallel", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chat-tokens", type=int, default=256)
    args = ap.parse_args()
    rounds = []
    for _ in range(args.rounds):
        r = one_round(args)
        print(json.dumps(r), flush=True)
        rounds.append(r)
    print(json.dumps({"summary": True, "classify_wall_s_median": statistics.median(r["classify_wall_s"] for r in rounds),
                      "threads_peak_median": statistics.median(r["threads_peak"] for r in rounds),
                      "threads_idle_median": statistics.median(r["threads_idle"] for r in rounds)}))
    return 0 if all(r["classify_ok"] == 64 and r["chat_ok"] == 8 for r in rounds) else 1


if __name__ == "__main__":
    sys.exit(main())
