#!/usr/bin/env python3
"""Scores `slm redact --json` on a labelled PII set (../shared/pii-data/dev.jsonl format).

Per label: precision, recall, F1, F2 under two matching rules, and the redaction numbers:

  exact    a predicted span matches a gold span when start, end and label are all equal
           (the dataset README's entity scoring).
  overlap  a gold span is found when predicted spans of the SAME label cover at least 50% of its
           non-whitespace characters; a predicted span is correct when at least 50% of its
           non-whitespace characters lie in gold spans of its label. This is the rule the targets
           use: it forgives boundary disagreements that do not leak (e.g. "Apt. 5" inside or
           outside an address) but not a wrong label or a half-found entity.
  leak rate          non-whitespace gold characters covered by no predicted span (any label)
                     / all non-whitespace gold characters
  covered recall     gold spans with no character leaked / all gold spans
  no-PII precision   PII-free texts with no predicted span / all PII-free texts (1 - false alarms)

Targets (--check exits 1 when one is missed): overlap recall >= 0.99 for each structured label,
>= 0.85 for PERSON, ADDRESS, LOCATION; no-PII precision >= 0.95; leak rate <= 0.01.

--split tune|heldout keeps the ids whose SHA-1 is even|odd (a fixed half), to tune rules on one half
and report the other.
"""
import argparse
import collections
import hashlib
import json
import subprocess
import sys

STRUCTURED = ['PHONE', 'EMAIL', 'SECRET', 'CREDIT_CARD', 'IBAN', 'US_SSN', 'IP_ADDRESS', 'URL', 'DATE_OF_BIRTH']
NAMES = ['PERSON', 'ADDRESS', 'LOCATION']
LABELS = NAMES[:1] + STRUCTURED + NAMES[1:]


def half(rid):
    return int(hashlib.sha1(rid.encode()).hexdigest(), 16) % 2


def nonspace(text, a, b):
    return [i for i in range(a, b) if not text[i].isspace()]


def fb(p, r, beta):
    return 0.0 if p + r == 0 else (1 + beta * beta) * p * r / (beta * beta * p + r)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--slm', default='build/slm', help='the slm binary')
    ap.add_argument('--data', default='../shared/pii-data/dev.jsonl')
    ap.add_argument('--split', choices=['all', 'tune', 'heldout'], default='all')
    ap.add_argument('--check', action='store_true', help='exit 1 when a target is missed')
    ap.add_argument('--errors', type=int, default=0, help='print up to N misses and false alarms')
    ap.add_argument('--markdown', action='store_true', help='print the table as markdown')
    a = ap.parse_args()

    rows = [json.loads(l) for l in open(a.data, encoding='utf-8') if l.strip()]
    if a.split != 'all':
        want = 0 if a.split == 'tune' else 1
        rows = [r for r in rows if half(r['id']) == want]
    inp = ''.join(json.dumps({'id': r['id'], 'text': r['text']}, ensure_ascii=False) + '\n' for r in rows)
    proc = subprocess.run([a.slm, 'redact', '--json'], input=inp.encode(), capture_output=True)
    if proc.returncode != 0:
        sys.exit('slm redact failed (%d): %s' % (proc.returncode, proc.stderr.decode(errors='replace')))
    outs = [json.loads(l) for l in proc.stdout.decode().splitlines()]
    if len(outs) != len(rows):
        sys.exit('slm redact printed %d lines for %d inputs' % (len(outs), len(rows)))

    ex_tp = collections.Counter(); n_gold = collections.Counter(); n_pred = collections.Counter()
    ov_found = collections.Counter(); ov_correct = collections.Counter()
    leaked = total = 0
    covered = 0
    nopii = nopii_clean = 0
    errors = []
    for r, o in zip(rows, outs):
        assert o.get('id') == r['id'], (o.get('id'), r['id'])
        t = r['text']
        gold = r['spans']
        pred = o['spans']
        if o.get('redacted') is None:
            sys.exit('no "redacted" field: run in mask mode')
        gset = {(s['start'], s['end'], s['label']) for s in gold}
        pset = {(s['start'], s['end'], s['label']) for s in pred}
        for s in gold:
            n_gold[s['label']] += 1
        for s in pred:
            n_pred[s['label']] += 1
        for s in gset & pset:
            ex_tp[s[2]] += 1
        label_at = {}
        for s in pred:
            for i in range(s['start'], s['end']):
                label_at[i] = s['label']
        gold_at = {}
        for s in gold:
            for i in range(s['start'], s['end']):
                gold_at[i] = s['label']
        for s in gold:
            ns = nonspace(t, s['start'], s['end'])
            same = sum(1 for i in ns if label_at.get(i) == s['label'])
            anyc = sum(1 for i in ns if i in label_at)
            total += len(ns)
            leaked += len(ns) - anyc
            if anyc == len(ns):
                covered += 1
            if ns and same * 2 >= len(ns):
                ov_found[s['label']] += 1
            elif a.errors:
                errors.append('MISS %s %r in %r' % (s['label'], t[s['start']:s['end']], t))
        for s in pred:
            ns = nonspace(t, s['start'], s['end'])
            ok = sum(1 for i in ns if gold_at.get(i) == s['label'])
            if ns and ok * 2 >= len(ns):
                ov_correct[s['label']] += 1
            elif a.errors:
                errors.append('FALSE %s %r in %r' % (s['label'], t[s['start']:s['end']], t))
        if not gold:
            nopii += 1
            nopii_clean += not pred

    def row(name, labels):
        g = sum(n_gold[l] for l in labels); p = sum(n_pred[l] for l in labels)
        et = sum(ex_tp[l] for l in labels)
        of = sum(ov_found[l] for l in labels); oc = sum(ov_correct[l] for l in labels)
        ep, er = (et / p if p else 1.0), (et / g if g else 1.0)
        op, orc = (oc / p if p else 1.0), (of / g if g else 1.0)
        return [name, g, op, orc, fb(op, orc, 2), ep, er, fb(ep, er, 2)]

    table = [row(l, [l]) for l in LABELS if n_gold[l] or n_pred[l]]
    table.append(row('structured (9)', STRUCTURED))
    table.append(row('all', LABELS))
    hdr = ['label', 'gold', 'P', 'R', 'F2', 'exact P', 'exact R', 'exact F2']
    leak = leaked / total if total else 0.0
    nopii_p = nopii_clean / nopii if nopii else 1.0
    if a.markdown:
        print('| ' + ' | '.join(hdr) + ' |')
        print('|' + '---|' * len(hdr))
        for rr in table:
            print('| %s | %d | %s |' % (rr[0], rr[1], ' | '.join('%.3f' % v for v in rr[2:])))
    else:
        print('%-16s %5s %6s %6s %6s %8s %8s %8s' % tuple(hdr))
        for rr in table:
            print('%-16s %5d %6.3f %6.3f %6.3f %8.3f %8.3f %8.3f' % tuple(rr))
    print('texts %d (split %s); leak rate %.4f; covered recall %.3f; no-PII precision %.3f (%d/%d PII-free texts clean)'
          % (len(rows), a.split, leak, covered / max(1, sum(n_gold.values())), nopii_p, nopii_clean, nopii))
    for e in errors[:a.errors]:
        print(e)
    fails = []
    for rr in table[:-2]:
        lab, rec = rr[0], rr[3]
        need = 0.99 if lab in STRUCTURED else 0.85
        if rec < need:
            fails.append('%s recall %.3f < %.2f' % (lab, rec, need))
    if nopii_p < 0.95:
        fails.append('no-PII precision %.3f < 0.95' % nopii_p)
    if leak > 0.01:
        fails.append('leak rate %.4f > 0.01' % leak)
    if fails:
        print('targets missed: ' + '; '.join(fails))
    else:
        print('all targets met')
    if a.check and fails:
        sys.exit(1)


if __name__ == '__main__':
    main()
