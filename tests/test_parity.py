"""Parity of `cspresnet infer` with the PyTorch port of upstream CSPResNet (tests/ref).

Interface under test:
    cspresnet infer --weights FILE --input X.npy --out DIR [--act A]
                    [--return-idx 0,1,2,3] [--threads N]
writes DIR/stage{i}.npy (float32, N x C x H x W) for each i in return_idx (default 1,2,3,
upstream's detection default), exits 0 and prints one line per output. The architecture
(channels, layers, stem, alpha) is inferred from the weight file.

Every output must satisfy max|diff| <= 1e-4 * max|ref|, the reference being the port run
in float64 on the very weights written to the file. Refusals must exit 1 with a message
that names the problem.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import cspresnet_torch as ref
import pdparams_writer as pdw
from conftest import compare, describe_proc, run_cli

DEFAULT_RETURN_IDX = (1, 2, 3)

_STATE_CACHE = {}


def cached_state(cfg: "ref.Config", seed: int):
    """Random (calibrated) weights for cfg, computed once per session."""
    key = (repr(cfg), seed)
    if key not in _STATE_CACHE:
        _STATE_CACHE[key] = ref.random_state(cfg.build(), seed)
    return _STATE_CACHE[key]


def make_input(shape, seed=0, scale=1.0) -> np.ndarray:
    return (np.random.default_rng(1000 + seed).standard_normal(shape) * scale).astype(np.float32)


def write_input(path: Path, x: np.ndarray) -> Path:
    np.save(path, np.ascontiguousarray(x, dtype=np.float32))
    return path


def infer(weights, x_path, out_dir: Path, act=None, return_idx=None, threads=None):
    out_dir.mkdir(parents=True, exist_ok=True)
    args = ["infer", "--weights", weights, "--input", x_path, "--out", out_dir]
    if act is not None:
        args += ["--act", act]
    if return_idx is not None:
        args += ["--return-idx", ",".join(str(i) for i in return_idx)]
    if threads is not None:
        args += ["--threads", threads]
    return run_cli(args)


def load_outputs(proc, out_dir: Path, return_idx, context=""):
    assert proc.returncode == 0, f"infer failed\n{describe_proc(proc)}\n{context}"
    outs = []
    for i in return_idx:
        p = out_dir / f"stage{i}.npy"
        assert p.is_file(), f"{p.name} not written\n{describe_proc(proc)}\n{context}"
        a = np.load(p, allow_pickle=False)
        assert a.dtype == np.float32, f"{p.name}: dtype {a.dtype}, expected float32\n{context}"
        assert a.ndim == 4, f"{p.name}: shape {a.shape}, expected N x C x H x W\n{context}"
        outs.append(a)
    for i in range(4):
        if i not in return_idx:
            assert not (out_dir / f"stage{i}.npy").exists(), \
                f"stage{i}.npy written but {i} is not in return_idx {list(return_idx)}\n{context}"
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) >= len(return_idx), \
        f"expected one stdout line per output ({len(return_idx)})\n{describe_proc(proc)}"
    return outs


def check_parity(tmp_path: Path, cfg: "ref.Config", state, x: np.ndarray, *, protocol=4,
                 prefix="", extra=None, file_dtype=None, ref_state=None, act_flag=None,
                 pass_return_idx=True, threads=None, tag="run"):
    """Writes state to a .pdparams, runs the CLI on x and compares every output with the
    port (run on ref_state, default state). Returns (outputs, proc)."""
    weights = tmp_path / f"{tag}.pdparams"
    pdw.write_pdparams(weights, state, protocol=protocol, prefix=prefix, extra=extra,
                       dtype=file_dtype)
    x_path = write_input(tmp_path / f"{tag}_x.npy", x)
    out_dir = tmp_path / f"{tag}_out"
    return_idx = tuple(cfg.return_idx)
    context = (f"{cfg.describe()}\ninput {x.shape}, protocol {protocol}, prefix {prefix!r}, "
               f"file dtype {np.dtype(file_dtype or np.float32).name}, threads {threads}, "
               f"extra entries {len(extra or {})}")
    try:
        proc = infer(weights, x_path, out_dir,
                     act=act_flag,
                     return_idx=return_idx if pass_return_idx else None,
                     threads=threads)
        outs = load_outputs(proc, out_dir, return_idx, context)
    finally:
        weights.unlink(missing_ok=True)  # up to 160 MB (x)
    refs = ref.reference_outputs(cfg, state if ref_state is None else ref_state, x)
    assert len(outs) == len(refs)
    for i, o, r in zip(return_idx, outs, refs):
        compare(r, o, config=f"stage{i}: {context}")
    return outs, proc


# --------------------------------------------------------------------------- presets

@pytest.mark.parametrize("name", ["t", "s", "m", "l", "x"])
def test_preset_64(tmp_path, name):
    """Every preset, random weights and BN statistics, 1x3x64x64, protocol 4, default
    flags (swish, return_idx 1,2,3)."""
    cfg = ref.preset(name)
    assert tuple(cfg.return_idx) == DEFAULT_RETURN_IDX
    check_parity(tmp_path, cfg, cached_state(cfg, seed=1), make_input((1, 3, 64, 64)),
                 pass_return_idx=False)


def test_preset_s_odd_size_batch2(tmp_path):
    cfg = ref.preset("s", return_idx=(0, 1, 2, 3))
    check_parity(tmp_path, cfg, cached_state(ref.preset("s"), seed=1),
                 make_input((2, 3, 37, 53), seed=2))


@pytest.mark.parametrize("protocol", [2, 4])
def test_pickle_protocols(tmp_path, protocol):
    cfg = ref.preset("s", return_idx=(0, 1, 2, 3))
    check_parity(tmp_path, cfg, cached_state(ref.preset("s"), seed=1),
                 make_input((1, 3, 64, 64), seed=3), protocol=protocol)


def test_t_relu_320(tmp_path):
    """PP-YOLOE+ t-relu flavour: alpha on, relu, 320x320 input."""
    cfg = ref.preset("t", act="relu")
    check_parity(tmp_path, cfg, cached_state(cfg, seed=4), make_input((1, 3, 320, 320), seed=4),
                 act_flag="relu")


# --------------------------------------------------------------------------- checkpoints

@pytest.mark.parametrize("protocol", [2, 4])
def test_full_detector_checkpoint(tmp_path, protocol):
    """A PP-YOLOE+ style checkpoint: backbone.* keys (with alpha) plus neck.*, yolo_head.*
    and aux_* entries that the loader must skip, saying how many it skipped."""
    cfg = ref.preset("t")
    extra = pdw.fake_detector_extras(seed=5, with_aux=True)
    n_extra = len(extra)
    _, proc = check_parity(tmp_path, cfg, cached_state(cfg, seed=1), make_input((1, 3, 64, 64), seed=5),
                           prefix="backbone.", extra=extra, protocol=protocol)
    text = proc.stdout + proc.stderr
    # the name table entry may or may not be counted as skipped
    counts = {n_extra, n_extra + 1}
    assert "skip" in text.lower() and any(re.search(rf"\b{n}\b", text) for n in counts), \
        f"expected the number of skipped entries ({n_extra}) to be reported\n{describe_proc(proc)}"


def test_custom_config(tmp_path):
    """width 0.25, depth 0.5, relu, alpha, small stem, return_idx 0..3, batch 2, 67x45."""
    cfg = ref.Config(width_mult=0.25, depth_mult=0.5, act="relu", use_alpha=True,
                     use_large_stem=False, return_idx=(0, 1, 2, 3))
    assert cfg.build().layers == [2, 3, 3, 2]
    check_parity(tmp_path, cfg, ref.random_state(cfg.build(), seed=6), make_input((2, 3, 67, 45), seed=6),
                 act_flag="relu")


ALL_ACTS = ["swish", "silu", "relu", "leaky_relu", "mish", "hardswish", "gelu", "relu6",
            "sigmoid", "none", "identity"]


@pytest.mark.parametrize("act", ALL_ACTS)
def test_activation(tmp_path, act):
    """Each activation name on a tiny config (weights calibrated for that activation);
    the input is scaled by 3 so the saturating regions (relu6, hardswish) are reached."""
    cfg = ref.Config(width_mult=0.25, depth_mult=0.33, act=act, use_alpha=True,
                     use_large_stem=True, return_idx=(0, 1, 2, 3))
    state = cached_state(cfg, seed=7)
    check_parity(tmp_path, cfg, state, make_input((1, 3, 40, 48), seed=7, scale=3.0), act_flag=act)


def test_threads_identical(tmp_path):
    cfg = ref.preset("s", return_idx=(0, 1, 2, 3))
    state = cached_state(ref.preset("s"), seed=1)
    x = make_input((1, 3, 128, 128), seed=8)
    out1, _ = check_parity(tmp_path, cfg, state, x, threads=1, tag="t1")
    out2, _ = check_parity(tmp_path, cfg, state, x, threads=2, tag="t2")
    for i, a, b in zip(cfg.return_idx, out1, out2):
        assert np.array_equal(a, b), \
            f"stage{i}: --threads 1 and --threads 2 differ (max {np.abs(a - b).max():.3g})"


def test_float64_weights(tmp_path):
    """A float64 file (values not representable in float32) is converted on load."""
    cfg = ref.preset("s", return_idx=(0, 1, 2, 3))
    state32 = cached_state(ref.preset("s"), seed=1)
    rng = np.random.default_rng(9)
    state64 = {k: v.astype(np.float64) * (1.0 + 1e-9 * rng.standard_normal(v.shape))
               for k, v in state32.items()}
    assert any(not np.array_equal(v.astype(np.float32).astype(np.float64), v) for v in state64.values())
    check_parity(tmp_path, cfg, state64, make_input((1, 3, 64, 64), seed=9),
                 file_dtype=np.float64)


def test_float16_weights(tmp_path):
    """A float16 file; the reference runs on the f16-rounded weights."""
    cfg = ref.preset("s", return_idx=(0, 1, 2, 3))
    state32 = cached_state(ref.preset("s"), seed=1)
    state16 = {k: v.astype(np.float16) for k, v in state32.items()}
    assert all(np.all(np.isfinite(v)) for v in state16.values())
    ref_state = {k: v.astype(np.float32) for k, v in state16.items()}
    check_parity(tmp_path, cfg, state16, make_input((1, 3, 64, 64), seed=10),
                 file_dtype=np.float16, ref_state=ref_state)


# --------------------------------------------------------------------------- refusals

TINY = ref.Config(width_mult=0.25, depth_mult=0.33, act="swish", use_alpha=False,
                  use_large_stem=True, return_idx=(1, 2, 3))
# channels [16, 32, 64, 128, 256]; stage mids 24, 48, 96, 192


@pytest.fixture(scope="module")
def tiny_state():
    return cached_state(TINY, seed=11)


@pytest.fixture()
def tiny_input(tmp_path):
    return write_input(tmp_path / "x.npy", make_input((1, 3, 32, 32), seed=11))


def expect_refusal(proc, *needles, codes=(1,)):
    assert proc.returncode in codes, \
        f"expected exit code {' or '.join(map(str, codes))}\n{describe_proc(proc)}"
    for n in needles:
        if isinstance(n, re.Pattern):
            assert n.search(proc.stderr), f"stderr should match {n.pattern!r}\n{describe_proc(proc)}"
        else:
            assert n in proc.stderr, f"stderr should mention {n!r}\n{describe_proc(proc)}"


def test_tiny_baseline_ok(tmp_path, tiny_state):
    """The unmodified tiny file works (so the refusals below are due to the damage)."""
    check_parity(tmp_path, TINY, tiny_state, make_input((1, 3, 32, 32), seed=11))


@pytest.mark.parametrize("key", ["stages.2.blocks.0.conv2.conv2.bn._mean",
                                 "stages.1.attn.fc.bias",
                                 "stem.conv2.bn._variance"])
def test_refuse_missing_key(tmp_path, tiny_state, tiny_input, key):
    state = dict(tiny_state)
    del state[key]
    w = tmp_path / "w.pdparams"
    pdw.write_pdparams(w, state)
    proc = infer(w, tiny_input, tmp_path / "out")
    expect_refusal(proc, key)


@pytest.mark.parametrize("key,bad_shape,good", [
    ("stages.0.blocks.0.conv1.conv.weight", (12, 13, 3, 3), (12, 12, 3, 3)),
    ("stages.2.conv3.bn._variance", (127,), (128,)),
])
def test_refuse_shape_mismatch(tmp_path, tiny_state, tiny_input, key, bad_shape, good):
    state = dict(tiny_state)
    assert state[key].shape == good
    state[key] = np.random.default_rng(12).uniform(0.5, 2.0, bad_shape).astype(np.float32)
    w = tmp_path / "w.pdparams"
    pdw.write_pdparams(w, state)
    proc = infer(w, tiny_input, tmp_path / "out")
    odd_dim = [b for b, g in zip(bad_shape, good) if b != g][0]
    good_dim = [g for b, g in zip(bad_shape, good) if b != g][0]
    expect_refusal(proc, key, re.compile(rf"\b{odd_dim}\b"), re.compile(rf"\b{good_dim}\b"))


def test_refuse_unknown_act(tmp_path, tiny_state, tiny_input):
    w = tmp_path / "w.pdparams"
    pdw.write_pdparams(w, tiny_state)
    proc = infer(w, tiny_input, tmp_path / "out", act="swishy")
    # a bad flag value may be treated as a usage error (exit 2)
    assert proc.returncode in (1, 2), describe_proc(proc)
    assert "swishy" in proc.stderr or "act" in proc.stderr.lower(), \
        f"stderr should name the activation\n{describe_proc(proc)}"


def test_refuse_return_idx_out_of_range(tmp_path, tiny_state, tiny_input):
    w = tmp_path / "w.pdparams"
    pdw.write_pdparams(w, tiny_state)
    proc = infer(w, tiny_input, tmp_path / "out", return_idx=[5])
    expect_refusal(proc, re.compile(r"return[_-]idx", re.I), codes=(2,))  # a usage error
    assert not (tmp_path / "out" / "stage5.npy").exists()


def test_refuse_wrong_channel_count(tmp_path, tiny_state):
    w = tmp_path / "w.pdparams"
    pdw.write_pdparams(w, tiny_state)
    x = write_input(tmp_path / "x4.npy", make_input((1, 4, 32, 32)))
    proc = infer(w, x, tmp_path / "out")
    expect_refusal(proc, re.compile(r"channel", re.I), re.compile(r"\b3\b"))


def test_refuse_missing_weights_file(tmp_path, tiny_input):
    missing = tmp_path / "does_not_exist.pdparams"
    proc = infer(missing, tiny_input, tmp_path / "out")
    expect_refusal(proc, str(missing))
