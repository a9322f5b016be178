"""The int8 anchors of bench/lowp_bench.py (bench/qdq.py) on a small input: the zero-point rule
on hand-worked ranges; the deployed form of the port against the port; the QDQ model run by
ONNX Runtime (bench/node_env; skipped without it) against the float64 simulation of the same
quantization, with one QLinearConv per quantized conv in the graph ORT optimizes it into; our
`infer --precision int8` (reference kernels: every conv but the first in int8, the "all" rule)
against the simulation of our own rounding, which shows that qdq.py computes the scales our
calibration computes; and PyTorch FX int8 against the simulation. Each comparison also checks
that the float network is far from the simulation, so the comparison sees a missing or wrong
quantization (every zero point 128: 0.01% of ours agree; scales of range / 254: 0.75%).
"""
from __future__ import annotations

import dataclasses

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, infer_deployed
import cspresnet_torch as ref
import pdparams_writer as pdw

sys.path.insert(0, str(REPO_ROOT / "bench"))
import anchors  # noqa: E402
import qdq  # noqa: E402

SIZE = 64
ORT = REPO_ROOT / "bench" / "node_env" / "node_modules" / "onnxruntime-node"
AGREE, AGREE_MIN = 1e-5, 0.9   # measured: ORT 98-100%, ours (ref kernels) 99.6%, FX (qnnpack) 97%


@pytest.fixture(scope="module")
def tiny():
    cfg = ref.preset("s", return_idx=(0, 1, 2, 3))
    port = cfg.build()
    state = ref.random_state(port, seed=5)
    ref.load_numpy_state(port, state)
    rng = np.random.default_rng(6)
    calib = rng.random((3, 3, SIZE, SIZE), dtype=np.float32)
    x = rng.random((1, 3, SIZE, SIZE), dtype=np.float32)
    return cfg, state, qdq.deployed(port.eval()), calib, x


def _agree(out, want):
    """The share of elements within AGREE * max|want| of want."""
    want = np.asarray(want, np.float64)
    return float((np.abs(np.asarray(out, np.float64) - want) <= AGREE * np.abs(want).max()).mean())


def _check(outs, sim, floats, what):
    """Stage 0 (the first stage's convs) of ``outs`` agrees with the simulation element by element.
    Further stages are not compared so: float32 rounding in the float ops (activations, the fp32
    convs) moves a few values across a rounding boundary of the next quantization, and each such
    code step spreads through every later conv."""
    quant, agree = _agree(floats[0], sim[0]), _agree(outs[0], sim[0])
    assert quant < 0.5, f"{what}: {quant:.1%} of the float network's stage 0 equals the simulation: nothing quantized?"
    assert agree >= AGREE_MIN, (f"{what}: {agree:.2%} of stage 0 within {AGREE:g} max of the simulation of the same "
                                f"quantization (< {AGREE_MIN:.0%})")


def test_scale_zero_rule():
    s, z = qdq.scale_zero(-0.28, 5.0)    # 5.28 / 255 = 0.0207059; 0.28 / that = 13.52 -> 14
    assert abs(s - 5.28 / 255) < 1e-8 and z == 14
    assert qdq.scale_zero(0.5, 2.0) == (pytest.approx(2.0 / 255), 0)       # widened to hold 0
    assert qdq.scale_zero(-3.0, -1.0) == (pytest.approx(3.0 / 255), 255)
    assert qdq.scale_zero(0.0, 0.0) == (1.0, 128)
    q, ws = qdq.weight_quant(np.array([[[[0.5, -1.27, 0.005]]], [[[0, 0, 0]]]], np.float32))
    assert ws[0] == np.float32(0.01) and q[0].tolist() == [50, -127, 0] and q[1].tolist() == [0, 0, 0]


def test_deployed_matches_port(tiny):
    cfg, state, net, _, x = tiny
    with torch.no_grad():
        got = [o.numpy() for o in net(torch.from_numpy(x))]
    assert max(anchors.rel_err(g, w) for g, w in zip(got, ref.reference_outputs(cfg, state, x))) <= 1e-4
    names = qdq.quantized_convs(net, "default")
    assert names[0] == "stages.0.conv_down.conv" and len(qdq.quantized_convs(net, "all")) > len(names)


@pytest.mark.skipif(not ORT.is_dir(), reason="ONNX Runtime (bench/node_env, `make bench` installs it) is missing")
def test_qdq_model_on_ort(tiny, tmp_path):
    _, _, net, calib, x = tiny
    quant = qdq.calibrate(net, qdq.quantized_convs(net), calib)
    base, model = str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx")
    anchors.export_onnx(net, base, [f"stage{i}" for i in range(4)], keep_bn=False, size=SIZE)
    assert qdq.build_qdq(base, model, quant) == len(quant)
    raw, dump, opt = tmp_path / "x.f32", tmp_path / "o.f32", str(tmp_path / "opt.onnx")
    x.tofile(raw)
    p = subprocess.run(["node", str(REPO_ROOT / "bench" / "ort_runner.js"), model, str(raw), f"1,3,{SIZE},{SIZE}",
                        "1", "1", "0", str(dump)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    sim = qdq.simulate(net, quant, x)
    flat = np.fromfile(dump, np.float32)
    assert flat.size == sum(s.size for s in sim)
    outs = [a.reshape(s.shape) for a, s in zip(np.split(flat, np.cumsum([s.size for s in sim])[:-1]), sim)]
    with torch.no_grad():
        floats = [o.numpy() for o in net(torch.from_numpy(x))]
    _check(outs, sim, floats, "ORT int8")
    p = subprocess.run(["node", "-e", f"require({json.dumps(str(ORT))}).InferenceSession.create({json.dumps(model)}, "
                        f"{{graphOptimizationLevel: 'all', optimizedModelFilePath: {json.dumps(opt)}}})"
                        ".catch((e) => { console.error(String(e)); process.exit(1); })"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    ops = anchors.graph_ops(opt, check=False)
    assert ops["QLinearConv"] == len(quant), dict(ops)


def test_ours_uses_the_same_scales(tiny, tmp_path):
    cfg, state, net, calib, x = tiny
    weights, calib_npy, x_npy = tmp_path / "w.pdparams", tmp_path / "calib.npy", tmp_path / "x.npy"
    pdw.write_pdparams(weights, state)
    np.save(calib_npy, calib)
    np.save(x_npy, x)
    outs = infer_deployed(weights, x_npy, tmp_path / "out", "int8", threads=1, isa="ref",
                          extra=("--calibration", str(calib_npy), "--calib-method", "minmax"))
    quant = qdq.calibrate(net, qdq.quantized_convs(net, "all"), calib)
    sim = qdq.simulate(net, quant, x, out_q=False)
    with torch.no_grad():
        floats = [o.numpy() for o in net(torch.from_numpy(x))]
    _check(outs, sim, floats, "cspresnet int8 (ref kernels)")


@pytest.mark.skipif(qdq.fx_engine() is None, reason="torch has no fbgemm or qnnpack quantized engine")
def test_fx_int8(tiny):
    _, _, net, calib, x = tiny
    names = qdq.quantized_convs(net)
    qnet = qdq.fx_int8(net, names, calib)
    assert qdq.fx_quantized_convs(qnet) == len(names)
    with torch.no_grad():
        outs = [o.numpy() for o in qnet(torch.from_numpy(x))]
        floats = [o.numpy() for o in net(torch.from_numpy(x))]
    # FX has no bias correction: its simulation leaves it out
    quant = {n: dataclasses.replace(cq, corr=np.zeros_like(cq.corr)) for n, cq in qdq.calibrate(net, names, calib).items()}
    _check(outs, qdq.simulate(net, quant, x), floats, f"FX int8 ({qdq.fx_engine()})")
