#!/bin/bash
# The main job on a built-in default: build, show the CSPResNet-s summary, and run the
# backbone on a 640x640 input (official weights if CSPRESNET_WEIGHTS names a .pdparams
# file, seeded random weights otherwise), writing the feature maps to out/default/.
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh build
make -s
build/cspresnet summary --arch s | tail -n 20
if [ -n "${CSPRESNET_WEIGHTS:-}" ]; then
    time build/cspresnet infer --weights "$CSPRESNET_WEIGHTS" --input-size 1,3,640,640 --out out/default
else
    time build/cspresnet infer --arch s --input-size 1,3,640,640 --out out/default
fi
