"""The deployed PP-YOLOE detector (cspresnet_model_deploy on a detector: every BN folded,
the RepVGG blocks of backbone, neck and PP-YOLOE+ t's head merged, act and shortcuts in the
conv epilogues) against the *un-deployed* PyTorch port (tests/ref/ppyoloe_torch.py,
float64), through build/tests/detector_driver WEIGHTS X OUT ISA deploy: boxes and scores
within 1e-4 * max|ref| on the reference kernels and 1e-3 on the fast path (or twice
PyTorch's own float32 error, as tests/test_detector.py). The driver also checks that the
deployed graph has fewer parameters and nodes than the original (the parameter count is
checked here against the port's state dict), that deploy and deploy_replace agree bit for
bit, and 1 and 2 threads. A wrong fold is shown to fail the same comparison."""
from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest

import ppyoloe_torch as P
import test_detector as td
from conftest import compare

# test_detector's cases and PP-YOLOE+ t, whose head has RepVGG attn convs
CASES = dict(td.CASES)
CASES["t-repvgg-head"] = (lambda: P.detector_preset("t", plus=True), (1, 3, 128, 160), 4)


def case(tmp_path_factory, name):
    return td.case(tmp_path_factory, name, CASES)


def run_deployed(weights, x_path, out_dir, isa, expect_ok=True):
    assert td.DRIVER.is_file(), f"{td.DRIVER} missing: build with make"
    p = subprocess.run([str(td.DRIVER), str(weights), str(x_path), str(out_dir), isa, "deploy"],
                       capture_output=True, text=True, timeout=600)
    if expect_ok:
        assert p.returncode == 0 and p.stdout.rstrip().endswith(": OK"), \
            f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p


def deployed_param_count(state) -> int:
    """Tensors after deploy: a ConvBN's 5 become conv weight + bias (-3), a RepVGG
    block's two ConvBNs one conv (-2 more) and its alpha goes; the rest stays."""
    keys = [k for k in state if not k.startswith("yolo_head.anchor_points") and
            not k.startswith("yolo_head.stride_tensor")]
    n_bn = sum(k.endswith(".bn.weight") for k in keys)
    repvgg = [k[:-len(".conv1.bn.weight")] for k in keys if k.endswith(".conv1.bn.weight")
              and (k[:-len(".conv1.bn.weight")] + ".conv2.bn.weight") in state
              and state[k[:-len(".bn.weight")] + ".conv.weight"].shape[2] == 3
              and state[k[:-len(".conv1.bn.weight")] + ".conv2.conv.weight"].shape[2] == 1]
    n_alpha = sum(k.endswith(".alpha") for k in keys)
    return len(keys) - 3 * n_bn - 2 * len(repvgg) - n_alpha


@pytest.mark.parametrize("isa", ["ref", ""], ids=["ref", "fast"])
@pytest.mark.parametrize("name", list(CASES))
def test_deployed_detector_matches_port(tmp_path_factory, tmp_path, name, isa):
    cfg, state, weights, x_path, x, boxes, scores = case(tmp_path_factory, name)
    p = run_deployed(weights, x_path, tmp_path, isa)
    got_b, got_s = np.load(tmp_path / "boxes.npy"), np.load(tmp_path / "scores.npy")
    where = f"deployed {name} isa={isa or 'best'} input {x.shape}\n{cfg.describe()}\n{p.stdout}"
    eb, es = td.f32_err[name]
    compare(boxes, got_b, where + f"\nboxes (torch float32: {eb:.3g})", rtol=max(td.TOL[isa], 2 * eb))
    compare(scores, got_s, where + f"\nscores (torch float32: {es:.3g})", rtol=max(td.TOL[isa], 2 * es))
    assert scores.max() - scores.min() > 0.1, where
    m = re.search(r"params: (\d+) -> (\d+), nodes: (\d+) -> (\d+)", p.stdout)
    assert m, where
    p0, p1, n0, n1 = map(int, m.groups())
    assert p0 == len(state) and p1 == deployed_param_count(state) and n1 < n0, where


def test_every_repvgg_family_is_in_the_cases():
    """The cases cover neck RepVGG blocks (every detector), backbone alpha (m) and the
    head's RepVGG attn_conv (t): the deployed count rule above sees each kind."""
    kinds = set()
    for name, (make_cfg, _, _) in CASES.items():
        cfg = make_cfg()
        keys = cfg.build().state_dict().keys()
        kinds |= {"neck"} if any(re.match(r"neck\..*\.convs\.\d+\.conv2\.conv1\.", k) for k in keys) else set()
        kinds |= {"alpha"} if any(k.endswith(".alpha") for k in keys) else set()
        kinds |= {"head"} if any(re.match(r"yolo_head\.stem_cls\.\d+\.conv\.conv1\.", k) for k in keys) else set()
    assert kinds == {"neck", "alpha", "head"}


def test_deployed_parity_can_fail(tmp_path_factory, tmp_path):
    """The deployed outputs against the port with one neck RepVGG 1x1 branch's BN scale
    changed: a fold that dropped or mis-scaled that branch would look like this, and the
    comparison must reject it."""
    cfg, state, weights, x_path, x, boxes, scores = case(tmp_path_factory, "s-batch2")
    run_deployed(weights, x_path, tmp_path, "ref")
    got_b, got_s = np.load(tmp_path / "boxes.npy"), np.load(tmp_path / "scores.npy")
    changed = dict(state)
    key = "neck.fpn_stages.0.0.convs.0.conv2.conv2.bn.weight"
    changed[key] = state[key] * np.float32(0.5)
    ref_b, ref_s = P.detector_outputs(cfg, changed, x)
    with pytest.raises(pytest.fail.Exception):
        compare(ref_b, got_b, "changed RepVGG branch: boxes", rtol=1e-4)
    with pytest.raises(pytest.fail.Exception):
        compare(ref_s, got_s, "changed RepVGG branch: scores", rtol=1e-4)
