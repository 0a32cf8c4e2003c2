#!/usr/bin/env python3
"""Writes the seed corpus for fuzz_gguf: a few tiny valid GGUF files covering every value type,
string arrays, custom alignment, v2 and v3, and one tensor of every weight type.
usage: fuzz/make_corpus.py [outdir]   (default fuzz/corpus/gguf)"""
import os
import struct
import sys

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALAR = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", BOOL: "?",
          U64: "Q", I64: "q", F64: "d"}
# ggml type id -> (block elements, block bytes)
TYPES = {0: (1, 4), 1: (1, 2), 30: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24),
         8: (32, 34), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176),
         14: (256, 210), 20: (32, 18)}


def s(x):
    b = x.encode() if isinstance(x, str) else x
    return struct.pack("<Q", len(b)) + b


def value(t, v):
    if t == STR:
        return s(v)
    if t == ARR:
        et, items = v
        out = struct.pack("<IQ", et, len(items))
        return out + b"".join(value(et, i) for i in items)
    return struct.pack("<" + SCALAR[t], v)


def gguf(kvs, tensors, version=3, alignment=32):
    """kvs: [(key, type, value)]; tensors: [(name, dims, type)] laid out in order."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for k, t, v in kvs:
        out += s(k) + struct.pack("<I", t) + value(t, v)
    offset, blobs = 0, []
    for name, dims, t in tensors:
        be, bs = TYPES[t]
        n = 1
        for d in dims:
            n *= d
        size = n // be * bs
        out += s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", t, offset)
        blobs.append((offset, bytes((i * 37 + 11) & 0xFF for i in range(size))))
        offset = (offset + size + alignment - 1) // alignment * alignment
    out += b"\0" * (-len(out) % alignment)
    data = bytearray()
    for off, blob in blobs:
        data += b"\0" * (off - len(data)) + blob
    return out + bytes(data)


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "gguf")
    os.makedirs(outdir, exist_ok=True)
    files = {
        "empty-v3.gguf": gguf([], []),
        "empty-v2.gguf": gguf([], [], version=2),
        "all-value-types.gguf": gguf([
            ("general.architecture", STR, "llama"), ("v.u8", U8, 200), ("v.i8", I8, -5),
            ("v.u16", U16, 65000), ("v.i16", I16, -300), ("v.u32", U32, 7), ("v.i32", I32, -70000),
            ("v.f32", F32, 1.5), ("v.bool", BOOL, True), ("v.u64", U64, 5 << 30),
            ("v.i64", I64, -7), ("v.f64", F64, -0.25),
            ("tokenizer.ggml.tokens", ARR, (STR, ["a", "", "b\0c", "<s>"])),
            ("tokenizer.ggml.scores", ARR, (F32, [0.0, -1.0, -2.0, -3.0])),
            ("tokenizer.ggml.token_type", ARR, (I32, [1, 1, 1, 3])),
            ("v.empty", ARR, (U8, [])),
        ], []),
        "tensors-every-type.gguf": gguf(
            [("general.architecture", STR, "llama"), ("general.alignment", U32, 32)],
            [(f"t.{t}", [TYPES[t][0] if TYPES[t][0] > 1 else 4, 1], t) for t in sorted(TYPES)]),
        "align64-v2.gguf": gguf(
            [("general.alignment", U32, 64), ("llama.block_count", U32, 1),
             ("tokenizer.ggml.merges", ARR, (STR, ["a b", "ab c"]))],
            [("token_embd.weight", [8, 2], 0), ("blk.0.attn_q.weight", [32, 2, 1, 1], 8),
             ("output_norm.weight", [8], 1)], version=2, alignment=64),
    }
    for name, blob in files.items():
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(blob)
        print(f"{name}: {len(blob)} bytes")


if __name__ == "__main__":
    main()
