#!/bin/sh
# load_bench.sh - time to load CSPResNet weights from .pdparams versus safetensors.
#
#   bench/load_bench.sh [PRESET] [RUNS]      (defaults: l, 15)
#
# Writes seeded random weights of PRESET as a protocol-4 .pdparams (as paddle.save
# does), converts it with `cspresnet convert`, then times `cspresnet summary --weights F`
# (process start + load + a summary table of a 1x3x32x32 input, identical work apart
# from the load) RUNS times per format after one warm-up each, with the files in the
# page cache, and prints the median and the spread. Not part of the test suite.
set -eu
cd "$(dirname "$0")/.."
preset="${1:-l}"
runs="${2:-15}"
cli="${CSPRESNET_BUILD:-build}/cspresnet"
[ -x "$cli" ] || { echo "build the CLI first (make)" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
/usr/bin/python3 - "$preset" "$dir/w.pdparams" <<'PY'
import sys
sys.path.insert(0, "tests/ref")
import numpy as np
import cspresnet_torch as ref
import pdparams_writer as pdw
model = ref.preset(sys.argv[1]).build()
rng = np.random.default_rng(0)
state = {k: (rng.standard_normal(tuple(v.shape)) * 0.05 + (1.0 if "variance" in k else 0.0)).astype(np.float32)
         for k, v in model.state_dict().items()}
pdw.write_pdparams(sys.argv[2], state)
PY
"$cli" convert --weights "$dir/w.pdparams" -o "$dir/w.safetensors" -q
/usr/bin/python3 - "$cli" "$runs" "$dir/w.pdparams" "$dir/w.safetensors" <<'PY'
import os, platform, statistics, subprocess, sys, time
cli, runs, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def once(f):
    t = time.perf_counter()
    subprocess.run([cli, "summary", "--weights", f, "--input-size", "1,3,32,32"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
print(f"# {time.strftime('%Y-%m-%d')}, {cpu}, {os.cpu_count()} CPUs, median of {runs} after 1 warm-up")
for f in files:
    once(f)
    ts = sorted(once(f) for _ in range(runs))
    print(f"{os.path.basename(f):16s} {os.path.getsize(f) / 1e6:7.1f} MB  median {statistics.median(ts) * 1e3:7.1f} ms"
          f"  (min {ts[0] * 1e3:.1f}, max {ts[-1] * 1e3:.1f})")
PY
