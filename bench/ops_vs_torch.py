#!/usr/bin/python3
"""Vision ops, ours vs PyTorch, side by side in one run: median forward and backward times of the
ResNet-18/50 and FPN convolutions (batch 2 at 256x256 and 512x512 inputs) and of RoIAlign (512 RoIs x
256 channels from 4 FPN maps to 7x7 and 14x14) and of the ResNet stem's 3x3/2 max pooling, with the
ratio ours / torch. Both use 2 threads.
Convolutions are timed in PyTorch twice: as it runs by default (Debian's build uses oneDNN's direct
convolution kernels) and with oneDNN off ("blas": im2col + OpenBLAS sgemm, PyTorch's own CPU path).
Cases alternate (ours, then torch, case by case) so machine noise hits both alike.

usage: /usr/bin/python3 bench/ops_vs_torch.py [--binary build/bench_ops_vs_torch] [--threads 2]
                                              [--sizes 256,512] [--filter TEXT] [--json OUT.json]
Needs Debian's python3-torch and python3-torchvision (hence /usr/bin/python3).
"""
import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time

# OpenBLAS sizes its thread pool when loaded; match --threads (default 2) before torch loads it.
_threads = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv[:-1] else "2"
os.environ.setdefault("OPENBLAS_NUM_THREADS", _threads)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402
from torchvision.ops import roi_align  # noqa: E402

BATCH = 2


def resnet_convs(depth, size):
    """The conv shapes of torchvision's resnet18/resnet50 (v1.5: stride on the 3x3) at a `size` input:
    the stem, each stage's first block (with its downsample) and the shapes later blocks add."""
    cases = [(f"r{depth} stem 7x7 s2", 3, 64, 7, 2, 3, size)]
    s, channels = size // 4, 64  # after the stem and its max pool
    for stage, width in enumerate([64, 128, 256, 512], start=1):
        stride = 1 if stage == 1 else 2
        t = s // stride  # the stage's output size
        if depth == 18:
            cases.append((f"r18 layer{stage} 3x3 s{stride} {channels}->{width}", channels, width, 3, stride, 1, s))
            if stride == 2:
                cases.append((f"r18 layer{stage} 3x3 {width}->{width}", width, width, 3, 1, 1, t))
                cases.append((f"r18 layer{stage} down 1x1 s2 {channels}->{width}", channels, width, 1, 2, 0, s))
            channels = width
        else:
            out = width * 4
            cases.append((f"r50 layer{stage} 1x1 {channels}->{width}", channels, width, 1, 1, 0, s))
            cases.append((f"r50 layer{stage} 3x3 s{stride} {width}->{width}", width, width, 3, stride, 1, s))
            if stride == 2:
                cases.append((f"r50 layer{stage} 3x3 {width}->{width}", width, width, 3, 1, 1, t))
            cases.append((f"r50 layer{stage} 1x1 {width}->{out}", width, out, 1, 1, 0, t))
            cases.append((f"r50 layer{stage} down 1x1 s{stride} {channels}->{out}", channels, out, 1, stride, 0, s))
            cases.append((f"r50 layer{stage} 1x1 {out}->{width}", out, width, 1, 1, 0, t))
            channels = out
        s = t
    return cases


def fpn_convs(size):
    return [(f"fpn 3x3 256->256 P{level}", 256, 256, 3, 1, 1, size >> level) for level in (2, 3, 4, 5)]


def all_cases(sizes):
    cases, seen = [], set()
    for size in sizes:
        for name, cin, cout, k, stride, pad, hw in resnet_convs(18, size) + resnet_convs(50, size) + fpn_convs(size):
            bias = 1 if name.startswith("fpn") else 0
            shape = (BATCH, cin, hw, hw, cout, k, stride, pad, bias)
            if shape not in seen:  # resnet18 and resnet50 share the stem, for instance
                seen.add(shape)
                cases.append(("conv", f"{name} @{size}", shape))
    for out in (7, 14):
        cases.append(("roi", f"roi_align 512x256 -> {out}x{out}", (512, 256, out, 4, 128)))
    for size in sizes:  # ResNet's stem pooling, on the stem's output
        cases.append(("pool", f"max_pool2d 3x3/2 stem @{size}", (BATCH, 64, size // 2, size // 2, 3, 2, 1)))
    return cases


def median_ms(prepare, run):
    times, total = [], 0.0
    prepare(), run()
    while len(times) < 5 or (total < 0.4 and len(times) < 30):
        prepare()
        start = time.perf_counter()
        run()
        elapsed = time.perf_counter() - start
        times.append(elapsed * 1e3)
        total += elapsed
    times.sort()
    return times[len(times) // 2]


def torch_forward_backward(forward, leaves):
    with torch.no_grad():
        fwd = median_ms(lambda: None, forward)
    state = {}

    def prepare():
        for leaf in leaves:
            leaf.grad = None
        state["out"] = forward()
        state.setdefault("dout", torch.randn(state["out"].shape))

    bwd = median_ms(prepare, lambda: state["out"].backward(state["dout"]))
    return fwd, bwd


def torch_case(kind, args):
    if kind == "conv":
        n, c, h, w, o, k, stride, pad, bias = args
        x = torch.randn(n, c, h, w, requires_grad=True)
        weight = (torch.randn(o, c, k, k) * 0.05).requires_grad_(True)
        b = torch.randn(o, requires_grad=True) if bias else None
        leaves = [x, weight] + ([b] if bias else [])
        return torch_forward_backward(lambda: F.conv2d(x, weight, b, stride, pad), leaves)
    if kind == "pool":
        n, c, h, w, k, stride, pad = args
        x = torch.randn(n, c, h, w, requires_grad=True)
        return torch_forward_backward(lambda: F.max_pool2d(x, k, stride, pad), [x])
    rois, channels, out, levels, size = args
    image = size * 4
    features, boxes = [], []
    for level in range(levels):
        features.append(torch.randn(1, channels, size >> level, size >> level, requires_grad=True))
        r = rois // levels
        xy, wh = torch.rand(r, 2) * (image - 256), torch.rand(r, 2) * 240 + 16
        boxes.append(torch.cat([torch.zeros(r, 1), xy, xy + wh], 1))

    def forward():
        return torch.cat([roi_align(features[l], boxes[l], out, 0.25 / (1 << l), 2, False) for l in range(levels)])

    return torch_forward_backward(forward, features)


def geomean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--binary", default=os.path.join(root, "build", "bench_ops_vs_torch"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--filter", default="")
    parser.add_argument("--json", default="")
    parser.add_argument("--no-blas", action="store_true", help="skip timing PyTorch with oneDNN off")
    args = parser.parse_args()
    if not os.path.exists(args.binary):
        sys.exit(f"ops_vs_torch: {args.binary} not found; build first (scripts/test.sh or cmake --build build)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    ours = subprocess.Popen([args.binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    cases = [c for c in all_cases([int(s) for s in args.sizes.split(",")]) if args.filter in c[1]]
    print(f"# ops_vs_torch: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, threads {args.threads}; "
          f"torch {torch.__version__} (mkldnn {torch.backends.mkldnn.is_available()}), torchvision {torchvision.__version__}")
    print(f"{'case (ms; ratio = ours / torch)':44s} {'ours fwd':>8s} {'torch':>8s} {'ratio':>5s} {'blas':>8s} {'ratio':>5s} "
          f"{'ours bwd':>8s} {'torch':>8s} {'ratio':>5s} {'blas':>8s} {'ratio':>5s}")
    rows = []
    for kind, name, shape in cases:
        ours.stdin.write(f"{kind} {name.replace(' ', '_')} {' '.join(map(str, shape))}\n")
        ours.stdin.flush()
        reply = ours.stdout.readline().split()
        if not reply or reply[0] == "error":
            sys.exit(f"ops_vs_torch: our binary failed on {name}: {' '.join(reply)}")
        our_fwd, our_bwd = float(reply[1]), float(reply[2])
        torch_fwd, torch_bwd = torch_case(kind, shape)
        row = dict(kind=kind, case=name, ours_fwd_ms=our_fwd, torch_fwd_ms=torch_fwd, ours_bwd_ms=our_bwd,
                   torch_bwd_ms=torch_bwd)
        if kind == "conv" and not args.no_blas:
            with torch.backends.mkldnn.flags(enabled=False):
                row["blas_fwd_ms"], row["blas_bwd_ms"] = torch_case(kind, shape)
        rows.append(row)

        def cell(key, ours):
            return f"{row[key]:8.2f} {ours / row[key]:5.2f}" if key in row else f"{'':8s} {'':5s}"

        print(f"{name:44s} {our_fwd:8.2f} {cell('torch_fwd_ms', our_fwd)} {cell('blas_fwd_ms', our_fwd)} "
              f"{our_bwd:8.2f} {cell('torch_bwd_ms', our_bwd)} {cell('blas_bwd_ms', our_bwd)}", flush=True)
    ours.stdin.close()
    ours.wait()
    print()
    for kind, reference, label in (("conv", "torch", "conv2d vs torch (oneDNN)"), ("conv", "blas", "conv2d vs torch (blas)"),
                                   ("roi", "torch", "roi_align vs torchvision"), ("pool", "torch", "max_pool2d vs torch")):
        sel = [r for r in rows if r["kind"] == kind and f"{reference}_fwd_ms" in r]
        if not sel:
            continue
        fwd = geomean([r["ours_fwd_ms"] / r[f"{reference}_fwd_ms"] for r in sel])
        bwd = geomean([r["ours_bwd_ms"] / r[f"{reference}_bwd_ms"] for r in sel])
        both = geomean([(r["ours_fwd_ms"] + r["ours_bwd_ms"]) / (r[f"{reference}_fwd_ms"] + r[f"{reference}_bwd_ms"])
                        for r in sel])
        print(f"{label:26s} geometric-mean ratio ours/theirs over {len(sel)} cases: forward {fwd:.2f}, "
              f"backward {bwd:.2f}, forward+backward {both:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
