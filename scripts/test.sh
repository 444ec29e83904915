#!/usr/bin/env bash
# The README's test command: installs dependencies, configures a Release build (warnings are errors
# for project code), builds, and runs every ctest test. Extra arguments go to ctest (e.g. -L fast).
#   scripts/test.sh              Release build in build/ (CUDA compiled when nvcc and cuDNN are found)
#   scripts/test.sh --sanitize   ASan + UBSan build in build-sanitize/ (CUDA off: the sanitizers do not
#                                instrument device code, and the CUDA runtime trips ASan's shadow checks;
#                                the engine library shared, so the test binaries do not each carry a copy)
set -euo pipefail
cd "$(dirname "$0")/.."
sanitize=0
if [ "${1:-}" = "--sanitize" ]; then
  sanitize=1
  shift
fi
bash scripts/install-deps.sh
jobs=$(nproc)
if [ $sanitize -eq 1 ]; then
  build=build-sanitize
  cmake -S . -B $build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMRCNN_SANITIZE=ON -DMRCNN_CUDA=OFF -DMRCNN_SHARED_CORE=ON > /dev/null
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
else
  build=build
  cmake -S . -B $build -DCMAKE_BUILD_TYPE=Release > /dev/null
fi
cmake --build $build -j "$jobs"
export MRCNN_GRADCHECK_LOG="$PWD/$build/gradchecks.log"
rm -f "$MRCNN_GRADCHECK_LOG"
status=0
ctest --test-dir $build -j "$jobs" --output-on-failure "$@" || status=$?
passed=$(cat "$MRCNN_GRADCHECK_LOG" 2>/dev/null | wc -l)
cases=$(ctest --test-dir $build -N -R '^gradcheck:' | grep -c 'Test *#' || true)
echo "gradchecks passed: $passed (f64 central differences, in $cases gradcheck test cases)"
exit $status
