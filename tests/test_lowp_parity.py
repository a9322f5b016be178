"""bf16 inference (`--precision bf16`) on the deployed network against the PyTorch port
(float64), on several presets, on the best kernel set of this CPU (AMX or AVX-512 BF16
tiles where it has them) and on the reference kernels (plain C, bf16 rounding emulated).
The bound on every output is max|diff| <= tol * max|ref| with tol the larger of the
issue's 1e-2 and the error of PyTorch's own bf16 inference (CPU autocast) on the same
network and input: bf16's rounding measured by the reference framework. On these
signal-keeping random weights the deepest stage's bf16 error is 1.0-1.8% for us and
2.0-3.4% for PyTorch's autocast (docs/ARCHITECTURE.md, "bf16"). The test also shows that bf16 really ran: its outputs
differ from the fp32 run of the same file by more than fp32 rounding (1e-5 of the
scale), and are the same bits for 1 and 2 threads. Weights keep the input's signal (BN
statistics from the data, SPEC §5), so a bf16 error in an early layer shows at the end.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import cspresnet_torch as ref
import pdparams_writer as pdw
import torch
from conftest import compare, describe_proc, run_cli

BF16_TOL = 1e-2


def _torch_bf16_errors(cfg, state, x, refs):
    model = cfg.build()
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()},
                                                strict=False)
    assert not missing, missing
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        outs = model(torch.from_numpy(x))
    return [float(np.abs(o.float().numpy() - r).max() / np.abs(r).max()) for o, r in zip(outs, refs)]


def _infer(weights, x_path, out_dir, precision, threads=2, isa=None):
    env = dict(os.environ)
    env.pop("CSPRESNET_ISA", None)
    if isa:
        env["CSPRESNET_ISA"] = isa
    out_dir.mkdir(parents=True, exist_ok=True)
    proc = run_cli(["infer", "--weights", weights, "--input", x_path, "--out", out_dir, "--return-idx", "0,1,2,3",
                    "--deploy", "--precision", precision, "--threads", threads, "-q"], env=env)
    assert proc.returncode == 0, describe_proc(proc)
    return [np.load(out_dir / f"stage{i}.npy") for i in range(4)]


@pytest.mark.parametrize("name,shape,isa", [
    ("s", (2, 3, 96, 128), None), ("m", (1, 3, 128, 96), None), ("t", (1, 3, 160, 160), None),
    ("s", (1, 3, 64, 96), "ref"),
])
def test_bf16_matches_pytorch_within_its_rounding(tmp_path, name, shape, isa):
    cfg = ref.preset(name, return_idx=(0, 1, 2, 3))
    state = ref.random_state(cfg.build(), seed=21)
    weights = tmp_path / "w.pdparams"
    pdw.write_pdparams(weights, state)
    x = np.random.default_rng(22).uniform(0, 1, shape).astype(np.float32)
    x_path = tmp_path / "x.npy"
    np.save(x_path, x)
    bf16 = _infer(weights, x_path, tmp_path / "bf16", "bf16", isa=isa)
    fp32 = _infer(weights, x_path, tmp_path / "fp32", "fp32", isa=isa)
    refs = ref.reference_outputs(cfg, state, x)
    torch_errs = _torch_bf16_errors(cfg, state, x, refs)
    for i, (b, f, r) in enumerate(zip(bf16, fp32, refs)):
        ctx = f"{cfg.describe()} input {shape} isa {isa or 'best'} stage{i}"
        tol = max(BF16_TOL, torch_errs[i])
        err = compare(r, b, config=f"bf16 vs PyTorch (PyTorch's bf16 error {torch_errs[i]:.3g}): " + ctx, rtol=tol)
        compare(r, f, config="fp32 vs PyTorch: " + ctx, rtol=1e-3)
        moved = float(np.abs(b.astype(np.float64) - f).max() / np.abs(r).max())
        assert moved > 1e-5, f"bf16 equals fp32 to {moved:.3g}: no bf16 arithmetic ran ({ctx})"
        print(f"{ctx}: bf16 relative error {err:.3g} (PyTorch autocast bf16 {torch_errs[i]:.3g})")


def test_bf16_thread_count_gives_identical_bits(tmp_path):
    cfg = ref.preset("s", return_idx=(0, 1, 2, 3))
    state = ref.random_state(cfg.build(), seed=23)
    weights = tmp_path / "w.pdparams"
    pdw.write_pdparams(weights, state)
    x_path = tmp_path / "x.npy"
    np.save(x_path, np.random.default_rng(24).uniform(0, 1, (1, 3, 83, 67)).astype(np.float32))
    one = _infer(weights, x_path, tmp_path / "t1", "bf16", threads=1)
    two = _infer(weights, x_path, tmp_path / "t2", "bf16", threads=2)
    for i, (a, b) in enumerate(zip(one, two)):
        assert np.array_equal(a, b), f"stage{i}: 1 and 2 threads differ (max {np.abs(a - b).max()})"


def test_unknown_precision_is_a_usage_error(tmp_path):
    proc = run_cli(["infer", "--arch", "s", "--random-input", "--out", tmp_path / "o", "--precision", "fp8"])
    assert proc.returncode == 2, describe_proc(proc)
    assert "--precision must be fp32, bf16 or int8" in proc.stderr, describe_proc(proc)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
