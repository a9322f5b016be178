"""Gradients of `cspresnet grad` against PyTorch autograd on the port (tests/ref).

Interface under test:
    cspresnet grad --weights W --input X.npy --grad-dir G --out DIR [--train-bn]
                   [--act A] [--return-idx ...] [--threads N]
loss = sum_i <stage_i, G/stage{i}.npy>; writes DIR/input.npy, DIR/params/<key>.npy for
every trainable parameter, and with --train-bn DIR/buffers/<key>.npy (running statistics
after the update).

The reference is the port in float64 with autograd. Train-mode BN is the port's BN with
the batch mean and biased variance (SPEC section 1); the expected running statistics are
Paddle's rule r = 0.9 r + 0.1 batch applied to the batch statistics the reference saw.
Every tensor must satisfy max|diff| <= 1e-4 * max|ref|, except where PyTorch's own
float32 autograd misses that bound against the float64 reference (one-element alpha
gradients in train-BN mode, sums with heavy cancellation): there the bound is 3x
PyTorch float32's error, and the failure message prints it.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import cspresnet_torch as ref
import pdparams_writer as pdw
from conftest import compare, describe_proc, run_cli

# small configs: (name, Config, input shape)
TINY = dict(layers=(1, 1, 1, 1), channels=(8, 8, 16, 16, 32))
CONFIGS = [
    ("alpha-swish-all", ref.Config(**TINY, use_alpha=True, return_idx=(0, 1, 2, 3)), (2, 3, 41, 37)),
    ("relu-smallstem", ref.Config(**TINY, act="relu", use_large_stem=False, return_idx=(1, 3)), (2, 3, 33, 35)),
    ("two-blocks-idx0", ref.Config(layers=(2, 1, 2, 1), channels=(8, 8, 16, 16, 32), return_idx=(0,)), (3, 3, 15, 13)),
    ("hardswish-idx2", ref.Config(**TINY, act="hardswish", use_alpha=True, return_idx=(2,)), (2, 3, 37, 34)),
]


class TrainBN(torch.nn.Module):
    """Port BN in train mode: batch statistics (biased variance); records them."""

    def __init__(self, bn):
        super().__init__()
        self.bn = bn
        self.batch = None

    def forward(self, x):
        mean = x.mean(dim=(0, 2, 3))
        var = ((x - mean.view(1, -1, 1, 1)) ** 2).mean(dim=(0, 2, 3))
        self.batch = (mean.detach().numpy(), var.detach().numpy())
        shape = (1, -1, 1, 1)
        return ((x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.bn.eps)
                * self.bn.weight.view(shape) + self.bn.bias.view(shape))


def reference(cfg, state, x, grads, train_bn, dtype=torch.float64):
    model = cfg.build().to(dtype)
    ref.load_numpy_state(model, state)
    wrapped = {}
    if train_bn:
        for name, mod in list(model.named_modules()):
            for cname, child in list(mod.named_children()):
                if isinstance(child, ref.BatchNorm2D):
                    w = TrainBN(child)
                    setattr(mod, cname, w)
                    wrapped[(name + "." if name else "") + cname] = w
    xt = torch.from_numpy(x).to(dtype).requires_grad_(True)
    outs = model(xt)
    loss = sum((o * torch.from_numpy(g).to(dtype)).sum() for o, g in zip(outs, grads))
    loss.backward()
    pgrads = {}
    for k, p in model.named_parameters():
        g = p.grad.numpy() if p.grad is not None else np.zeros(tuple(p.shape))
        pgrads[k.replace(".bn.bn.", ".bn.")] = g
    buffers = {}
    for name, w in wrapped.items():
        mean, var = w.batch
        buffers[name + "._mean"] = 0.9 * state[name + "._mean"] + 0.1 * mean
        buffers[name + "._variance"] = 0.9 * state[name + "._variance"] + 0.1 * var
    return xt.grad.numpy(), pgrads, buffers


def run_grad(tmp_path, cfg, shape, train_bn, seed=3, threads=None, isa=None):
    state = ref.random_state(cfg.build(), seed)
    wpath = tmp_path / "w.pdparams"
    pdw.write_pdparams(wpath, state)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    gdir = tmp_path / "g"
    gdir.mkdir(exist_ok=True)
    model = cfg.build()
    ref.load_numpy_state(model, state)
    with torch.no_grad():
        outs = model.eval()(torch.from_numpy(x))
    grads = []
    for i, o in zip(cfg.return_idx, outs):
        g = rng.standard_normal(tuple(o.shape)).astype(np.float32)
        np.save(gdir / f"stage{i}.npy", g)
        grads.append(g)
    out = tmp_path / ("out%s" % (threads or ""))
    args = ["grad", "--weights", str(wpath), "--input", str(tmp_path / "x.npy"), "--grad-dir",
            str(gdir), "--out", str(out), "--act", cfg.act,
            "--return-idx", ",".join(map(str, cfg.return_idx))]
    if train_bn:
        args.append("--train-bn")
    if threads:
        args += ["--threads", str(threads)]
    env = dict(os.environ)
    env.pop("CSPRESNET_ISA", None)
    if isa:
        env["CSPRESNET_ISA"] = isa
    proc = run_cli(args, env=env)
    assert proc.returncode == 0, describe_proc(proc)
    return state, x, grads, out


@pytest.mark.parametrize("train_bn", [False, True], ids=["eval-bn", "train-bn"])
@pytest.mark.parametrize("name,cfg,shape", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_gradients_match_autograd(tmp_path, name, cfg, shape, train_bn):
    state, x, grads, out = run_grad(tmp_path, cfg, shape, train_bn)
    gx, pgrads, buffers = reference(cfg, state, x, grads, train_bn)
    _, pgrads32, _ = reference(cfg, state, x, grads, train_bn, dtype=torch.float32)
    desc = f"{name} {cfg.describe()} input {shape} train_bn={train_bn}"
    compare(gx, np.load(out / "input.npy"), f"input gradient; {desc}")
    assert len(pgrads) > 10
    for key, g in pgrads.items():
        if not np.any(g):  # e.g. parameters of stages not in the loss
            assert np.abs(np.load(out / "params" / f"{key}.npy")).max() <= 1e-12, f"{key}; {desc}"
            continue
        # 1e-4 unless float32 autograd itself misses it (one-element alpha gradients in
        # train-BN mode are sums with heavy cancellation): then 3x PyTorch float32's error
        torch32 = float(np.abs(pgrads32[key] - g).max() / np.abs(g).max())
        compare(g, np.load(out / "params" / f"{key}.npy"),
                f"d/d {key}; {desc}; PyTorch float32 error {torch32:.3g}", rtol=max(1e-4, 3 * torch32))
    if train_bn:
        used = [k for k in buffers]
        assert used
        for key in used:
            compare(buffers[key], np.load(out / "buffers" / f"{key}.npy"), f"running {key}; {desc}")


def test_threads_bit_identical(tmp_path):
    name, cfg, shape = CONFIGS[0]
    _, _, _, out1 = run_grad(tmp_path, cfg, shape, True, threads=1)
    _, _, _, out2 = run_grad(tmp_path, cfg, shape, True, threads=2)
    files = sorted(p.relative_to(out1) for p in out1.rglob("*.npy"))
    assert len(files) > 20
    for f in files:
        a, b = np.load(out1 / f), np.load(out2 / f)
        assert a.tobytes() == b.tobytes(), f"{f} differs between 1 and 2 threads"


@pytest.mark.parametrize("isa", ["ref", "generic", "avx2", "avx512"])
def test_every_isa_matches_autograd_and_is_thread_independent(tmp_path, isa):
    """The training kernels of each table (the reference path included; an ISA the CPU
    lacks falls back to the best one) against autograd, at 1 and 2 threads."""
    for name, cfg, shape in (CONFIGS[0], CONFIGS[2]):
        d = tmp_path / name
        d.mkdir()
        state, x, grads, out1 = run_grad(d, cfg, shape, True, threads=1, isa=isa)
        _, _, _, out2 = run_grad(d, cfg, shape, True, threads=2, isa=isa)
        gx, pgrads, _ = reference(cfg, state, x, grads, True)
        _, pgrads32, _ = reference(cfg, state, x, grads, True, dtype=torch.float32)
        desc = f"{name} isa={isa} input {shape} train-bn"
        compare(gx, np.load(out1 / "input.npy"), f"input gradient; {desc}")
        for key, g in pgrads.items():
            if not np.any(g):
                continue
            torch32 = float(np.abs(pgrads32[key] - g).max() / np.abs(g).max())
            compare(g, np.load(out1 / "params" / f"{key}.npy"), f"d/d {key}; {desc}",
                    rtol=max(1e-4, 3 * torch32))
        for f in sorted(p.relative_to(out1) for p in out1.rglob("*.npy")):
            assert np.load(out1 / f).tobytes() == np.load(out2 / f).tobytes(), f"{f} differs, 1 vs 2 threads; {desc}"


def test_missing_grad_file_is_an_error(tmp_path):
    cfg = ref.Config(**TINY, return_idx=(1, 2))
    state = ref.random_state(cfg.build(), 1)
    pdw.write_pdparams(tmp_path / "w.pdparams", state)
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 16, 16), np.float32))
    (tmp_path / "g").mkdir()
    proc = run_cli(["grad", "--weights", str(tmp_path / "w.pdparams"), "--input", str(tmp_path / "x.npy"),
                    "--grad-dir", str(tmp_path / "g"), "--out", str(tmp_path / "o"), "--return-idx", "1,2"])
    assert proc.returncode == 1, describe_proc(proc)
    assert "stage1.npy" in proc.stderr
