#!/bin/sh
# valgrind memcheck of one forward pass (load .pdparams, read .npy, forward, write .npy)
# and of one training step (`cspresnet grad`: forward + backward + gradient files).
# Not part of the suite (valgrind is ~50x slower); run by `make valgrind`. Any error or
# leak fails: --error-exitcode=99 and --errors-for-leak-kinds=definite,indirect,possible.
set -eu
cd "$(dirname "$0")/.."
B="${CSPRESNET_BUILD:-build}"
CLI="$B/cspresnet"
W="$(mktemp -d)"
trap 'rm -rf "$W"' EXIT
VG="valgrind --tool=memcheck --error-exitcode=99 --leak-check=full --show-leak-kinds=all \
    --errors-for-leak-kinds=definite,indirect,possible --track-origins=yes -q"
/usr/bin/python3 tests/malformed/make_corpus.py "$W" --good-only >/dev/null
# a tiny network: channels 8, one block per stage, alpha; input 1x3x8x8 ... and 1x3x64x64
/usr/bin/python3 -c "
import numpy as np; np.save('$W/x64.npy', (np.arange(3*64*64, dtype='<f4').reshape(1,3,64,64) % 97) / 97)
np.save('$W/g.npy', np.ones((1,), '<f4'))"
echo "== valgrind: forward pass (infer --weights good.pdparams --input 1x3x64x64)"
$VG "$CLI" infer --weights "$W/good.pdparams" --input "$W/x64.npy" --out "$W/out" --threads 2 -q
echo "== valgrind: forward pass of CSPResNet-s, random weights, 1x3x64x64, deploy mode"
$VG "$CLI" infer --arch s --random-input --input-size 1,3,64,64 --deploy --out "$W/out_s" --threads 2 -q
if "$CLI" grad --help >/dev/null 2>&1; then
    echo "== valgrind: training step (grad: forward + backward, gradients written)"
    mkdir -p "$W/gdir"
    for s in 1 2 3; do
        /usr/bin/python3 -c "
import numpy as np; a = np.load('$W/out/stage$s.npy'); np.save('$W/gdir/stage$s.npy', np.ones_like(a))"
    done
    $VG "$CLI" grad --weights "$W/good.pdparams" --input "$W/x64.npy" --grad-dir "$W/gdir" --out "$W/gout" --threads 2 -q
fi
echo "valgrind: clean"
