"""Input and weight files as a new user has them: numpy's defaults, third-party
safetensors, and what `summary` / `infer` say about deployed files.

    cspresnet infer --weights W --input X.npy --out DIR     (X: f8, big-endian, Fortran, f2)
    cspresnet grad  --weights W --input X.npy --grad-dir G --out DIR
    cspresnet infer --weights FILE.safetensors ...          (no __metadata__; F16 / BF16 tensors)
    cspresnet summary --weights DEPLOYED.safetensors
    cspresnet infer --weights DEPLOYED_ALPHA.safetensors --no-alpha   (refused)

1. A .npy input in float64, big-endian, Fortran order or float16 is read as numpy's
   astype(float32) of the C-order array: the values are bit-identical to that (through
   the test_io driver), and infer / grad give bit-identical outputs to the float32
   C-order file.
2. A safetensors file without __metadata__ loads with the architecture read off its
   shapes (un-deployed with and without alpha, small stem, deployed), with outputs
   bit-identical to the same weights from .pdparams (or from the file with metadata);
   F16 tensors give the outputs of the same float16 arrays in a .pdparams, BF16 the
   outputs of the exactly widened float32 values, and both agree with PyTorch.
3. `summary --weights` of a deployed file shows the deployed network: no BatchNorm2D
   rows, one Conv2D row per 4-D weight of the file, and totals equal to the element
   count of the file's tensors (computed here with json + numpy); it names the
   architecture it read. `infer --no-alpha` on a deployed alpha file is refused.
"""
from __future__ import annotations

import json
import os
import re
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

import cspresnet_torch as ref
import pdparams_writer as pdw
from conftest import compare, describe_proc, get_build_dir, run_cli

_STATE = {}


def state_for(name="s", alpha=True, **kw):
    key = (name, alpha, tuple(sorted(kw.items())))
    if key not in _STATE:
        _STATE[key] = ref.random_state(ref.preset(name, use_alpha=alpha, **kw).build(), 41)
    return _STATE[key]


def same_bits(a, b, what=""):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape, (what, a.dtype, b.dtype, a.shape, b.shape)
    np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32), err_msg=what)


def infer_all(weights, x_path, out_dir, *extra):
    p = run_cli(["infer", "--weights", weights, "--input", x_path, "--out", out_dir, "--return-idx", "0,1,2,3",
                 *map(str, extra)])
    assert p.returncode == 0, describe_proc(p)
    return p, [np.load(Path(out_dir) / f"stage{i}.npy") for i in range(4)]


def npy_with_header(arr, descr, fortran):
    """A version 1.0 .npy of arr written with the given descr and order, by hand."""
    a = np.asfortranarray(arr) if fortran else np.ascontiguousarray(arr)
    data = a.astype(np.dtype(descr)).tobytes(order="F" if fortran else "C")
    shape = repr(tuple(int(d) for d in arr.shape))
    h = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, shape)
    h = h.encode("latin1")
    h += b" " * ((-(10 + len(h) + 1)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h + data


# --------------------------------------------------------------------------- 1. .npy inputs

VARIANTS = [
    ("f8", "<f8", False), ("f8_big", ">f8", False), ("f4_big", ">f4", False),
    ("f4_fortran", "<f4", True), ("f8_fortran", "<f8", True), ("f8_big_fortran", ">f8", True),
    ("f2", "<f2", False), ("f2_big_fortran", ">f2", True),
]


@pytest.fixture(scope="module")
def x64():
    """float64 values that do not fit float32 exactly (so rounding shows), all finite in
    float16 too, so that every output of a forward pass stays finite."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 3, 32, 40)) * (1 + 1e-9)
    x.flat[:4] = [1e-40, 1 + 2 ** -24, 1 + 3 * 2 ** -25, -0.0]
    return x


def test_io_driver_reads_numpy_defaults_as_astype_float32(tmp_path, x64):
    """The library's values are numpy's astype(float32) of the C-order array, bit for bit,
    the rounding edges included (float32 subnormals, ties, overflow to inf, NaN)."""
    driver = get_build_dir() / "tests" / "test_io"
    small = x64[:, :, :3, :5].copy()
    small.flat[:6] = [-1e-45, 3.4028235677973366e38, 3.4028235e38 * 1.0000000001, -1e300, np.nan, 7e4]
    for name, descr, fortran in VARIANTS + [("f8_3d", "<f8", True)]:
        arr = small[0] if name == "f8_3d" else small
        path = tmp_path / f"{name}.npy"
        with np.errstate(over="ignore", invalid="ignore"):  # the edges overflow f2 / f4 on purpose
            path.write_bytes(npy_with_header(arr, descr, fortran))
            want = np.load(path).astype(np.float32)  # numpy reads it back: C-order values
        assert np.load(path).flags.f_contiguous == fortran
        p = subprocess.run([str(driver), "npy-read", str(path)], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, f"{name}: {p.stderr}"
        lines = p.stdout.splitlines()
        shape = tuple(int(v) for v in lines[0][6:].strip("[]").split(",") if v)
        got = np.array([float(v) for v in lines[2:]], dtype=np.float32)
        assert shape == arr.shape, name
        # the driver prints %.9g, which round-trips float32 exactly
        np.testing.assert_array_equal(got.view(np.uint32), want.ravel(order="C").view(np.uint32), err_msg=name)


@pytest.fixture(scope="module")
def weights_s(tmp_path_factory):
    d = tmp_path_factory.mktemp("w")
    w = d / "s.pdparams"
    pdw.write_pdparams(w, state_for())
    return w


@pytest.mark.parametrize("name,descr,fortran", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_infer_input_variants_identical_to_float32_c_order(tmp_path, weights_s, x64, name, descr, fortran):
    base = tmp_path / "x32.npy"
    src = x64.astype(np.float16) if descr.endswith("f2") else x64
    np.save(base, np.ascontiguousarray(src).astype(np.float32))
    var = tmp_path / f"x_{name}.npy"
    var.write_bytes(npy_with_header(src, descr, fortran))
    _, a = infer_all(weights_s, base, tmp_path / "a")
    _, b = infer_all(weights_s, var, tmp_path / "b")
    for i, (u, v) in enumerate(zip(a, b)):
        assert np.isfinite(u).all(), f"{name} stage{i}: the comparison needs finite outputs"
        same_bits(u, v, f"{name} stage{i}")


def test_grad_inputs_and_grads_in_numpy_defaults(tmp_path, weights_s, x64):
    """grad reads its input and every G/stage*.npy the same way."""
    _, outs = infer_all(weights_s, _save(tmp_path / "x0.npy", x64.astype(np.float32)), tmp_path / "shapes")
    rng = np.random.default_rng(9)
    g64 = [rng.standard_normal(o.shape) for o in outs]
    runs = {}
    for kind in ("c32", "numpy_defaults"):
        gdir = tmp_path / f"g_{kind}"
        gdir.mkdir()
        if kind == "c32":
            x = _save(tmp_path / "x_c32.npy", x64.astype(np.float32))
            for i, g in enumerate(g64):
                np.save(gdir / f"stage{i}.npy", g.astype(np.float32))
        else:
            x = tmp_path / "x_f8f.npy"
            x.write_bytes(npy_with_header(x64, ">f8", True))
            for i, g in enumerate(g64):
                (gdir / f"stage{i}.npy").write_bytes(npy_with_header(g, ["<f8", ">f4", "<f8", ">f8"][i], i % 2 == 0))
        out = tmp_path / f"o_{kind}"
        p = run_cli(["grad", "--weights", weights_s, "--input", x, "--grad-dir", gdir, "--out", out,
                     "--return-idx", "0,1,2,3", "--threads", "1", "-q"])
        assert p.returncode == 0, describe_proc(p)
        runs[kind] = out
    files = sorted(f.relative_to(runs["c32"]) for f in runs["c32"].rglob("*.npy"))
    assert len(files) > 10
    for f in files:
        same_bits(np.load(runs["c32"] / f), np.load(runs["numpy_defaults"] / f), str(f))


def _save(path, arr):
    np.save(path, arr)
    return path


def test_unsupported_npy_input_still_refused(tmp_path, weights_s, x64):
    bad = tmp_path / "x_i4.npy"
    bad.write_bytes(npy_with_header(np.round(x64 * 100).astype(np.int32), "<i4", False))
    p = run_cli(["infer", "--weights", weights_s, "--input", bad, "--out", tmp_path / "o"])
    assert p.returncode == 1 and str(bad) in p.stderr and "'<i4'" in p.stderr, describe_proc(p)
    assert not (tmp_path / "o" / "stage1.npy").exists()


# --------------------------------------------------------------------------- 2. safetensors

def read_st(path):
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", None)
    data = raw[8 + n:]
    tensors = {}
    for k, i in header.items():
        assert i["dtype"] == "F32"
        b, e = i["data_offsets"]
        tensors[k] = np.frombuffer(data[b:e], "<f4").reshape(i["shape"])
    return meta, tensors


def bf16_bits(a):
    """float32 -> bfloat16 bits, rounded to nearest even (as torch does)."""
    u = np.ascontiguousarray(a, dtype="<f4").view("<u4").astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype("<u2")


def bf16_to_f32(bits):
    return (bits.astype("<u4") << 16).view("<f4")


def write_st(path, tensors, meta=None, dtypes=None, hlen_low_byte=None):
    """A safetensors file by hand: {name: array} stored as dtypes[name] (F32 default);
    hlen_low_byte pads the header so that its length's first byte is that value."""
    header = {} if meta is None else {"__metadata__": meta}
    blobs, at = [], 0
    for k, v in tensors.items():
        dt = (dtypes or {}).get(k, "F32")
        if dt == "F32":
            b = np.ascontiguousarray(v, dtype="<f4").tobytes()
        elif dt == "F16":
            b = np.ascontiguousarray(v, dtype="<f2").tobytes()
        elif dt == "BF16":
            b = bf16_bits(v).tobytes()
        else:
            raise ValueError(dt)
        header[k] = {"dtype": dt, "shape": list(np.shape(v)), "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    text = json.dumps(header).encode()
    if hlen_low_byte is None:
        text += b" " * ((-(8 + len(text))) % 8)
    else:
        text += b" " * ((hlen_low_byte - len(text)) % 256)
    Path(path).write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    return path


@pytest.fixture(scope="module")
def x_in(tmp_path_factory):
    p = tmp_path_factory.mktemp("x") / "x.npy"
    np.save(p, np.random.default_rng(5).standard_normal((1, 3, 64, 64)).astype(np.float32))
    return p


@pytest.mark.parametrize("name,alpha,large_stem", [("s", True, True), ("s", False, True), ("t", True, False)],
                         ids=["s_alpha", "s", "t_small_stem"])
def test_safetensors_without_metadata_inferred_like_pdparams(tmp_path, x_in, name, alpha, large_stem):
    state = state_for(name, alpha, use_large_stem=large_stem)
    pd = tmp_path / "w.pdparams"
    pdw.write_pdparams(pd, state)
    st = write_st(tmp_path / "w.safetensors", state)
    _, a = infer_all(pd, x_in, tmp_path / "a")
    p, b = infer_all(st, x_in, tmp_path / "b")
    for i, (u, v) in enumerate(zip(a, b)):
        same_bits(u, v, f"stage{i}")
    # the architecture it read, as summary reports it
    s = run_cli(["summary", "--weights", st, "--input-size", "1,3,64,64"])
    assert s.returncode == 0, describe_proc(s)
    cfg = ref.preset(name)
    ch = ref.scaled_arch(width_mult=cfg.width_mult, depth_mult=cfg.depth_mult)
    want_ch = ",".join(map(str, ch[1]))
    assert f"architecture from {st}:" in s.stdout, s.stdout
    line = next(l for l in s.stdout.splitlines() if l.startswith("architecture from"))
    assert f"channels {want_ch}" in line and f"layers {','.join(map(str, ch[0]))}" in line, line
    assert ("small stem" in line) == (not large_stem) and ("alpha" in line) == alpha, line
    assert "deployed" not in line, line


def test_safetensors_without_metadata_deployed(tmp_path, x_in):
    pd = tmp_path / "w.pdparams"
    pdw.write_pdparams(pd, state_for("s", True))
    dep = tmp_path / "dep.safetensors"
    p = run_cli(["convert", "--weights", pd, "-o", dep, "--deploy"])
    assert p.returncode == 0, describe_proc(p)
    meta, tensors = read_st(dep)
    assert meta["deployed"] == "1"
    bare = write_st(tmp_path / "bare.safetensors", tensors)
    _, a = infer_all(dep, x_in, tmp_path / "a")
    _, b = infer_all(bare, x_in, tmp_path / "b")
    for i, (u, v) in enumerate(zip(a, b)):
        same_bits(u, v, f"stage{i}")
    s = run_cli(["summary", "--weights", bare, "--input-size", "1,3,64,64"])
    assert s.returncode == 0 and "BatchNorm2D" not in s.stdout, describe_proc(s)
    line = next(l for l in s.stdout.splitlines() if l.startswith("architecture from"))
    assert line.endswith("deployed"), line


def test_safetensors_f16_like_pdparams_float16(tmp_path, x_in):
    state = state_for("s", True)
    pd16 = tmp_path / "w16.pdparams"
    pdw.write_pdparams(pd16, state, dtype=np.float16)
    names = list(state)
    # F16 everywhere but a few tensors left F32: mixed files load too
    dtypes = {k: ("F32" if i % 7 == 0 else "F16") for i, k in enumerate(names)}
    mixed = {k: (state[k].astype(np.float16).astype(np.float32) if dtypes[k] == "F32" else state[k]) for k in names}
    st = write_st(tmp_path / "w16.safetensors", mixed, dtypes=dtypes)
    _, a = infer_all(pd16, x_in, tmp_path / "a")
    p, b = infer_all(st, x_in, tmp_path / "b")
    for i, (u, v) in enumerate(zip(a, b)):
        same_bits(u, v, f"stage{i}")
    # and against PyTorch with the float16-rounded weights
    x = np.load(x_in)
    want = ref.reference_outputs(ref.preset("s", use_alpha=True, return_idx=(0, 1, 2, 3)),
                                 {k: v.astype(np.float16).astype(np.float64) for k, v in state.items()}, x)
    for i, (r, o) in enumerate(zip(want, b)):
        compare(r, o, f"F16 stage{i}")


def test_safetensors_bf16_exact(tmp_path, x_in):
    state = state_for("s", True)
    widened = {k: bf16_to_f32(bf16_bits(v)).reshape(np.shape(v)) for k, v in state.items()}
    assert any(not np.array_equal(widened[k], state[k]) for k in state), "bf16 must round something"
    pd = tmp_path / "wide.pdparams"
    pdw.write_pdparams(pd, widened)
    st = write_st(tmp_path / "bf16.safetensors", state, dtypes={k: "BF16" for k in state})
    _, a = infer_all(pd, x_in, tmp_path / "a")
    _, b = infer_all(st, x_in, tmp_path / "b")
    for i, (u, v) in enumerate(zip(a, b)):
        same_bits(u, v, f"stage{i}")
    x = np.load(x_in)
    want = ref.reference_outputs(ref.preset("s", use_alpha=True, return_idx=(0, 1, 2, 3)),
                                 {k: v.astype(np.float64) for k, v in widened.items()}, x)
    for i, (r, o) in enumerate(zip(want, b)):
        compare(r, o, f"BF16 stage{i}")


def test_safetensors_f16_with_metadata_and_bad_sizes(tmp_path, x_in):
    pd = tmp_path / "w.pdparams"
    pdw.write_pdparams(pd, state_for("s", True))
    conv = tmp_path / "c.safetensors"
    assert run_cli(["convert", "--weights", pd, "-o", conv]).returncode == 0
    meta, tensors = read_st(conv)
    st = write_st(tmp_path / "m16.safetensors", tensors, meta, dtypes={k: "F16" for k in tensors})
    pd16 = tmp_path / "w16.pdparams"
    pdw.write_pdparams(pd16, tensors, dtype=np.float16)
    _, a = infer_all(pd16, x_in, tmp_path / "a")
    _, b = infer_all(st, x_in, tmp_path / "b")
    for i, (u, v) in enumerate(zip(a, b)):
        same_bits(u, v, f"stage{i}")
    # an F16 tensor whose byte span is that of F32 is refused, naming it and both sizes
    raw = st.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    h = json.loads(raw[8:8 + n])
    h["stem.conv1.conv.weight"]["dtype"] = "BF16"
    h["stem.conv1.conv.weight"]["shape"][0] //= 2
    text = json.dumps(h).encode()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])
    p = run_cli(["infer", "--weights", bad, "--input", x_in, "--out", tmp_path / "o"])
    assert p.returncode == 1, describe_proc(p)
    assert str(bad) in p.stderr and "stem.conv1.conv.weight" in p.stderr and "BF16" in p.stderr, p.stderr


def test_safetensors_header_length_starting_like_a_pickle(tmp_path, x_in):
    """A header length whose low byte is 0x80 (PROTO's opcode) is still safetensors."""
    state = state_for("s", True)
    pd = tmp_path / "w.pdparams"
    pdw.write_pdparams(pd, state)
    conv = tmp_path / "c.safetensors"
    assert run_cli(["convert", "--weights", pd, "-o", conv]).returncode == 0
    meta, tensors = read_st(conv)
    _, a = infer_all(pd, x_in, tmp_path / "a")
    for m in (meta, None):
        st = write_st(tmp_path / f"p{m is None}.safetensors", tensors, m, hlen_low_byte=0x80)
        assert st.read_bytes()[0] == 0x80 and st.read_bytes()[8:9] == b"{"
        _, b = infer_all(st, x_in, tmp_path / f"b{m is None}")
        for i, (u, v) in enumerate(zip(a, b)):
            same_bits(u, v, f"stage{i}")


def test_safetensors_without_metadata_not_a_backbone(tmp_path, x_in):
    f = write_st(tmp_path / "other.safetensors", {"encoder.weight": np.zeros((4, 4), np.float32)})
    p = run_cli(["infer", "--weights", f, "--input", x_in, "--out", tmp_path / "o"])
    assert p.returncode == 1 and str(f) in p.stderr and "stem.conv1.conv.weight" in p.stderr, describe_proc(p)


# --------------------------------------------------------------------------- 3. deployed summary, --no-alpha

def parse_count(text, label):
    m = re.search(rf"^{label}: ([\d,]+)$", text, re.M)
    assert m, f"no '{label}' in\n{text}"
    return int(m.group(1).replace(",", ""))


@pytest.fixture(scope="module")
def deployed_alpha(tmp_path_factory):
    d = tmp_path_factory.mktemp("dep")
    pd = d / "w.pdparams"
    pdw.write_pdparams(pd, state_for("s", True))
    dep = d / "dep.safetensors"
    p = run_cli(["convert", "--weights", pd, "-o", dep, "--deploy"])
    assert p.returncode == 0, describe_proc(p)
    return pd, dep


def test_summary_of_deployed_file_shows_deployed_network(deployed_alpha):
    pd, dep = deployed_alpha
    meta, tensors = read_st(dep)
    total = sum(int(np.prod(v.shape)) for v in tensors.values())
    conv_weights = sum(1 for k, v in tensors.items() if v.ndim == 4)
    p = run_cli(["summary", "--weights", dep, "--input-size", "1,3,64,64"])
    assert p.returncode == 0, describe_proc(p)
    out = p.stdout
    assert parse_count(out, "Total params") == total, out
    assert parse_count(out, "Trainable params") == total, out  # no BN statistics left
    assert parse_count(out, "Non-trainable params") == 0, out
    assert "BatchNorm2D" not in out, out
    rows = [l for l in out.splitlines() if re.match(r"^\s*Conv2D-\d+ ", l)]
    assert len(rows) == conv_weights, (len(rows), conv_weights)
    row_params = sum(int(l.split()[-1].replace(",", "")) for l in rows)
    assert row_params == total
    line = next(l for l in out.splitlines() if l.startswith(f"architecture from {dep}:"))
    assert "width 0.50" in line and "depth 0.33" in line and "alpha" in line and line.endswith("deployed"), line
    # the un-deployed source still shows BN rows and its own (larger) count, and says so
    q = run_cli(["summary", "--weights", pd, "--input-size", "1,3,64,64"])
    assert q.returncode == 0 and "BatchNorm2D" in q.stdout
    src_total = sum(int(np.prod(np.shape(v))) for v in state_for("s", True).values())
    assert parse_count(q.stdout, "Total params") == src_total
    qline = next(l for l in q.stdout.splitlines() if l.startswith(f"architecture from {pd}:"))
    assert "deployed" not in qline, qline


def test_no_alpha_refused_on_deployed_alpha_file(tmp_path, deployed_alpha, x_in):
    pd, dep = deployed_alpha
    for w in (pd, dep):
        out = tmp_path / f"o_{w.suffix[1:]}"
        p = run_cli(["infer", "--weights", w, "--input", x_in, "--out", out, "--no-alpha"])
        assert p.returncode == 1, describe_proc(p)
        assert str(w) in p.stderr and "alpha" in p.stderr, p.stderr
        assert not out.exists() or not any(out.iterdir())
    # a deployed file without alpha still takes --no-alpha
    pd0 = tmp_path / "n.pdparams"
    pdw.write_pdparams(pd0, state_for("s", False))
    dep0 = tmp_path / "n.safetensors"
    assert run_cli(["convert", "--weights", pd0, "-o", dep0, "--deploy"]).returncode == 0
    p = run_cli(["infer", "--weights", dep0, "--input", x_in, "--out", tmp_path / "ok", "--no-alpha", "-q"])
    assert p.returncode == 0, describe_proc(p)
