"""int8 and bf16 safetensors files: `cspresnet quantize` and `convert --precision bf16`.

Round trips: an int8 file run by infer / detect (no calibration) gives the same bits as
the fp32 file calibrated at load on the same inputs and method; a bf16 file gives the
same bits as the fp32 file run with --precision bf16, at about half the size. The file
layout is checked against numpy's own quantization of the deployed fp32 weights
(w_scale = max|w| / 127, q = rne(w / w_scale)), and bad files (missing, mis-shaped,
zero or NaN scales, dtypes and metadata that contradict each other) are refused naming
the file and the key. Each comparison can fail: int8 and bf16 outputs are shown to
differ from fp32's, so an equal pair means the low precision ran in both.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest

import cspresnet_torch as ref
import pdparams_writer as pdw
from conftest import describe_proc, run_cli, infer_deployed

DTYPES = {"F32": np.float32, "I8": np.int8, "I32": np.int32, "F16": np.float16, "BF16": np.uint16}


def read_st(path):
    """(metadata, {name: (dtype, shape, raw bytes)}) of a safetensors file, in file order."""
    b = Path(path).read_bytes()
    n = struct.unpack("<Q", b[:8])[0]
    head = json.loads(b[8:8 + n])
    meta = head.pop("__metadata__", {})
    data = b[8 + n:]
    tensors = {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]])
               for k, v in sorted(head.items(), key=lambda kv: kv[1]["data_offsets"][0])}
    return meta, tensors


def write_st(path, meta, tensors):
    head, raw, at = {"__metadata__": meta}, b"", 0
    for k, (dt, shape, data) in tensors.items():
        head[k] = {"dtype": dt, "shape": list(shape), "data_offsets": [at, at + len(data)]}
        raw += data
        at += len(data)
    h = json.dumps(head).encode()
    Path(path).write_bytes(struct.pack("<Q", len(h)) + h + raw)


def arr(t):
    dt, shape, data = t
    return np.frombuffer(data, DTYPES[dt]).reshape(shape)


def run_ok(args, env=None):
    proc = run_cli(args, env=env)
    assert proc.returncode == 0, describe_proc(proc)
    return proc


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    """s with seeded random weights (BN statistics that keep the signal), an fp32
    deployed safetensors of it, a calibration batch and a held-out input."""
    d = tmp_path_factory.mktemp("q")
    cfg = ref.preset("s", return_idx=(0, 1, 2, 3))
    state = ref.random_state(cfg.build(), seed=41)
    w = d / "w.pdparams"
    pdw.write_pdparams(w, state)
    rng = np.random.default_rng(5)
    calib, x = d / "calib.npy", d / "x.npy"
    np.save(calib, rng.uniform(0, 1, (3, 3, 96, 128)).astype(np.float32))
    np.save(x, rng.uniform(0, 1, (2, 3, 64, 96)).astype(np.float32))
    f32 = d / "f32.safetensors"
    run_ok(["convert", "--weights", w, "-o", f32, "--deploy", "-q"])
    return d, w, f32, calib, x


def quantize(weights, out, calib, *extra, env=None):
    return run_ok(["quantize", "--weights", weights, "--calibration", calib, "--out", out, "--threads", "2", *extra],
                  env=env)


def env_isa(isa):
    env = dict(os.environ)
    env.pop("CSPRESNET_ISA", None)
    if isa:
        env["CSPRESNET_ISA"] = isa
    return env


@pytest.mark.parametrize("method,isa", [("minmax", None), ("percentile", None), ("minmax", "ref")])
def test_int8_file_gives_the_bits_of_calibrating_at_load(backbone, tmp_path, method, isa):
    d, w, f32, calib, x = backbone
    q = tmp_path / "q.safetensors"
    quantize(w, q, calib, "--calib-method", method, env=env_isa(isa))
    at_load = infer_deployed(w, x, tmp_path / "load", "int8", ("--calibration", calib, "--calib-method", method),
                             isa=isa)
    env = env_isa(isa)
    run_ok(["infer", "--weights", q, "--input", x, "--out", tmp_path / "file", "--return-idx", "0,1,2,3",
            "--threads", "2", "-q"], env=env)
    from_file = [np.load(tmp_path / "file" / f"stage{i}.npy") for i in range(4)]
    fp32 = infer_deployed(f32, x, tmp_path / "fp32", "fp32", isa=isa)
    for i in range(4):
        assert np.array_equal(at_load[i], from_file[i]), \
            f"stage{i} {method} isa {isa}: max diff {np.abs(at_load[i] - from_file[i]).max()}"
        moved = np.abs(from_file[i] - fp32[i]).max() / np.abs(fp32[i]).max()
        assert moved > 1e-3, f"stage{i}: the int8 file's outputs equal fp32's ({moved:.2g}): no int8 ran"


def test_int8_file_layout_is_numpys_quantization(backbone, tmp_path):
    d, w, f32, calib, x = backbone
    q = tmp_path / "q.safetensors"
    out = quantize(w, q, calib).stdout
    meta, t = read_st(q)
    _, ft = read_st(f32)
    assert meta["precision"] == "int8" and meta["calibration"] == "minmax", meta
    assert meta["calibration_source"] == "calib.npy" and meta["deployed"] == "1" and meta["kernels"], meta
    assert meta["channels"] == read_st(f32)[0]["channels"], meta
    kept = out.split("kept in float (", 1)[1].split(":", 1)[1].split()[0].split(",")
    assert f"({len(kept)} layers)" in out, out
    assert "stem.conv1.conv" in kept, out
    n_int8 = 0
    for key, (dt, shape, _) in ft.items():
        if not key.endswith(".weight"):
            assert t[key][0] == "F32" and np.array_equal(arr(t[key]), arr(ft[key])), key
            continue
        base = key[:-len(".weight")]
        if base in kept:
            assert t[key][0] == "F32" and np.array_equal(arr(t[key]), arr(ft[key])), key
            assert base + ".input_scale" not in t, key
            continue
        n_int8 += 1
        assert t[key][0] == "I8" and t[key][1] == shape, (key, t[key][:2])
        wf = arr(ft[key]).reshape(shape[0], -1)
        ws = np.abs(wf).max(axis=1) / np.float32(127)
        assert t[base + ".weight_scale"][:2] == ("F32", [shape[0]]), key
        assert np.array_equal(arr(t[base + ".weight_scale"]), ws), key
        qv = arr(t[key]).reshape(shape[0], -1)
        assert np.array_equal(qv, np.clip(np.rint(wf / ws[:, None]), -127, 127).astype(np.int8)), key
        s, z = arr(t[base + ".input_scale"]), arr(t[base + ".input_zero_point"])
        assert t[base + ".input_scale"][:2] == ("F32", [1]) and t[base + ".input_zero_point"][:2] == ("I32", [1])
        assert s[0] > 0 and 0 <= z[0] <= 255, (key, s, z)
    assert n_int8 >= 10 and n_int8 + len(kept) == sum(k.endswith(".weight") for k in ft), (n_int8, kept)


def test_int8_file_asked_for_another_precision(backbone, tmp_path):
    """fp32 and bf16 of an int8 file run its dequantized weights (documented); with
    --calibration it is refused."""
    d, w, f32, calib, x = backbone
    q = tmp_path / "q.safetensors"
    quantize(w, q, calib)
    outs = {}
    for p in ["int8", "fp32", "bf16"]:
        run_ok(["infer", "--weights", q, "--input", x, "--out", tmp_path / p, "--precision", p, "-q"])
        outs[p] = np.load(tmp_path / p / "stage3.npy")
    assert not np.array_equal(outs["int8"], outs["fp32"]) and not np.array_equal(outs["fp32"], outs["bf16"])
    rel = np.abs(outs["fp32"] - outs["int8"]).max() / np.abs(outs["fp32"]).max()
    assert rel < 0.2, rel
    proc = run_cli(["infer", "--weights", q, "--input", x, "--out", tmp_path / "c", "--calibration", "random"])
    assert proc.returncode == 1 and "--calibration" in proc.stderr and "int8 file" in proc.stderr, describe_proc(proc)
    proc = run_cli(["quantize", "--weights", q, "--calibration", "random", "--out", tmp_path / "qq.safetensors"])
    assert proc.returncode == 1 and "already an int8 file" in proc.stderr, describe_proc(proc)
    assert not (tmp_path / "qq.safetensors").exists()
    proc = run_cli(["convert", "--weights", q, "-o", tmp_path / "c.pdparams"])
    assert proc.returncode == 1 and "an int8 file" in proc.stderr, describe_proc(proc)
    assert not (tmp_path / "c.pdparams").exists()


def test_bf16_file_gives_the_bits_of_fp32_file_in_bf16(backbone, tmp_path):
    d, w, f32, calib, x = backbone
    b = tmp_path / "b.safetensors"
    run_ok(["convert", "--weights", w, "-o", b, "--precision", "bf16", "-q"])
    meta, t = read_st(b)
    assert meta["precision"] == "bf16" and meta["deployed"] == "1", meta
    assert "BF16" in {v[0] for v in t.values()} and t["stem.conv1.conv.weight"][0] == "F32"
    _, ft = read_st(f32)
    for k, v in t.items():
        if v[0] == "BF16":   # rounded to nearest even from the fp32 deployed weight
            u = arr(ft[k]).view(np.uint32).astype(np.uint64)
            rne = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
            assert np.array_equal(arr(v), rne), k
        else:
            assert np.array_equal(arr(v), arr(ft[k])), k
    # half the size wherever every conv but the stem's first runs bf16: the ref set (no
    # Winograd) anywhere, the best set with AMX (without it, Winograd convs stay F32)
    bref = tmp_path / "bref.safetensors"
    run_ok(["convert", "--weights", w, "-o", bref, "--precision", "bf16", "--isa", "ref", "-q"])
    amx = "amx_bf16" in Path("/proc/cpuinfo").read_text()
    for f, must in ((bref, True), (b, amx)):
        ratio = f.stat().st_size / f32.stat().st_size
        print(f"{f.name}: {ratio:.3f} of fp32")
        assert ratio < 0.55 or not must, (f.name, ratio)
        assert ratio < 1.0, (f.name, ratio)
    run_ok(["infer", "--weights", b, "--input", x, "--out", tmp_path / "b", "--return-idx", "0,1,2,3", "-q"])
    want = infer_deployed(f32, x, tmp_path / "f", "bf16")
    fp32 = infer_deployed(f32, x, tmp_path / "fp", "fp32")
    for i in range(4):
        got = np.load(tmp_path / "b" / f"stage{i}.npy")
        assert np.array_equal(got, want[i]), f"stage{i}: max diff {np.abs(got - want[i]).max()}"
        assert not np.array_equal(got, fp32[i]), f"stage{i}: bf16 file equals fp32: bf16 did not run"
    proc = run_ok(["bench", "--weights", b, "--size", "64,64", "--runs", "1", "--warmup", "0", "--threads", "1"])
    assert "precision=bf16" in proc.stdout, proc.stdout


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    import ppyoloe_torch as P
    d = tmp_path_factory.mktemp("qd")
    cfg = P.DetectorConfig(backbone=ref.Config(width_mult=0.25, depth_mult=0.5), num_classes=3)
    x = np.random.default_rng(3).standard_normal((1, 3, 128, 160)).astype(np.float32)
    state = P.random_detector_state(cfg, seed=7, calib_input=x)
    w = d / "det.pdparams"
    pdw.write_pdparams(w, state)
    xp = d / "x.npy"
    np.save(xp, x)
    return d, w, xp


def detect(weights, x, out, *extra):
    run_ok(["detect", "--weights", weights, "--input", x, "--out", out, "--threads", "2", "-q", *extra])
    return [np.load(Path(out) / f"{n}.npy") for n in ("boxes", "scores", "nms")]


def test_detector_int8_and_bf16_files(detector, tmp_path):
    d, w, x = detector
    q, b = tmp_path / "q.safetensors", tmp_path / "b.safetensors"
    out = quantize(w, q, x, "--detector").stdout
    assert "neck." in out or "yolo_head." in out or "stem.conv1.conv" in out, out
    meta, t = read_st(q)
    assert meta["detector"] == "1" and meta["precision"] == "int8", meta
    assert any(k.startswith("neck.") and v[0] == "I8" for k, v in t.items())
    assert any(k.startswith("yolo_head.") and v[0] == "I8" for k, v in t.items())
    at_load = detect(w, x, tmp_path / "load", "--deploy", "--precision", "int8", "--calibration", x)
    from_file = detect(q, x, tmp_path / "file")
    fp32 = detect(w, x, tmp_path / "fp32", "--deploy")
    for name, a, f, r in zip(("boxes", "scores", "nms"), at_load, from_file, fp32):
        assert np.array_equal(a, f), f"{name}: the int8 file differs from calibrating at load"
    assert not np.array_equal(from_file[1], fp32[1]), "int8 scores equal fp32's: no int8 ran"
    run_ok(["convert", "--weights", w, "-o", b, "--precision", "bf16", "-q"])
    assert read_st(b)[0]["precision"] == "bf16"
    got = detect(b, x, tmp_path / "b")
    want = detect(w, x, tmp_path / "wb", "--deploy", "--precision", "bf16")
    for name, g, wv in zip(("boxes", "scores", "nms"), got, want):
        assert np.array_equal(g, wv), f"{name}: the bf16 file differs from --precision bf16"
    proc = run_ok(["bench", "--detector", "--weights", q, "--size", "128,128", "--runs", "1", "--warmup", "0",
                   "--threads", "1"])
    assert "precision=int8" in proc.stdout, proc.stdout


@pytest.mark.parametrize("resize", [[], ["--letterbox"]], ids=["bicubic", "letterbox"])
def test_quantize_images_equals_their_tensors(backbone, tmp_path, resize):
    """Images through --preprocess and --size give the file that their pre-processed
    tensors (infer --save-input) give as an .npy batch."""
    from PIL import Image
    d, w, f32, calib, x = backbone
    rng = np.random.default_rng(9)
    paths = []
    for i in range(2):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (50 + 10 * i, 70, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    args = ["--size", "64,96", "--preprocess", "imagenet", *resize]
    qi = tmp_path / "qi.safetensors"
    run_ok(["quantize", "--weights", w, "--calibration", paths[0], paths[1], "--out", qi, "-q", *args])
    run_ok(["infer", "--weights", w, paths[0], paths[1], "--out", tmp_path / "in", "--save-input", "-q", *args])
    batch = np.concatenate([np.load(tmp_path / "in" / f"img{i}" / "input.npy") for i in range(2)])
    np.save(tmp_path / "b.npy", batch)
    qn = tmp_path / "qn.safetensors"
    quantize(w, qn, tmp_path / "b.npy", "-q")
    mi, ti = read_st(qi)
    mn, tn = read_st(qn)
    assert "2 images 64x96" in mi["calibration_source"] and "imagenet" in mi["calibration_source"], mi
    assert ("letterbox" in mi["calibration_source"]) == bool(resize), mi
    assert ti == tn


def test_quantize_random_weights_for_benchmarks(tmp_path):
    q = tmp_path / "q.safetensors"
    run_ok(["quantize", "--arch", "s", "--calibration", "random", "--out", q, "-q"])
    assert read_st(q)[0]["source"] == "random"
    proc = run_ok(["bench", "--weights", q, "--size", "64,64", "--runs", "1", "--warmup", "0", "--threads", "1"])
    assert "precision=int8" in proc.stdout, proc.stdout


def test_usage_errors(backbone, tmp_path):
    d, w, f32, calib, x = backbone
    cases = [
        (["quantize", "--weights", w, "--out", tmp_path / "q.safetensors"], 2, "--calibration"),
        (["quantize", "--weights", w, "--calibration", "random", "--out", tmp_path / "q.pdparams"], 2, ".safetensors"),
        (["quantize", "--calibration", "random", "--out", tmp_path / "q.safetensors"], 2, "--weights"),
        (["quantize", "--weights", w, "--calibration", "random", "--out", tmp_path / "q.safetensors",
          "--calib-method", "kl"], 2, "--calib-method must be minmax or percentile"),
        (["quantize", "--weights", w, "--calibration", tmp_path / "none.png", "--out", tmp_path / "q.safetensors"],
         1, "none.png"),
        (["convert", "--weights", w, "-o", tmp_path / "c.safetensors", "--precision", "int8"], 2, "quantize"),
        (["convert", "--weights", w, "-o", tmp_path / "c.pdparams", "--precision", "bf16"], 2, ".safetensors"),
    ]
    for args, rc, words in cases:
        proc = run_cli(args)
        assert proc.returncode == rc and words in proc.stderr, describe_proc(proc)
    assert not list(tmp_path.glob("*.safetensors")) and not list(tmp_path.glob("*.pdparams"))


def test_help_text_lists_the_flags():
    q = run_ok(["quantize", "--help"]).stdout
    for flag in ["--weights", "--calibration", "--calib-method", "--detector", "--size", "--preprocess", "--out",
                 "--isa", "--arch", "I8", "weight_scale", "input_zero_point"]:
        assert flag in q, f"quantize --help lacks {flag}"
    c = run_ok(["convert", "--help"]).stdout
    assert "--precision" in c and "bf16" in c, c
    assert "quantize" in run_ok(["--help"]).stdout


# ---- bad files: each refused with exit 1, naming the file and the key

@pytest.fixture(scope="module")
def good_int8(backbone):
    d, w, f32, calib, x = backbone
    q = d / "good.safetensors"
    quantize(w, q, calib, "-q")
    return q, x


def _first_int8(t):
    return next(k[:-len(".weight")] for k, v in t.items() if v[0] == "I8")


def _edit(meta, t, case):
    base = _first_int8(t)
    ws, isc, zp = base + ".weight_scale", base + ".input_scale", base + ".input_zero_point"
    f32 = lambda *v: ("F32", [len(v)], np.array(v, np.float32).tobytes())
    if case == "missing weight_scale":
        del t[ws]
        return ws, "is missing"
    if case == "weight_scale shape":
        dt, shape, data = t[ws]
        t[ws] = (dt, [shape[0] - 1], data[:-4])
        return ws, "must be F32"
    if case == "weight_scale dtype":
        dt, shape, data = t[ws]
        t[ws] = ("F16", shape, np.frombuffer(data, np.float32).astype(np.float16).tobytes())
        return ws, "must be F32"
    if case == "weight_scale NaN":
        v = np.frombuffer(t[ws][2], np.float32).copy()
        v[3] = np.nan
        t[ws] = (t[ws][0], t[ws][1], v.tobytes())
        return ws, "weight scale must be finite"
    if case == "weight_scale zero":
        v = np.frombuffer(t[ws][2], np.float32).copy()
        v[0] = 0
        t[ws] = (t[ws][0], t[ws][1], v.tobytes())
        return ws, "0 only for an all-zero row"
    if case == "input_scale zero":
        t[isc] = f32(0.0)
        return isc, "input scale must be finite and > 0"
    if case == "input_scale NaN":
        t[isc] = f32(np.nan)
        return isc, "input scale must be finite and > 0"
    if case == "input_scale shape":
        t[isc] = f32(0.1, 0.2)
        return isc, "shape [1]"
    if case == "zero point range":
        t[zp] = ("I32", [1], np.array([300], np.int32).tobytes())
        return zp, "0..255"
    if case == "zero point fraction":
        t[zp] = ("F32", [1], np.array([3.5], np.float32).tobytes())
        return zp, "0..255"
    if case == "precision unknown":
        meta["precision"] = "int4"
        return "int4", "is not fp32, bf16 or int8"
    if case == "precision missing":
        del meta["precision"]
        return base + ".weight", "integer tensors belong to int8 files only"
    if case == "calibration missing":
        del meta["calibration"]
        return "calibration", "minmax or percentile"
    if case == "I8 bias":
        dt, shape, data = t[base + ".bias"]
        t[base + ".bias"] = ("I8", shape, bytes(shape[0]))
        return base + ".bias", "I8 conv weights and I32 zero points and bias corrections only"
    if case == "bias_correction shape":
        bc = base + ".bias_correction"
        dt, shape, data = t[bc]
        t[bc] = (dt, [shape[0] - 1], data[:-4])
        return bc, "must be I32"
    if case == "bias_correction dtype":
        bc = base + ".bias_correction"
        dt, shape, data = t[bc]
        t[bc] = ("F32", shape, np.frombuffer(data, np.int32).astype(np.float32).tobytes())
        return bc, "must be I32"
    if case == "scale of a float conv":
        t["stem.conv1.conv.input_scale"] = f32(0.5)
        return "stem.conv1.conv.input_scale", "belongs to no int8 conv"
    if case == "I8 ESE weight":
        dt, shape, data = t["stages.0.attn.fc.weight"]
        t["stages.0.attn.fc.weight"] = ("I8", shape, bytes(int(np.prod(shape))))
        return "stages.0.attn.fc.weight", "belongs to no int8 conv"
    raise AssertionError(case)


BAD = ["missing weight_scale", "weight_scale shape", "weight_scale dtype", "weight_scale NaN", "weight_scale zero",
       "input_scale zero", "input_scale NaN", "input_scale shape", "zero point range", "zero point fraction",
       "precision unknown", "precision missing", "calibration missing", "I8 bias", "bias_correction shape", "bias_correction dtype", "scale of a float conv",
       "I8 ESE weight"]


@pytest.mark.parametrize("case", BAD)
def test_bad_int8_file_is_refused_naming_the_key(good_int8, tmp_path, case):
    good, x = good_int8
    meta, t = read_st(good)
    key, words = _edit(meta, t, case)
    bad = tmp_path / "bad.safetensors"
    write_st(bad, meta, t)
    proc = run_cli(["infer", "--weights", bad, "--input", x, "--out", tmp_path / "o", "-q"])
    assert proc.returncode == 1, describe_proc(proc)
    assert str(bad) in proc.stderr and key in proc.stderr and words in proc.stderr, describe_proc(proc)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_good_file_rewritten_still_loads(good_int8, tmp_path):
    """The bad-file cases' writer itself keeps a good file good (so their refusals are
    the edits')."""
    good, x = good_int8
    meta, t = read_st(good)
    same = tmp_path / "same.safetensors"
    write_st(same, meta, t)
    run_ok(["infer", "--weights", same, "--input", x, "--out", tmp_path / "a", "-q"])
    run_ok(["infer", "--weights", good, "--input", x, "--out", tmp_path / "b", "-q"])
    assert np.array_equal(np.load(tmp_path / "a" / "stage3.npy"), np.load(tmp_path / "b" / "stage3.npy"))


def test_truncated_and_flipped_int8_files_fail_cleanly(good_int8, tmp_path):
    """Fuzz-style: truncations and byte flips of an int8 file exit 0 or 1 with a message,
    never crash (as tests/test_malformed.py does for the fp32 reader)."""
    good, x = good_int8
    data = good.read_bytes()
    rng = np.random.default_rng(11)
    n = struct.unpack("<Q", data[:8])[0]
    cuts = [9, 8 + n // 2, 8 + n, 8 + n + 100, len(data) - 1]
    flips = sorted(rng.integers(8, 8 + n, 12).tolist()) + sorted(rng.integers(8 + n, len(data), 6).tolist())
    variants = [data[:c] for c in cuts]
    for f in flips:
        b = bytearray(data)
        b[f] ^= 0x5A
        variants.append(bytes(b))
    for i, v in enumerate(variants):
        p = tmp_path / f"v{i}.safetensors"
        p.write_bytes(v)
        proc = run_cli(["infer", "--weights", p, "--input", x, "--out", tmp_path / f"o{i}", "-q"])
        assert proc.returncode in (0, 1), describe_proc(proc)
        if proc.returncode == 1:
            assert str(p) in proc.stderr, describe_proc(proc)


def test_int8_file_of_the_undeployed_network(tmp_path):
    """Another tool's int8 file of the un-deployed network (the fuzz seed's) runs int8 as
    it is; --deploy is refused (folding BN would need new scales)."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fuzz"))
    import make_seeds
    f = tmp_path / "u.safetensors"
    f.write_bytes(make_seeds.tiny_int8_safetensors())
    args = ["infer", "--weights", f, "--random-input", "--input-size", "1,3,64,64", "-q"]
    run_ok(args + ["--out", tmp_path / "a"])
    run_ok(args + ["--out", tmp_path / "b", "--precision", "fp32"])
    a, b = np.load(tmp_path / "a" / "stage3.npy"), np.load(tmp_path / "b" / "stage3.npy")
    assert not np.array_equal(a, b), "the int8 file ran as fp32 by default"
    proc = run_cli(args + ["--out", tmp_path / "c", "--deploy"])
    assert proc.returncode == 1 and "un-deployed" in proc.stderr, describe_proc(proc)

