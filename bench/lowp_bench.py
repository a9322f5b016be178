"""lowp_bench.py - bf16 against fp32, ONNX Runtime fp32 and PyTorch bf16, same weights,
same input, interleaved, on this machine. Writes bench/lowp.md.

Uses run_bench.py's files and runners (random weights of the port as .pdparams, ORT on the
export with BatchNormalization nodes, 3x640x640 input, 1-thread runs pinned to CPU 0). Each
row runs ROUNDS rounds of: ours fp32, ours bf16 (`cspresnet bench --precision bf16` on the deployed
network written by `convert --deploy` as safetensors),
ORT fp32, PyTorch bf16 (CPU autocast on the standard network, bench/anchors.py); the row
reports the median of the per-round medians. Accuracy: our bf16 outputs of
the batch-1 input (`cspresnet infer --deploy --precision bf16`) against the port in float64,
max|diff| / max|ref| and cosine per output stage, printed next to the speed.

Environment: as run_bench.py (BENCH_ROUNDS, BENCH_RUNS, BENCH_MODELS) and BENCH_LOWP_OUT
(bench/lowp.md).
"""
import datetime
import os
import re
import statistics
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_bench as rb  # noqa: E402

OUT = os.environ.get("BENCH_LOWP_OUT", os.path.join(rb.HERE, "lowp.md"))


def deployed(w):
    """The deployed network as safetensors next to w (`convert --deploy`): what a deployment
    loads; the file is mapped, so a bf16 model keeps only its packed weights in memory."""
    out = w[:-len(".pdparams")] + "_deployed.safetensors"
    rb.sh([rb.CLI, "convert", "--weights", w, "-o", out, "--deploy", "-q"])
    return out


def run_ours(w, npy, threads, precision):
    out = rb.sh([*rb.pin(threads), rb.CLI, "bench", "--weights", w, "--input", npy, "--threads",
                 str(threads), "--precision", precision, "--runs", str(rb.RUNS), "--warmup", str(rb.WARMUP)])
    kv = dict(re.findall(r"(\w+)=(\S+)", out.strip().splitlines()[-1]))
    return float(kv["median_ms"]), float(kv["rss_mb"]), kv["isa"]


def accuracy(arch, w, torch_w, state, npy):
    """{engine: [(max|diff| / max|ref|, cosine) per output]} for our bf16 and PyTorch's bf16."""
    cfg = rb.ref.preset(arch)
    x = np.load(npy)
    refs = rb.ref.reference_outputs(cfg, state, x)
    with tempfile.TemporaryDirectory() as d:
        rb.sh([rb.CLI, "infer", "--weights", w, "--input", npy, "--out", d, "--precision", "bf16", "-q"])
        ours = [np.load(os.path.join(d, f"stage{i}.npy")) for i in cfg.return_idx]
        dump = os.path.join(d, "torch.npz")
        rb.run_torch(arch, torch_w, npy, 1, "bf16", runs=1, warmup=0, dump=dump)
        with np.load(dump) as z:
            theirs = [z[f"out{i}"] for i in range(len(refs))]

    def stats(got):
        rows = []
        for g, r in zip(got, refs):
            g = g.astype(np.float64)
            rows.append((float(np.abs(g - r).max() / np.abs(r).max()),
                         float((g * r).sum() / np.sqrt((g * g).sum() * (r * r).sum()))))
        return rows
    return {"cspresnet bf16": stats(ours), "PyTorch bf16": stats(theirs)}


def main():
    rb.ensure_ort()
    os.makedirs(rb.WORK, exist_ok=True)
    private = os.path.join(rb.WORK, "cspresnet_lowp")
    rb.shutil.copy2(rb.CLI, private)
    rb.CLI = private
    rows = [r for r in rb.ROWS if r[1] == 1]
    inputs = {1: rb.prepare_input(1)}
    files = {a: rb.prepare(a) for a in sorted({r[0] for r in rows})}
    ours_w = {a: deployed(files[a][0]) for a in files}
    acc = {a: accuracy(a, ours_w[a], files[a][0], files[a][2], inputs[1][0]) for a in files}
    results, isa = [], "?"
    for arch, batch, threads in rows:
        w, onnx, _ = files[arch]
        npy, raw = inputs[batch]
        per = {"fp32": [], "bf16": [], "ort": [], "torch_bf16": []}
        rss = {}
        for _ in range(rb.ROUNDS):
            for p in ("fp32", "bf16"):
                ms, rss[p], isa = run_ours(ours_w[arch], npy, threads, p)
                per[p].append(ms)
            r = rb.run_ort(onnx["bn"], raw, batch, threads)
            per["ort"].append(r["median_ms"])
            rss["ort"] = r["rss_mb"]
            r = rb.run_torch(arch, w, npy, threads, "bf16")
            per["torch_bf16"].append(r["median_ms"])
            rss["torch_bf16"] = r["rss_mb"]
        med = {k: statistics.median(v) for k, v in per.items()}
        results.append((arch, threads, med, rss))
        print(f"{arch} threads {threads}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in med.items()), flush=True)
    lines = [
        "# bf16: cspresnet bf16 vs cspresnet fp32 vs ONNX Runtime fp32",
        "",
        f"Machine: {rb.cpu_name()}, {os.cpu_count()} CPUs. Date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}. "
        f"cspresnet {isa} kernels on the deployed network from a `convert --deploy` safetensors file (mapped); "
        "ORT on the BatchNormalization export (bench/run_bench.py).",
        f"Backbone, 3x640x640, batch 1, random weights of the port. Median of {rb.ROUNDS} interleaved rounds, each the "
        f"median of {rb.RUNS} runs after {rb.WARMUP} warm-up; 1-thread rows pinned to CPU 0.",
        "",
        "| model | threads | ours fp32 ms | ours bf16 ms | ORT fp32 ms | PyTorch bf16 ms | bf16 vs our fp32 | "
        "bf16 vs ORT fp32 | bf16 vs PyTorch bf16 | RSS ours fp32 / bf16 MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arch, threads, med, rss in results:
        lines.append(f"| {arch} | {threads} | {med['fp32']:.1f} | {med['bf16']:.1f} | {med['ort']:.1f} | "
                     f"{med['torch_bf16']:.1f} | {med['fp32'] / med['bf16']:.2f}x | {med['ort'] / med['bf16']:.2f}x | "
                     f"{med['torch_bf16'] / med['bf16']:.2f}x | {rss['fp32']:.0f} / {rss['bf16']:.0f} |")
    lines += ["", "Accuracy against the port (float64) on the batch-1 input, per returned stage: "
              "max|diff| / max|ref|, cosine:", ""]
    for arch, engines in acc.items():
        for name, rows_ in engines.items():
            lines.append(f"- {arch}, {name}: " + "; ".join(
                f"stage{i} {rel:.4f}, {cos:.6f}" for i, (rel, cos) in zip(rb.ref.preset(arch).return_idx, rows_)))
    lines += ["", "Targets (issue 15): bf16 >= 2.5x ORT fp32 (goal 3x) and >= 1.7x our fp32; max|diff| <= 1e-2 "
              "max|ref|; l peak RSS <= 100 MB.", ""]
    with open(OUT, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
