#!/usr/bin/env python3
"""Tool calls are valid by construction: 30 tool schemas (the last 10 use uniqueItems, multipleOf,
min/maxProperties, propertyNames, patternProperties, prefixItems, contains, dependentRequired,
if/then/else and not) x 5 seeds at temperature 1 on each model;
every call a reply emits must parse as a JSON object and validate against its function's schema
(checked here with the `jsonschema` package, independently of the server's own slm_json_validate).

usage: tool_call_check.py SLM_BIN MODEL.gguf [MODEL.gguf ...] [--seeds N] [--schemas N]
Starts `slm serve` on a free loopback port. Exits 0 when every call is valid, 1 otherwise, 77 when
a prerequisite (jsonschema) is missing. Per seed the tool_choice cycles through required, named and
auto, and parallel_tool_calls alternates, so each mode is exercised on every schema."""
import concurrent.futures
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

try:
    import jsonschema
except ImportError:
    print("tool_call_check: the python package jsonschema is missing; skipped", file=sys.stderr)
    sys.exit(77)

S = {"type": "string", "maxLength": 12}
SCHEMAS = [
    ("get_weather", {"type": "object", "properties": {"city": S, "unit": {"enum": ["c", "f"]}}, "required": ["city"]}),
    ("add", {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"],
             "additionalProperties": False}),
    ("set_alarm", {"type": "object", "properties": {"hour": {"type": "integer", "minimum": 0, "maximum": 23},
                                                    "minute": {"type": "integer", "minimum": 0, "maximum": 59}},
                   "required": ["hour", "minute"]}),
    ("toggle", {"type": "object", "properties": {"on": {"type": "boolean"}}, "required": ["on"]}),
    ("tag", {"type": "object", "properties": {"tags": {"type": "array", "items": S, "minItems": 1, "maxItems": 3}},
             "required": ["tags"]}),
    ("book", {"type": "object", "properties": {"date": {"type": "string", "format": "date"},
                                               "guests": {"type": "integer", "minimum": 1, "maximum": 8}},
              "required": ["date", "guests"]}),
    ("email", {"type": "object", "properties": {"to": {"type": "string", "format": "email"}, "subject": S},
               "required": ["to"]}),
    ("lookup", {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}}, "required": ["id"]}),
    ("code", {"type": "object", "properties": {"zip": {"type": "string", "pattern": "^[0-9]{5}$"}}, "required": ["zip"]}),
    ("nested", {"type": "object", "properties": {"user": {"type": "object", "properties": {"name": S, "age": {
        "type": "integer", "minimum": 0, "maximum": 130}}, "required": ["name"], "additionalProperties": False}},
                "required": ["user"]}),
    ("choose", {"type": "object", "properties": {"pick": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 3},
                                                                  {"const": "none"}]}}, "required": ["pick"]}),
    ("ref", {"type": "object", "$defs": {"pt": {"type": "object", "properties": {"x": {"type": "integer"},
                                                                                "y": {"type": "integer"}},
                                                "required": ["x", "y"]}},
             "properties": {"from": {"$ref": "#/$defs/pt"}, "to": {"$ref": "#/$defs/pt"}}, "required": ["from", "to"]}),
    ("maybe", {"type": "object", "properties": {"note": {"type": ["string", "null"], "maxLength": 8}},
               "required": ["note"]}),
    ("scale", {"type": "object", "properties": {"f": {"type": "number", "minimum": 0, "maximum": 1}},
               "required": ["f"]}),
    ("empty", {"type": "object", "properties": {}}),
    ("optional", {"type": "object", "properties": {"a": S, "b": {"type": "integer"}, "c": {"type": "boolean"}}}),
    ("matrix", {"type": "object", "properties": {"rows": {"type": "array", "maxItems": 2, "items": {
        "type": "array", "maxItems": 2, "items": {"type": "integer", "minimum": -9, "maximum": 9}}}}, "required": ["rows"]}),
    ("clock", {"type": "object", "properties": {"t": {"type": "string", "format": "time"}}, "required": ["t"]}),
    ("level", {"type": "object", "properties": {"level": {"enum": ["low", "mid", "high", 1, None]},
                                                "why": {"type": "string", "minLength": 1, "maxLength": 6}},
               "required": ["level", "why"]}),
    ("exact", {"type": "object", "properties": {"kind": {"const": "order"}, "qty": {"type": "integer",
                                                                                 "exclusiveMinimum": 0,
                                                                                 "exclusiveMaximum": 100}},
               "required": ["kind", "qty"], "additionalProperties": False}),
    # the JSON Schema keywords of issue 18
    ("unique_tags", {"type": "object", "properties": {"tags": {"type": "array", "items": {"enum": ["a", "b", "c", "d"]},
                                                               "uniqueItems": True, "minItems": 2}},
                     "required": ["tags"]}),
    ("pay", {"type": "object", "properties": {"amount": {"type": "number", "minimum": 0, "maximum": 50,
                                                         "multipleOf": 0.25},
                                              "count": {"type": "integer", "multipleOf": 3}},
             "required": ["amount", "count"]}),
    ("filters", {"type": "object", "properties": {"a": S, "b": {"type": "integer"}, "c": {"type": "boolean"},
                                                  "d": {"type": "null"}},
                 "minProperties": 2, "maxProperties": 3, "additionalProperties": False}),
    ("headers", {"type": "object", "properties": {"h": {"type": "object", "propertyNames": {"pattern": "^[a-z]{1,8}$"},
                                                        "additionalProperties": {"type": "string", "maxLength": 6},
                                                        "maxProperties": 3}}, "required": ["h"]}),
    ("metrics", {"type": "object", "patternProperties": {"^m_[a-z]{1,4}$": {"type": "integer", "minimum": 0}},
                 "additionalProperties": False, "minProperties": 1, "maxProperties": 3}),
    ("move", {"type": "object", "properties": {"to": {"type": "array", "prefixItems": [
        {"type": "integer", "minimum": 0, "maximum": 7}, {"type": "integer", "minimum": 0, "maximum": 7}],
        "items": False, "minItems": 2}}, "required": ["to"]}),
    ("roles", {"type": "object", "properties": {"roles": {"type": "array", "items": {"enum": ["admin", "user", "guest"]},
                                                          "contains": {"const": "user"}, "minContains": 1,
                                                          "maxContains": 2}},
               "required": ["roles"]}),
    ("ship", {"type": "object", "properties": {"country": {"enum": ["US", "DE"]}, "zip": {"type": "string"},
                                               "express": {"type": "boolean"}, "phone": S},
              "required": ["country"], "dependentRequired": {"express": ["phone"]},
              "if": {"properties": {"country": {"const": "US"}}},
              "then": {"properties": {"zip": {"pattern": "^[0-9]{5}$"}}, "required": ["zip"]},
              "else": {"properties": {"zip": {"pattern": "^[0-9]{4}$"}}}}),
    ("pick_not", {"type": "object", "properties": {"v": {"not": {"type": ["object", "array", "string"]}},
                                                   "k": {"enum": ["x", "y", "z"], "not": {"const": "y"}}},
                  "required": ["v", "k"]}),
    ("grid", {"type": "object", "properties": {"cells": {"type": "array", "uniqueItems": True, "maxItems": 4, "items": {
        "type": "array", "prefixItems": [{"type": "integer", "minimum": 0, "maximum": 2},
                                         {"type": "integer", "minimum": 0, "maximum": 2}], "items": False,
        "minItems": 2}}}, "required": ["cells"]}),
]
CHOICES = ["required", "named", "auto"]
# RFC 3339 dates and times as docs/grammar.md generates them (Python's own checkers refuse the year
# 0000 and offsets such as -22:47, which RFC 3339 allows).
FORMATS = jsonschema.FormatChecker(["email", "uuid"])
DAYS = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


@FORMATS.checks("date")
def is_date(v):
    m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", v) if isinstance(v, str) else None
    return m is None and not isinstance(v, str) or bool(m) and 1 <= int(m[2]) <= 12 and 1 <= int(m[3]) <= DAYS[int(m[2]) - 1]


@FORMATS.checks("time")
def is_time(v):
    return not isinstance(v, str) or re.fullmatch(
        r"([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)", v) is not None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, body, timeout=120):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def main():
    args = sys.argv[1:]
    seeds, n_schemas = 5, len(SCHEMAS)
    if "--seeds" in args:
        i = args.index("--seeds")
        seeds = int(args[i + 1])
        del args[i:i + 2]
    if "--schemas" in args:
        i = args.index("--schemas")
        n_schemas = int(args[i + 1])
        del args[i:i + 2]
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    binary, models = args[0], args[1:]
    port = free_port()
    cmd = [binary, "serve", "--port", str(port), "-np", "4", "--quiet", "--ctx-size", "2048", "--no-data-dir"]
    for m in models:
        cmd += ["--model", m]
    srv = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    if json.loads(r.read()).get("status") == "ok":
                        break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if srv.poll() is not None:
                print("tool_call_check: server exited: " + srv.stderr.read().decode(errors="replace"), file=sys.stderr)
                return 1
            time.sleep(0.1)
        ids = [os.path.basename(m)[:-5] if m.endswith(".gguf") else m for m in models]
        jobs = []
        for mid in ids:
            for k in range(n_schemas):
                for seed in range(seeds):
                    jobs.append((mid, k, seed))

        def run(job):
            mid, k, seed = job
            name, schema = SCHEMAS[k]
            other = SCHEMAS[(k + 1) % len(SCHEMAS)]
            tools = [{"type": "function", "function": {"name": n, "description": f"tool {n}", "parameters": s}}
                     for n, s in ((name, schema), other)]
            mode = CHOICES[seed % 3]
            choice = {"type": "function", "function": {"name": name}} if mode == "named" else mode
            body = {"model": mid, "messages": [{"role": "user", "content": f"Please call {name}."}], "tools": tools,
                    "tool_choice": choice, "parallel_tool_calls": seed % 2 == 1, "temperature": 1, "seed": 1000 + seed,
                    "max_tokens": 120 if mode == "auto" else 300}
            t0 = time.time()
            status, r = post(base + "/v1/chat/completions", body)
            return job, mode, body, status, r, time.time() - t0

        bad, calls, inconclusive, texts = [], 0, 0, 0
        cut_modes = {}
        t0 = time.time()
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            for job, mode, body, status, r, secs in ex.map(run, jobs):
                mid, k, seed = job
                where = f"{mid} schema {k} ({SCHEMAS[k][0]}) seed {seed} {mode}"
                if status != 200:
                    bad.append(f"{where}: HTTP {status}: {r}")
                    continue
                choice = r["choices"][0]
                msg, finish = choice["message"], choice["finish_reason"]
                schemas = {t["function"]["name"]: t["function"]["parameters"] for t in body["tools"]}
                for c in msg.get("tool_calls") or []:
                    calls += 1
                    fn = c["function"]
                    if not c["id"].startswith("call_") or c["type"] != "function":
                        bad.append(f"{where}: malformed call entry {c}")
                    if fn["name"] not in schemas or (mode == "named" and fn["name"] != SCHEMAS[k][0]):
                        bad.append(f"{where}: call names {fn['name']!r}")
                        continue
                    try:
                        a = json.loads(fn["arguments"])
                        if not isinstance(a, dict):
                            raise ValueError("not an object")
                        jsonschema.validate(a, schemas[fn["name"]], format_checker=FORMATS)
                    except Exception as e:  # noqa: BLE001 - any failure is a finding
                        bad.append(f"{where}: arguments {fn['arguments']!r} invalid: {str(e).splitlines()[0]}")
                if not msg.get("tool_calls") and finish == "length":
                    # cut by max_tokens: the server returns the text whole; its complete calls count too
                    found = [json.loads(m) for m in re.findall(r"<tool_call>\n?(.*?)\n?</tool_call>", msg["content"] or "", re.S)]
                    for call in found:
                        calls += 1
                        try:
                            jsonschema.validate(call["arguments"], schemas[call["name"]], format_checker=FORMATS)
                        except Exception as e:  # noqa: BLE001
                            bad.append(f"{where}: cut reply holds an invalid call {call}: {str(e).splitlines()[0]}")
                    if found:
                        continue
                if not msg.get("tool_calls"):
                    if finish == "length" and mode == "auto":
                        texts += 1
                    elif finish == "length":
                        inconclusive += 1
                        cut_modes[f"{mode}{'+parallel' if body['parallel_tool_calls'] else ''}"] = cut_modes.get(f"{mode}{'+parallel' if body['parallel_tool_calls'] else ''}", 0) + 1
                    elif mode != "auto":
                        bad.append(f"{where}: no tool call with tool_choice {mode} (finish {finish}): {msg}")
                    else:
                        texts += 1
                elif finish != "tool_calls":
                    bad.append(f"{where}: tool_calls with finish_reason {finish}")
        secs = time.time() - t0
        print(f"tool_call_check: {len(jobs)} replies on {', '.join(ids)}: {calls} calls, all checked; "
              f"{texts} auto replies chose text, {inconclusive} cut by max_tokens; {len(bad)} problems; {secs:.1f} s")
        if cut_modes:
            print("  cut by max_tokens without a complete call, per mode: " + ", ".join(f"{k} {v}" for k, v in sorted(cut_modes.items())))
        for b in bad[:20]:
            print("  " + b)
        return 1 if bad or inconclusive > len(jobs) // 10 else 0
    finally:
        srv.terminate()
        try:
            srv.wait(timeout=30)
        except subprocess.TimeoutExpired:
            srv.kill()


if __name__ == "__main__":
    sys.exit(main())
