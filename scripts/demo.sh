#!/usr/bin/env bash
# README command 1: installs the dependencies, builds `mrcnn`, trains, predicts and evaluates.
#   scripts/demo.sh [DATASET_DIR]     or   MRCNN_DATA=DATASET_DIR scripts/demo.sh
# DATASET_DIR holds train.json, val.json and images/ (COCO, as Make Sense exports it): the default
# recipe configs/brain_tumor_cpu.json is trained on it (about 35 minutes on 2 cores). Without a
# dataset, `mrcnn synth` makes a synthetic MRI-like set and configs/synthetic_demo.json trains on it
# (the whole demo, build included, in under 10 minutes on 2 cores). Results go to $MRCNN_DEMO_OUT (default demo/).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-${MRCNN_DATA:-}}
out=${MRCNN_DEMO_OUT:-demo}
start=$(date +%s)
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
echo "demo: building mrcnn ..."
cmake --build build -j "$(nproc)" --target mrcnn > /dev/null
mrcnn=build/mrcnn
mkdir -p "$out"
if [ -n "$data" ]; then
  for f in train.json val.json images; do
    [ -e "$data/$f" ] || { echo "demo: $data/$f not found (expected train.json, val.json, images/)" >&2; exit 1; }
  done
  recipe=configs/brain_tumor_cpu.json
else
  data=$out/synthetic
  echo "demo: no dataset given: making a synthetic MRI-like set in $data"
  $mrcnn synth --out "$data" --patients 12 --slices 8 --val-patients 3
  recipe=configs/synthetic_demo.json
fi
run=$out/run
rm -rf "$run"
$mrcnn train --config "$recipe" --train "$data/train.json" --val "$data/val.json" --images "$data/images" --out "$run"
# A few validation images through `predict` (COCO results, overlays, per-patient summary and report),
# then the full evaluation.
images=$(python3 -c 'import json,sys; print(" ".join(sys.argv[2] + "/" + i["file_name"] for i in json.load(open(sys.argv[1]))["images"][:4]))' \
  "$data/val.json" "$data/images" 2>/dev/null || true)
if [ -n "$images" ]; then
  # shellcheck disable=SC2086
  $mrcnn predict --weights "$run/best.safetensors" $images --json "$out/predictions.json" --out "$out/overlays" \
    --masks "$out/masks" --score-thresh 0.5 --summary "$out/patients.csv" --report "$out/prediction_report"
  # What the model computed on the first of them, stage by stage, and why its top detections scored.
  rm -rf "$out/features"
  $mrcnn features --weights "$run/best.safetensors" "${images%% *}" --out "$out/features" > "$out/features.txt"
fi
$mrcnn eval --weights "$run/best.safetensors" --data "$data/val.json" --images "$data/images" \
  --json "$out/eval.json" --report "$out/report" | tee "$out/eval.txt"
echo
echo "demo finished in $(( $(date +%s) - start )) s. Where things are:"
echo "  training curves      $run/curves.png   (logs: $run/log.jsonl, $run/metrics.jsonl)"
echo "  model                $run/best.safetensors (best val segm AP), $run/last.safetensors"
echo "  evaluation report    $out/report/index.html   (figures: $out/eval.json, $out/eval.txt)"
echo "  predictions          $out/predictions.json, overlays in $out/overlays/, masks in $out/masks/"
echo "  per patient          $out/patients.csv, report $out/prediction_report/index.html"
if [ -n "$images" ]; then
  echo "  one slice's stages   $out/features/ (features.safetensors, PNGs; cam.0.png: why the top detection scored)"
fi
