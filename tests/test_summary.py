"""`cspresnet summary`: parameter counts and FLOPs against SPEC §2 and the PyTorch port.

Expected output lines (paddle.summary's convention, BN _mean/_variance non-trainable):
    Total params: 3,000,928
    Trainable params: 2,992,976
    Non-trainable params: 7,952
plus MACs / FLOPs at 1x3x640x640 with a line `Total FLOPs: 8.80 G`.
"""
from __future__ import annotations

import re

import pytest

import cspresnet_torch as ref
from conftest import describe_proc, run_cli

SPEC_PARAMS = {
    # total, trainable, non-trainable, state-dict tensors
    "s": (3_000_928, 2_992_976, 7_952, 193),
    "m": (9_333_888, 9_317_424, 16_464, 283),
    "l": (21_186_752, 21_158_752, 28_000, 373),
    "x": (40_283_200, 40_240_640, 42_560, 463),
}
SPEC_GFLOPS = {"s": 8.80, "m": 27.29, "l": 61.91, "x": 117.70}
N_BASIC_BLOCKS = {"s": 6, "m": 12, "l": 18, "x": 24}


def parse_count(text: str, label: str) -> int:
    m = re.search(rf"^\s*{label}:\s*([\d,]+)\s*$", text, re.M)
    assert m, f"no line '{label}: N' in output:\n{text}"
    return int(m.group(1).replace(",", ""))


def parse_total_gflops(text: str) -> float:
    m = re.search(r"^\s*Total FLOPs\b.*?([0-9]+(?:\.[0-9]+)?)\s*G", text, re.M)
    assert m, f"no 'Total FLOPs: <x> G' line in output:\n{text}"
    return float(m.group(1))


def summary(*args):
    proc = run_cli(["summary", *args])
    assert proc.returncode == 0, describe_proc(proc)
    return proc


@pytest.mark.parametrize("arch", ["s", "m", "l", "x"])
def test_param_counts(arch):
    proc = summary("--arch", arch)
    got = tuple(parse_count(proc.stdout, lab) for lab in
                ("Total params", "Trainable params", "Non-trainable params"))
    assert got == SPEC_PARAMS[arch][:3], f"{arch}: {got} != SPEC {SPEC_PARAMS[arch][:3]}\n{proc.stdout}"
    port = ref.param_counts(ref.preset(arch).build())
    assert got == (port["total"], port["trainable"], port["non_trainable"]), \
        f"{arch}: {got} != torch port {port}"


@pytest.mark.parametrize("arch", ["s", "m", "l", "x"])
def test_total_flops(arch):
    proc = summary("--arch", arch)
    g = parse_total_gflops(proc.stdout)
    assert abs(g - SPEC_GFLOPS[arch]) <= 0.005 * SPEC_GFLOPS[arch], \
        f"{arch}: Total FLOPs {g} G, SPEC {SPEC_GFLOPS[arch]} G\n{proc.stdout}"


def test_s_macs_flops_against_torch_hooks():
    proc = summary("--arch", "s")
    assert "MACs" in proc.stdout and "FLOPs" in proc.stdout, proc.stdout
    g = parse_total_gflops(proc.stdout)
    # counted with forward hooks on every Conv2d during a real forward at 1x3x640x640
    hooks = ref.conv_flops(ref.preset("s").build(), (1, 3, 640, 640), device="cpu") / 1e9
    assert abs(hooks - SPEC_GFLOPS["s"]) <= 0.005 * SPEC_GFLOPS["s"], hooks
    assert abs(g - hooks) <= 0.005 * hooks, f"CLI {g} G vs torch hooks {hooks:.4f} G\n{proc.stdout}"


def test_alpha_adds_one_param_per_basic_block():
    base = summary("--arch", "s").stdout
    alpha = summary("--arch", "s", "--alpha").stdout
    port = ref.param_counts(ref.preset("s", use_alpha=True).build())
    n = N_BASIC_BLOCKS["s"]
    assert parse_count(alpha, "Total params") == parse_count(base, "Total params") + n == port["total"]
    assert parse_count(alpha, "Trainable params") == parse_count(base, "Trainable params") + n \
        == port["trainable"]
    assert parse_count(alpha, "Non-trainable params") == parse_count(base, "Non-trainable params")


def test_odd_mid_width_refused():
    # width 0.3: channels 19, 38, 77, 154, 307; stage 1 mid = (38+77)//2 = 57 is odd
    with pytest.raises(ValueError):
        ref.Config(width_mult=0.3).build()
    proc = run_cli(["summary", "--width-mult", "0.3"])
    assert proc.returncode == 1, describe_proc(proc)
    assert re.search(r"stage[s]?[ ._#]?1\b", proc.stderr, re.I), \
        f"stderr should name stage 1\n{describe_proc(proc)}"
    assert re.search(r"\b57\b", proc.stderr), f"stderr should name the odd mid width 57\n{describe_proc(proc)}"
