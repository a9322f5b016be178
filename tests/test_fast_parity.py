"""The fast kernels (CSPRESNET_ISA unset: best ISA of this CPU, Winograd F(4,3) for the
3x3 stride-1 convs on AVX-512) on the deployed network against the PyTorch port of
upstream, and against this library's reference kernels (CSPRESNET_ISA=ref) in the same
run. Accuracy goal of the speed work: max|diff| <= 1e-3 * max|ref| on every output.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import cspresnet_torch as ref
import pdparams_writer as pdw
from conftest import compare, describe_proc, run_cli


def _env(isa):
    env = dict(os.environ)
    env.pop("CSPRESNET_ISA", None)
    if isa:
        env["CSPRESNET_ISA"] = isa
    return env


def _infer(weights, x_path, out_dir, isa, threads, deploy=True):
    out_dir.mkdir(parents=True, exist_ok=True)
    args = ["infer", "--weights", weights, "--input", x_path, "--out", out_dir,
            "--return-idx", "0,1,2,3", "--threads", threads, "-q"]
    if deploy:
        args.append("--deploy")
    proc = run_cli(args, env=_env(isa))
    assert proc.returncode == 0, describe_proc(proc)
    return [np.load(out_dir / f"stage{i}.npy") for i in range(4)]


@pytest.mark.parametrize("name,shape,threads,isa", [
    ("s", (2, 3, 61, 75), 2, None), ("t", (1, 3, 96, 96), 1, None),
    # the other tables (their GEMM tiles and Winograd transforms) on the same network
    ("s", (1, 3, 130, 97), 2, "avx2"), ("s", (1, 3, 70, 66), 1, "generic"),
])
def test_deploy_fast_path_matches_pytorch_and_reference_kernels(tmp_path, name, shape, threads, isa):
    if isa == "avx2" and "avx2" not in open("/proc/cpuinfo").read():
        pytest.fail("this test machine has no AVX2; run the suite on one that has")
    cfg = ref.preset(name, return_idx=(0, 1, 2, 3))
    state = ref.random_state(cfg.build(), seed=5)
    weights = tmp_path / "w.pdparams"
    pdw.write_pdparams(weights, state)
    x = (np.random.default_rng(7).standard_normal(shape)).astype(np.float32)
    x_path = tmp_path / "x.npy"
    np.save(x_path, x)
    fast = _infer(weights, x_path, tmp_path / "fast", isa, threads)
    slow = _infer(weights, x_path, tmp_path / "ref", "ref", threads)
    refs = ref.reference_outputs(cfg, state, x)
    for i, (f, s, r) in enumerate(zip(fast, slow, refs)):
        ctx = f"{cfg.describe()} input {shape} threads {threads} isa {isa or 'best'} stage{i}"
        compare(r, f, config="fast vs PyTorch: " + ctx, rtol=1e-3)
        compare(s, f, config="fast vs reference kernels: " + ctx, rtol=1e-3)


def test_fast_path_thread_count_gives_identical_bits(tmp_path):
    cfg = ref.preset("s", return_idx=(0, 1, 2, 3))
    state = ref.random_state(cfg.build(), seed=6)
    weights = tmp_path / "w.pdparams"
    pdw.write_pdparams(weights, state)
    x_path = tmp_path / "x.npy"
    np.save(x_path, np.random.default_rng(8).standard_normal((1, 3, 83, 67)).astype(np.float32))
    one = _infer(weights, x_path, tmp_path / "t1", None, 1)
    two = _infer(weights, x_path, tmp_path / "t2", None, 2)
    for i, (a, b) in enumerate(zip(one, two)):
        assert np.array_equal(a, b), f"stage{i}: 1 and 2 threads differ (max {np.abs(a - b).max()})"
