#!/usr/bin/python3
"""Converts a torchvision Mask R-CNN checkpoint (.pth) into an mrcnn checkpoint (.safetensors with
the model config in its metadata), so `mrcnn predict/eval/train` can use it.

    /usr/bin/python3 tools/export_torchvision.py IN.pth OUT.safetensors [--set KEY=VALUE ...]

IN.pth may hold a state_dict, a whole pickled model, or a torchvision reference-script checkpoint
({"model": state_dict, ...}). Names from older torchvision releases (mask_head.mask_fcn1,
fpn.inner_blocks.0.weight, rpn.head.conv.weight) are mapped to 0.14's. The config is inferred from
the tensors (backbone block and depth, norm, input channels, FPN width, anchors per location,
box head width, classes, mask head widths); other keys keep torchvision's defaults (min_size 800,
max_size 1333, ...) unless given with --set, e.g. --set min_size=[512] --set box_score_thresh=0.3.

For torchvision's COCO-pretrained model (needs torchvision's weight download, done once elsewhere):
    python3 -c "import torch, torchvision; m = torchvision.models.detection.maskrcnn_resnet50_fpn(weights='DEFAULT'); torch.save(m.state_dict(), 'maskrcnn_coco.pth')"
    /usr/bin/python3 tools/export_torchvision.py maskrcnn_coco.pth maskrcnn_coco.safetensors
"""
import argparse
import json
import re
import sys

import torch

import safetensors_writer  # tools/, next to this script

DEPTHS = {("basic", (2, 2, 2, 2)): 18, ("basic", (3, 4, 6, 3)): 34, ("bottleneck", (3, 4, 6, 3)): 50,
          ("bottleneck", (3, 4, 23, 3)): 101, ("bottleneck", (3, 8, 36, 3)): 152}


def read_state_dict(path):
    obj = torch.load(path, map_location="cpu")
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        sys.exit(f"export_torchvision: {path}: not a state_dict, model or reference checkpoint")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


def modern_names(state):
    """torchvision < 0.13 names -> 0.14's (what MaskRCNNHeads/FPN/RPNHead._load_from_state_dict do)."""
    out = {}
    for name, t in state.items():
        name = re.sub(r"^roi_heads\.mask_head\.mask_fcn(\d+)\.", lambda m: f"roi_heads.mask_head.{int(m.group(1)) - 1}.0.", name)
        name = re.sub(r"^backbone\.fpn\.(inner|layer)_blocks\.(\d+)\.(weight|bias)$", r"backbone.fpn.\1_blocks.\2.0.\3", name)
        name = re.sub(r"^rpn\.head\.conv\.(weight|bias)$", r"rpn.head.conv.0.0.\1", name)
        out[name] = t
    return out


def infer_config(state):
    body = "backbone.body."
    block = "bottleneck" if body + "layer1.0.conv3.weight" in state else "basic"
    layers = []
    for stage in range(1, 5):
        indices = {int(m.group(1)) for k in state for m in [re.match(rf"^{re.escape(body)}layer{stage}\.(\d+)\.", k)] if m}
        layers.append(max(indices) + 1)
    if body + "bn1.running_mean" not in state:
        norm = "gn"
    else:
        norm = "bn" if body + "bn1.num_batches_tracked" in state else "frozen_bn"
    config = {"num_classes": state["roi_heads.box_predictor.cls_score.weight"].shape[0],
              "norm": norm, "in_channels": state[body + "conv1.weight"].shape[1],
              "fpn_out_channels": state["backbone.fpn.inner_blocks.0.0.weight"].shape[0],
              "representation_size": state["roi_heads.box_head.fc6.weight"].shape[0],
              "mask_dim_reduced": state["roi_heads.mask_predictor.conv5_mask.weight"].shape[1]}
    depth = DEPTHS.get((block, tuple(layers)))
    if depth:
        config["depth"] = depth
    else:
        config["block"], config["layers"] = block, layers
    mask_layers, i = [], 0
    while f"roi_heads.mask_head.{i}.0.weight" in state:
        mask_layers.append(state[f"roi_heads.mask_head.{i}.0.weight"].shape[0])
        i += 1
    config["mask_layers"] = mask_layers
    if config["in_channels"] != 3:
        config["image_mean"], config["image_std"] = [0.5] * config["in_channels"], [0.25] * config["in_channels"]
    anchors = state["rpn.head.cls_logits.weight"].shape[0]
    if anchors != 3:
        sys.exit(f"export_torchvision: {anchors} anchors per location; pass --set anchor_sizes=... aspect_ratios=...")
    return config


def save(path, state, config):
    tensors = {}
    for name, t in state.items():
        t = t.float() if t.dtype in (torch.float16, torch.bfloat16) else t
        if safetensors_writer.dtype_name(t) is None:
            sys.exit(f"export_torchvision: {name} has unsupported dtype {t.dtype}")
        tensors[name] = t
    safetensors_writer.write(path, tensors, {"format": "mrcnn-checkpoint/1", "config": json.dumps(config), "step": "0",
                                             "rng": "{}", "source": "tools/export_torchvision.py"})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config key (JSON value)")
    args = parser.parse_args()
    state = modern_names(read_state_dict(args.input))
    config = infer_config(state)
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            config[key] = json.loads(value)
        except json.JSONDecodeError:
            config[key] = value
    save(args.output, state, config)
    print(f"wrote {args.output}: {len(state)} tensors, config {json.dumps(config)}")


if __name__ == "__main__":
    main()
