#!/usr/bin/env bash
# Fetch, on this (networked) machine, the pure-Python wheels the GPU check needs that the GPU machine's image
# lacks (its python3 has torch, torchvision, torchmetrics, scipy, ... but not these): laplace-torch and its
# curvature back ends, bayesian-torch. They land in .whl/ (about 0.6 MB, git-ignored through .git/info/exclude),
# which the device tool carries (`carry: [".whl"]`) and benchmarks/gpu_check.sh installs into /tmp/site.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  laplace-torch==0.3 bayesian-torch==0.5.0 asdfghjkl==0.1a4 backpack-for-pytorch==1.7.1 \
  curvlinops-for-pytorch==3.0.1 unfoldNd==0.2.3 einconv==0.1.0
ls -l .whl
