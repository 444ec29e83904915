#!/usr/bin/env bash
# Builds and runs the test suite on a GPU machine that has nvcc and a Python cuDNN wheel but none of
# the project's Debian header packages and no network (the lent H100/H200 machines of this project).
#   scripts/gpu-check.sh --pack    here (Debian, deps installed): copies the header-only dependencies
#                                  and their CMake configs into .devdeps/ (git-ignored)
#   scripts/gpu-check.sh [CTEST_ARGS...]
#                                  there, with .devdeps carried along: configures with
#                                  MRCNN_CUDA=ON against that cuDNN, builds, runs ctest (default: all
#                                  tests), and writes the logs to $OUT when set
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--pack" ]; then
  prefix=.devdeps/usr
  rm -rf .devdeps
  mkdir -p $prefix/include $prefix/share/cmake $prefix/share/eigen3 $prefix/lib/cmake
  cp -r /usr/include/eigen3 /usr/include/nlohmann /usr/include/CLI /usr/include/doctest /usr/include/stb $prefix/include/
  cp -r /usr/share/eigen3/cmake $prefix/share/eigen3/
  cp -r /usr/share/cmake/CLI11 /usr/share/cmake/nlohmann_json $prefix/share/cmake/
  cp -r /usr/lib/cmake/doctest $prefix/lib/cmake/
  # doctest's export hard-codes /usr: make it relative to where the config lies.
  sed -i 's|set(_IMPORT_PREFIX "/usr")|get_filename_component(_IMPORT_PREFIX "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)|' \
    $prefix/lib/cmake/doctest/doctestTargets.cmake
  grep -qx '/.devdeps/' .git/info/exclude 2>/dev/null || echo '/.devdeps/' >> .git/info/exclude
  du -sh .devdeps
  exit 0
fi

out=${OUT:-/tmp}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
cudnn=$(python3 -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])')  # a namespace package: no __file__
cudnn_lib=$(ls "$cudnn"/lib/libcudnn.so* | head -1)
echo "cuDNN: $cudnn_lib"
export LD_LIBRARY_PATH="$cudnn/lib:${LD_LIBRARY_PATH:-}"
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DMRCNN_CUDA=ON \
  -DCMAKE_PREFIX_PATH="$PWD/.devdeps/usr" -DCUDNN_INCLUDE_DIR="$cudnn/include" -DCUDNN_LIBRARY="$cudnn_lib" \
  > "$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
cmake --build build-gpu -j "$(nproc)" > "$out/build.log" 2>&1 || { grep -m 20 -E "error|Error" "$out/build.log"; exit 1; }
ctest --test-dir build-gpu -j 8 --output-on-failure "$@" 2>&1 | tee "$out/ctest.log" | tail -25
