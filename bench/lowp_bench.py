"""lowp_bench.py - bf16 and int8 against fp32, ONNX Runtime fp32 and int8, and PyTorch bf16 and
int8, same weights, same input, interleaved, on this machine. Writes bench/lowp.md.

Uses run_bench.py's files and runners (random weights of the port as .pdparams, ORT on the
export with BatchNormalization nodes, 3x640x640 input, 1-thread runs pinned to CPU 0). Each
row runs ROUNDS rounds of: ours fp32, bf16 and int8 (`cspresnet bench --precision P` on the
deployed network written by `convert --deploy` as safetensors), ORT fp32, ORT int8, PyTorch bf16
(CPU autocast on the standard network, bench/anchors.py) and PyTorch int8; the row reports the
median of the per-round medians.

int8 (bench/qdq.py): every engine quantizes the same convs (qdq.RULES, BENCH_INT8_CONVS) of the
deployed network with the same rule, calibrated on the same batch (BENCH_CALIB_N images from
their own seed) and evaluated on the benchmark's input, which is not in it. Ours: `--calibration
CALIB.npy --calib-method minmax`. ORT: the ONNX export of the deployed network (BN folded, RepVGG
merged) with QDQ groups whose scales the port's forward hooks computed with our rule; the graph
ORT optimizes it into is checked to hold one QLinearConv per quantized conv. PyTorch: FX
post-training quantization of the same convs (qdq.fx_int8; fbgemm, else qnnpack).

Accuracy: every engine's outputs of the input against the port in float64, max|diff| / max|ref|
and cosine per output stage; and ours int8 and ORT int8 against the float64 simulation of their
own quantization (qdq.simulate), which shows they use the scales computed here.

Environment: as run_bench.py (BENCH_ROUNDS, BENCH_RUNS, BENCH_MODELS), BENCH_THREADS (1,2),
BENCH_CALIB_N (4), BENCH_INT8_CONVS (default), BENCH_FX_ENGINE, BENCH_LOWP_SKIP (engines not
timed, of torch_int8 and ort_int8_all: qnnpack's int8 takes seconds per l forward) and
BENCH_LOWP_OUT (bench/lowp.md).
"""
import datetime
import os
import re
import statistics
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qdq  # noqa: E402
import run_bench as rb  # noqa: E402

OUT = os.environ.get("BENCH_LOWP_OUT", os.path.join(rb.HERE, "lowp.md"))
THREADS = [int(t) for t in os.environ.get("BENCH_THREADS", "1,2").split(",")]
CALIB_N = int(os.environ.get("BENCH_CALIB_N", "4"))
SKIP = set(filter(None, os.environ.get("BENCH_LOWP_SKIP", "").split(",")))   # engines not timed
ENGINES = ("fp32", "bf16", "int8", "ort", "ort_int8", "ort_int8_all", "torch_bf16", "torch_int8")
NAMES = {"fp32": "cspresnet fp32", "bf16": "cspresnet bf16", "int8": "cspresnet int8", "ort": "ORT fp32",
         "ort_int8": "ORT int8",
         "ort_int8_all": "ORT int8 (all convs)", "torch_bf16": "PyTorch bf16", "torch_int8": "PyTorch int8"}


def deployed(w):
    """The deployed network as safetensors next to w (`convert --deploy`): what a deployment
    loads; the file is mapped, so a bf16 model keeps only its packed weights in memory."""
    out = w[:-len(".pdparams")] + "_deployed.safetensors"
    rb.sh([rb.CLI, "convert", "--weights", w, "-o", out, "--deploy", "-q"])
    return out


def int8_flags(calib_npy):
    return ["--calibration", calib_npy, "--calib-method", "minmax"]


def run_ours(w, npy, threads, precision, calib_npy):
    extra = int8_flags(calib_npy) if precision == "int8" else []
    out = rb.sh([*rb.pin(threads), rb.CLI, "bench", "--weights", w, "--input", npy, "--threads", str(threads),
                 "--precision", precision, "--runs", str(rb.RUNS), "--warmup", str(rb.WARMUP), *extra])
    kv = dict(re.findall(r"(\w+)=(\S+)", out.strip().splitlines()[-1]))
    return float(kv["median_ms"]), float(kv["rss_mb"]), kv["isa"]


def prepare_int8(arch, state, calib):
    """The deployed port, its quantized convs and their ConvQuant (qdq.calibrate on ``calib``) and
    the QDQ model in bench/work, under qdq.RULE and, unless that is "all", also under "all" (ORT
    int8 as a user quantizes it, every conv but the first: keys onnx_all, ort_ops_all); each
    checked: ORT's optimized graph has one QLinearConv per quantized conv. Returns a dict (net,
    quant, onnx, ort_ops, ...)."""
    cfg = rb.ref.preset(arch)
    port = cfg.build()
    rb.ref.load_numpy_state(port, state)
    net = qdq.deployed(port.eval(), inplace=True)
    base = os.path.join(rb.WORK, f"{arch}_deployed_{rb.SIZE}.onnx")
    rb.anchors.export_onnx(net, base, [f"stage{i}" for i in cfg.return_idx], keep_bn=False, size=rb.SIZE)
    out = {"net": net}
    for rule, tail in ((qdq.RULE, ""), ("all", "_all"))[:1 if qdq.RULE == "all" else 2]:
        quant = qdq.calibrate(net, qdq.quantized_convs(net, rule), calib)
        path = os.path.join(rb.WORK, f"{arch}_qdq_{rule}_{rb.SIZE}.onnx")
        qdq.build_qdq(base, path, quant)
        ops = rb.ort_optimized_ops(path)
        if ops["QLinearConv"] != len(quant):
            raise SystemExit(f"{path}: ONNX Runtime runs {ops['QLinearConv']} QLinearConv for {len(quant)} "
                             f"quantized convs: {dict(ops)}")
        print(f"{arch}: {path}: {len(quant)} int8 convs ({rule}), ORT runs {ops['QLinearConv']} QLinearConv, "
              f"{ops['Conv']} float Conv", flush=True)
        out.update({"quant" + tail: quant, "onnx" + tail: path, "ort_ops" + tail: ops})
    return out


def stats(got, refs):
    """[(max|diff| / max|ref|, cosine)] per output."""
    rows = []
    for g, r in zip(got, refs):
        g = np.asarray(g, dtype=np.float64)
        rows.append((float(np.abs(g - r).max() / np.abs(r).max()),
                     float((g * r).sum() / np.sqrt((g * g).sum() * (r * r).sum()))))
    return rows


def ort_outputs(onnx, raw, refs, d, tag):
    dump = os.path.join(d, f"{tag}.f32")
    rb.run_ort(onnx, raw, 1, 2, runs=1, warmup=0, dump=dump)
    flat = np.fromfile(dump, dtype=np.float32)
    sizes = [r.size for r in refs]
    return [a.reshape(r.shape) for a, r in zip(np.split(flat, np.cumsum(sizes)[:-1]), refs)]


def accuracy(arch, w, torch_w, state, onnx, int8, npy, raw, calib_npy):
    """{engine: [(rel, cos) per output]} against the port in float64; {"int8", "ort_int8"}: 1 - cosine
    per output against the float64 simulation of their own quantization; PyTorch int8's runner
    JSON (engine, int8_convs) or {"error": text} where FX fails."""
    cfg = rb.ref.preset(arch)
    x = np.load(npy)
    refs = rb.ref.reference_outputs(cfg, state, x)
    got, torch_info = {}, {}
    with tempfile.TemporaryDirectory() as d:
        for p in ("fp32", "bf16", "int8"):
            rb.sh([rb.CLI, "infer", "--weights", w, "--input", npy, "--out", os.path.join(d, p), "--precision", p,
                   "-q", *(int8_flags(calib_npy) if p == "int8" else [])])
            got[p] = [np.load(os.path.join(d, p, f"stage{i}.npy")) for i in cfg.return_idx]
        got["ort"] = ort_outputs(onnx["bn"], raw, refs, d, "ort")
        got["ort_int8"] = ort_outputs(int8["onnx"], raw, refs, d, "ort_int8")
        if "onnx_all" in int8:
            got["ort_int8_all"] = ort_outputs(int8["onnx_all"], raw, refs, d, "ort_int8_all")
        for mode in ("bf16", "int8:" + calib_npy):
            dump = os.path.join(d, "torch.npz")
            try:
                torch_info[mode[:4]] = rb.run_torch(arch, torch_w, npy, 1, mode, runs=1, warmup=0, dump=dump)
            except SystemExit as e:   # FX failing is a result, not the end of the benchmark
                torch_info[mode[:4]] = {"error": str(e).strip().splitlines()[-1][:200]}
                continue
            with np.load(dump) as z:
                got["torch_" + mode[:4]] = [z[f"out{i}"] for i in range(len(refs))]
    acc = {k: stats(v, refs) for k, v in got.items()}
    sim = {"int8": (got["int8"], qdq.simulate(int8["net"], int8["quant"], x, out_q=False)),
           "ort_int8": (got["ort_int8"], qdq.simulate(int8["net"], int8["quant"], x, out_q=True))}
    own = {k: [1.0 - c for _, c in stats(g, s)] for k, (g, s) in sim.items()}
    return acc, own, torch_info.get("int8", {})


def time_row(arch, threads, ours_w, files, int8, inputs, calib_npy, skip):
    w, onnx, _ = files
    npy, raw = inputs
    per = {e: [] for e in ENGINES if e not in skip}
    rss, isa = {}, "?"
    for _ in range(rb.ROUNDS):
        for p in ("fp32", "bf16", "int8"):
            ms, rss[p], isa = run_ours(ours_w, npy, threads, p, calib_npy)
            per[p].append(ms)
        for e, model in (("ort", onnx["bn"]), ("ort_int8", int8["onnx"]), ("ort_int8_all", int8.get("onnx_all"))):
            if e not in per:
                continue
            r = rb.run_ort(model, raw, 1, threads)
            per[e].append(r["median_ms"])
            rss[e] = r["rss_mb"]
        for e, mode in (("torch_bf16", "bf16"), ("torch_int8", "int8:" + calib_npy)):
            if e in per:
                r = rb.run_torch(arch, w, npy, threads, mode)
                per[e].append(r["median_ms"])
                rss[e] = r["rss_mb"]
    med = {k: statistics.median(v) for k, v in per.items()}
    print(f"{arch} threads {threads}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in med.items()), flush=True)
    return med, rss, isa


def main():
    rb.ensure_ort()
    os.makedirs(rb.WORK, exist_ok=True)
    private = os.path.join(rb.WORK, "cspresnet_lowp")
    rb.shutil.copy2(rb.CLI, private)
    rb.CLI = private
    archs = sorted({r[0] for r in rb.ROWS})
    if not archs or not SKIP <= {"torch_int8", "ort_int8_all"}:
        raise SystemExit(f"BENCH_MODELS={','.join(rb.MODELS)} selects no backbone (s, l), or BENCH_LOWP_SKIP="
                         f"{','.join(sorted(SKIP))} is not a list of torch_int8, ort_int8_all")
    npy, raw = rb.prepare_input(1)
    calib = qdq.calibration_batch(CALIB_N, rb.SIZE)
    if any(np.array_equal(c, np.load(npy)[0]) for c in calib):
        raise SystemExit("the evaluation input is in the calibration batch")
    calib_npy = os.path.join(rb.WORK, f"calib{CALIB_N}_{rb.SIZE}.npy")
    np.save(calib_npy, calib)
    files = {a: rb.prepare(a) for a in archs}
    ours_w = {a: deployed(files[a][0]) for a in archs}
    int8 = {a: prepare_int8(a, files[a][2], calib) for a in archs}
    acc = {a: accuracy(a, ours_w[a], files[a][0], files[a][2], files[a][1], int8[a], npy, raw, calib_npy)
           for a in archs}
    results, isa = [], "?"
    for arch in archs:
        skip = SKIP | ({"torch_int8"} if "error" in acc[arch][2] else set()) \
            | ({"ort_int8_all"} if "onnx_all" not in int8[arch] else set())
        for threads in THREADS:
            med, rss, isa = time_row(arch, threads, ours_w[arch], files[arch], int8[arch], (npy, raw), calib_npy,
                                     skip)
            results.append((arch, threads, med, rss))
    text = "\n".join(report(results, acc, int8, isa))
    tmp = OUT + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, OUT)
    print(text)


def fmt(med, k):
    return f"{med[k]:.1f}" if k in med else "-"


def int8_notes(int8, torch_int8):
    """The paragraph under the int8 table: what each engine quantized, and the checks."""
    def per_arch(key, sub):
        return ", ".join(f"{a} {v[key][sub] if sub else len(v[key])}" for a, v in int8.items() if key in v)
    text = (f"int8 on every engine: the same convs of the deployed network ({qdq.RULE} rule of bench/qdq.py: "
            f"{per_arch('quant', None)} convs; the default rule keeps the first conv and the 3x3 stride-1 ones "
            "fp32, as cspresnet does on kernel sets with Winograd), per-channel s8 weights max|w| / 127, u8 "
            f"activations with a zero point from each conv input's min-max over a calibration batch of {CALIB_N} "
            "U[0,1) images that does not hold the evaluation input. ORT: QDQ model of the BN-folded, RepVGG-merged "
            f"export; its optimized graph runs {per_arch('ort_ops', 'QLinearConv')} QLinearConv (one per quantized "
            "conv, checked), each conv's output requantized to u8 (a QLinearConv writes u8).")
    if any("onnx_all" in v for v in int8.values()):
        text += (f" ORT int8 all convs: the same with every conv but the first quantized "
                 f"({per_arch('ort_ops_all', 'QLinearConv')} QLinearConv), as ORT's users quantize.")
    why = {"qnnpack": "; Debian's torch has no fbgemm, and its onednn engine aborts with heap corruption; qnnpack "
                      "is the mobile engine, its x86 speed says nothing of fbgemm's"}
    if "error" in torch_int8:
        text += f" PyTorch: FX post-training quantization failed: {torch_int8['error']}."
    else:
        text += (f" PyTorch: FX post-training quantization on {torch_int8.get('engine')} "
                 f"({torch_int8.get('int8_convs')} quantized convs{why.get(torch_int8.get('engine'), '')}).")
    return text + (" The int8 RSS of ours and PyTorch holds the calibration too (the batch and its fp32 forwards "
                   "run in the timed process).")


def report(results, acc, int8, isa):
    """The lines of lowp.md."""
    torch_int8 = next(iter(acc.values()))[2]
    lines = [
        "# Low precision: cspresnet bf16 and int8 vs fp32, ONNX Runtime fp32 / int8, PyTorch bf16 / int8",
        "",
        f"Machine: {rb.cpu_name()}, {os.cpu_count()} CPUs. Date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}. "
        f"cspresnet {isa} kernels on the deployed network from a `convert --deploy` safetensors file (mapped); "
        f"ORT fp32 on the BatchNormalization export (bench/run_bench.py), PyTorch {torch.__version__}.",
        f"Backbone, 3x{rb.SIZE}x{rb.SIZE}, batch 1, random weights of the port. Median of {rb.ROUNDS} interleaved "
        f"rounds, each the median of {rb.RUNS} runs after {rb.WARMUP} warm-up; 1-thread rows pinned to CPU 0.",
        "",
        "| model | threads | ours fp32 ms | ours bf16 ms | ORT fp32 ms | PyTorch bf16 ms | bf16 vs our fp32 | "
        "bf16 vs ORT fp32 | bf16 vs PyTorch bf16 | RSS ours fp32 / bf16 MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arch, threads, med, rss in results:
        lines.append(f"| {arch} | {threads} | {med['fp32']:.1f} | {med['bf16']:.1f} | {med['ort']:.1f} | "
                     f"{med['torch_bf16']:.1f} | {med['fp32'] / med['bf16']:.2f}x | {med['ort'] / med['bf16']:.2f}x | "
                     f"{med['torch_bf16'] / med['bf16']:.2f}x | {rss['fp32']:.0f} / {rss['bf16']:.0f} |")
    lines += ["", "## int8", "",
              "| model | threads | ours int8 ms | ORT int8 ms | ORT int8 all convs ms | PyTorch int8 ms | int8 vs ORT int8 "
              "| int8 vs ORT int8 all | int8 vs ORT fp32 | int8 vs our fp32 | RSS ours / ORT / PyTorch int8 MB |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for arch, threads, med, rss in results:
        t_rss = f"{rss['torch_int8']:.0f}" if "torch_int8" in rss else "-"
        all_ = f"{med['ort_int8_all'] / med['int8']:.2f}x" if "ort_int8_all" in med else "-"
        lines.append(f"| {arch} | {threads} | {med['int8']:.1f} | {med['ort_int8']:.1f} | {fmt(med, 'ort_int8_all')} | "
                     f"{fmt(med, 'torch_int8')} | {med['ort_int8'] / med['int8']:.2f}x | {all_} | "
                     f"{med['ort'] / med['int8']:.2f}x | "
                     f"{med['fp32'] / med['int8']:.2f}x | {rss['int8']:.0f} / {rss['ort_int8']:.0f} / {t_rss} |")
    lines += ["", int8_notes(int8, torch_int8), "",
              "Accuracy against the port (float64) on the input, per returned stage: max|diff| / max|ref|, cosine:", ""]
    for arch, (engines, own, _) in acc.items():
        idx = rb.ref.preset(arch).return_idx
        for k, rows_ in engines.items():
            lines.append(f"- {arch}, {NAMES[k]}: " + "; ".join(
                f"stage{i} {rel:.4f}, {cos:.6f}" for i, (rel, cos) in zip(idx, rows_)))
        lines.append(f"- {arch}, 1 - cosine per stage against the float64 simulation of the engine's own quantization "
                     "(qdq.simulate) | against the port: " + "; ".join(
                         f"{NAMES[k]} " + ", ".join(f"{r:.1e}" for r in v) + " | "
                         + ", ".join(f"{1.0 - c:.1e}" for _, c in engines[k]) for k, v in own.items()))
    lines += ["", "No engine matches the simulation bit for bit: float32 rounding in the float ops moves a few "
              "values across a rounding boundary of the next quantization, and each such step spreads through the "
              "later convs (tests/test_int8_anchors.py compares stage 0 element by element instead). Closer to the "
              "simulation than to the port means the same scales.", "",
              "Targets: bf16 (issue 15) >= 2.5x ORT fp32 (goal 3x) and >= 1.7x our fp32, max|diff| <= 1e-2 max|ref|, "
              "l peak RSS <= 100 MB; int8 >= 1.5x ORT int8 and >= 2.5x ORT fp32.", ""]
    return lines


if __name__ == "__main__":
    main()
