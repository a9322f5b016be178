"""Deploy mode against upstream: outputs, fused kernels and parameter counts.

Interfaces under test:
    cspresnet infer --weights FILE --input X.npy --out DIR --deploy [--return-idx ..]
    cspresnet convert --weights FILE -o OUT.safetensors --deploy
    cspresnet summary --arch P [--alpha] --deploy

1. Deployed outputs match the *un-deployed* PyTorch port (tests/ref, float64) within
   max|diff| <= 1e-4 * max|ref| on every preset, with and without alpha, with BN
   statistics calibrated far from identity (random_state), so a missed or wrong fold
   shows.
2. Upstream's convert_to_deploy (RepVggBlock._fuse_bn_tensor and
   get_equivalent_kernel_bias, alpha included) is ported below to PyTorch float32 and
   its kernels and biases are compared with the ones `convert --deploy` writes (read
   with json + numpy only): bit-identical for every RepVGG block, and for every
   ConvBNLayer, which deploy folds with the same rule.
3. `summary --deploy` totals equal the deployed parameter count computed here from
   the PyTorch module tree (a conv with bias per ConvBNLayer, one 3x3 conv with bias
   per RepVGG block, the ESE fc unchanged).
"""
from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cspresnet_torch as ref
import pdparams_writer as pdw
from conftest import compare, describe_proc, run_cli

RETURN_ALL = (0, 1, 2, 3)
_STATES = {}


def state_for(cfg: "ref.Config", seed: int):
    key = (repr(cfg.replace(return_idx=RETURN_ALL)), seed)
    if key not in _STATES:
        _STATES[key] = ref.random_state(cfg.build(), seed)
    return _STATES[key]


def read_safetensors(path: Path):
    """(metadata, {name: float32 array}) with json + numpy only, in header order."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    out = {}
    for name, info in header.items():
        assert info["dtype"] == "F32", name
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype="<f4").reshape(info["shape"])
    return meta, out


# --------------------------------------------------------------------------- 1. outputs

@pytest.mark.parametrize("alpha", [False, True], ids=["no-alpha", "alpha"])
@pytest.mark.parametrize("name", ["t", "s", "m", "l", "x"])
def test_deployed_matches_undeployed_reference(tmp_path, name, alpha):
    cfg = ref.preset(name, use_alpha=alpha, return_idx=RETURN_ALL)
    state = state_for(cfg, seed=11)
    if alpha:  # alpha far from 1 so that a fold without it shows
        assert any(k.endswith(".alpha") and abs(float(v[0]) - 1.0) > 0.2 for k, v in state.items())
    weights = tmp_path / "w.pdparams"
    pdw.write_pdparams(weights, state)
    x = np.random.default_rng(5).standard_normal((1, 3, 64, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out_dir = tmp_path / "out"
    proc = run_cli(["infer", "--weights", weights, "--input", tmp_path / "x.npy", "--out", out_dir,
                    "--return-idx", "0,1,2,3", "--deploy"])
    weights.unlink()
    assert proc.returncode == 0, describe_proc(proc)
    refs = ref.reference_outputs(cfg, state, x)
    for i, r in zip(RETURN_ALL, refs):
        out = np.load(out_dir / f"stage{i}.npy")
        compare(r, out, config=f"deployed stage{i}: {cfg.describe()}")


# --------------------------------------------------------------------------- 2. fused kernels

def upstream_fuse_bn_tensor(state, branch: str):
    """RepVggBlock._fuse_bn_tensor, line by line, in float32."""
    kernel = torch.from_numpy(state[branch + ".conv.weight"])
    running_mean = torch.from_numpy(state[branch + ".bn._mean"])
    running_var = torch.from_numpy(state[branch + ".bn._variance"])
    gamma = torch.from_numpy(state[branch + ".bn.weight"])
    beta = torch.from_numpy(state[branch + ".bn.bias"])
    eps = 1e-5  # BatchNorm2D._epsilon
    std = (running_var + eps).sqrt()
    t = (gamma / std).reshape((-1, 1, 1, 1))
    return kernel * t, beta - running_mean * gamma / std


def upstream_equivalent_kernel_bias(state, block: str):
    """RepVggBlock.get_equivalent_kernel_bias (alpha or not), in float32."""
    kernel3x3, bias3x3 = upstream_fuse_bn_tensor(state, block + ".conv1")
    kernel1x1, bias1x1 = upstream_fuse_bn_tensor(state, block + ".conv2")
    pad = F.pad(kernel1x1, [1, 1, 1, 1])  # _pad_1x1_to_3x3_tensor
    if block + ".alpha" in state:
        alpha = torch.from_numpy(state[block + ".alpha"])
        return kernel3x3 + alpha * pad, bias3x3 + alpha * bias1x1
    return kernel3x3 + pad, bias3x3 + bias1x1


@pytest.mark.parametrize("name,alpha", [("s", True), ("s", False), ("t", True)])
def test_fused_kernels_bit_identical_to_upstream_math(tmp_path, name, alpha):
    cfg = ref.preset(name, use_alpha=alpha)
    state = state_for(cfg, seed=12)
    src = tmp_path / "w.pdparams"
    pdw.write_pdparams(src, state)
    out = tmp_path / "d.safetensors"
    proc = run_cli(["convert", "--weights", src, "-o", out, "--deploy"])
    assert proc.returncode == 0, describe_proc(proc)
    meta, fused = read_safetensors(out)
    assert meta["deployed"] == "1"

    blocks = sorted({m.group(1) for k in state for m in [re.match(r"(.*\.blocks\.\d+\.conv2)\.conv1\.", k)] if m})
    convbn = sorted({k[:-len(".conv.weight")] for k in state if k.endswith(".conv.weight")} -
                    {b + ".conv1" for b in blocks} - {b + ".conv2" for b in blocks})
    assert len(blocks) == sum(cfg.build().layers)  # one RepVGG block per BasicBlock
    checked = 0
    for b in blocks:
        k, bias = upstream_equivalent_kernel_bias(state, b)
        ours_k, ours_b = fused[b + ".conv.weight"], fused[b + ".conv.bias"]
        assert ours_k.shape == tuple(k.shape) and ours_b.shape == tuple(bias.shape), b
        # bit for bit, not approximately
        np.testing.assert_array_equal(ours_k.view(np.uint32), k.numpy().view(np.uint32), err_msg=b)
        np.testing.assert_array_equal(ours_b.view(np.uint32), bias.numpy().view(np.uint32), err_msg=b)
        checked += 1
    for layer in convbn:
        k, bias = upstream_fuse_bn_tensor(state, layer)
        np.testing.assert_array_equal(fused[layer + ".conv.weight"].view(np.uint32), k.numpy().view(np.uint32),
                                      err_msg=layer)
        np.testing.assert_array_equal(fused[layer + ".conv.bias"].view(np.uint32), bias.numpy().view(np.uint32),
                                      err_msg=layer)
        checked += 1
    # the ESE fc is copied unchanged; nothing else is in the file
    for key in state:
        if ".attn.fc." in key:
            np.testing.assert_array_equal(fused[key], state[key])
    expected = {f"{p}.conv.{w}" for p in blocks + convbn for w in ("weight", "bias")} | \
               {k for k in state if ".attn.fc." in k}
    assert set(fused) == expected
    assert checked == len(blocks) + len(convbn) > 0


def test_fold_is_sensitive_to_alpha(tmp_path):
    """Guards the test above: fusing without alpha gives different kernels."""
    cfg = ref.preset("s", use_alpha=True)
    state = state_for(cfg, seed=12)
    block = "stages.0.blocks.0.conv2"
    with_alpha, _ = upstream_equivalent_kernel_bias(state, block)
    no_alpha_state = {k: v for k, v in state.items() if k != block + ".alpha"}
    without, _ = upstream_equivalent_kernel_bias(no_alpha_state, block)
    assert not torch.equal(with_alpha, without)


# --------------------------------------------------------------------------- 3. summary --deploy

def deployed_param_count(cfg: "ref.Config") -> int:
    """Counted from the PyTorch module tree, independently of the C code."""
    model = cfg.build()
    total = 0
    for name, mod in model.named_modules():
        if isinstance(mod, ref.RepVggBlock):
            c_out, c_in = mod.conv1.conv.weight.shape[:2]
            total += c_out * c_in * 9 + c_out
        elif isinstance(mod, ref.ConvBNLayer):
            if re.search(r"blocks\.\d+\.conv2\.conv[12]$", name):
                continue  # folded into the RepVGG block above
            total += mod.conv.weight.numel() + mod.conv.weight.shape[0]
        elif isinstance(mod, ref.EffectiveSELayer):
            total += mod.fc.weight.numel() + mod.fc.bias.numel()
    return total


def summary_counts(text: str):
    out = {}
    for label in ("Total params", "Trainable params", "Non-trainable params"):
        m = re.search(rf"^{label}: ([\d,]+)", text, re.M)
        assert m, f"no '{label}' line in:\n{text}"
        out[label] = int(m.group(1).replace(",", ""))
    return out


@pytest.mark.parametrize("name,alpha", [("t", True), ("s", False), ("s", True), ("m", False), ("l", True),
                                        ("x", False)])
def test_summary_deploy_totals(name, alpha):
    cfg = ref.preset(name, use_alpha=alpha)
    args = ["summary", "--arch", name, "--input-size", "1,3,64,64"] + (["--alpha"] if alpha else [])
    plain = run_cli(args)
    deployed = run_cli(args + ["--deploy"])
    assert plain.returncode == 0 and deployed.returncode == 0, describe_proc(deployed)
    counts = summary_counts(deployed.stdout)
    expected = deployed_param_count(cfg)
    assert counts["Total params"] == expected, deployed.stdout[-2000:]
    assert counts["Non-trainable params"] == 0
    assert counts["Trainable params"] == expected
    # and it is smaller than the un-deployed count paddle.summary gives
    assert summary_counts(plain.stdout)["Total params"] > expected


def test_deploy_replace_equals_deploy_and_keeps_the_model_on_refusal():
    """cspresnet_model_deploy_replace (what the CLI uses: it releases each source layer
    as it folds it, so a .pdparams deploys in about one copy of the weights) gives the
    same parameters bit for bit as cspresnet_model_deploy (tests/c/test_deploy_replace.c)."""
    import subprocess

    from conftest import get_build_dir

    exe = get_build_dir() / "tests" / "test_deploy_replace"
    assert exe.is_file(), f"{exe} missing"
    proc = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, describe_proc(proc)
    m = re.search(r"(\d+) of (\d+) deployed parameters identical; 0 failures", proc.stdout)
    assert m and m.group(1) == m.group(2) and int(m.group(2)) > 50, proc.stdout
