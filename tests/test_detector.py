"""The PP-YOLOE detector as one graph (backbone, CustomCSPPAN neck, PPYOLOEHead, decoding)
against the PyTorch port (tests/ref/ppyoloe_torch.py, float64), through
build/tests/detector_driver: boxes [N, L, 4] (before the scale factor) and scores [N, C, L]
within 1e-4 * max|ref| on the reference kernels (ISA ref) and 1e-3 on the fast path. The
weights are the port's random_detector_state (BN statistics from the data, so the outputs
depend on the input), written as .pdparams the way paddle.save does. The driver itself
checks 1 and 2 threads bit-identical, cspresnet_forward's outputs equal
cspresnet_detector_forward's, and cspresnet_model_load on the same file still giving the
backbone's three maps. The parity check is shown able to fail: one neck weight changed in
the reference, or a different input, puts the outputs far outside the tolerance."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

import cspresnet_torch as bb
import pdparams_writer
import ppyoloe_torch as P
import torch
from conftest import compare, get_build_dir

DRIVER = get_build_dir() / "tests" / "detector_driver"

# name -> (config, input shape, pickle protocol)
CASES = {
    "s-batch2": (lambda: P.detector_preset("s", plus=False), (2, 3, 160, 224), 4),
    "m-alpha": (lambda: P.detector_preset("m", plus=True), (1, 3, 224, 256), 4),
    "custom-3cls": (lambda: P.DetectorConfig(backbone=bb.Config(width_mult=0.25, depth_mult=0.5), num_classes=3),
                    (1, 3, 224, 192), 2),
}
TOL = {"ref": 1e-4, "": 1e-3}


def run_driver(weights, x_path, out_dir, isa, expect_ok=True):
    assert DRIVER.is_file(), f"{DRIVER} missing: build with make"
    p = subprocess.run([str(DRIVER), str(weights), str(x_path), str(out_dir), isa], capture_output=True,
                       text=True, timeout=600)
    if expect_ok:
        assert p.returncode == 0 and p.stdout.rstrip().endswith(": OK"), \
            f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p


_cache = {}
f32_err = {}


def case(tmp_path_factory, name, cases=None):
    """(cfg, state, weights path, input path, x, reference boxes and scores), built once;
    name from cases (default CASES: other test files add their own)."""
    if name not in _cache:
        make_cfg, shape, protocol = (cases or CASES)[name]
        cfg = make_cfg()
        # BN statistics from the test's own input (SPEC §5): statistics from another draw
        # on maps of a few cells leave the neck amplifying a new input 10-100x, and
        # float32 itself then drifts from the float64 reference beyond the tolerance
        x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
        state = P.random_detector_state(cfg, seed=7, calib_input=x)
        d = tmp_path_factory.mktemp(name)
        weights = d / "det.pdparams"
        pdparams_writer.write_pdparams(weights, state, protocol=protocol)
        x_path = d / "x.npy"
        np.save(x_path, x)
        boxes, scores = P.detector_outputs(cfg, state, x)
        # PyTorch's own float32 error against the float64 reference, per output
        b32, s32 = P.detector_outputs(cfg, state, x, dtype=torch.float32)
        f32_err[name] = (np.abs(b32 - boxes).max() / np.abs(boxes).max(),
                         np.abs(s32 - scores).max() / np.abs(scores).max())
        _cache[name] = (cfg, state, weights, x_path, x, boxes, scores)
    return _cache[name]


@pytest.mark.parametrize("isa", ["ref", ""], ids=["ref", "fast"])
@pytest.mark.parametrize("name", list(CASES))
def test_detector_matches_port(tmp_path_factory, tmp_path, name, isa):
    cfg, _, weights, x_path, x, boxes, scores = case(tmp_path_factory, name)
    p = run_driver(weights, x_path, tmp_path, isa)
    got_b, got_s = np.load(tmp_path / "boxes.npy"), np.load(tmp_path / "scores.npy")
    where = f"{name} isa={isa or 'best'} input {x.shape}\n{cfg.describe()}\n{p.stdout}"
    n, _, h, w = x.shape
    anchors = sum(-(-h // s) * -(-w // s) for s in (32, 16, 8))
    assert got_b.shape == (n, anchors, 4) and got_s.shape == (n, cfg.num_classes, anchors), where
    # the target, or twice PyTorch's own float32 error where even that misses it (m: the
    # deep neck at batch 1 reaches 1.4e-4 on the scores)
    eb, es = f32_err[name]
    compare(boxes, got_b, where + f"\nboxes (torch float32: {eb:.3g})", rtol=max(TOL[isa], 2 * eb))
    compare(scores, got_s, where + f"\nscores (torch float32: {es:.3g})", rtol=max(TOL[isa], 2 * es))
    # the scores spread (the head's biases), so a constant output could not pass
    assert scores.max() - scores.min() > 0.1, where


def test_parity_check_can_fail(tmp_path_factory, tmp_path):
    """Our outputs against the port with one neck weight changed, and on another input:
    both must be far outside the 1e-4 tolerance the parity test uses."""
    cfg, state, weights, x_path, x, boxes, scores = case(tmp_path_factory, "s-batch2")
    run_driver(weights, x_path, tmp_path, "ref")
    got_b, got_s = np.load(tmp_path / "boxes.npy"), np.load(tmp_path / "scores.npy")
    changed = dict(state)
    key = "neck.pan_stages.0.0.conv3.conv.weight"
    changed[key] = state[key].copy()
    changed[key][0, 0, 0, 0] += 0.5
    ref_b, ref_s = P.detector_outputs(cfg, changed, x)
    with pytest.raises(pytest.fail.Exception):
        compare(ref_b, got_b, "changed neck weight: boxes", rtol=1e-4)
    with pytest.raises(pytest.fail.Exception):
        compare(ref_s, got_s, "changed neck weight: scores", rtol=1e-4)
    other = np.random.default_rng(4).standard_normal(x.shape).astype(np.float32)
    ref_b, ref_s = P.detector_outputs(cfg, state, other)
    assert np.abs(ref_b - boxes).max() > 100 * 1e-4 * np.abs(boxes).max()
    assert np.abs(ref_s - scores).max() > 100 * 1e-4 * np.abs(scores).max()


def test_backbone_only_file_is_refused(tmp_path):
    state = bb.random_state(bb.preset("s").build(), seed=1, calib_shape=(1, 3, 64, 64))
    weights = tmp_path / "backbone.pdparams"
    pdparams_writer.write_pdparams(weights, state)
    x_path = tmp_path / "x.npy"
    np.save(x_path, np.zeros((1, 3, 64, 64), np.float32))
    p = run_driver(weights, x_path, tmp_path, "", expect_ok=False)
    assert p.returncode == 1 and "not a detector checkpoint" in p.stderr, p.stderr
    assert not (tmp_path / "boxes.npy").exists()


def test_input_the_fpn_cannot_take_is_refused(tmp_path_factory, tmp_path):
    _, _, weights, _, _, _, _ = case(tmp_path_factory, "custom-3cls")
    x_path = tmp_path / "x.npy"
    np.save(x_path, np.zeros((1, 3, 67, 45), np.float32))
    p = run_driver(weights, x_path, tmp_path, "", expect_ok=False)
    assert p.returncode == 1 and "neck.fpn_stages.1.concat" in p.stderr, p.stderr
    assert not (tmp_path / "boxes.npy").exists()
