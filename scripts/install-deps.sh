#!/usr/bin/env bash
# Installs the Debian packages the build needs, only those missing; quiet and idempotent.
# The CUDA toolkit and cuDNN are not Debian packages here: the build uses them when present.
#   --reference  also PyTorch/torchvision (Debian's python3-torch, python3-torchvision) and OpenBLAS,
#                for tests/fixtures/make_ops_fixture.py and bench/ops_vs_torch.py; never needed to build.
set -euo pipefail
packages=(build-essential cmake libeigen3-dev libstb-dev doctest-dev nlohmann-json3-dev libcli11-dev python3)
if [ "${1:-}" = "--reference" ]; then
  packages+=(python3-torch python3-torchvision libopenblas0)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
