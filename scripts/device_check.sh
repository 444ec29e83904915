#!/usr/bin/env bash
# Runs the CUDA checks on a machine with a GPU, from binaries built elsewhere (CUDA compiled for
# sm_90) and copied into DIR (default .devbin; a DIR/bin.tar.xz of them is unpacked first, since the
# binaries travel to the GPU machine compressed): every test binary's CUDA cases, then `mrcnn selftest`.
# Make DIR here with: scripts/device_check.sh --pack [BUILD] [DIR]; DIR is git-ignored, so the device
# tool's call must name it in `carry`. Env: BENCH=1 (PyTorch comparison; BENCH_TF32=1 adds TF32 on both
# sides; BENCH_ROUNDS=N: N alternated rounds, medians; BENCH_TORCH_CUDNN_BENCHMARK=1), PROFILE=1
# (stage and backward-op timings), WORKSPACE=1 (with and without a cuDNN workspace limit), POINTWISE=1
# (1x1 convolutions through cuDNN only against the default), STAGING=1
# (the staging ring against two whole-buffer slots), NSYS=1 (Nsight Systems kernel summary, if
# installed there), APP=1 (train/predict/eval).
# The GPU machine's CUDA/cuDNN libraries may live in a Python environment, not in the linker's
# path: this finds them. Every step has a time limit (a hung kernel must not eat the lent machine's
# minutes; the logs written so far still come back). Usage: scripts/device_check.sh [DIR] [OUT]
set -uo pipefail
if [ "${1:-}" = "--pack" ]; then
  build=${2:-build} dir=${3:-.devbin}
  rm -rf "$dir" "$dir.tmp" && mkdir -p "$dir" "$dir.tmp"
  for src in tests/test_*.cpp; do
    # Every binary with a CUDA case: rehearsable ones skip through setup_cuda_or_skip, the ones that
    # test CUDA itself (allocator, packed kernels) through setup_real_cuda_or_skip.
    grep -qE "setup_(real_)?cuda_or_skip" "$src" && cp "$build/$(basename "$src" .cpp)" "$dir.tmp/"
  done
  cp "$build/mrcnn" "$dir.tmp/" && strip "$dir.tmp"/*
  tar cJf "$dir/bin.tar.xz" -C "$dir.tmp" . && rm -rf "$dir.tmp"
  ls -la "$dir"
  exit 0
fi
dir=${1:-.devbin}
if [ -f "$dir/bin.tar.xz" ]; then
  mkdir -p /tmp/device_bin && tar xJf "$dir/bin.tar.xz" -C /tmp/device_bin && dir=/tmp/device_bin
fi
out=${2:-${OUT:-/tmp/device_check}}
mkdir -p "$out"
nvidia-smi -L || true
libdirs=""
for lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcudnn.so.9; do
  found=$(find /usr/local /opt /usr/lib -name "$lib" 2>/dev/null | head -1)
  [ -n "$found" ] && libdirs="$libdirs:$(dirname "$found")"
  echo "device_check: $lib -> ${found:-not found}"
done
export LD_LIBRARY_PATH="${libdirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export MRCNN_SOURCE_DIR=$PWD
status=0
# Test and selftest logs go into one archive: the device tool returns a limited number of files (8).
logs=$(mktemp -d)
for t in "$dir"/test_*; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  # doctest filters are case-insensitive wildcards: every CUDA case has "cuda" in its name.
  if timeout "${TEST_TIMEOUT:-180}" "$t" --test-case='*cuda*' >"$logs/$name.log" 2>&1; then
    echo "device_check: $name: $(grep -E '^\[doctest\] (test cases|assertions)' "$logs/$name.log" | tr '\n' ' ')"
  else
    status=1
    echo "device_check: $name FAILED"; tail -40 "$logs/$name.log"
  fi
done
if [ -x "$dir/mrcnn" ]; then
  timeout 180 "$dir/mrcnn" selftest > "$logs/selftest.log" 2>&1 || status=1
  tail -26 "$logs/selftest.log"
fi
tar czf "$out/test_logs.tar.gz" -C "$logs" . && rm -rf "$logs"
# BENCH=1: R50-FPN at 512x512 against the machine's PyTorch/torchvision, batch 2 and 8, both sides
# in strict float32; BENCH_TF32=1 adds the same with TF32 convolutions/matmuls on both sides.
# BENCH_ROUNDS=N alternates the two sides N times and reports medians (the ratio to judge against a
# goal); BENCH_TORCH_CUDNN_BENCHMARK=1 lets PyTorch time cuDNN's algorithms too.
if [ "${BENCH:-0}" = 1 ] && [ -x "$dir/mrcnn" ]; then
  for precision in strict ${BENCH_TF32:+tf32}; do
    for batch in ${BENCH_BATCHES:-2 8}; do
      timeout $((60 + 120 * ${BENCH_ROUNDS:-1})) python3 bench/model_vs_torch.py --mrcnn "$dir/mrcnn" --device cuda --cases R50-FPN --batch "$batch" \
        --steps "${BENCH_STEPS:-10}" --rounds "${BENCH_ROUNDS:-1}" $([ $precision = tf32 ] && echo --tf32) \
        $([ "${BENCH_TORCH_CUDNN_BENCHMARK:-0}" = 1 ] && echo --torch-cudnn-benchmark) 2>&1 | tee "$out/bench_${precision}_batch$batch.log" || status=1
    done
  done
fi
# PROFILE=1: where a training step and an inference go, stage by stage, and backward op by op
# (GPU-synchronised timers).
if [ "${PROFILE:-0}" = 1 ] && [ -x "$dir/mrcnn" ]; then
  timeout 180 "$dir/mrcnn" bench --config bench/configs/r50_fpn_512.json --size 512x512 --batch 2 --device cuda --profile \
    2>&1 | tee "$out/profile.log" || status=1
fi
# WORKSPACE=1 and STAGING=1 write their loops' output to a log and show it afterwards: a loop piped
# into tee runs in a subshell, where a failure's status=1 would be lost.
# WORKSPACE=1: the cuDNN workspace limit's cost and saving: plain bench runs without and with
# --cudnn-workspace-limit ${WORKSPACE_MB:-32}, alternated twice (time and GPU memory per mode).
if [ "${WORKSPACE:-0}" = 1 ] && [ -x "$dir/mrcnn" ]; then
  for round in 1 2; do
    for limit in none "${WORKSPACE_MB:-32}"; do
      echo "== round $round, workspace limit: $limit"
      timeout 120 "$dir/mrcnn" $([ "$limit" = none ] || echo --cudnn-workspace-limit "$limit") bench \
        --config bench/configs/r50_fpn_512.json --size 512x512 --batch 2 --device cuda --steps 20 2>&1 || status=1
    done
  done > "$out/workspace.log"
  cat "$out/workspace.log"
fi
# POINTWISE=1: 1x1 convolutions through cuDNN only (MRCNN_POINTWISE_CONV=cudnn) against the default
# (cuBLAS products where they time faster), plain bench runs alternated three times at batch
# ${POINTWISE_BATCH:-2}.
if [ "${POINTWISE:-0}" = 1 ] && [ -x "$dir/mrcnn" ]; then
  for round in 1 2 3; do
    for route in cudnn timed; do
      echo "== round $round, pointwise convolutions: $route"
      MRCNN_POINTWISE_CONV=$([ $route = cudnn ] && echo cudnn) timeout 120 "$dir/mrcnn" bench --config bench/configs/r50_fpn_512.json \
        --size 512x512 --batch "${POINTWISE_BATCH:-2}" --device cuda --steps 20 2>&1 | grep "train step" || status=1
    done
  done > "$out/pointwise.log"
  cat "$out/pointwise.log"
fi
# STAGING=1: the pinned staging ring against its predecessor's two whole-buffer slots
# (MRCNN_STAGING_TWO_SLOTS=1), alternated twice: plain bench runs (train step, inference), then the
# profile's copy counts and the host's waits at each copy, per mode.
staging_bench() {  # ring|two, then extra bench arguments
  local slots=$1
  shift
  MRCNN_STAGING_TWO_SLOTS=$([ "$slots" = two ] && echo 1 || echo 0) timeout 120 "$dir/mrcnn" bench \
    --config bench/configs/r50_fpn_512.json --size 512x512 --batch "${STAGING_BATCH:-2}" --device cuda "$@" 2>&1
}
if [ "${STAGING:-0}" = 1 ] && [ -x "$dir/mrcnn" ]; then
  {
    for round in 1 2; do
      for slots in ring two; do
        echo "== round $round, staging: $slots"
        staging_bench $slots --steps 20 | grep "train step" || status=1
      done
    done
    for slots in ring two; do
      echo "== profile, staging: $slots"
      staging_bench $slots --profile | grep "host<->GPU" || status=1
    done
  } > "$out/staging.log"
  cat "$out/staging.log"
fi
# NSYS=1: Nsight Systems over the same bench without stage waits, if the machine has nsys: GPU kernel
# time by kernel and the CUDA API calls (gaps between kernels are where the GPU waited for the host).
if [ "${NSYS:-0}" = 1 ] && [ -x "$dir/mrcnn" ]; then
  nsys=$(command -v nsys || ls /usr/local/cuda*/bin/nsys /opt/nvidia/nsight-systems*/bin/nsys 2>/dev/null | head -1)
  if [ -n "$nsys" ]; then
    timeout 240 "$nsys" profile -o /tmp/mrcnn_nsys --force-overwrite true --stats=false "$dir/mrcnn" bench \
      --config bench/configs/r50_fpn_512.json --size 512x512 --batch 2 --device cuda > /dev/null 2>&1 &&
    timeout 120 "$nsys" stats --report cuda_gpu_kern_sum,cuda_api_sum --format csv /tmp/mrcnn_nsys.nsys-rep \
      > "$out/nsys_stats.csv" 2>&1 || echo "device_check: nsys failed (a profiler problem, not a CUDA check)"
    head -40 "$out/nsys_stats.csv"
  else
    echo "device_check: NSYS=1 but no nsys on this machine"
  fi
fi
# APP=1: the application end to end on the GPU: synthetic data, train (with a stop and a resume),
# predict and evaluate with --device ${APP_DEVICE:-cuda}; then `features` and `predict --cams` on it,
# the features compared with the CPU's (scripts/compare_features.py).
app_steps() {
  $m synth --out $d/data --patients 12 --slices 8 --val-patients 3 > /dev/null &&
  $m train --config configs/synthetic_demo.json --train $d/data/train.json --val $d/data/val.json --images $d/data/images \
    --out $d/run --device "$dev" --epochs "${APP_EPOCHS:-8}" --stop-after-epochs 2 &&
  $m train --config configs/synthetic_demo.json --train $d/data/train.json --val $d/data/val.json --images $d/data/images \
    --out $d/run --device "$dev" --epochs "${APP_EPOCHS:-8}" --resume &&
  $m predict --weights $d/run/best.safetensors $(ls $d/data/images/* | head -4) --json $d/predictions.json \
    --device "$dev" --score-thresh 0.5 &&
  $m eval --weights $d/run/best.safetensors --data $d/data/val.json --images $d/data/images --device "$dev" &&
  # Layer outputs and class activation maps on the device, its dense tensors judged against the CPU's.
  local image=$(ls $d/data/images/* | head -1) &&
  $m features --weights $d/run/best.safetensors "$image" --out $d/features_dev --device "$dev" > /dev/null &&
  $m features --weights $d/run/best.safetensors "$image" --out $d/features_cpu --device cpu > /dev/null &&
  python3 scripts/compare_features.py $d/features_cpu/features.safetensors $d/features_dev/features.safetensors &&
  $m predict --weights $d/run/best.safetensors $(ls $d/data/images/* | head -4) --json $d/predictions_cams.json \
    --out $d/cams --cams --device "$dev" && ls $d/cams | head -8
}
if [ "${APP:-0}" = 1 ] && [ -x "$dir/mrcnn" ]; then
  export m="$dir/mrcnn" d=/tmp/device_app dev=${APP_DEVICE:-cuda}
  export -f app_steps
  rm -rf $d
  timeout 300 bash -c app_steps > "$out/app.log" 2>&1 || status=1
  grep -v "^\[" "$out/app.log" | tail -60
fi
exit $status
