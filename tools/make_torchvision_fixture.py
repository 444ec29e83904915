#!/usr/bin/python3
"""Writes tests/fixtures/maskrcnn_fixture.safetensors: two small Mask R-CNNs built with torchvision
itself, their weights under torchvision's state_dict names, one input batch with targets, and the
expected tensors of every stage in eval mode and the losses and parameter gradients in train mode.
Read by tests/test_maskrcnn_parity.cpp with the project's own safetensors reader.

Run with Debian's interpreter (python3-torch 1.13, python3-torchvision 0.14):
    /usr/bin/python3 tools/make_torchvision_fixture.py [--data DIR] [OUT.safetensors]
DIR (default ../shared/datasets/brain-tumor, or $MRCNN_DATA) supplies two real slices of different
sizes with their annotations; without it two synthetic images with elliptic "lesions" are used.

Models (the issue's parity pair):
  a: basic blocks, layers [1, 1, 1, 1], FrozenBatchNorm2d with random statistics, trainable_layers 3
  b: the same with GroupNorm(32) in the backbone and trainable_layers 5
  both: FPN 64 channels, representation_size 128, mask head 64 channels, 2 classes, min_size 128,
  max_size 192.
Size budget (<= 12 MB): weights with more than 4096 elements are rounded to int8 codes times a
per-tensor float32 scale ("w.<name>" I8 + "w.<name>.scale"); the reference ran with exactly those
rounded weights (codes * scale in float32), which the test rebuilds bit-for-bit. Both models share
those codes where their tensors coincide (every conv and linear). Gradients with more than 4096
elements are stored at 2048 fixed positions (k * numel // 2048) plus their full L2 norm (float64).
Input images are 8-bit gray, stored as int8 codes (value = (code + 128) / 255).
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torchvision
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.resnet import BasicBlock, ResNet
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

import safetensors_writer  # tools/, next to this script

FIXTURE_VERSION = "1"
QUANTIZE_ABOVE = 4096
GRAD_SAMPLES = 2048
MASK_STAGE_BOXES = 32  # the mask head's outputs are stored for the first detections only

# The configs as the project's JSON (torchvision keyword names); the test builds its models from these.
COMMON = {
    "num_classes": 2, "min_size": [128], "max_size": 192, "block": "basic", "layers": [1, 1, 1, 1],
    "fpn_out_channels": 64, "representation_size": 128, "mask_layers": [64, 64, 64, 64], "mask_dim_reduced": 64,
    "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
}
CONFIGS = {
    "a": dict(COMMON, norm="frozen_bn", trainable_layers=3),
    "b": dict(COMMON, norm="gn", gn_groups=32, trainable_layers=5),
}
# "Sample everything": batch sizes above every candidate count and positive_fraction 1, so the
# samplers keep all positives and negatives and the losses do not depend on random draws.
SAMPLE_ALL = {"rpn_batch_size_per_image": 1000000, "rpn_positive_fraction": 1.0,
              "box_batch_size_per_image": 1000000, "box_positive_fraction": 1.0}

tensors = {}


def put(name, t):
    assert name not in tensors, name
    tensors[name] = t.detach().contiguous().clone()


def build(key):
    cfg = CONFIGS[key]
    norm = FrozenBatchNorm2d if cfg["norm"] == "frozen_bn" else (lambda c: nn.GroupNorm(cfg["gn_groups"], c))
    body = ResNet(BasicBlock, cfg["layers"], norm_layer=norm)
    layers_to_train = ["layer4", "layer3", "layer2", "layer1", "conv1"][: cfg["trainable_layers"]]
    if cfg["trainable_layers"] == 5:
        layers_to_train.append("bn1")
    for name, p in body.named_parameters():
        if all(not name.startswith(layer) for layer in layers_to_train):
            p.requires_grad_(False)
    backbone = BackboneWithFPN(body, {f"layer{k}": str(k - 1) for k in range(1, 5)}, [64, 128, 256, 512],
                               cfg["fpn_out_channels"], extra_blocks=LastLevelMaxPool())
    c = cfg["fpn_out_channels"]
    return MaskRCNN(
        backbone, num_classes=None, min_size=cfg["min_size"][0], max_size=cfg["max_size"],
        image_mean=cfg["image_mean"], image_std=cfg["image_std"],
        box_head=TwoMLPHead(c * 49, cfg["representation_size"]),
        box_predictor=FastRCNNPredictor(cfg["representation_size"], cfg["num_classes"]),
        mask_head=MaskRCNNHeads(c, cfg["mask_layers"], 1),
        mask_predictor=MaskRCNNPredictor(cfg["mask_layers"][-1], cfg["mask_dim_reduced"], cfg["num_classes"]))


def randomise_norms(model, gen):
    """Norm layers away from identity so a wrong formula shows; FrozenBN gets random statistics."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (FrozenBatchNorm2d, nn.GroupNorm)):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
            if isinstance(m, FrozenBatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) * 0.5 + 0.75)


def quantize_large(model, codes):
    """Rounds every tensor above QUANTIZE_ABOVE elements to int8 codes * scale, sharing codes by name."""
    with torch.no_grad():
        for name, t in list(model.state_dict().items()):
            if t.numel() <= QUANTIZE_ABOVE or not t.is_floating_point():
                continue
            if name not in codes:
                scale = (t.abs().max() / 127).float()
                codes[name] = (torch.round(t / scale).clamp(-127, 127).to(torch.int8), scale)
            code, scale = codes[name]
            assert code.shape == t.shape, name
            t.copy_(code.to(torch.float32) * scale)


def store_weights(key, model, codes):
    for name, t in model.state_dict().items():
        if name in codes:
            if f"w.{name}" not in tensors:
                put(f"w.{name}", codes[name][0])
                put(f"w.{name}.scale", codes[name][1].reshape(()))
        else:
            put(f"{key}.w.{name}", t)


def read_coco_pair(data_dir):
    """Two annotated slices of different sizes: gray images [H, W] in [0, 1] and targets."""
    from PIL import Image, ImageDraw
    with open(os.path.join(data_dir, "train.json")) as f:
        coco = json.load(f)
    anns = {}
    for a in coco["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)
    picked = []
    for size in [(256, 256), (256, 192)]:  # the dataset's two common sizes (h, w)
        candidates = [im for im in coco["images"] if im["id"] in anns and (im["height"], im["width"]) == size]
        picked.append(min(candidates, key=lambda i: i["file_name"]))
    images, targets, names = [], [], []
    for im in picked:
        pil = Image.open(os.path.join(data_dir, "images", im["file_name"])).convert("L")
        images.append(torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0))
        boxes, masks = [], []
        for a in anns[im["id"]]:
            x, y, w, h = a["bbox"]
            boxes.append([x, y, x + w, y + h])
            canvas = Image.new("L", (im["width"], im["height"]), 0)
            for poly in a["segmentation"]:
                ImageDraw.Draw(canvas).polygon(poly, outline=1, fill=1)
            masks.append(torch.from_numpy(np.asarray(canvas, dtype=np.uint8) > 0))
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32),
                        "labels": torch.ones(len(boxes), dtype=torch.int64), "masks": torch.stack(masks)})
        names.append(im["file_name"])
    return images, targets, names


def synthetic_pair(gen):
    images, targets = [], []
    for h, w, (cy, cx, ry, rx) in [(256, 256, (120, 100, 30, 22)), (256, 192, (170, 80, 26, 18))]:
        yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
        lesion = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        image = torch.round(255 * (0.3 + 0.1 * torch.rand((h, w), generator=gen) + 0.4 * lesion.float())) / 255
        images.append(image)
        ys, xs = torch.where(lesion)
        box = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32)
        targets.append({"boxes": box, "labels": torch.ones(1, dtype=torch.int64), "masks": lesion[None]})
    return images, targets, ["synthetic_0", "synthetic_1"]


def store_grad(name, g):
    if g.numel() <= QUANTIZE_ABOVE:
        put(name, g)
        return
    flat = g.reshape(-1)
    positions = torch.arange(GRAD_SAMPLES, dtype=torch.int64) * flat.numel() // GRAD_SAMPLES
    put(name + ".sampled", flat[positions])
    put(name + ".norm", flat.double().norm().reshape(()))


def run_model(key, model, images, targets):
    p = key + "."
    model.eval()
    with torch.no_grad():
        batch, _ = model.transform(images)
        if key == "a":  # the same transform for both models
            put("eval.images", batch.tensors)
        put(p + "eval.image_sizes", torch.tensor(batch.image_sizes, dtype=torch.int64))
        features = model.backbone(batch.tensors)
        for name, f in features.items():
            put(p + f"eval.features.{name}", f)
        feats = list(features.values())
        objectness, deltas = model.rpn.head(feats)
        for level, (o, d) in enumerate(zip(objectness, deltas)):
            put(p + f"eval.objectness.{level}", o)
            put(p + f"eval.deltas.{level}", d)
        anchors = model.rpn.anchor_generator(batch, feats)
        put(p + "eval.anchors", anchors[0])
        proposals, _ = model.rpn(batch, features)
        for i, boxes in enumerate(proposals):
            put(p + f"eval.proposals.{i}", boxes)
        roi = model.roi_heads
        box_features = roi.box_head(roi.box_roi_pool(features, proposals, batch.image_sizes))
        class_logits, box_regression = roi.box_predictor(box_features)
        put(p + "eval.class_logits", class_logits)
        put(p + "eval.box_regression", box_regression)
        detections, _ = roi(features, proposals, batch.image_sizes)
        for i, d in enumerate(detections):
            put(p + f"eval.det_boxes.{i}", d["boxes"])
            put(p + f"eval.det_scores.{i}", d["scores"])
            put(p + f"eval.det_labels.{i}", d["labels"])
            put(p + f"eval.mask_probs.{i}", d["masks"][:MASK_STAGE_BOXES])
        final = model.transform.postprocess(detections, batch.image_sizes, [im.shape[-2:] for im in images])
        for i, d in enumerate(final):
            put(p + f"eval.final_boxes.{i}", d["boxes"])
            put(p + f"eval.final_scores.{i}", d["scores"])
            put(p + f"eval.final_mask0.{i}", d["masks"][:1])  # one pasted mask per image: paste_masks_in_image

    # Train mode with every candidate sampled: losses and the gradient of their sum.
    model.train()
    for k, v in SAMPLE_ALL.items():
        if k.startswith("rpn_"):
            setattr(model.rpn.fg_bg_sampler, {"rpn_batch_size_per_image": "batch_size_per_image",
                                              "rpn_positive_fraction": "positive_fraction"}[k], v)
        else:
            setattr(model.roi_heads.fg_bg_sampler, {"box_batch_size_per_image": "batch_size_per_image",
                                                    "box_positive_fraction": "positive_fraction"}[k], v)
    batch, resized = model.transform(images, [dict(t) for t in targets])
    for i, t in enumerate(resized):
        put(p + f"train.target_boxes.{i}", t["boxes"])
    model.zero_grad()
    features = model.backbone(batch.tensors)
    proposals, rpn_losses = model.rpn(batch, features, resized)
    for i, boxes in enumerate(proposals):
        put(p + f"train.proposals.{i}", boxes)
    _, roi_losses = model.roi_heads(features, proposals, batch.image_sizes, resized)
    losses = dict(rpn_losses, **roi_losses)
    for name, v in losses.items():
        put(p + f"train.{name}", v)
    sum(losses.values()).backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            store_grad(p + f"train.grad.{name}", param.grad)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.environ.get("MRCNN_DATA", os.path.join(here, "..", "..", "shared", "datasets", "brain-tumor")))
    parser.add_argument("out", nargs="?", default=os.path.join(here, "..", "tests", "fixtures", "maskrcnn_fixture.safetensors"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    gen = torch.Generator().manual_seed(20261126)
    if os.path.exists(os.path.join(args.data, "train.json")):
        images, targets, names = read_coco_pair(args.data)
    else:
        images, targets, names = synthetic_pair(gen)
    for i, (im, t) in enumerate(zip(images, targets)):
        # Gray [H, W] as int8 codes: image = (code + 128) / 255 in float32 (exact for 8-bit sources);
        # the models see it repeated on 3 channels.
        codes8 = torch.round(im * 255) - 128
        assert torch.equal((codes8 + 128) / 255, im), "input images must be 8-bit"
        put(f"input.image.{i}", codes8.to(torch.int8))
        put(f"input.boxes.{i}", t["boxes"])
        put(f"input.labels.{i}", t["labels"])
        put(f"input.masks.{i}", t["masks"])
    codes = {}
    for key in ["a", "b"]:
        torch.manual_seed(20261126 + ord(key))
        model = build(key)
        randomise_norms(model, gen)
        quantize_large(model, codes)
        store_weights(key, model, codes)
        run_model(key, model, [im.expand(3, *im.shape) for im in images], targets)
    configs = {k: dict(v, **SAMPLE_ALL) for k, v in CONFIGS.items()}
    safetensors_writer.write(args.out, tensors, {"version": FIXTURE_VERSION, "torch": torch.__version__, "torchvision": torchvision.__version__,
                    "script": "tools/make_torchvision_fixture.py", "images": json.dumps(names),
                    "config.a": json.dumps(configs["a"]), "config.b": json.dumps(configs["b"])})
    print(f"wrote {args.out}: {len(tensors)} tensors, {os.path.getsize(args.out) / 1e6:.2f} MB, images {names}")


if __name__ == "__main__":
    main()
