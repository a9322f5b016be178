"""Rough edges a new user meets in the first hour of the CLI: a diverging fine-tune,
what `grad` says it wrote, `infer` without an input, and the edges of --threads,
--return-idx, empty inputs and relative paths in list files.

Every test runs the CLI (conftest.run_cli) and checks its exit status, its message and
the files it leaves, against facts computed here (files counted on disk, values read
back with numpy, shapes from the architecture), never against the CLI's own numbers.
"""
from __future__ import annotations

import math
import os
import re
import struct

import numpy as np
import pytest
from PIL import Image

import cspresnet_torch as ref
import pdparams_writer as pdw
from conftest import describe_proc, run_cli

FMNIST = "/usr/share/datasets/fashion-mnist"
TINY = ref.Config(layers=(1, 1, 1, 1), channels=(8, 8, 16, 16, 32), return_idx=(1, 2, 3), use_alpha=True)
TRAIN_FILES = {"checkpoint.ckpt", "model.pdparams", "model.safetensors", "head.weight.npy", "head.bias.npy",
               "log.csv"}


@pytest.fixture(scope="module")
def tiny_state():
    return ref.random_state(TINY.build(), 3)


@pytest.fixture
def tiny_weights(tmp_path, tiny_state):
    path = tmp_path / "tiny.pdparams"
    pdw.write_pdparams(path, tiny_state)
    return path


def read_checkpoint(path):
    """The training checkpoint (layout in src/train/checkpoint.c): step, {key: float32}."""
    b = path.read_bytes()
    assert b[:8] == b"CSPRTRN1", f"{path}: not a checkpoint"
    step, count = struct.unpack_from("<qi", b, 8)
    off, tensors = 20, {}
    for _ in range(count):
        (kl,) = struct.unpack_from("<I", b, off)
        key = b[off + 4:off + 4 + kl].decode()
        off += 4 + kl
        (n,) = struct.unpack_from("<q", b, off)
        tensors[key] = np.frombuffer(b, np.float32, n, off + 8)
        off += 8 + 4 * n
    assert off == len(b), f"{path}: {len(b) - off} trailing bytes"
    return step, tensors


# ---------------------------------------------------------------- 1: divergence

def test_diverging_train_says_not_finite_and_keeps_the_last_finite_checkpoint(tmp_path):
    """lr 100 diverges within a few steps; one step per epoch, so a checkpoint is written
    after every finite step. The run must stop with exit 1 naming the step, and leave the
    checkpoint of the step before, all finite, with no temporary file beside it."""
    assert os.path.isdir(FMNIST), "install dataset-fashion-mnist (scripts/install-deps.sh test)"
    out = tmp_path / "run"
    p = run_cli(["train", "--arch", "t", "--limit-train", 16, "--limit-test", 16, "--batch", 16, "--steps", 30,
                 "--lr", 100, "--schedule", "constant", "--threads", 2, "--out", out, "-q"])
    assert p.returncode == 1, describe_proc(p)
    assert "out of memory" not in p.stderr, describe_proc(p)
    m = re.search(r"not finite (?:at|after) step (\d+)", p.stderr)
    assert m and "diverged" in p.stderr, describe_proc(p)
    bad_step = int(m.group(1))
    assert 1 < bad_step < 30, describe_proc(p)
    assert {f.name for f in out.iterdir()} == TRAIN_FILES, sorted(f.name for f in out.iterdir())
    step, tensors = read_checkpoint(out / "checkpoint.ckpt")
    assert step == bad_step - 1, f"checkpoint at step {step}, divergence reported at step {bad_step}"
    nonfinite = [k for k, v in tensors.items() if not np.all(np.isfinite(v))]
    assert not nonfinite, f"checkpoint holds NaN/inf in {nonfinite[:5]}"
    saved = pdw.read_pdparams(out / "model.pdparams")
    arrays = [v for v in saved.values() if isinstance(v, np.ndarray)]
    assert arrays and all(np.all(np.isfinite(v)) for v in arrays), "model.pdparams holds NaN/inf"
    for f in ("head.weight.npy", "head.bias.npy"):
        assert np.all(np.isfinite(np.load(out / f))), f
    rows = (out / "log.csv").read_text().splitlines()[1:]
    assert int(rows[-1].split(",")[0]) == step and all(math.isfinite(float(r.split(",")[3])) for r in rows)
    assert str(out / "checkpoint.ckpt") in p.stderr and f"step {step}" in p.stderr, describe_proc(p)


def test_train_from_nan_weights_is_refused_at_load_and_writes_nothing(tmp_path, tiny_state):
    """NaN weights never reach the trainer: the loader refuses them naming the key (item 5),
    so the fine-tune neither reports a memory error nor writes a checkpoint."""
    state = dict(tiny_state)
    key = next(k for k in state if k.endswith("conv.weight"))
    w = np.array(state[key], dtype=np.float32)
    w.flat[0] = np.nan
    state[key] = w
    weights = tmp_path / "nan.pdparams"
    pdw.write_pdparams(weights, state)
    out = tmp_path / "run"
    p = run_cli(["train", "--weights", weights, "--limit-train", 32, "--limit-test", 16, "--batch", 16,
                 "--steps", 4, "--threads", 2, "--out", out])
    assert p.returncode == 1, describe_proc(p)
    assert "out of memory" not in p.stderr, describe_proc(p)
    assert str(weights) in p.stderr and key in p.stderr and "NaN" in p.stderr, describe_proc(p)
    assert not out.exists() or not any(out.iterdir()), sorted(f.name for f in out.iterdir())


# ---------------------------------------------------------------- 9: grad's count

def grad_case(tmp_path, weights):
    """x (1x3x32x32) and G = stage3 of infer on x (right shape; values do not matter)."""
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    p = run_cli(["infer", "--weights", weights, "--return-idx", 3, "--out", tmp_path / "g", tmp_path / "x.npy",
                 "-q"])
    assert p.returncode == 0, describe_proc(p)
    return tmp_path / "x.npy", tmp_path / "g"


@pytest.mark.parametrize("train_bn", [False, True])
def test_grad_says_how_many_gradient_files_it_wrote(tmp_path, tiny_weights, tiny_state, train_bn):
    x, g = grad_case(tmp_path, tiny_weights)
    out = tmp_path / "grads"
    p = run_cli(["grad", "--weights", tiny_weights, "--input", x, "--grad-dir", g, "--return-idx", 3,
                 "--out", out] + (["--train-bn"] if train_bn else []))
    assert p.returncode == 0, describe_proc(p)
    written = len(list((out / "params").glob("*.npy")))
    stats = [k for k in tiny_state if k.endswith("._mean") or k.endswith("._variance")]
    assert written == len(tiny_state) - len(stats)
    m = re.search(r"(\d+) parameter gradients", p.stdout)
    assert m and int(m.group(1)) == written, describe_proc(p)
    m = re.search(r"(\d+) (?:tensors are its )?BN running statistics", p.stdout)
    assert m and int(m.group(1)) == len(stats), describe_proc(p)
    if train_bn:
        assert len(list((out / "buffers").glob("*.npy"))) == len(stats)


# ---------------------------------------------------------------- 10: infer needs an input

@pytest.mark.parametrize("model", [["--weights"], ["--arch", "t"]])
def test_infer_without_input_is_a_usage_error_unless_random_input(tmp_path, tiny_weights, model):
    model = ["--weights", tiny_weights] if model == ["--weights"] else model
    out = tmp_path / "out"
    p = run_cli(["infer", *model, "--out", out])
    assert p.returncode == 2 and "input" in p.stderr and "--random-input" in p.stderr, describe_proc(p)
    assert not out.exists(), "a usage error must not write outputs"
    p = run_cli(["infer", *model, "--out", out, "--input-size", "1,3,32,32"])
    assert p.returncode == 2 and "--random-input" in p.stderr, describe_proc(p)
    p = run_cli(["infer", *model, "--out", out, "--random-input", "--input-size", "1,3,32,32", "-q"])
    assert p.returncode == 0 and p.stdout == "", describe_proc(p)
    channels = {1: 16, 2: 16, 3: 32} if model[0] == "--weights" else None
    for stage in (1, 2, 3):
        a = np.load(out / f"stage{stage}.npy")
        side = 32 // (4 << stage)
        assert a.shape[0] == 1 and a.shape[2:] == (side, side), (stage, a.shape)
        if channels:
            assert a.shape[1] == channels[stage]
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 32, 32), np.float32))
    p = run_cli(["infer", *model, "--out", tmp_path / "o2", "--random-input", tmp_path / "x.npy"])
    assert p.returncode == 2 and "--random-input" in p.stderr, describe_proc(p)
    h = run_cli(["infer", "--help"])
    assert h.returncode == 0 and "--random-input" in h.stdout


# ---------------------------------------------------------------- 11: flag edges and inputs

def test_threads_beyond_the_online_cpus_are_cut_with_a_note(tmp_path, tiny_weights):
    cpus = os.cpu_count()
    assert cpus and cpus < 1000
    p = run_cli(["infer", "--weights", tiny_weights, "--random-input", "--input-size", "1,3,32,32", "--threads", 1000,
                 "--out", tmp_path / "o", "-q"])
    assert p.returncode == 0, describe_proc(p)
    assert "--threads 1000" in p.stderr and f"using {cpus}" in p.stderr, describe_proc(p)
    x, g = grad_case(tmp_path, tiny_weights)
    p = run_cli(["grad", "--weights", tiny_weights, "--input", x, "--grad-dir", g, "--return-idx", 3,
                 "--out", tmp_path / "gr", "--threads", 1000, "-q"])
    assert p.returncode == 0 and f"using {cpus}" in p.stderr, describe_proc(p)
    p = run_cli(["infer", "--weights", tiny_weights, "--random-input", "--threads", 5000, "--out", tmp_path / "o"])
    assert p.returncode == 2, describe_proc(p)


@pytest.mark.parametrize("idx", ["4", "0,4", "-1", "1,2,3,7"])
def test_return_idx_out_of_range_is_a_usage_error(tmp_path, tiny_weights, idx):
    p = run_cli(["infer", "--weights", tiny_weights, "--random-input", "--input-size", "1,3,32,32",
                 "--return-idx", idx, "--out", tmp_path / "o"])
    assert p.returncode == 2 and "--return-idx" in p.stderr, describe_proc(p)
    assert not (tmp_path / "o").exists()
    p = run_cli(["summary", "--arch", "t", "--return-idx", idx])
    assert p.returncode == 2 and "--return-idx" in p.stderr, describe_proc(p)
    x, g = grad_case(tmp_path, tiny_weights)
    p = run_cli(["grad", "--weights", tiny_weights, "--input", x, "--grad-dir", g, "--return-idx", idx,
                 "--out", tmp_path / "gr"])
    assert p.returncode == 2 and "--return-idx" in p.stderr, describe_proc(p)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n  \n"])
def test_empty_list_file_fails_like_an_empty_folder(tmp_path, tiny_weights, text):
    folder = tmp_path / "nothing"
    folder.mkdir()
    lst = tmp_path / "empty.txt"
    lst.write_text(text)
    for arg in (folder, lst):
        p = run_cli(["infer", "--weights", tiny_weights, "--out", tmp_path / "o", "--size", "32,32", arg])
        assert p.returncode == 1 and str(arg) in p.stderr, describe_proc(p)
        assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_list_file_paths_are_relative_to_the_list_folder(tmp_path, tiny_weights):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    rgb = (np.random.default_rng(2).random((20, 24, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(data / "a.png")
    Image.fromarray(rgb[::-1]).save(data / "sub" / "b.png")
    Image.fromarray(rgb[:, ::-1]).save(tmp_path / "elsewhere" / "c.png")
    (data / "list.txt").write_text(f"a.png\nsub/b.png\n../elsewhere/c.png\n{tmp_path / 'elsewhere' / 'c.png'}\n")
    run_dir = tmp_path / "cwd"
    run_dir.mkdir()
    for lst in (data / "list.txt", os.path.relpath(data / "list.txt", run_dir)):
        out = tmp_path / f"out{len(str(lst))}"
        p = run_cli(["infer", "--weights", tiny_weights, "--out", out, "--size", "32,32", lst, "-q"], cwd=run_dir)
        assert p.returncode == 0, describe_proc(p)
        names = sorted(d.name for d in out.iterdir())
        assert len(names) == 4 and {"a", "b"} <= set(names), names
        assert np.load(out / "a" / "stage3.npy").shape == (1, 32, 1, 1)
    h = run_cli(["infer", "--help"])
    assert "list file's" in h.stdout and "folder" in h.stdout
