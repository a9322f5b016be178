"""det_bench.py - the detector rows of `make bench` (bench/run_bench.py): PP-YOLOE end to end.

Ours: `cspresnet bench --detector` on a .pdparams of the port's random detector (tests/ref/
ppyoloe_torch.py, random_detector_state with BN statistics from the benchmark's own batch-1
input, so the deep random network keeps unit-scale maps and NMS sees a trained model's share of
candidates), tensor in, NMS rows out (PP-YOLOE+'s defaults), deployed when the library can deploy
a detector (else the trained form, said in the section), with its NMS time reported apart.
ORT: the port with nn.BatchNorm2d in place of its arithmetic BN (bench/anchors.py), exported to
ONNX without NMS (outputs boxes [N, L, 4] and scores [N, C, L], as upstream's exclude_nms export),
the graph checked as the backbone's is (one BatchNormalization per BN, no port BN arithmetic,
none left after ORT's optimizer), its outputs on the batch-1 input checked against the port
(float64) within anchors.RTOL before timing. ORT has no NMS: its column is boxes + scores, and
"ORT + NMS" adds our NMS time of the same row.

Rows: det-s and det-l (BENCH_MODELS) x batch 1, 8 x threads 1, 2; BENCH_ROUNDS interleaved rounds
of BENCH_RUNS runs, as the backbone rows. Peak RSS: batch 1, 1 thread (VmHWM of each process).
"""
import os
import re
import statistics

import numpy as np

import anchors
import cspresnet_torch as bb  # noqa: F401  (tests/ref on sys.path: ppyoloe_torch imports it)
import pdparams_writer as pdw
import ppyoloe_torch as P

ARCHS = ("s", "l")
BATCHES = (1, 8)
THREADS = (1, 2)
HEADING = "## Detector"
DECODE_OPS = {"Sub": 1}  # the box decoding's anchor points - distances, not a BN
DET_RTOL = 1e-3          # the export's check against the port (float32 through a deep detector)


def rows(models):
    return [(a, b, t) for a in ARCHS if f"det-{a}" in models for b in BATCHES for t in THREADS]


def prepare(rb, arch, x1_npy):
    """Weights (.pdparams) and ONNX export of the detector ``arch`` at rb.SIZE, in rb.WORK (kept
    between runs: the weights depend on the batch-1 input, which is seeded; delete them after
    changing how they are made); checks every time."""
    cfg = P.detector_preset(arch)
    x1 = np.load(x1_npy)
    w = os.path.join(rb.WORK, f"det_{arch}_{rb.SIZE}.pdparams")
    onnx = os.path.join(rb.WORK, f"det_{arch}_{rb.SIZE}_bn.onnx")
    if os.path.exists(w):
        state = {k: v for k, v in rb.pickle.load(open(w, "rb")).items() if isinstance(v, np.ndarray)}
    else:
        # class biases U(-8, -6): about 0.1% of the class scores above NMS's 0.01, as a
        # trained model's on a photo (a few hundred candidates); the tests' default
        # (-5, -1) puts 90% above it, which times NMS's worst case, not a deployment
        state = P.random_detector_state(cfg, seed=1, calib_input=x1, cls_bias=(-8.0, -6.0))
        pdw.write_pdparams(w, state)
    model = cfg.build()
    bb.load_numpy_state(model, state)
    model.eval()
    if not os.path.exists(onnx):
        anchors.export_onnx(anchors.standard(model), onnx, ["boxes", "scores"], size=rb.SIZE)
    ops = anchors.check_onnx_graph(onnx, anchors.bn_count(model), own=DECODE_OPS)
    rb.check_ort_fuses_bn(onnx)
    if ops["NonMaxSuppression"]:
        raise SystemExit(f"{onnx}: the export has NMS nodes; the ORT column is boxes + scores only")
    want = P.detector_outputs(cfg, state, x1)
    dump = os.path.join(rb.WORK, f"out_det_{arch}.f32")
    rb.run_ort(onnx, x1_npy[:-len(".npy")] + ".f32", 1, 2, runs=1, warmup=0, dump=dump)
    flat = np.fromfile(dump, dtype=np.float32)
    sizes = [o.size for o in want]
    try:
        if flat.size != sum(sizes):
            raise anchors.AnchorError(f"ORT: {flat.size} output values, port has {sum(sizes)}")
        outs = [a.reshape(o.shape) for a, o in zip(np.split(flat, np.cumsum(sizes)[:-1]), want)]
        # float32 through backbone, neck and head at 640: ORT's own rounding reaches
        # 2-3e-4 of max|ref| on l (measured), so the detector's check is 1e-3, the
        # tests' fast-path tolerance
        err = anchors.check_close(outs, want, f"ORT on {onnx}", rtol=DET_RTOL)
    except anchors.AnchorError as e:
        raise SystemExit(f"det-{arch}: anchor check failed: {e}")
    print(f"det-{arch}: {onnx}: {ops['BatchNormalization']} BatchNormalization, {ops['Conv']} Conv, no NMS; "
          f"ORT boxes and scores vs port (float64): max relative error {err:.1e}", flush=True)
    return w, onnx


def run_ours(rb, w, npy, threads, deploy):
    cmd = [*rb.pin(threads), rb.CLI, "bench", "--detector", "--weights", w, "--input", npy, "--threads",
           str(threads), "--runs", str(rb.RUNS), "--warmup", str(rb.WARMUP), *(["--deploy"] if deploy else [])]
    p = rb.subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        if deploy and "not supported" in p.stderr:
            return None
        raise SystemExit(f"failed: {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    kv = dict(re.findall(r"(\w+)=(\S+)", p.stdout.strip().splitlines()[-1]))
    return {"median_ms": float(kv["median_ms"]), "nms_ms": float(kv["nms_ms"]), "rss_mb": float(kv["rss_mb"]),
            "detections": int(kv["detections"]), "isa": kv["isa"]}


def section(rb, ort_version, cpu, inputs, det_rows):
    """Times det_rows; the lines of results.md's Detector section."""
    files = {a: prepare(rb, a, inputs[1][0]) for a in sorted({r[0] for r in det_rows})}
    deploy = True
    results = []
    isa = "?"
    for arch, batch, threads in det_rows:
        w, onnx = files[arch]
        npy, raw = inputs[batch]
        per = {"ours": [], "nms": [], "ort": []}
        rss = {}
        for _ in range(rb.ROUNDS):
            r = run_ours(rb, w, npy, threads, deploy)
            if r is None:  # the library cannot deploy a detector yet: time the trained form
                deploy = False
                r = run_ours(rb, w, npy, threads, deploy)
            isa = r["isa"]
            per["ours"].append(r["median_ms"])
            per["nms"].append(r["nms_ms"])
            rss["ours"] = r["rss_mb"]
            o = rb.run_ort(onnx, raw, batch, threads)
            per["ort"].append(o["median_ms"])
            rss["ort"] = o["rss_mb"]
        med = {k: statistics.median(v) for k, v in per.items()}
        results.append((arch, batch, threads, med, rss))
        print(f"det-{arch} batch {batch} threads {threads}: ours {med['ours']:.1f} ms (NMS {med['nms']:.2f}), "
              f"ORT {med['ort']:.1f} ms", flush=True)
    lines = [
        HEADING, "",
        f"Machine: {cpu}, {os.cpu_count()} CPUs (shared with other users while measuring). ONNX Runtime "
        f"{ort_version}, cspresnet {isa} kernels on the {'deployed' if deploy else 'trained (not deployed: the library does not deploy detectors yet)'} "
        f"detector. PP-YOLOE+ detectors (80 classes), float32, 3x{rb.SIZE}x{rb.SIZE} inputs, the port's random "
        f"weights (BN statistics from the batch-1 input) shared by both. Median of {rb.ROUNDS} interleaved rounds, "
        f"each the median of {rb.RUNS} runs after {rb.WARMUP} warm-up; 1-thread rows pinned to CPU 0.",
        "cspresnet: tensor in, NMS rows out (forward, decoding, multiclass NMS with PP-YOLOE+'s defaults; NMS "
        "alone in its column). ORT: the export without NMS (boxes + scores out, upstream's exclude_nms), "
        "BatchNormalization nodes fused by ORT, outputs checked against the port within 1e-3; ORT + NMS adds "
        "our NMS time.",
        "",
        "| model | batch | threads | cspresnet ms | of which NMS ms | ORT ms (no NMS) | ORT + NMS ms | "
        "vs ORT + NMS | images/s ours / ORT + NMS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arch, batch, threads, med, _ in results:
        both = med["ort"] + med["nms"]
        lines.append(f"| det-{arch} | {batch} | {threads} | {med['ours']:.1f} | {med['nms']:.2f} | "
                     f"{med['ort']:.1f} | {both:.1f} | {both / med['ours']:.2f}x | "
                     f"{1e3 * batch / med['ours']:.1f} / {1e3 * batch / both:.1f} |")
    rss_rows = sorted((r for r in results if r[1] == 1 and r[2] == 1), key=lambda r: r[0] != "l")
    if rss_rows:
        arch, _, _, _, rss = rss_rows[0]
        lines += ["", f"Peak RSS, det-{arch}, batch 1, 1 thread (whole process): cspresnet {rss['ours']:.0f} MB, "
                  f"ONNX Runtime {rss['ort']:.0f} MB (node)."]
    lines += ["", "Ratios > 1 mean cspresnet is faster.", ""]
    return lines


def merge_results(path, backbone, detector):
    """results.md with the backbone part and the Detector section replaced where given (lists of
    lines), kept from the file where None."""
    old = open(path).read() if os.path.exists(path) else ""
    head, _, tail = old.partition("\n" + HEADING + "\n")
    old_det = HEADING + "\n" + tail if tail else ""
    head = "\n".join(backbone) if backbone is not None else head
    det = "\n".join(detector) if detector is not None else old_det
    return head.rstrip("\n") + "\n" + ("\n" + det.rstrip("\n") + "\n" if det else "")
