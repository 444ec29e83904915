#!/usr/bin/env bash
# Fuzzing with libFuzzer (Debian's clang): builds tests/fuzz/* with ASan + UBSan in build-fuzz/ and
# runs each target for a bounded time from the committed seed corpus (tests/fuzz/corpus/<target>).
#   scripts/fuzz.sh [SECONDS_PER_TARGET=60] [TARGET...]     (targets: coco image safetensors results config)
# Prints each target's executions; a crash, leak, sanitizer report or out-of-memory fails the run
# and leaves the reproducer in build-fuzz/findings/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(coco image safetensors results config)
if ! command -v clang++ > /dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq clang > /dev/null
  else
    echo "fuzz: clang++ not found (apt-get install clang)" >&2
    exit 1
  fi
fi
cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ -DMRCNN_FUZZ=ON -DMRCNN_CUDA=OFF > /dev/null
cmake --build build-fuzz -j "$(nproc)" --target $(printf 'fuzz_%s ' "${targets[@]}") > build-fuzz/build.log 2>&1 ||
  { tail -30 build-fuzz/build.log; exit 1; }
status=0
for target in "${targets[@]}"; do
  corpus=build-fuzz/corpus/$target findings=build-fuzz/findings/$target
  mkdir -p "$corpus" "$findings"
  cp tests/fuzz/corpus/$target/* "$corpus"/
  log=build-fuzz/fuzz_$target.log
  # One process (-jobs would share the 2 cores with nothing to gain); 2 GB RSS cap catches allocation bombs.
  # A fixed seed: runs on the same corpus try the same inputs in the same order (a time limit only cuts
  # the sequence shorter or longer), so a clean run here predicts a clean run in CI.
  if build-fuzz/fuzz_$target "$corpus" -seed="${FUZZ_SEED:-1}" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
       -max_len=65536 -artifact_prefix="$findings/" -print_final_stats=1 > "$log" 2>&1; then
    result=ok
  else
    result=FAILED
    status=1
    grep -E "ERROR|SUMMARY|artifact" "$log" | head -5
  fi
  execs=$(grep -oP 'stat::number_of_executed_units:\s*\K[0-9]+' "$log" || echo "?")
  coverage=$(grep -oP 'cov: \K[0-9]+' "$log" | tail -1 || echo "?")
  echo "fuzz_$target: $result, $execs executions in ${seconds}s, coverage $coverage edges, corpus $(ls "$corpus" | wc -l) inputs"
done
exit $status
