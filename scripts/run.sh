#!/bin/bash
# The main job: installs what it needs, builds, fetches a few real photos (scikit-image's
# samples from Debian's python3-skimage, unpacked without installing it) and runs
# `cspresnet demo`: the CSPResNet-s summary, a short fine-tune on Fashion-MNIST, feature
# maps and heat-map pictures of the photos, the measured speed, and where every file went
# (out/demo/). Official weights: CSPRESNET_WEIGHTS=file.pdparams scripts/run.sh
# Every step must run: a missing package mirror stops it with a message and exit 1.
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh demo
make -s
scripts/fetch-photos.sh
exec build/cspresnet demo --out out/demo "$@"
