#!/usr/bin/env python3
"""Scores a TREC run against graded judgements, with trec_eval's definitions (stdlib only).

usage: rag_eval.py QRELS RUN [--json]

QRELS: a TSV with a header line and rows `query-id  doc-id  gain` (gain >= 1 is relevant; 0 is
judged non-relevant), or the TREC qrels format `qid 0 docid gain`. RUN: `qid Q0 docid rank score
tag` lines. Documents are compared by their stem (0184 == 184 == docs/0184.txt). Each query's
list is ordered by score, descending, ties by docid descending (trec_eval's rule), at most 1000
results. Measures, averaged over every judged query (a query missing from the run scores 0):
nDCG@10 (linear gains, log2(i+1) discount, ideal = all judged documents), MAP@100, Recall@100,
MRR@10.
"""
import json
import math
import os
import sys


def stem(doc):
    base = os.path.basename(doc)
    if "." in base:
        base = base[: base.rindex(".")]
    return base.lstrip("0") or "0"


def read_qrels(path):
    qrels = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) == 3:
                qid, doc, gain = parts
            elif len(parts) == 4:
                qid, _, doc, gain = parts
            else:
                sys.exit(f"rag_eval: {path} line {n}: expected 3 or 4 fields")
            try:
                g = int(gain)
            except ValueError:
                if n == 1:
                    continue  # the header
                sys.exit(f"rag_eval: {path} line {n}: gain '{gain}' is not an integer")
            qrels.setdefault(qid, {})[stem(doc)] = g
    return qrels


def read_run(path):
    run = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 6:
                sys.exit(f"rag_eval: {path} line {n}: expected 'qid Q0 docid rank score tag'")
            qid, _, doc, _, score, _ = parts
            try:
                s = float(score)
            except ValueError:
                sys.exit(f"rag_eval: {path} line {n}: score '{score}' is not a number")
            run.setdefault(qid, {})
            d = stem(doc)
            if d not in run[qid]:  # trec_eval keeps the first line of a duplicated document
                run[qid][d] = s
    ranked = {}
    for qid, docs in run.items():
        # score descending, then docid descending (compared as strings, as trec_eval does)
        items = sorted(docs.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
        ranked[qid] = [d for d, _ in items[:1000]]
    return ranked


def measures(judged, ranking):
    rel = {d for d, g in judged.items() if g >= 1}
    gains = [judged.get(d, 0) for d in ranking]
    dcg = sum(max(g, 0) / math.log2(i + 2) for i, g in enumerate(gains[:10]))
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal[:10]))
    hits, ap = 0, 0.0
    for i, d in enumerate(ranking[:100]):
        if d in rel:
            hits += 1
            ap += hits / (i + 1)
    rr = 0.0
    for i, d in enumerate(ranking[:10]):
        if d in rel:
            rr = 1 / (i + 1)
            break
    n_rel = len(rel)
    return {
        "ndcg@10": dcg / idcg if idcg > 0 else 0.0,
        "map@100": ap / n_rel if n_rel else 0.0,
        "recall@100": hits / n_rel if n_rel else 0.0,
        "mrr@10": rr,
    }


def main():
    args = [a for a in sys.argv[1:] if a != "--json"]
    if len(args) != 2:
        sys.exit(__doc__)
    qrels = read_qrels(args[0])
    run = read_run(args[1])
    queries = sorted(q for q, j in qrels.items() if any(g >= 1 for g in j.values()))
    if not queries:
        sys.exit("rag_eval: no query has a relevant document")
    unknown = set(run) - set(qrels)
    total = {"ndcg@10": 0.0, "map@100": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    for q in queries:
        m = measures(qrels[q], run.get(q, []))
        for k in total:
            total[k] += m[k]
    result = {k: round(v / len(queries), 4) for k, v in total.items()}
    result["queries"] = len(queries)
    result["queries_in_run"] = len(set(run) & set(queries))
    if unknown:
        result["unjudged_queries_in_run"] = len(unknown)
    if "--json" in sys.argv:
        print(json.dumps(result))
    else:
        for k in ("ndcg@10", "map@100", "recall@100", "mrr@10"):
            print(f"{k:<12} {result[k]:.4f}")
        print(f"{'queries':<12} {result['queries']} ({result['queries_in_run']} in the run)")


if __name__ == "__main__":
    main()
