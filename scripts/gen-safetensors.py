#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Write synthetic safetensors files for the chunk-store benchmark.

    gen-safetensors.py [--size 1G] [--seed 1] --out DIR [VARIANT...]

writes DIR/<variant>.safetensors for each variant (all five by default),
every one derived from the same base seed, so the output is the same byte
for byte on every run and every machine:

    base  a transformer-shaped model: ~200 BF16 tensors of varied size
    head  base with its last tensors (about 5% of the bytes) redrawn
    meta  base whose JSON header grew by a few hundred bytes of
          __metadata__, so every tensor after it moved
    full  base with every tensor redrawn
    dup   a copy of base

A file is laid out as safetensors defines it: the header's length as an
8-byte little-endian integer, the JSON header (padded with spaces to a
multiple of 8), then the tensors' bytes, in the order of their names.

Tensor bytes are random bf16 words whose high byte keeps the exponent in
a narrow plausible range (|x| between 2^-7 and 2^-4, either sign), so the
data looks like trained weights and is not trivially compressible. Python
stdlib only. One line per file written goes to stdout:

    file NAME PATH BYTES
    changed head BYTES PERCENT     (bytes of tensors redrawn in head)
    shift meta BYTES               (how far meta's tensors moved)
"""

import argparse
import hashlib
import json
import math
import os
import random
import sys

VARIANTS = ("base", "head", "meta", "full", "dup")
LAYERS = 22
PIECE = 16 << 20  # tensor bytes are drawn and written in pieces this big

_masks = {}


def parse_size(text):
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper()
    for suffix in ("IB", "B"):
        if t.endswith(suffix) and t[:-len(suffix)][-1:] in "KMGT":
            t = t[:-len(suffix)]
            break
    unit = t[-1:] if t[-1:] in "KMGT" else ""
    number = t[:-1] if unit else t
    try:
        value = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError("bad size: %r" % text)
    return int(value * units[unit])


def plan(size):
    """The tensors of a model of about @size bytes, in data order:
    a list of (name, shape, nbytes)."""
    elems = size // 2
    # Per layer about 10.6 h^2 elements, embeddings 2 * 8 h^2.
    h = max(64, int(math.sqrt(elems / (LAYERS * 10.6 + 16))) // 64 * 64)
    kv = h // 4
    inter = max(64, round(h * 2.6875 / 64) * 64)
    layer = [
        ("input_layernorm.weight", [h]),
        ("mlp.down_proj.weight", [h, inter]),
        ("mlp.gate_proj.weight", [inter, h]),
        ("mlp.up_proj.weight", [inter, h]),
        ("post_attention_layernorm.weight", [h]),
        ("self_attn.k_proj.weight", [kv, h]),
        ("self_attn.o_proj.weight", [h, h]),
        ("self_attn.q_proj.weight", [h, h]),
        ("self_attn.v_proj.weight", [kv, h]),
    ]
    per_layer = sum(math.prod(s) for _, s in layer)
    vocab = (elems - LAYERS * per_layer - h) // (2 * h)
    if vocab < 16:
        sys.exit("gen-safetensors: --size %d is too small" % size)
    shapes = {
        "lm_head.weight": [vocab, h],
        "model.embed_tokens.weight": [vocab, h],
        "model.norm.weight": [h],
    }
    for i in range(LAYERS):
        for name, shape in layer:
            shapes["model.layers.%d.%s" % (i, name)] = shape
    # safetensors lays out tensors of one dtype in the order of their names
    return [(n, shapes[n], 2 * math.prod(shapes[n])) for n in sorted(shapes)]


def header(tensors, metadata):
    hdr = {"__metadata__": metadata}
    off = 0
    for name, shape, nbytes in tensors:
        hdr[name] = {"dtype": "BF16", "shape": shape,
                     "data_offsets": [off, off + nbytes]}
        off += nbytes
    text = json.dumps(hdr, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text


def masks(n):
    """AND and OR masks over @n bytes of little-endian bf16 words."""
    if n not in _masks:
        _masks[n] = (int.from_bytes(b"\xff\x81" * (n // 2), "little"),
                     int.from_bytes(b"\x00\x3c" * (n // 2), "little"))
    return _masks[n]


def pieces(seed, tag, name, nbytes):
    """The bytes of tensor @name as drawn for @tag, in pieces."""
    key = hashlib.blake2b(("%d/%s/%s" % (seed, tag, name)).encode(),
                          digest_size=16).digest()
    rng = random.Random(int.from_bytes(key, "little"))
    left = nbytes
    while left:
        n = min(left, PIECE)
        andm, orm = masks(n)
        yield ((rng.getrandbits(8 * n) & andm) | orm).to_bytes(n, "little")
        left -= n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=parse_size, default=parse_size("1G"),
                    help="about how big base is (e.g. 64M, 1G; default 1G)")
    ap.add_argument("--seed", type=int, default=1, help="base seed (1)")
    ap.add_argument("--head", type=float, default=5.0,
                    help="percent of the bytes that head redraws at most (5)")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("variants", nargs="*", metavar="VARIANT",
                    help="any of %s (default: all)" % " ".join(VARIANTS))
    args = ap.parse_args()
    want = args.variants or list(VARIANTS)
    for v in want:
        if v not in VARIANTS:
            ap.error("unknown variant %r" % v)

    tensors = plan(args.size)
    total = sum(t[2] for t in tensors)

    # head: the last tensors in data order, up to args.head percent
    redrawn = set()
    acc = 0
    for name, _, nbytes in reversed(tensors):
        if acc + nbytes > total * args.head / 100:
            break
        redrawn.add(name)
        acc += nbytes

    meta = {"format": "pt", "generator": "mrfs gen-safetensors",
            "seed": str(args.seed)}
    grown = dict(meta)
    grown["mrfs.note"] = ("retrained tokenizer notes, license text and "
                          "evaluation scores " * 3).strip()
    grown["mrfs.eval"] = json.dumps({"task%02d" % i: round(0.5 + i / 64, 4)
                                     for i in range(8)})
    hdr = header(tensors, meta)
    hdr_meta = header(tensors, grown)

    os.makedirs(args.out, exist_ok=True)
    files = {}
    for v in want:
        path = os.path.join(args.out, v + ".safetensors")
        files[v] = open(path, "wb")
        files[v].write(hdr_meta if v == "meta" else hdr)

    same = [files[v] for v in ("base", "meta", "dup") if v in files]
    for name, _, nbytes in tensors:
        if same or ("head" in files and name not in redrawn):
            outs = list(same)
            if "head" in files and name not in redrawn:
                outs.append(files["head"])
            for piece in pieces(args.seed, "base", name, nbytes):
                for f in outs:
                    f.write(piece)
        if "head" in files and name in redrawn:
            for piece in pieces(args.seed, "head", name, nbytes):
                files["head"].write(piece)
        if "full" in files:
            for piece in pieces(args.seed, "full", name, nbytes):
                files["full"].write(piece)

    for v in want:
        files[v].close()
        path = os.path.join(args.out, v + ".safetensors")
        print("file %s %s %d" % (v, path, os.path.getsize(path)))
    if "head" in files:
        print("changed head %d %.2f" % (acc, 100.0 * acc / (len(hdr) + total)))
    if "meta" in files:
        print("shift meta %d" % (len(hdr_meta) - len(hdr)))
    print("tensors %d" % len(tensors))


if __name__ == "__main__":
    main()
