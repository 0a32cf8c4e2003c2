#!/usr/bin/env python3
"""Architecture check: the include graph between the folders of src/ has no cycle, and the front
ends (src/cli, src/server) include nothing of the library but the public headers in include/.
Prints one line per violation and exits 1; prints the folder graph with --graph."""
import os
import re
import sys

FRONT_ENDS = {"cli", "server"}
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
src = os.path.join(root, "src")
public = set(os.listdir(os.path.join(root, "include")))
include_re = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)

edges = {}   # folder -> {folder: example "file -> header"}
problems = []
for dirpath, _, files in os.walk(src):
    for name in sorted(files):
        if not name.endswith((".c", ".h", ".inc")):
            continue
        path = os.path.join(dirpath, name)
        folder = os.path.relpath(dirpath, src).split(os.sep)[0]
        rel = os.path.relpath(path, root)
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        for inc in include_re.findall(text):
            local = os.path.normpath(os.path.join(dirpath, inc))
            if os.path.exists(local):
                target = os.path.relpath(local, src).split(os.sep)[0]
            elif inc in public:
                target = "include"
            elif os.path.exists(os.path.join(src, inc)):
                target = inc.split("/")[0]
            else:
                problems.append(f"{rel}: includes \"{inc}\", which is neither beside it, in src/ nor in include/")
                continue
            if folder in FRONT_ENDS and target not in FRONT_ENDS and target != "include":
                problems.append(f"{rel}: front end includes the private header \"{inc}\" (only include/ is allowed)")
            if target not in (folder, "include"):
                edges.setdefault(folder, {}).setdefault(target, f"{rel} -> {inc}")

# cycles between folders (depth-first search, reporting each cycle once by its smallest rotation)
seen_cycles = set()
def dfs(node, stack, on_stack):
    for nxt in sorted(edges.get(node, {})):
        if nxt in on_stack:
            cycle = stack[stack.index(nxt):]
            k = cycle.index(min(cycle))
            key = tuple(cycle[k:] + cycle[:k])
            if key not in seen_cycles:
                seen_cycles.add(key)
                hops = [edges[a][b] for a, b in zip(key, key[1:] + key[:1])]
                problems.append("include cycle between folders " + " -> ".join(key + key[:1]) + " (" + "; ".join(hops) + ")")
        elif len(stack) < 64:
            on_stack.add(nxt)
            dfs(nxt, stack + [nxt], on_stack)
            on_stack.discard(nxt)
for start in sorted(edges):
    dfs(start, [start], {start})

if "--graph" in sys.argv:
    for a in sorted(edges):
        print(f"{a} -> {', '.join(sorted(edges[a]))}")
for p in problems:
    print("check-arch: " + p)
sys.exit(1 if problems else 0)
