#!/bin/sh
# The whole test suite: installs what it needs, builds with -Werror, runs the tests
# (PyTorch parity, pickle and .npy readers, CLI refusals), then the same tests under
# AddressSanitizer + UndefinedBehaviorSanitizer.
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
make -s
make -s test
make -s asan
