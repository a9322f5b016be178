"""run_bench.py - `make bench`: this library against ONNX Runtime and PyTorch, same
weights, same input, interleaved, on this machine. Writes bench/results.md.

For s and l: random weights from the project's PyTorch port (tests/ref), written as a
.pdparams (read by us). The anchors are the network as their users run it (bench/anchors.py):
the port's module tree with nn.BatchNorm2d in place of the port's arithmetic BN, exported to
ONNX with BatchNormalization nodes (as paddle2onnx writes them; ORT fuses them into the convs),
and run in PyTorch eager, frozen (torch.jit.trace + freeze) and optimized
(+ torch.jit.optimize_for_inference); the PyTorch column is the fastest of those, named in the
table. Before timing, the exported graph is checked (one BatchNormalization per BN, no
Sub/Div/Sqrt; none left in the graph ORT optimizes it into) and ORT's and every PyTorch mode's outputs on the benchmark's batch-1 input are
compared with the port's (float64) within 1e-4 relative.

ONNX Runtime runs through the npm package onnxruntime-node, installed into bench/node_env with
`npm install --ignore-scripts` (the package ships its native binding; the script checks that it
loads); the ONNX checks need python3-onnx (scripts/install-deps.sh bench). Each row runs ROUNDS
rounds, each round one process per engine in turn (ours, ORT, each PyTorch mode), each process
timing RUNS forwards after WARMUP; the row reports the median of the per-round medians. Ours runs
the deployed network (`cspresnet bench --deploy`) with the kernels this CPU selects. Peak RSS:
VmHWM of each engine's own process (batch 1, 1 thread row; l if measured).

Detector rows (bench/det_bench.py; BENCH_MODELS entries det-s, det-l) time the whole PP-YOLOE
detector: ours end to end (tensor in, NMS rows out) against ORT on the export without NMS (boxes
and scores out, as upstream's exclude_nms), with our NMS time beside; they go into the "Detector"
section of results.md, which a run without them keeps (and a run of them alone keeps the rest).

Environment: BENCH_ROUNDS (3), BENCH_RUNS (5), BENCH_MODELS (s,l: the rows of these presets;
det-s,det-l: the detector rows), BENCH_SIZE (640: the input's height and width),
BENCH_TORCH_MODES (eager,frozen,optimized), BENCH_OUT (bench/results.md), BENCH_OLD_ANCHOR=1
also times the port itself (its ONNX export with the arithmetic BN, and PyTorch eager on it)
in the same rounds and adds those columns.
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
sys.path[:0] = [HERE, os.path.join(ROOT, "tests", "ref")]
import torch  # noqa: E402

import anchors  # noqa: E402
import cspresnet_torch as ref  # noqa: E402
import det_bench  # noqa: E402
import pdparams_writer as pdw  # noqa: E402

WORK = os.path.join(HERE, "work")
NODE_ENV = os.path.join(HERE, "node_env")
CLI = os.path.join(ROOT, os.environ.get("CSPRESNET_BUILD", "build"), "cspresnet")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
WARMUP = 2
SIZE = int(os.environ.get("BENCH_SIZE", "640"))
ALL_ROWS = [  # arch, batch, threads
    ("s", 1, 1), ("s", 1, 2), ("l", 1, 1), ("l", 1, 2), ("l", 8, 2),
]
MODELS = os.environ.get("BENCH_MODELS", "s,l").split(",")
ROWS = [r for r in ALL_ROWS if r[0] in MODELS]
DET_ROWS = det_bench.rows(MODELS)
TORCH_MODES = os.environ.get("BENCH_TORCH_MODES", ",".join(anchors.TORCH_MODES)).split(",")
OLD_ANCHOR = os.environ.get("BENCH_OLD_ANCHOR", "") not in ("", "0")
OUT = os.environ.get("BENCH_OUT", os.path.join(HERE, "results.md"))


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
    """Weights and ONNX files of ``arch`` in bench/work: {arch}.pdparams, {arch}_bn.onnx (standard
    network, BatchNormalization nodes) and, with BENCH_OLD_ANCHOR, {arch}_port.onnx (the port's
    arithmetic BN). Kept between runs; the graph check runs every time."""
    os.makedirs(WORK, exist_ok=True)
    cfg = ref.preset(arch)
    w = os.path.join(WORK, f"{arch}.pdparams")
    onnx = {"bn": os.path.join(WORK, f"{arch}_bn_{SIZE}.onnx")}
    if OLD_ANCHOR:
        onnx["port"] = os.path.join(WORK, f"{arch}_port_{SIZE}.onnx")
    model = cfg.build()
    if os.path.exists(w):
        with open(w, "rb") as f:
            state = {k: v for k, v in pickle.load(f).items() if isinstance(v, np.ndarray)}
    else:
        state = ref.random_state(model, seed=1)
        pdw.write_pdparams(w, state)
    ref.load_numpy_state(model, state)
    model.eval()
    names = [f"stage{i}" for i in cfg.return_idx]
    if not os.path.exists(onnx["bn"]):
        anchors.export_onnx(anchors.standard(model), onnx["bn"], names, size=SIZE)
    if OLD_ANCHOR and not os.path.exists(onnx["port"]):
        anchors.export_onnx(model, onnx["port"], names, keep_bn=False, size=SIZE)
    ops = anchors.check_onnx_graph(onnx["bn"], anchors.bn_count(model))
    check_ort_fuses_bn(onnx["bn"])
    print(f"{arch}: {onnx['bn']}: {ops['BatchNormalization']} BatchNormalization, {ops['Conv']} Conv, "
          f"no {'/'.join(anchors.PORT_BN_OPS)}; none left in ORT's optimized graph", flush=True)
    return w, onnx, state


def prepare_input(batch):
    os.makedirs(WORK, exist_ok=True)
    x = np.random.default_rng(batch).random((batch, 3, SIZE, SIZE), dtype=np.float32)
    npy = os.path.join(WORK, f"x{batch}_{SIZE}.npy")
    raw = os.path.join(WORK, f"x{batch}_{SIZE}.f32")
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


def run_ort(onnx, raw, batch, threads, runs=None, warmup=None, dump=None):
    out = sh([*pin(threads), "node", os.path.join(HERE, "ort_runner.js"), onnx, raw, f"{batch},3,{SIZE},{SIZE}", str(threads),
              str(RUNS if runs is None else runs), str(WARMUP if warmup is None else warmup),
              *([dump] if dump else [])])
    return json.loads(out.strip().splitlines()[-1])


def run_torch(arch, w, npy, threads, mode, runs=None, warmup=None, dump=None):
    out = sh([*pin(threads), sys.executable, os.path.join(HERE, "torch_runner.py"), arch, w, npy, str(threads),
              str(RUNS if runs is None else runs), str(WARMUP if warmup is None else warmup), mode,
              *([dump] if dump else [])])
    return json.loads(out.strip().splitlines()[-1])


def ort_optimized_ops(onnx):
    """Op type -> count of the graph ONNX Runtime runs for ``onnx`` (its optimized model, as saved
    by optimizedModelFilePath, level all, next to ``onnx``)."""
    mod = os.path.join(NODE_ENV, "node_modules", "onnxruntime-node")
    opt = onnx[:-len(".onnx")] + "_ort_optimized.onnx"
    sh(["node", "-e", f"require({json.dumps(mod)}).InferenceSession.create({json.dumps(onnx)}, "
        f"{{graphOptimizationLevel: 'all', intraOpNumThreads: 1, optimizedModelFilePath: {json.dumps(opt)}}})"
        ".catch((e) => { console.error(String(e)); process.exit(1); })"])
    return anchors.graph_ops(opt, check=False)


def check_ort_fuses_bn(onnx):
    """The graph ONNX Runtime runs holds no BatchNormalization: ORT folded every one into its Conv."""
    ops = ort_optimized_ops(onnx)
    if ops["BatchNormalization"] or ops["Conv"] == 0:
        raise SystemExit(f"{onnx}: ONNX Runtime's optimized graph still has {ops['BatchNormalization']} "
                         f"BatchNormalization nodes: {dict(ops)}")


def check_outputs(arch, w, onnx, state, npy, raw):
    """ORT on each ONNX file and PyTorch in each mode, on the batch-1 input, against the port in
    float64: each output within anchors.RTOL relative. Raises SystemExit naming the engine."""
    cfg = ref.preset(arch)
    want = ref.reference_outputs(cfg, state, np.load(npy))
    sizes = [o.size for o in want]
    errs = {}
    try:
        for kind, path in onnx.items():
            dump = os.path.join(WORK, f"out_{arch}_{kind}.f32")
            run_ort(path, raw, 1, 2, runs=1, warmup=0, dump=dump)
            flat = np.fromfile(dump, dtype=np.float32)
            if flat.size != sum(sizes):
                raise anchors.AnchorError(f"ORT {kind}: {flat.size} output values, port has {sum(sizes)}")
            outs = [a.reshape(o.shape) for a, o in zip(np.split(flat, np.cumsum(sizes)[:-1]), want)]
            errs[f"ORT {kind}"] = anchors.check_close(outs, want, f"ORT on {path}")
        for mode in TORCH_MODES + (["port"] if OLD_ANCHOR else []):
            dump = os.path.join(WORK, f"out_{arch}_torch_{mode}.npz")
            run_torch(arch, w, npy, 2, mode, runs=1, warmup=0, dump=dump)
            with np.load(dump) as z:
                errs[f"PyTorch {mode}"] = anchors.check_close([z[f"out{i}"] for i in range(len(z.files))], want,
                                                              f"PyTorch {mode}")
    except anchors.AnchorError as e:
        raise SystemExit(f"{arch}: anchor check failed: {e}")
    print(f"{arch}: outputs vs port (float64), max relative error: "
          + ", ".join(f"{k} {v:.1e}" for k, v in errs.items()), flush=True)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def main():
    global CLI
    if not (ROWS or DET_ROWS) or not TORCH_MODES or any(m not in anchors.TORCH_MODES for m in TORCH_MODES):
        raise SystemExit(f"BENCH_MODELS={','.join(MODELS)} selects no row (s, l, det-s, det-l) or BENCH_TORCH_MODES="
                         f"{','.join(TORCH_MODES)} is not a list of {','.join(anchors.TORCH_MODES)}")
    # a private copy of the CLI: others rebuilding build/ mid-run must not change what is timed
    os.makedirs(WORK, exist_ok=True)
    private = os.path.join(WORK, "cspresnet")
    shutil.copy2(CLI, private)
    CLI = private
    ort_version = ensure_ort()
    cpu = cpu_name()
    inputs = {b: prepare_input(b) for b in sorted({r[1] for r in ROWS + DET_ROWS} | {1})}
    lines = backbone_section(ort_version, cpu, inputs) if ROWS else None
    det_lines = det_bench.section(sys.modules[__name__], ort_version, cpu, inputs, DET_ROWS) if DET_ROWS else None
    text = det_bench.merge_results(OUT, lines, det_lines)
    with open(OUT, "w") as f:
        f.write(text)
    print(text)


def backbone_section(ort_version, cpu, inputs):
    """Times the backbone rows; the lines of results.md's backbone part."""
    files = {a: prepare(a) for a in sorted({r[0] for r in ROWS})}
    for arch, (w, onnx, state) in files.items():
        check_outputs(arch, w, onnx, state, *inputs[1])
    engines = ["ours", "ort"] + (["ort_port"] if OLD_ANCHOR else []) + [f"torch_{m}" for m in TORCH_MODES] \
        + (["torch_port"] if OLD_ANCHOR else [])
    results = []
    isa = "?"
    for arch, batch, threads in ROWS:
        w, onnx, _ = files[arch]
        npy, raw = inputs[batch]
        per = {e: [] for e in engines}
        rss = {}
        for _ in range(ROUNDS):
            for e in engines:
                if e == "ours":
                    r = run_ours(w, npy, threads)
                    isa = r["isa"]
                elif e.startswith("ort"):
                    r = run_ort(onnx["port" if e == "ort_port" else "bn"], raw, batch, threads)
                else:
                    r = run_torch(arch, w, npy, threads, e[len("torch_"):])
                per[e].append(r["median_ms"])
                rss[e] = r["rss_mb"]
        med = {k: statistics.median(v) for k, v in per.items()}
        best = min(TORCH_MODES, key=lambda m: med[f"torch_{m}"])
        med["torch"], rss["torch"] = med[f"torch_{best}"], rss[f"torch_{best}"]
        results.append((arch, batch, threads, med, rss, best))
        print(f"{arch} batch {batch} threads {threads}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in med.items()),
              flush=True)

    lines = [
        "# Benchmark: cspresnet vs ONNX Runtime vs PyTorch",
        "",
        f"Machine: {cpu}, {os.cpu_count()} CPUs (shared with other users while measuring). "
        f"Date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}.",
        f"ONNX Runtime {ort_version} (npm onnxruntime-node, CPU EP), PyTorch {torch.__version__}, "
        f"cspresnet {isa} kernels on the deployed network.",
        f"Backbone only, float32, 3x{SIZE}x{SIZE} inputs, random weights shared by all three. Median of {ROUNDS} "
        f"interleaved rounds, each the median of {RUNS} runs after {WARMUP} warm-up. 1-thread rows: all "
        f"pinned to CPU 0 (taskset); 2-thread rows unpinned.",
        "Anchors as users run them (bench/anchors.py): ORT on an export with BatchNormalization nodes (fused "
        "into the convs by ORT); PyTorch on nn.BatchNorm2d in eval mode, the fastest of "
        f"{', '.join(TORCH_MODES)} (eager; frozen = torch.jit.trace + freeze; optimized = + "
        "optimize_for_inference), named per row. Outputs of both checked against the port within 1e-4.",
        "",
        "| model | batch | threads | cspresnet ms | ORT ms | PyTorch ms | vs ORT | vs PyTorch | images/s ours / ORT |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arch, batch, threads, med, rss, best in results:
        lines.append(f"| {arch} | {batch} | {threads} | {med['ours']:.1f} | {med['ort']:.1f} | "
                     f"{med['torch']:.1f} ({best}) | {med['ort'] / med['ours']:.2f}x | "
                     f"{med['torch'] / med['ours']:.2f}x | "
                     f"{1e3 * batch / med['ours']:.1f} / {1e3 * batch / med['ort']:.1f} |")
    lines += ["", "PyTorch by mode (ms): "
              + "; ".join(f"{a} b{b} t{t}: " + ", ".join(f"{m} {med[f'torch_{m}']:.1f}" for m in TORCH_MODES)
                          for a, b, t, med, _, _ in results) + "."]
    if OLD_ANCHOR:
        lines += ["", "The port itself as anchor (its BN as arithmetic: Sub/Div/Sqrt/Mul/Add in the ONNX graph, "
                  "eager PyTorch), timed in the same rounds:", "",
                  "| model | batch | threads | ORT port graph ms | vs ORT port graph | ORT port / fair | "
                  "PyTorch port eager ms | vs PyTorch port | PyTorch port / fair |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for arch, batch, threads, med, rss, best in results:
            lines.append(f"| {arch} | {batch} | {threads} | {med['ort_port']:.1f} | "
                         f"{med['ort_port'] / med['ours']:.2f}x | {med['ort_port'] / med['ort']:.2f}x | "
                         f"{med['torch_port']:.1f} | {med['torch_port'] / med['ours']:.2f}x | "
                         f"{med['torch_port'] / med['torch']:.2f}x |")
    rss_rows = [r for r in results if r[1] == 1 and r[2] == 1]
    rss_rows.sort(key=lambda r: r[0] != "l")
    if rss_rows:
        arch, _, _, _, rss, best = rss_rows[0]
        lines += ["", f"Peak RSS, {arch}, batch 1, 1 thread (whole process): cspresnet {rss['ours']:.0f} MB, "
                  f"ONNX Runtime {rss['ort']:.0f} MB (node), PyTorch {rss['torch']:.0f} MB (python + torch, {best})."]
    lines += ["", "Ratios > 1 mean cspresnet is faster. Targets (issue 14, fair anchors): >= 1.5x ORT for s and l "
              "at 1 and 2 threads (goal 2x), >= 1.5x ORT images/s for l batch 8, >= 2x PyTorch everywhere, "
              "l 1 -> 2 threads >= 1.75x, l peak RSS <= 150 MB.", ""]
    return lines


if __name__ == "__main__":
    main()
