"""torch_runner.py - times PyTorch (eval, float32) on CSPResNet for bench/run_bench.py.
Usage: torch_runner.py ARCH WEIGHTS.pdparams INPUT.npy THREADS RUNS WARMUP MODE [OUT.npz]
MODE: port (the port in tests/ref as it is: arithmetic BN, eager), or the standard network of
bench/anchors.py (nn.BatchNorm2d) run eager, frozen (torch.jit.trace + freeze), optimized
(trace + torch.jit.optimize_for_inference) or bf16 (eager under CPU autocast), or int8:CALIB.npy
(bench/qdq.py: FX post-training quantization of the deployed network, calibrated on CALIB.npy;
the JSON line adds engine and int8_convs). Tracing and calibration happen before the warm-up.
Prints one JSON line: median_ms, min_ms, max_ms, rss_mb (VmHWM), version, mode. With OUT.npz,
also saves the outputs of the last run there (out0, out1, ...)."""
import json
import os
import pickle
import resource
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..", "tests", "ref")]
import numpy as np  # noqa: E402
import torch  # noqa: E402

import anchors  # noqa: E402
import cspresnet_torch as ref  # noqa: E402


def peak_rss_mb():
    """VmHWM of this process image: ru_maxrss survives exec and would report the harness."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    arch, weights, x_path, threads, runs, warmup, mode = sys.argv[1:8]
    out_path = sys.argv[8] if len(sys.argv) > 8 else None
    torch.set_num_threads(int(threads))
    with open(weights, "rb") as f:  # written by run_bench.py itself
        state = {k: v for k, v in pickle.load(f).items() if isinstance(v, np.ndarray)}
    model = ref.preset(arch).build()
    ref.load_numpy_state(model, state)
    del state  # the weights once in memory, as in the other engines' processes
    model.eval()
    x = torch.from_numpy(np.load(x_path))
    info = {}
    if mode.startswith("int8:"):
        import qdq
        net = qdq.deployed(model, inplace=True)
        del model
        qnet = qdq.fx_int8(net, qdq.quantized_convs(net), np.load(mode[len("int8:"):]))
        del net
        info = {"engine": torch.backends.quantized.engine, "int8_convs": qdq.fx_quantized_convs(qnet)}
        mode = "int8"

        def run(t):
            with torch.no_grad():
                return qnet(t)
    elif mode == "port":
        def run(t):
            with torch.no_grad():
                return model(t)
    else:
        run = anchors.torch_inference(anchors.standard(model, inplace=True), x, mode)
        del model
    times = []
    for i in range(int(warmup) + int(runs)):
        t0 = time.perf_counter()
        outs = run(x)
        if i >= int(warmup):
            times.append((time.perf_counter() - t0) * 1e3)
    if out_path:
        np.savez(out_path, **{f"out{i}": o.numpy() for i, o in enumerate(outs)})
    print(json.dumps({"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times),
                      "rss_mb": peak_rss_mb(), "version": torch.__version__, "mode": mode, **info}))


main()
