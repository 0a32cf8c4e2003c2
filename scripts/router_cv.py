#!/usr/bin/env python3
"""Honest cross-validation of slm's request router on ../shared/router-data (python3 stdlib only).

  scripts/router_cv.py mmlu  [--slm BIN] [--data DIR] [--folds 5] [--json] [-- extra train flags]
  scripts/router_cv.py gsm8k [--slm BIN] [--data DIR] [--folds 5] [--kind prompt|cascade] [--json] [-- flags]

mmlu: leave-subjects-out. The 29 subject files are dealt round-robin (sorted by name) into K folds;
each fold's router is trained on the other folds' subjects only and evaluated on the fold's own
subjects, which it has never seen: difficulty has to transfer across subjects.
gsm8k: K folds of gsm8k_dev.csv split by a hash of the prompt (slm router --fold I/K).
Prints, per fold and as the mean over folds, the router's APGR / CPT50 / CPT80 / share_at_95 next
to a random router's (exact expectation)."""
import glob
import json
import os
import subprocess
import sys
import tempfile

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"router_cv: {' '.join(cmd)} failed: {p.stderr.strip()}")
    return p.stdout


def fmt(x):
    return f"{x:6.3f}" if x is not None else f"{'-':>6}"


def main():
    args = sys.argv[1:]
    extra = []
    if "--" in args:
        k = args.index("--")
        args, extra = args[:k], args[k + 1:]
    if not args or args[0] not in ("mmlu", "gsm8k"):
        sys.exit(__doc__)
    bench = args.pop(0)
    opts = {"--slm": os.path.join(root, "build", "slm"),
            "--data": os.environ.get("SLM_TEST_DATA", os.path.join(root, "..", "shared")) + "/router-data",
            "--folds": "5", "--kind": "prompt" if bench == "mmlu" else "cascade"}
    as_json = False
    while args:
        a = args.pop(0)
        if a == "--json":
            as_json = True
        elif a in opts and args:
            opts[a] = args.pop(0)
        else:
            sys.exit(f"router_cv: unknown argument {a}")
    slm, data, folds, kind = opts["--slm"], opts["--data"], int(opts["--folds"]), opts["--kind"]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "router.bin")
        for f in range(folds):
            if bench == "mmlu":
                files = sorted(glob.glob(os.path.join(data, "mmlu", "*.csv")))
                if not files:
                    sys.exit(f"router_cv: no MMLU files in {data}/mmlu")
                test = [p for i, p in enumerate(files) if i % folds == f]
                train = [p for i, p in enumerate(files) if i % folds != f]
                run([slm, "router", "train", "--kind", kind, "--data", *train, "-o", model, *extra])
                out = run([slm, "router", "eval", "--router", model, "--data", *test, "--json"])
                name = ",".join(os.path.basename(p)[5:-4] for p in test)
            else:
                csv = os.path.join(data, "gsm8k", "gsm8k_dev.csv")
                fold = f"{f}/{folds}"
                run([slm, "router", "train", "--kind", kind, "--data", csv, "--fold", fold, "-o", model, *extra])
                out = run([slm, "router", "eval", "--router", model, "--data", csv, "--fold", fold, "--json"])
                name = f"fold {fold}"
            m = json.loads(out)
            m["fold"] = name
            results.append(m)
    keys = ["apgr", "cpt50", "cpt80", "share_at_95"]
    def avg(values):  # folds without a gap to recover (frontier no better than local) have null metrics
        v = [x for x in values if x is not None]
        return sum(v) / len(v) if v else None
    mean = {k: avg(r[k] for r in results) for k in keys}
    mean_rnd = {k: avg(r["random"][k] for r in results) for k in keys}
    if as_json:
        print(json.dumps({"folds": [{k: r[k] for k in ["fold", "n", "local_acc", "frontier_acc", *keys]} |
                                    {"random": {k: r["random"][k] for k in keys}} for r in results],
                          "mean": mean, "mean_random": mean_rnd}))
        return
    print(f"{'fold':<48} {'n':>5} {'weak':>6} {'strong':>6} | {'APGR':>6} {'CPT50':>6} {'CPT80':>6} {'s@95':>6} |"
          f" {'rAPGR':>6} {'rCPT50':>6} {'rCPT80':>6} {'rs@95':>6}")
    for r in results:
        rr = r["random"]
        print(f"{r['fold'][:48]:<48} {r['n']:>5} {r['local_acc']:6.3f} {r['frontier_acc']:6.3f} | "
              + " ".join(fmt(r[k]) for k in keys) + " | " + " ".join(fmt(rr[k]) for k in keys))
    print(f"{'mean over folds':<48} {'':>5} {'':>6} {'':>6} | " + " ".join(fmt(mean[k]) for k in keys) + " | "
          + " ".join(fmt(mean_rnd[k]) for k in keys))


if __name__ == "__main__":
    main()
