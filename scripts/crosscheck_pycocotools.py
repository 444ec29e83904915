#!/usr/bin/env python3
"""Cross-check `mrcnn eval` against pycocotools (pip) on the same detections and ground truth.

Runs `mrcnn eval --json --detections` once, then evaluates the detections it wrote with
pycocotools' COCOeval (bbox and segm) and compares all 12 AP figures (must agree to 1e-6). It also
decodes every detection mask with pycocotools and re-encodes it: the RLE strings must be identical
to ours. Exit 0 when everything agrees, 1 otherwise, 77 when pycocotools is missing.

  python3 scripts/crosscheck_pycocotools.py --mrcnn build/mrcnn --weights RUN/best.safetensors \
      --data val.json --images IMAGES_DIR [--work DIR]
"""
import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile

try:
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
except ImportError:
    print("SKIPPED: pycocotools is not installed (python3 -m pip install pycocotools)")
    sys.exit(77)  # ctest's "skipped" code

NAMES = ["AP", "AP50", "AP75", "APs", "APm", "APl"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mrcnn", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--work", default=None, help="keep the files here (default: a temporary folder)")
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="mrcnn_crosscheck_")
    os.makedirs(work, exist_ok=True)
    ours_json = os.path.join(work, "eval.json")
    dets_json = os.path.join(work, "detections.json")
    subprocess.run([args.mrcnn, "eval", "--weights", args.weights, "--data", args.data, "--images", args.images,
                    "--json", ours_json, "--detections", dets_json], check=True, stdout=subprocess.DEVNULL)
    ours = json.load(open(ours_json))
    detections = json.load(open(dets_json))

    worst = 0.0
    failures = 0
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(args.data)
    print(f"{len(detections)} detections on {len(truth.getImgIds())} images")
    print(f"{'':6} {'metric':6} {'mrcnn':>10} {'pycocotools':>12} {'|diff|':>9}")
    for iou_type in ("bbox", "segm"):
        if not detections:
            print(f"{iou_type}: no detections to compare")
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            result = truth.loadRes(dets_json)
            evaluator = COCOeval(truth, result, iou_type)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        for i, name in enumerate(NAMES):
            theirs = float(evaluator.stats[i])
            mine = float(ours[iou_type][name])
            diff = abs(theirs - mine)
            worst = max(worst, diff)
            ok = diff <= 1e-6
            failures += not ok
            print(f"{iou_type:6} {name:6} {mine:10.6f} {theirs:12.6f} {diff:9.1e}{'' if ok else '  MISMATCH'}")

    rle_mismatches = 0
    for d in detections:
        rle = {"size": d["segmentation"]["size"], "counts": d["segmentation"]["counts"].encode()}
        again = mask_utils.encode(mask_utils.decode(rle))
        if again["counts"].decode() != d["segmentation"]["counts"]:
            rle_mismatches += 1
    print(f"RLE strings: {len(detections) - rle_mismatches} of {len(detections)} equal to pycocotools' encoding")
    print(f"worst AP difference {worst:.1e} (tolerance 1e-6)")
    if failures or rle_mismatches:
        print("FAILED")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
