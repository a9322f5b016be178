"""int8 inference (`--precision int8 --calibration X.npy`) on the deployed network against
the PyTorch port (float64). Calibration runs on a few random-uniform [0, 1] inputs; the
accuracy is measured on other inputs (a different uniform draw and a smooth picture
with noise, at another size), as the cosine similarity of every returned stage of every
image with the port's, which must be >= 0.99 (the issue's target). Weights keep the
input's signal (BN statistics from the data, SPEC §5), so an int8 error in an early
layer still shows at the end. Best kernels (AVX-512 VNNI where the CPU has it; 3x3
stride-1 convs stay fp32 Winograd) and the reference set (every conv but the first in
int8). The test also shows that int8 really ran (its outputs differ from the fp32 run
of the same file by far more than fp32 rounding), that 1 and 2 threads give the same
bits, and the CLI's refusals.
"""
from __future__ import annotations


import numpy as np
import pytest

import cspresnet_torch as ref
import pdparams_writer as pdw
from conftest import describe_proc, run_cli, infer_deployed

COSINE_MIN = 0.99


def _smooth(rng, shape):
    """Low-frequency waves plus a little noise, in [0, 1]: a picture-like input."""
    n, c, h, w = shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    out = np.empty(shape, np.float64)
    for i in range(n):
        for ch in range(c):
            f, ph = rng.uniform(1, 6, 2), rng.uniform(0, 6.3, 2)
            out[i, ch] = 0.5 + 0.25 * np.sin(2 * np.pi * f[0] * xx + ph[0]) * np.cos(2 * np.pi * f[1] * yy + ph[1])
            out[i, ch] += 0.1 * rng.standard_normal((h, w))
    return np.clip(out, 0, 1).astype(np.float32)


def _cos(a, b):
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _setup(tmp_path, name, seed):
    cfg = ref.preset(name, return_idx=(0, 1, 2, 3))
    state = ref.random_state(cfg.build(), seed=seed)
    weights = tmp_path / "w.pdparams"
    pdw.write_pdparams(weights, state)
    rng = np.random.default_rng(seed + 1)
    calib = tmp_path / "calib.npy"
    np.save(calib, rng.uniform(0, 1, (4, 3, 128, 128)).astype(np.float32))
    x = np.concatenate([rng.uniform(0, 1, (1, 3, 160, 192)).astype(np.float32), _smooth(rng, (1, 3, 160, 192))])
    x_path = tmp_path / "x.npy"
    np.save(x_path, x)
    return cfg, state, weights, calib, x, x_path


@pytest.mark.parametrize("name,method,isa", [
    ("s", "minmax", None), ("m", "minmax", None), ("s", "percentile", None), ("s", "minmax", "ref"),
])
def test_int8_cosine_against_pytorch_on_held_out_inputs(tmp_path, name, method, isa):
    cfg, state, weights, calib, x, x_path = _setup(tmp_path, name, seed=41)
    args = ("--calibration", calib, "--calib-method", method)
    q = infer_deployed(weights, x_path, tmp_path / "int8", "int8", args, isa=isa)
    f = infer_deployed(weights, x_path, tmp_path / "fp32", "fp32", isa=isa)
    refs = ref.reference_outputs(cfg, state, x)
    for i, (qi, fi, r) in enumerate(zip(q, f, refs)):
        ctx = f"{cfg.describe()} {method} isa {isa or 'best'} stage{i}"
        for img in range(x.shape[0]):
            c = _cos(qi[img], r[img])
            assert c >= COSINE_MIN, f"{ctx} image {img}: cosine {c:.5f} < {COSINE_MIN}"
            print(f"{ctx} image {img}: cosine {c:.5f}")
        assert _cos(fi, r) > 0.999999, f"{ctx}: fp32 is not the port's"
        moved = float(np.abs(qi.astype(np.float64) - fi).max() / np.abs(r).max())
        assert moved > 1e-3, f"{ctx}: int8 equals fp32 to {moved:.3g}: no int8 arithmetic ran"


def test_int8_thread_count_gives_identical_bits(tmp_path):
    _, _, weights, calib, _, x_path = _setup(tmp_path, "s", seed=43)
    args = ("--calibration", calib)
    one = infer_deployed(weights, x_path, tmp_path / "t1", "int8", args, threads=1)
    two = infer_deployed(weights, x_path, tmp_path / "t2", "int8", args, threads=2)
    for i, (a, b) in enumerate(zip(one, two)):
        assert np.array_equal(a, b), f"stage{i}: 1 and 2 threads differ (max {np.abs(a - b).max()})"


def test_int8_random_calibration_runs_in_bench(tmp_path):
    proc = run_cli(["bench", "--arch", "s", "--deploy", "--size", "64,64", "--runs", "1", "--warmup", "0",
                    "--precision", "int8", "--calibration", "random", "--threads", "1"])
    assert proc.returncode == 0, describe_proc(proc)
    assert "precision=int8" in proc.stdout, describe_proc(proc)


def test_int8_without_calibration_is_refused(tmp_path):
    proc = run_cli(["infer", "--arch", "s", "--random-input", "--input-size", "1,3,64,64", "--out", tmp_path / "o",
                    "--precision", "int8"])
    assert proc.returncode == 1, describe_proc(proc)
    assert "--calibration" in proc.stderr, describe_proc(proc)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_bad_calibration_inputs_are_refused(tmp_path):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((2, 64, 64), np.float32))
    for src, words in [(bad, "N x 3 x H x W"), (tmp_path / "missing.npy", "missing.npy")]:
        proc = run_cli(["infer", "--arch", "s", "--random-input", "--input-size", "1,3,64,64", "--out",
                        tmp_path / "o", "--precision", "int8", "--calibration", src])
        assert proc.returncode == 1, describe_proc(proc)
        assert words in proc.stderr, describe_proc(proc)
    proc = run_cli(["infer", "--arch", "s", "--random-input", "--out", tmp_path / "o", "--precision", "int8",
                    "--calibration", "random", "--calib-method", "entropy"])
    assert proc.returncode == 2, describe_proc(proc)
    assert "--calib-method must be minmax or percentile" in proc.stderr, describe_proc(proc)
