#!/usr/bin/python3
"""Whole-model speed: `mrcnn bench` against torchvision 0.14's MaskRCNN on the same config, the same
weights (torchvision's seeded random init, exported), image size, batch and synthetic targets, both
with 2 threads, each in its own process (so peak RSS is
per framework). Prints median train-step (forward + backward + SGD step) and inference times and
the ratios ours / torchvision (below 1: we are faster).

    /usr/bin/python3 bench/model_vs_torch.py [--mrcnn build/mrcnn] [--steps 10] [--device cpu|cuda] [--batch 2]
On a GPU machine (any PyTorch/torchvision there; ours built with CUDA):
    python3 bench/model_vs_torch.py --device cuda --cases R50-FPN --batch 2   (and --batch 8)
Cases: R18-FPN at 256x256 and R50-FPN at 512x512, batch 2 (bench/configs/*.json). The configs set
box_score_thresh 0 so both models keep box_detections_per_img (100) detections per image whatever
their random weights score, and the mask head does the same work on both sides.

--rounds N runs both sides N times, alternating which goes first, and prints each round's times and
ratios, then the medians: the ratio column is the median of the rounds' ratios. On a shared or
freshly lent machine single runs drift by 10-15%; a ratio judged against a goal should be a median.
--torch-cudnn-benchmark sets torch.backends.cudnn.benchmark (off by default in PyTorch, as here):
PyTorch then times cuDNN's algorithms per shape, as mrcnn always does.
"""
import argparse
import json
import os
import resource
import subprocess
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = [("R18-FPN", "r18_fpn_256.json", "256x256"), ("R50-FPN", "r50_fpn_512.json", "512x512")]


def synthetic_batch(torch, channels, h, w, batch):
    """The same pixels as `mrcnn bench`: a smooth deterministic texture plus a bright ellipse, whose
    box and mask are the target (float64 formula, then float32, as the C++ side computes it)."""
    images, targets = [], []
    cy, cx, ry, rx = h * 0.45, w * 0.55, h * 0.15, w * 0.12
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    inside = (yy - cy) ** 2 / ry ** 2 + (xx - cx) ** 2 / rx ** 2 <= 1
    for i in range(batch):
        planes = [0.15 + 0.15 * torch.sin(0.37 * xx + 0.61 * yy + 1.3 * c + 2.1 * i) * torch.cos(0.23 * xx - 0.41 * yy + i)
                  + 0.6 * inside.double() for c in range(channels)]
        images.append(torch.stack(planes).float())
        targets.append({"boxes": torch.tensor([[cx - rx, cy - ry, cx + rx, cy + ry]], dtype=torch.float32),
                        "labels": torch.ones(1, dtype=torch.int64), "masks": inside[None].to(torch.uint8)})
    return images, targets


def build_torch_model(config_path):
    import torch
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    with open(config_path) as f:
        cfg = json.load(f)
    backbone = resnet_fpn_backbone(backbone_name=f"resnet{cfg['depth']}", weights=None,
                                   trainable_layers=cfg.get("trainable_layers", 3))
    return MaskRCNN(backbone, num_classes=cfg["num_classes"], min_size=cfg["min_size"][0], max_size=cfg["max_size"],
                    box_score_thresh=cfg.get("box_score_thresh", 0.05))


def torch_worker(config_path, weights_pth, size, batch, steps, device, tf32, cudnn_benchmark):
    import torch
    import torchvision
    torch.set_num_threads(2)
    torch.backends.cudnn.benchmark = cudnn_benchmark
    # PyTorch's defaults run convolutions (not matmuls) on TF32 tensor cores; mrcnn runs plain float32
    # unless --tf32. Both sides get the same precision: strict float32, or TF32 for both with --tf32.
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    model = build_torch_model(config_path)
    model.load_state_dict(torch.load(weights_pth))
    model = model.to(device)
    h, w = (int(v) for v in size.split("x"))
    images, targets = synthetic_batch(torch, 3, h, w, batch)
    images = [im.to(device) for im in images]
    targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
    params = [p for p in model.parameters() if p.requires_grad]
    sgd = torch.optim.SGD(params, lr=0.0, momentum=0.9, weight_decay=1e-4)  # as mrcnn bench: weights stay put

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def train_step():
        sgd.zero_grad()
        losses = model(images, targets)
        sum(losses.values()).backward()
        sgd.step()

    def infer_step():
        with torch.no_grad():
            model(images)

    def median_ms(fn):
        fn(), fn()
        times = []
        for _ in range(steps):
            sync()
            t = time.perf_counter()
            fn()
            sync()
            times.append((time.perf_counter() - t) * 1e3)
        return sorted(times)[len(times) // 2]

    def gpu_peak_mb():
        return torch.cuda.max_memory_allocated() / 2 ** 20 if device == "cuda" else 0.0

    def reserved_peak_mb():
        return torch.cuda.max_memory_reserved() / 2 ** 20 if device == "cuda" else 0.0

    def reset_peak():
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()

    model.train()
    reset_peak()
    train_ms = median_ms(train_step)
    train_gpu, train_reserved = gpu_peak_mb(), reserved_peak_mb()
    model.eval()
    reset_peak()
    infer_ms = median_ms(infer_step)
    infer_gpu, infer_reserved = gpu_peak_mb(), reserved_peak_mb()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"train_ms": train_ms, "infer_ms": infer_ms, "peak_rss_mb": rss,
                      "train_tensor_peak_mb": train_gpu, "infer_tensor_peak_mb": infer_gpu,
                      # PyTorch's count is as requested (rounded to 512 B); it has no coarser one.
                      "train_requested_peak_mb": train_gpu, "infer_requested_peak_mb": infer_gpu,
                      "train_reserved_peak_mb": train_reserved, "infer_reserved_peak_mb": infer_reserved,
                      "torch": torch.__version__, "torchvision": torchvision.__version__}))


ROWS = [("train_ms", "train step"), ("infer_ms", "inference"), ("peak_rss_mb", "peak RSS MB")]
# Bytes held by live tensors (caching allocators' reserve excluded): ours first as the blocks our
# allocator holds (512 B rounded), then as requested, like PyTorch's; then what each process holds
# from the driver, its allocator's cache included.
GPU_ROWS = [("train_tensor_peak_mb", "GPU MB train"), ("infer_tensor_peak_mb", "GPU MB infer"),
            ("train_requested_peak_mb", "GPU MB train, requested"), ("infer_requested_peak_mb", "GPU MB infer, requested"),
            ("train_reserved_peak_mb", "GPU MB train, reserved"), ("infer_reserved_peak_mb", "GPU MB infer, reserved")]


def run_ours(args, config_path, weights, size, out, env):
    subprocess.run([args.mrcnn] + (["--tf32"] if args.tf32 else []) + ["bench", "--config", config_path, "--weights", weights, "--size", size,
                    "--batch", str(args.batch), "--steps", str(args.steps), "--device", args.device,
                    "--json", out], check=True, env=env, stdout=subprocess.DEVNULL)
    with open(out) as f:
        return json.load(f)


def run_theirs(args, config_path, pth, size, env):
    command = [sys.executable, __file__, "--torch-worker", config_path, pth, size, "--batch", str(args.batch),
               "--steps", str(args.steps), "--device", args.device]
    command += (["--tf32"] if args.tf32 else []) + (["--torch-cudnn-benchmark"] if args.torch_cudnn_benchmark else [])
    return json.loads(subprocess.run(command, check=True, env=env, capture_output=True, text=True).stdout)


def summarize(rounds, rows):
    """Per row: the median of each side's values and the median of the rounds' ratios."""
    table = []
    for key, label in rows:
        ours = statistics.median(o[key] for o, _ in rounds)
        theirs = statistics.median(t[key] for _, t in rounds)
        ratio = statistics.median(o[key] / t[key] for o, t in rounds)
        table.append((label, ours, theirs, ratio))
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mrcnn", default=os.path.join(HERE, "..", "build", "mrcnn"))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cases", default="R18-FPN,R50-FPN")
    parser.add_argument("--tf32", action="store_true", help="CUDA: TF32 convolutions and matmuls on both sides")
    parser.add_argument("--rounds", type=int, default=1, help="run both sides this many times, alternating; report medians")
    parser.add_argument("--torch-cudnn-benchmark", action="store_true", help="PyTorch side: torch.backends.cudnn.benchmark = True")
    parser.add_argument("--torch-worker", nargs=3, metavar=("CONFIG", "WEIGHTS", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_worker:
        torch_worker(*args.torch_worker, args.batch, args.steps, args.device, args.tf32, args.torch_cudnn_benchmark)
        return
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    env = dict(os.environ, OMP_NUM_THREADS="2")
    rows = ROWS + (GPU_ROWS if args.device.startswith("cuda") else [])
    print(f"{'case':<10} {'':<24} {'ours':>10} {'torchvision':>12} {'ratio':>7}")
    for name, config, size in CASES:
        if name not in args.cases.split(","):
            continue
        config_path = os.path.join(HERE, "configs", config)
        rounds = []
        with tempfile.TemporaryDirectory() as tmp:
            # One random init (torchvision's, seeded) for both: the same proposals and detections, so
            # the heads do the same work. Random weights of each framework's own make RPN keep 400 or
            # 1000 proposals per image by chance, and the head costs with them.
            import torch
            torch.manual_seed(0)
            pth, weights, out = (os.path.join(tmp, n) for n in ("init.pth", "init.safetensors", "ours.json"))
            torch.save(build_torch_model(config_path).state_dict(), pth)
            subprocess.run([sys.executable, os.path.join(HERE, "..", "tools", "export_torchvision.py"), pth, weights],
                           check=True, stdout=subprocess.DEVNULL)
            for r in range(args.rounds):
                # Alternate which side runs first: a machine that warms up or slows down during the
                # run then favours neither.
                if r % 2 == 0:
                    ours = run_ours(args, config_path, weights, size, out, env)
                    theirs = run_theirs(args, config_path, pth, size, env)
                else:
                    theirs = run_theirs(args, config_path, pth, size, env)
                    ours = run_ours(args, config_path, weights, size, out, env)
                rounds.append((ours, theirs))
                if args.rounds > 1:
                    print(f"{name:<10} round {r + 1}: " + ", ".join(
                        f"{label} {ours[key]:.1f} / {theirs[key]:.1f} = {ours[key] / theirs[key]:.2f}"
                        for key, label in ROWS[:2]))
                    sys.stdout.flush()
        for label, ours, theirs, ratio in summarize(rounds, rows):
            print(f"{name:<10} {label:<24} {ours:>10.1f} {theirs:>12.1f} {ratio:>7.2f}")
        if args.rounds > 1:
            print(f"{name:<10} (medians over {args.rounds} rounds; ratio: the median of the rounds' ratios)")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
