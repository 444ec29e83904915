#!/usr/bin/env python3
"""ctest: `mrcnn eval` agrees with pycocotools on a synthetic set (scripts/crosscheck_pycocotools.py).

A tiny model is trained for one epoch on `mrcnn synth` data with box_score_thresh 0, so it returns
many detections of every size and score: a demanding input for AP's matching and area ranges.
Usage: crosscheck_pycocotools_test.py MRCNN_BINARY WORK_DIR. Exit 77 (skipped) without pycocotools.
"""
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

try:
    import pycocotools  # noqa: F401
except ImportError:
    print("SKIPPED: pycocotools is not installed (python3 -m pip install pycocotools)")
    sys.exit(77)

mrcnn, work = sys.argv[1], sys.argv[2]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
data = os.path.join(work, "data")
subprocess.run([mrcnn, "synth", "--out", data, "--patients", "4", "--slices", "3", "--val-patients", "2",
                "--height", "96", "--width", "96", "--seed", "5"], check=True)
recipe = {
    "num_classes": 2, "in_channels": 1, "image_mean": [0.5], "image_std": [0.25], "min_size": [96], "max_size": 96,
    "block": "basic", "layers": [1, 1, 1, 1], "norm": "gn", "trainable_layers": 5, "fpn_out_channels": 32,
    "representation_size": 32, "mask_layers": [32], "mask_dim_reduced": 32,
    "anchor_sizes": [[8], [16], [32], [64], [128]], "box_score_thresh": 0.0,
    "train": {"epochs": 4, "batch_size": 2, "lr": 0.02, "warmup_iters": 2, "val_every": 4},
}
with open(os.path.join(work, "recipe.json"), "w") as f:
    json.dump(recipe, f)
subprocess.run([mrcnn, "train", "--config", os.path.join(work, "recipe.json"), "--train", os.path.join(data, "train.json"),
                "--val", os.path.join(data, "val.json"), "--images", os.path.join(data, "images"), "--out",
                os.path.join(work, "run")], check=True)
sys.exit(subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "crosscheck_pycocotools.py"), "--mrcnn", mrcnn,
                         "--weights", os.path.join(work, "run", "last.safetensors"), "--data",
                         os.path.join(data, "val.json"), "--images", os.path.join(data, "images"), "--work",
                         os.path.join(work, "check")]).returncode)
