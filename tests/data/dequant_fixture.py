#!/usr/bin/env python3
"""Writes tests/data/dequant_fixture.bin: raw blocks of every GGUF weight type and the floats the
pure-Python reference dequantizer (dequant_block in synth_gguf.py) gives for them, so test_quant
checks the C dequantizers without Python at run time.

usage: dequant_fixture.py [SLM_TEST_DATA] [-o tests/data/dequant_fixture.bin]

File layout (little endian): magic "SLMDQFX1", u32 record count, then per record:
u32 ggml type id, u32 element count n, u32 byte count b, b raw bytes, n float32 expected values.
"""
import argparse
import importlib.util
import math
import os
import random
import struct
import sys

TYPES = ["f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0",
         "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "iq4_nl"]


def load_synth(shared):
    path = os.path.join(shared, "tools", "synth_gguf.py")
    spec = importlib.util.spec_from_file_location("synth_gguf", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def random_half(rng, lo_exp, hi_exp, signed):
    """A finite fp16 value with |v| in [2^lo_exp, 2^hi_exp), as 2 bytes."""
    v = rng.uniform(1.0, 2.0) * 2.0 ** rng.randint(lo_exp, hi_exp - 1)
    if signed and rng.random() < 0.5:
        v = -v
    return struct.pack("<e", v)


def random_blocks(sg, t, rng, n_blocks):
    """Uniformly random bytes (every quant/scale bit pattern) with the fp16 block scales kept
    finite and in a range where products stay normal."""
    _, _, bs = sg.GGML_TYPES[t]
    half_offsets = {"q4_0": [0], "q4_1": [0, 2], "q5_0": [0], "q5_1": [0, 2], "q8_0": [0],
                    "iq4_nl": [0], "q2_k": [80, 82], "q3_k": [108], "q4_k": [0, 2],
                    "q5_k": [0, 2], "q6_k": [208]}[t]
    out = bytearray()
    for _ in range(n_blocks):
        b = bytearray(rng.randbytes(bs))
        for off in half_offsets:
            b[off:off + 2] = random_half(rng, -14, 2, True)
        out += b
    return out


def special_elements(t):
    """Edge values of the float formats: zeros, subnormals, extremes, inf, rounding neighbours."""
    if t == "f16":
        bits = [0x0000, 0x8000, 0x0001, 0x8001, 0x03ff, 0x0400, 0x3c00, 0xbc00, 0x7bff, 0xfbff,
                0x7c00, 0xfc00, 0x3555, 0x0200]
        return b"".join(struct.pack("<H", h) for h in bits)
    if t == "bf16":
        bits = [0x0000, 0x8000, 0x0001, 0x807f, 0x0080, 0x3f80, 0xbf80, 0x7f7f, 0xff7f, 0x7f80,
                0xff80, 0x3eaa]
        return b"".join(struct.pack("<H", h) for h in bits)
    if t == "f32":
        vals = [0.0, -0.0, 1e-45, -1e-45, 1.1754942e-38, 3.4028235e38, float("inf"),
                float("-inf"), 1.0, -2.5]
        return b"".join(struct.pack("<f", v) for v in vals)
    return b""


def expected(sg, t, raw):
    _, be, bs = sg.GGML_TYPES[t]
    vals = []
    for off in range(0, len(raw), bs):
        vals += sg.dequant_block(t, bytes(raw[off:off + bs]))
    assert len(vals) == len(raw) // bs * be
    return vals


def pack_f32(v):
    # Values beyond float32's range can only be inf here (the reference computed in double).
    if math.isnan(v) or math.isinf(v) or abs(v) <= 3.4028235677973366e38:
        return struct.pack("<f", v)
    return struct.pack("<f", math.copysign(math.inf, v))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("shared", nargs="?", default=os.environ.get("SLM_TEST_DATA", ""))
    ap.add_argument("-o", "--out", default=os.path.join(os.path.dirname(__file__),
                                                        "dequant_fixture.bin"))
    args = ap.parse_args()
    if not args.shared:
        sys.exit("dequant_fixture: give the shared data folder or set SLM_TEST_DATA")
    sg = load_synth(args.shared)
    rng = random.Random(20240611)
    records = []
    for t in TYPES:
        tid, be, bs = sg.GGML_TYPES[t]
        n_realistic = 256 if be == 1 else max(2, 512 // be)
        raw = sg.FORMATS[t].generate(rng, n_realistic)   # same distributions as the test models
        records.append((tid, raw))
        if be == 1:
            records.append((tid, special_elements(t)))
            records.append((tid, bytearray(rng.randbytes(64 * bs))))  # includes nan/inf/subnormal
        else:
            records.append((tid, random_blocks(sg, t, rng, max(2, 256 // be))))
    with open(args.out, "wb") as f:
        f.write(b"SLMDQFX1" + struct.pack("<I", len(records)))
        for tid, raw in records:
            t = next(k for k, v in sg.GGML_TYPES.items() if v[0] == tid)
            vals = expected(sg, t, raw)
            f.write(struct.pack("<III", tid, len(vals), len(raw)))
            f.write(bytes(raw))
            f.write(b"".join(pack_f32(v) for v in vals))
    print(f"dequant_fixture: {len(records)} records, {os.path.getsize(args.out)} bytes -> {args.out}")


if __name__ == "__main__":
    main()
