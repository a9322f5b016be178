#!/bin/sh
# Installs what building and testing cspresnet needs on Debian 12, only when missing.
#   scripts/install-deps.sh build   compiler and make (+ jansson for the CLI's safetensors support)
#   scripts/install-deps.sh demo    + the Fashion-MNIST data set the demo's fine-tune trains on
#   scripts/install-deps.sh test    + PyTorch, NumPy and pytest for the reference tests
#   scripts/install-deps.sh bench   + PyTorch, NumPy, ONNX (Python) and Node.js/npm for make bench
#   scripts/install-deps.sh reliability   clang + libFuzzer/TSan runtimes, valgrind (make fuzz/tsan/valgrind)
set -eu
want="${1:-build}"
pkgs=""
need() { for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || pkgs="$pkgs $p"; done; }
need gcc
need make
need libc6-dev
need libjansson-dev   # JSON parser of the optional safetensors module (src/formats), CLI only
need libjpeg62-turbo-dev  # JPEG decoding of the CLI's image module (cli/image_*.c), not the library
need libpng-dev       # PNG decoding and the --visualize pictures, CLI only
need pkg-config       # tests/test_install.py builds examples/ against the installed .pc
need zlib1g-dev       # gzip-compressed Fashion-MNIST files read by `cspresnet train`, CLI only
if [ "$want" = demo ] || [ "$want" = test ]; then
    need dataset-fashion-mnist  # the demo's fine-tune; tests/test_train.py trains on a few hundred of its images
fi
if [ "$want" = test ]; then
    need python3-torch
    need python3-numpy
    need python3-pytest
    need python3-pil      # tests/test_images.py writes every PNG/JPEG colour type
    need python3-opencv   # upstream's decoder and resize (cv2.imread, INTER_CUBIC) as reference
fi
if [ "$want" = bench ]; then   # make bench, bench/train_bench.py (not needed by CI)
    need python3-torch python3-numpy
    need python3-pytest  # bench/train_bench.py takes the port's train-mode BN from tests/test_train.py
    need python3-onnx    # bench/anchors.py checks the nodes of the exported ONNX graph
    # ONNX Runtime itself comes from the npm package onnxruntime-node (bench/run_bench.py installs it);
    # a Node.js that ships its own npm counts
    command -v node >/dev/null 2>&1 || need nodejs
    command -v npm >/dev/null 2>&1 || need npm
fi
if [ "$want" = reliability ]; then   # make fuzz / tsan / valgrind (not needed by CI)
    need clang
    need libclang-rt-14-dev   # libFuzzer and the TSan runtime for clang
    need valgrind
    need python3-numpy python3-pil python3-torch   # fuzz/make_seeds.py writes the seed files
fi
if [ -n "$pkgs" ]; then
    echo "installing:$pkgs" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    if ! $SUDO apt-get update -qq; then
        echo "install-deps: cannot read the package lists (no package mirror?); needed:$pkgs" >&2
        exit 1
    fi
    if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $pkgs >/dev/null; then
        echo "install-deps: could not install:$pkgs" >&2
        exit 1
    fi
fi
