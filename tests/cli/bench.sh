#!/usr/bin/env bash
# slm bench: table and --json output on a real tiny model, and one-line errors on bad input.
set -u
slm="${SLM_BIN:?SLM_BIN not set}"
shared="${SLM_TEST_DATA:-${SLM_SRC:-.}/../shared}"
model="$shared/models/stories260K.gguf"
if [ ! -f "$model" ]; then
    echo "skip: $model absent (set SLM_TEST_DATA)"
    exit 77
fi
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }

json="$("$slm" bench "$model" -p 16 -n 8 -t 2 -r 2 --json --bandwidth 10)"
check "bench --json exits 0" "[ $? -eq 0 ]"
check "json has one pp and one tg object with llama-bench fields" "python3 - \"\$json\" <<'PY'
import json, sys
rows = json.loads(sys.argv[1])
assert isinstance(rows, list) and len(rows) == 2, rows
pp, tg = rows
for r in rows:
    for key in ('model_filename', 'n_prompt', 'n_gen', 'n_threads', 'avg_ts', 'stddev_ts', 'avg_ns', 'samples_ts', 'peak_rss_bytes'):
        assert key in r, key
    assert r['n_threads'] == 2 and r['avg_ts'] > 0 and len(r['samples_ts']) == 2
    assert r['model_filename'].endswith('stories260K.gguf')
assert (pp['n_prompt'], pp['n_gen']) == (16, 0) and (tg['n_prompt'], tg['n_gen']) == (0, 8)
assert 'bandwidth_fraction' in tg and tg['bandwidth_gbs'] == 10
PY"

# Measured bandwidth: probed before and after the decode test in a child process, so the 512 MB
# probe buffer is not in the reported peak RSS; the limit is the better probe.
json="$("$slm" bench "$model" -p 0 -n 8 -t 2 -r 1 --json)"
check "measured bandwidth: two probes, the limit is their max, peak RSS without the probe buffer" "python3 - \"\$json\" <<'PY'
import json, sys
tg, = json.loads(sys.argv[1])
before, after = tg['bandwidth_probes_gbs']
assert before > 0 and after > 0, (before, after)
assert tg['bandwidth_gbs'] == max(before, after), tg
assert abs(tg['bandwidth_fraction'] - tg['avg_ts'] * tg['model_size'] / 1e9 / tg['bandwidth_gbs']) < 1e-6, tg
assert tg['peak_rss_bytes'] < 256 << 20, tg['peak_rss_bytes']
PY"

table="$("$slm" bench "$model" -p 8 -n 4 -r 1 --bandwidth 10)"
check "table has pp8 and tg4 rows" "grep -q ' pp8 ' <<<\"\$table\" && grep -q ' tg4 ' <<<\"\$table\""

err="$("$slm" bench /nonexistent.gguf 2>&1 >/dev/null)"; rc=$?
check "missing model fails with one line" "[ $rc -ne 0 ] && [ \$(printf '%s\n' \"\$err\" | wc -l) -eq 1 ]"
err="$("$slm" bench "$model" -p -3 2>&1 >/dev/null)"; rc=$?
check "negative -p rejected" "[ $rc -ne 0 ] && grep -q -- '-p' <<<\"\$err\""
err="$("$slm" bench "$model" -p 0 -n 0 2>&1 >/dev/null)"; rc=$?
check "nothing to measure rejected" "[ $rc -ne 0 ] && grep -q 'nothing to measure' <<<\"\$err\""
err="$("$slm" bench "$model" --bogus 2>&1 >/dev/null)"; rc=$?
check "unknown option rejected" "[ $rc -ne 0 ] && grep -q 'unknown option' <<<\"\$err\""

if [ $fail -eq 0 ]; then echo "bench.sh: 1 passed, 0 failed"; else echo "bench.sh: 0 passed, 1 failed"; fi
exit $fail
