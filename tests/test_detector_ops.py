"""The detector's ops (src/ops/detector_ops.h, through build/tests/detector_ops_driver)
against PyTorch and the reference port (tests/ref/ppyoloe_torch.py): nearest 2x upsample
and SPP's max-pools bit for bit, ESEAttn's sigmoid gate and the sigmoid within float32
rounding, and the head's DFL decoding of boxes and scores against the port's own head and
decoding code. Shapes include odd sizes, 1x1 maps and batch 2; per-tensor outputs are
channel slices of a larger tensor whose other channels must stay untouched. The driver
itself checks that every variant (reference, fast, in place) on 1, 2 and 3 threads is
bit-identical; each test runs with the reference kernels and with this CPU's best set."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import ppyoloe_torch as P
from conftest import get_build_dir

DRIVER = get_build_dir() / "tests" / "detector_ops_driver"
SENTINEL = np.float32(-7777.0)
SHAPES = [(2, 3, 7, 5), (1, 1, 1, 1), (2, 4, 13, 13), (1, 2, 20, 20), (2, 5, 3, 17)]
SLICES = [(0, 0), (2, 3)]


@pytest.fixture(params=["ref", "best"], autouse=True)
def kernel_set(request, monkeypatch):
    """Every test runs on the reference kernels and on the best set of this CPU (the
    driver's CSPRESNET_ISA): the sigmoid, the gate's mean and the DFL exp differ between
    them, and each must meet the same bounds against PyTorch and the port."""
    if request.param == "ref":
        monkeypatch.setenv("CSPRESNET_ISA", "ref")
    else:
        monkeypatch.delenv("CSPRESNET_ISA", raising=False)
    return request.param


def run_driver(*args, timeout=120):
    assert DRIVER.is_file(), f"{DRIVER} missing: build with make"
    p = subprocess.run([str(DRIVER)] + [str(a) for a in args], capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0 and p.stdout.rstrip().endswith(": OK"), \
        f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p


def save(tmp_path, name, a):
    path = tmp_path / name
    np.save(path, np.ascontiguousarray(a, dtype=np.float32))
    return path


def run_sliced(tmp_path, op, x, before, after, *extra, pre=()):
    """Runs a per-tensor op on x into channels before..before+C of a larger tensor;
    checks the other channels still hold the sentinel and returns the slice."""
    inp = save(tmp_path, "in.npy", x)
    out = tmp_path / "out.npy"
    run_driver(op, *pre, inp, *extra, out, before, after)
    got = np.load(out)
    c = x.shape[1]
    assert got.shape[1] == before + c + after
    outside = np.concatenate([got[:, :before], got[:, before + c:]], axis=1)
    assert np.all(outside == SENTINEL), "the op wrote outside its channel slice"
    return got[:, before:before + c]


def bits_equal(got, want):
    got = np.asarray(got, np.float32)
    want = np.asarray(want, np.float32)
    assert got.shape == want.shape
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    assert same.all(), f"{(~same).sum()} of {same.size} differ, first at {np.argwhere(~same)[0]}"


def random_input(shape, seed, negative=False):
    x = np.random.default_rng(seed).normal(0.0, 1.0, shape).astype(np.float32)
    # all negative: a zero-padded pool would show 0 at the borders, a -inf padded one cannot
    return -np.abs(x) - 0.25 if negative else x


# --------------------------------------------------------------------------- upsample

@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sl", SLICES)
def test_upsample_is_paddles_nearest_2x(tmp_path, shape, sl):
    x = random_input(shape, 1)
    got = run_sliced(tmp_path, "upsample", x, *sl)
    want = F.interpolate(torch.from_numpy(x), scale_factor=2.0, mode="nearest").numpy()
    bits_equal(got, want)


# --------------------------------------------------------------------------- max-pool

@pytest.mark.parametrize("k", P.SPP_POOLS)
@pytest.mark.parametrize("shape", SHAPES)
def test_maxpool_pads_with_minus_infinity(tmp_path, k, shape):
    for seed, (negative, sl) in enumerate([(True, (0, 0)), (False, (2, 3))]):
        x = random_input(shape, 10 + seed, negative)
        got = run_sliced(tmp_path, "maxpool", x, *sl, pre=(k,))
        xt = torch.from_numpy(x)
        want = F.max_pool2d(xt, k, stride=1, padding=k // 2).numpy()
        # the same as padding explicitly with -inf and pooling without padding
        padded = F.pad(xt, [k // 2] * 4, value=float("-inf"))
        assert torch.equal(F.max_pool2d(padded, k, stride=1), torch.from_numpy(want))
        bits_equal(got, want)


def test_maxpool_propagates_nan_like_pytorch(tmp_path):
    x = random_input((2, 3, 20, 20), 5)
    x[0, 1, 4, 7] = np.nan
    x[1, 2, 19, 0] = np.nan
    for k in P.SPP_POOLS:
        got = run_sliced(tmp_path, "maxpool", x, 1, 1, pre=(k,))
        want = F.max_pool2d(torch.from_numpy(x), k, stride=1, padding=k // 2).numpy()
        assert np.isnan(want).sum() > 0
        bits_equal(got, want)


@pytest.mark.parametrize("shape", SHAPES)
def test_spp_concat_equals_the_port(tmp_path, shape):
    """SPP's [x, pool5, pool9, pool13] as the port's SPP.forward builds it (before its conv);
    the driver checks that the cascaded pools equal the direct and separable ones."""
    x = random_input(shape, 3, negative=shape[2] % 2 == 1)
    run_driver("spp", save(tmp_path, "in.npy", x), tmp_path / "out.npy")
    xt = torch.from_numpy(x)
    spp = P.SPP(x.shape[1] * 4, 1)
    want = torch.cat([xt] + [F.max_pool2d(xt, s, stride=1, padding=s // 2) for s in spp.pool_size], dim=1)
    bits_equal(np.load(tmp_path / "out.npy"), want.numpy())


# --------------------------------------------------------------------------- sigmoid gate

def close(got, want, rel, what):
    err = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
    scale = float(np.max(np.abs(want)))
    assert err <= rel * scale, f"{what}: max|diff| {err:.3g} > {rel:g} * max|ref| {scale:.3g}"
    return err / scale


@pytest.mark.parametrize("shape", SHAPES + [(2, 48, 20, 20)])
@pytest.mark.parametrize("sl", SLICES)
def test_sigmoid_gate_equals_the_ports_eseattn(tmp_path, shape, sl):
    """ESEAttn without its conv: feat * sigmoid(fc(mean_hw(feat)))."""
    rng = np.random.default_rng(sum(shape))
    c = shape[1]
    x = random_input(shape, 7) * 2.0
    w = rng.normal(0.0, 1.0 / np.sqrt(c), (c, c, 1, 1)).astype(np.float32)
    b = rng.uniform(-0.5, 0.5, c).astype(np.float32)
    got = run_sliced(tmp_path, "gate", x, *sl, save(tmp_path, "w.npy", w), save(tmp_path, "b.npy", b))
    attn = P.ESEAttn(c, attn_conv=None)
    with torch.no_grad():
        attn.fc.weight.copy_(torch.from_numpy(w))
        attn.fc.bias.copy_(torch.from_numpy(b))
        for dtype, rel in ((torch.float32, 2e-6), (torch.float64, 1e-6)):
            a = attn.to(dtype)
            feat = torch.from_numpy(x).to(dtype)
            want = a(feat, feat.mean((2, 3), keepdim=True)).numpy()
            close(got, want, rel, f"gate vs the port in {dtype}")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sl", SLICES)
def test_sigmoid_equals_torch(tmp_path, shape, sl):
    x = random_input(shape, 9) * 12.0
    x.flat[0] = 100.0
    x.flat[-1] = -100.0       # exp(100) overflows float32: 0, not NaN
    got = run_sliced(tmp_path, "sigmoid", x, *sl)
    want = torch.sigmoid(torch.from_numpy(x)).numpy()
    err = np.abs(got.astype(np.float64) - want)
    assert np.all(err <= 1e-7 + 1e-6 * np.abs(want)), float(err.max())
    assert np.all(np.isfinite(got)) and got.min() >= 0.0 and got.max() <= 1.0


# --------------------------------------------------------------------------- DFL decoding

class _Feed(nn.Module):
    """Stands in for backbone + neck: returns the given per-level features."""

    def __init__(self, feats):
        super().__init__()
        self.feats = feats

    def forward(self, x):
        return self.feats


class _Stem(nn.Module):
    """Stands in for ESEAttn: the reg stem picks the reg channels, the cls stem gives 0
    (so the head's stem_cls(f) + f is f itself)."""

    def __init__(self, take=None):
        super().__init__()
        self.take = take

    def forward(self, f, avg):
        return f[:, :self.take] if self.take is not None else torch.zeros_like(f)


class _Pick(nn.Module):
    def __init__(self, start):
        super().__init__()
        self.start = start

    def forward(self, f):
        return f[:, self.start:]


def port_decode(regs, clss, reg_max, scale_factor, dtype):
    """The port's PPYOLOEHead.forward and PPYOLOE.forward decoding on given raw head
    outputs: every level's feature is [reg, cls] along channels, the stems and pred convs
    are replaced by channel picks, and everything after them is the port's code."""
    bins = reg_max + 1
    classes = clss[0].shape[1]
    cfg = P.DetectorConfig(num_classes=classes, reg_max=reg_max)
    model = P.PPYOLOE.__new__(P.PPYOLOE)
    nn.Module.__init__(model)
    feats = [torch.from_numpy(np.concatenate([r, c], axis=1)).to(dtype) for r, c in zip(regs, clss)]
    model.backbone = _Feed(feats)
    model.neck = nn.Identity()
    head = P.PPYOLOEHead([4 * bins + classes] * 3, classes, reg_max=reg_max, attn_conv=None)
    for i in range(3):
        head.stem_reg[i] = _Stem(4 * bins)
        head.pred_reg[i] = nn.Identity()
        head.stem_cls[i] = _Stem()
        head.pred_cls[i] = _Pick(4 * bins)
    model.yolo_head = head.to(dtype)
    with torch.no_grad():
        sf = None if scale_factor is None else torch.from_numpy(scale_factor).to(dtype)
        boxes, scores = model(torch.zeros(1, dtype=dtype), sf)
    proj = head.proj_conv.weight.detach().to(torch.float32).numpy().reshape(-1)
    assert cfg.reg_max == reg_max
    return boxes.numpy(), scores.numpy(), proj


DECODE_CASES = [
    # (batch, classes, reg_max, level sizes at strides 32, 16, 8, scale factor)
    (2, 80, 16, [(2, 2), (4, 4), (8, 8)], True),
    (1, 3, 16, [(1, 1), (7, 5), (13, 13)], False),
    (2, 3, 7, [(5, 7), (10, 14), (20, 20)], True),
    (1, 1, 0, [(1, 1), (1, 1), (3, 1)], False),
]


@pytest.mark.parametrize("case", DECODE_CASES, ids=lambda c: f"n{c[0]}-c{c[1]}-r{c[2]}-{c[3][2]}")
def test_dfl_decode_equals_the_port(tmp_path, case):
    n, classes, reg_max, sizes, with_scale = case
    bins = reg_max + 1
    rng = np.random.default_rng(classes * 100 + reg_max)
    regs = [rng.normal(0.0, 3.0, (n, 4 * bins, h, w)).astype(np.float32) for h, w in sizes]
    clss = [rng.normal(-2.0, 4.0, (n, classes, h, w)).astype(np.float32) for h, w in sizes]
    scale = (rng.uniform(0.3, 2.5, (n, 2)).astype(np.float32) if with_scale else None)
    want_b, want_s, proj = port_decode(regs, clss, reg_max, scale, torch.float32)
    args = ["decode", save(tmp_path, "proj.npy", proj),
            save(tmp_path, "sf.npy", scale) if with_scale else "none", tmp_path]
    for i, (r, c) in enumerate(zip(regs, clss)):
        args += [save(tmp_path, f"reg{i}.npy", r), save(tmp_path, f"cls{i}.npy", c), P.FPN_STRIDES[i]]
    run_driver(*args)
    got_b, got_s = np.load(tmp_path / "boxes.npy"), np.load(tmp_path / "scores.npy")
    assert got_b.shape == want_b.shape and got_s.shape == want_s.shape
    assert not np.any(got_b == SENTINEL) and not np.any(got_s == SENTINEL)
    close(got_b, want_b, 1e-6, "boxes vs the port in float32")
    err = np.abs(got_s.astype(np.float64) - want_s)
    assert np.all(err <= 1e-7 + 1e-6 * np.abs(want_s)), f"scores: max|diff| {err.max():.3g}"
    # and both within float32 rounding of the float64 port
    want_b64, want_s64, _ = port_decode(regs, clss, reg_max, scale, torch.float64)
    close(got_b, want_b64, 2e-6, "boxes vs the port in float64")
    close(got_s, want_s64, 2e-6, "scores vs the port in float64")
