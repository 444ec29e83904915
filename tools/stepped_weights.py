#!/usr/bin/env python3
"""Writes the weights a run's optimizer stepped as a plain checkpoint, for `mrcnn eval`/`predict`.

With train.ema_decay > 0 a training checkpoint's model tensors are the moving average of the weights
and the stepped weights sit under "training.<name>". This copies the file with those renamed to the
model names (replacing the averages) and the optimizer state dropped; the metadata (config,
categories) is kept. Because the average only reads the weights, the result equals the checkpoint a
run without the average would have written: how bench/results/brain_tumor_ema_cpu-*.txt compares
the two on the same training run. Standard library only.

Usage: tools/stepped_weights.py RUN/last.safetensors OUT.safetensors
"""
import json
import struct
import sys

import safetensors_writer  # tools/, next to this script


def main(src, dst):
    with open(src, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        sys.exit(f"{src}: not a safetensors file (shorter than its 8-byte header length)")
    n = struct.unpack("<Q", raw[:8])[0]
    try:
        header = json.loads(raw[8:8 + n])
    except ValueError as e:
        sys.exit(f"{src}: malformed safetensors header ({e})")
    data = raw[8 + n:]
    metadata = header.pop("__metadata__", {})
    if not any(name.startswith("training.") for name in header):
        sys.exit(f"{src}: holds no training.* tensors (trained without train.ema_decay?): its model tensors are the stepped weights")
    entries = {}
    for name, info in header.items():
        if name.startswith("optimizer."):
            continue
        if name.startswith("training."):
            key = name[len("training."):]
        elif "training." + name in header:
            continue  # the average, replaced by the stepped tensor of the same name
        else:
            key = name
        begin, end = info["data_offsets"]
        entries[key] = (info["dtype"], info["shape"], data[begin:end])
    safetensors_writer.write_raw(dst, entries, metadata)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    main(sys.argv[1], sys.argv[2])
