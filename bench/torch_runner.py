"""torch_runner.py - times PyTorch (eval, float32) on the project's port for
bench/run_bench.py. Usage: torch_runner.py ARCH WEIGHTS.pdparams INPUT.npy THREADS RUNS WARMUP
Prints one JSON line: median_ms, min_ms, max_ms, rss_mb (VmHWM), version."""
import json
import os
import pickle
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
import numpy as np  # noqa: E402
import torch  # noqa: E402

import cspresnet_torch as ref  # noqa: E402


def peak_rss_mb():
    """VmHWM of this process image: ru_maxrss survives exec and would report the harness."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    arch, weights, x_path, threads, runs, warmup = sys.argv[1:7]
    torch.set_num_threads(int(threads))
    with open(weights, "rb") as f:  # written by run_bench.py itself
        state = {k: v for k, v in pickle.load(f).items() if isinstance(v, np.ndarray)}
    model = ref.preset(arch).build()
    ref.load_numpy_state(model, state)
    model.eval()
    x = torch.from_numpy(np.load(x_path))
    times = []
    with torch.no_grad():
        for i in range(int(warmup) + int(runs)):
            t0 = time.perf_counter()
            model(x)
            if i >= int(warmup):
                times.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times),
                      "rss_mb": peak_rss_mb(),
                      "version": torch.__version__}))


main()
