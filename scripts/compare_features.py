#!/usr/bin/env python3
"""Compares two `mrcnn features` outputs (features.safetensors) tensor by tensor: the same image
through the same weights on two devices. Prints, per float32 tensor both files hold with the same
shape, the largest absolute difference and that difference over the tensor's largest magnitude.
Standard library only: the GPU machine's Python may lack numpy or safetensors. Exit 1 when the
input, a backbone/FPN tensor or an RPN head output differs by more than --tol of its scale
(proposals, box and mask heads, detections and CAMs follow thresholded, sorted choices that a tie
broken differently can change, so they are reported, not judged).
Usage: scripts/compare_features.py A/features.safetensors B/features.safetensors [--tol 1e-3]"""
import argparse, array, json, struct, sys


def load(path):
    with open(path, "rb") as f:
        header_len = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(header_len))
        body = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue
        begin, end = info["data_offsets"]
        values = array.array("f")
        values.frombytes(body[begin:end])
        if sys.byteorder != "little":
            values.byteswap()
        tensors[name] = (info["shape"], values)
    return tensors


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--tol", type=float, default=1e-3)
    args = parser.parse_args()
    a, b = load(args.a), load(args.b)
    failed = False
    for name in sorted(a):
        if name not in b:
            print(f"{name}: only in {args.a}")
            continue
        (shape_a, va), (shape_b, vb) = a[name], b[name]
        if shape_a != shape_b:
            print(f"{name}: shapes differ {shape_a} vs {shape_b}")
            continue
        scale = max((abs(v) for v in va), default=0.0)
        diff = max((abs(x - y) for x, y in zip(va, vb)), default=0.0)
        relative = diff / scale if scale > 0 else diff
        judged = name == "input" or name.startswith(("backbone.", "rpn.head."))
        bad = judged and not relative <= args.tol
        failed |= bad
        print(f"{name:32s} {str(shape_a):22s} max|diff| {diff:.3g}  /scale {relative:.3g}"
              f"{'  FAIL' if bad else ''}{'' if judged else '  (reported only)'}")
    print("compare_features:", "FAILED" if failed else f"ok (judged tensors within {args.tol:g} of scale)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
