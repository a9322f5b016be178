"""run_bench.py - `make bench`: this library against ONNX Runtime and PyTorch, same
weights, same input, interleaved, on this machine. Writes bench/results.md.

For s and l: random weights from the project's PyTorch port (tests/ref), written as a
.pdparams (read by us) and exported to ONNX with torch.onnx.export (eval mode,
undeployed graph: ORT fuses BN itself). ONNX Runtime runs through the npm package
onnxruntime-node, installed into bench/node_env with `npm install --ignore-scripts`
(the package ships its native binding; the script checks that it loads). Each row runs
ROUNDS rounds, each round one process per engine in turn (ours, ORT, PyTorch), each
process timing RUNS forwards after WARMUP; the row reports the median of the per-round
medians. Ours runs the deployed network (`cspresnet bench --deploy`) with the kernels
this CPU selects. Peak RSS: ours and PyTorch by getrusage, ORT by
process.resourceUsage().maxRSS, each of its own process (batch 1, 1 thread row).
"""
import datetime
import json
import os
import pickle
import re
import shutil
import statistics
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "ref"))
import torch  # noqa: E402

import cspresnet_torch as ref  # noqa: E402
import pdparams_writer as pdw  # noqa: E402

WORK = os.path.join(HERE, "work")
NODE_ENV = os.path.join(HERE, "node_env")
CLI = os.path.join(ROOT, os.environ.get("CSPRESNET_BUILD", "build"), "cspresnet")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
WARMUP = 2
ROWS = [  # arch, batch, threads
    ("s", 1, 1), ("s", 1, 2), ("l", 1, 1), ("l", 1, 2), ("l", 8, 2),
]


def sh(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise SystemExit(f"failed: {' '.join(map(str, cmd))}\n{p.stdout}\n{p.stderr}")
    return p.stdout


def ensure_ort():
    mod = os.path.join(NODE_ENV, "node_modules", "onnxruntime-node")
    if not os.path.isdir(mod):
        os.makedirs(NODE_ENV, exist_ok=True)
        sh(["npm", "install", "--ignore-scripts", "--no-audit", "--no-fund", "--prefix", NODE_ENV,
            "onnxruntime-node"])
    sh(["node", "-e", f"require({json.dumps(mod)}); "
        "new (require(" + json.dumps(mod) + ").Tensor)('float32', new Float32Array(1), [1])"])
    with open(os.path.join(mod, "package.json")) as f:
        return json.load(f)["version"]


def prepare(arch):
    os.makedirs(WORK, exist_ok=True)
    w = os.path.join(WORK, f"{arch}.pdparams")
    onnx = os.path.join(WORK, f"{arch}.onnx")
    if os.path.exists(w) and os.path.exists(onnx):
        return w, onnx
    cfg = ref.preset(arch)
    model = cfg.build()
    state = ref.random_state(model, seed=1)
    pdw.write_pdparams(w, state)
    ref.load_numpy_state(model, state)
    model.eval()
    x = torch.zeros(1, 3, 640, 640)
    torch.onnx.export(model, x, onnx, opset_version=13, input_names=["x"],
                      output_names=[f"stage{i}" for i in cfg.return_idx],
                      dynamic_axes={"x": {0: "n"}})
    return w, onnx


def prepare_input(batch):
    os.makedirs(WORK, exist_ok=True)
    x = np.random.default_rng(batch).random((batch, 3, 640, 640), dtype=np.float32)
    npy = os.path.join(WORK, f"x{batch}.npy")
    raw = os.path.join(WORK, f"x{batch}.f32")
    np.save(npy, x)
    x.tofile(raw)
    return npy, raw


def pin(threads):
    """1-thread runs of all three go to the same core (CPU 0): on this VM the two vCPUs
    differ (CPU 1 measured 10-25% slower, a busier host core), and an unpinned 1-thread run
    lands on either at random. 2-thread runs are not pinned."""
    return ["taskset", "-c", "0"] if threads == 1 and shutil.which("taskset") else []


def run_ours(w, npy, threads):
    out = sh([*pin(threads), CLI, "bench", "--weights", w, "--input", npy, "--deploy", "--threads", str(threads),
              "--runs", str(RUNS), "--warmup", str(WARMUP)])
    kv = dict(re.findall(r"(\w+)=(\S+)", out.strip().splitlines()[-1]))
    return {"median_ms": float(kv["median_ms"]), "rss_mb": float(kv["rss_mb"]), "isa": kv["isa"]}


def run_ort(onnx, raw, batch, threads):
    out = sh([*pin(threads), "node", os.path.join(HERE, "ort_runner.js"), onnx, raw, f"{batch},3,640,640", str(threads),
              str(RUNS), str(WARMUP)])
    return json.loads(out.strip().splitlines()[-1])


def run_torch(arch, w, npy, threads):
    out = sh([*pin(threads), sys.executable, os.path.join(HERE, "torch_runner.py"), arch, w, npy, str(threads), str(RUNS),
              str(WARMUP)])
    return json.loads(out.strip().splitlines()[-1])


def main():
    global CLI
    # a private copy of the CLI: others rebuilding build/ mid-run must not change what is timed
    os.makedirs(WORK, exist_ok=True)
    private = os.path.join(WORK, "cspresnet")
    shutil.copy2(CLI, private)
    CLI = private
    ort_version = ensure_ort()
    cpu = re.search(r"Model name:\s*(.*)", sh(["lscpu"]))
    cpu = cpu.group(1).strip() if cpu else "unknown"
    inputs = {b: prepare_input(b) for b in sorted({r[1] for r in ROWS})}
    files = {a: prepare(a) for a in sorted({r[0] for r in ROWS})}
    results = []
    isa = "?"
    for arch, batch, threads in ROWS:
        w, onnx = files[arch]
        npy, raw = inputs[batch]
        per = {"ours": [], "ort": [], "torch": []}
        rss = {}
        for _ in range(ROUNDS):
            o = run_ours(w, npy, threads)
            isa = o["isa"]
            per["ours"].append(o["median_ms"])
            r = run_ort(onnx, raw, batch, threads)
            per["ort"].append(r["median_ms"])
            t = run_torch(arch, w, npy, threads)
            per["torch"].append(t["median_ms"])
            rss = {"ours": o["rss_mb"], "ort": r["rss_mb"], "torch": t["rss_mb"]}
        med = {k: statistics.median(v) for k, v in per.items()}
        results.append((arch, batch, threads, med, rss))
        print(f"{arch} batch {batch} threads {threads}: ours {med['ours']:.1f} ms, ORT {med['ort']:.1f} ms, "
              f"torch {med['torch']:.1f} ms", flush=True)

    lines = [
        "# Benchmark: cspresnet vs ONNX Runtime vs PyTorch",
        "",
        f"Machine: {cpu}, {os.cpu_count()} CPUs (shared with other users while measuring). "
        f"Date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}.",
        f"ONNX Runtime {ort_version} (npm onnxruntime-node, CPU EP), PyTorch {torch.__version__}, "
        f"cspresnet {isa} kernels on the deployed network.",
        f"Backbone only, float32, 3x640x640 inputs, random weights shared by all three. Median of {ROUNDS} "
        f"interleaved rounds, each the median of {RUNS} runs after {WARMUP} warm-up. 1-thread rows: all three "
        f"pinned to CPU 0 (taskset); 2-thread rows unpinned.",
        "",
        "| model | batch | threads | cspresnet ms | ORT ms | PyTorch ms | vs ORT | vs PyTorch | images/s ours / ORT |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arch, batch, threads, med, rss in results:
        lines.append(f"| {arch} | {batch} | {threads} | {med['ours']:.1f} | {med['ort']:.1f} | {med['torch']:.1f} | "
                     f"{med['ort'] / med['ours']:.2f}x | {med['torch'] / med['ours']:.2f}x | "
                     f"{1e3 * batch / med['ours']:.1f} / {1e3 * batch / med['ort']:.1f} |")
    for arch, batch, threads, med, rss in results:
        if arch == "l" and batch == 1 and threads == 1:
            lines += ["", f"Peak RSS, l, batch 1, 1 thread (whole process): cspresnet {rss['ours']:.0f} MB, "
                      f"ONNX Runtime {rss['ort']:.0f} MB (node), PyTorch {rss['torch']:.0f} MB (python + torch)."]
    lines += ["", "Ratios > 1 mean cspresnet is faster. Targets (issue 4): >= 1.6x ORT for s and l at 1 and 2 "
              "threads, >= 1.5x ORT images/s for l batch 8, >= 2x PyTorch everywhere, l peak RSS <= 150 MB.", ""]
    with open(os.path.join(HERE, "results.md"), "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
