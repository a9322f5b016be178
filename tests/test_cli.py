"""The CLI's contract beyond parity: hostile and broken files through `infer`, flags
that contradict the file, alpha defaulting, the random try-out, --help everywhere,
usage errors, and no partial outputs after a failure."""
from __future__ import annotations

import pickle
import re

import numpy as np
import pytest

import cspresnet_torch as ref
import pdparams_writer as pdw
from conftest import compare, describe_proc, run_cli
from test_parity import TINY, cached_state, infer, make_input, write_input

TINY_ALPHA = TINY.replace(use_alpha=True)


@pytest.fixture(scope="module")
def tiny_bytes(tmp_path_factory):
    p = tmp_path_factory.mktemp("w") / "tiny.pdparams"
    pdw.write_pdparams(p, cached_state(TINY, seed=11), protocol=4)
    return p.read_bytes()


@pytest.fixture()
def x32(tmp_path):
    return write_input(tmp_path / "x.npy", make_input((1, 3, 32, 32), seed=3))


def refused(proc, *needles):
    assert proc.returncode == 1, describe_proc(proc)
    msg = proc.stderr.strip()
    assert msg, describe_proc(proc)
    for n in needles:
        assert re.search(n, msg, re.I), f"stderr should match {n!r}\n{describe_proc(proc)}"
    return msg


def no_outputs(out_dir):
    return not out_dir.exists() or not any(out_dir.glob("stage*.npy"))


@pytest.mark.parametrize("fraction", [0.0005, 0.01, 0.2, 0.5, 0.9, 0.9999])
def test_truncated_weights_refused(tmp_path, tiny_bytes, x32, fraction):
    w = tmp_path / "cut.pdparams"
    w.write_bytes(tiny_bytes[: max(1, int(len(tiny_bytes) * fraction))])
    proc = infer(w, x32, tmp_path / "out")
    refused(proc, re.escape(str(w)), r"end of (file|data)|truncat")
    assert no_outputs(tmp_path / "out")


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n" + b"\0" * 64, b"hello, this is text\n",
                                     b"PK\x03\x04" + b"\0" * 40, b""])
def test_not_a_pickle_refused(tmp_path, x32, content):
    w = tmp_path / "junk.pdparams"
    w.write_bytes(content)
    proc = infer(w, x32, tmp_path / "out")
    refused(proc, re.escape(str(w)))


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, 4])
def test_forbidden_global_refused_and_never_run(tmp_path, x32, protocol):
    marker = tmp_path / "pwned"
    state = dict(cached_state(TINY, seed=11))
    state["stem.conv1.bn.weight"] = _Evil(marker)
    w = tmp_path / "evil.pdparams"
    with open(w, "wb") as f:
        pickle.dump(state, f, protocol=protocol)
    proc = infer(w, x32, tmp_path / "out")
    refused(proc, r"(posix|os)\.system", r"offset \d+")
    assert not marker.exists(), "the payload ran"


def test_unknown_opcode_refused(tmp_path, tiny_bytes, x32):
    # replace the STOP opcode by a byte no pickle protocol defines
    w = tmp_path / "op.pdparams"
    assert tiny_bytes.endswith(b".")
    w.write_bytes(tiny_bytes[:-1] + b"\xff")
    proc = infer(w, x32, tmp_path / "out")
    refused(proc, r"opcode", r"0xff|255", r"offset \d+")


@pytest.mark.parametrize("content,needle", [
    (b"not an npy file at all", r"magic|not an? \.?npy"),
    (b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f8'", r"end|truncat|header"),
])
def test_bad_input_npy_refused(tmp_path, tiny_bytes, content, needle):
    w = tmp_path / "w.pdparams"
    w.write_bytes(tiny_bytes)
    x = tmp_path / "bad.npy"
    x.write_bytes(content)
    proc = infer(w, x, tmp_path / "out")
    refused(proc, re.escape(str(x)), needle)
    assert no_outputs(tmp_path / "out")


def test_int64_input_npy_refused(tmp_path, tiny_bytes):
    """float64 inputs are read (tests/test_first_hour_formats.py); integers are not."""
    w = tmp_path / "w.pdparams"
    w.write_bytes(tiny_bytes)
    x = tmp_path / "x64.npy"
    np.save(x, make_input((1, 3, 16, 16)).astype(np.int64))
    proc = infer(w, x, tmp_path / "out")
    refused(proc, re.escape(str(x)), r"<i8")


@pytest.mark.parametrize("flags,needle", [
    (["--arch", "s"], r"channels\[0\] is 16 in the file but 32"),
    (["--small-stem"], r"large stem"),
    (["--width-mult", "0.25", "--depth-mult", "1.0"], r"stage 0 has 1 blocks in the file but 3"),
])
def test_flags_contradicting_the_file_refused(tmp_path, tiny_bytes, x32, flags, needle):
    w = tmp_path / "w.pdparams"
    w.write_bytes(tiny_bytes)
    proc = run_cli(["infer", "--weights", w, "--input", x32, "--out", tmp_path / "out"] + flags)
    refused(proc, re.escape(str(w)), needle)
    assert no_outputs(tmp_path / "out")


def test_flags_agreeing_with_the_file_accepted(tmp_path, tiny_bytes, x32):
    w = tmp_path / "w.pdparams"
    w.write_bytes(tiny_bytes)
    proc = run_cli(["infer", "--weights", w, "--input", x32, "--out", tmp_path / "out",
                    "--width-mult", "0.25", "--depth-mult", "0.33", "--large-stem", "--no-alpha"])
    assert proc.returncode == 0, describe_proc(proc)


def test_no_alpha_flag_on_alpha_file_refused(tmp_path, x32):
    w = tmp_path / "a.pdparams"
    pdw.write_pdparams(w, cached_state(TINY_ALPHA, seed=5))
    proc = run_cli(["infer", "--weights", w, "--input", x32, "--out", tmp_path / "out", "--no-alpha"])
    refused(proc, r"alpha")


def test_alpha_flag_on_file_without_alpha_means_alpha_one(tmp_path, x32):
    """PP-YOLOE+ starting from an ImageNet backbone: alpha absent -> 1.0 (upstream)."""
    state = cached_state(TINY, seed=11)
    w = tmp_path / "w.pdparams"
    pdw.write_pdparams(w, state)
    out = tmp_path / "out"
    proc = run_cli(["infer", "--weights", w, "--input", x32, "--out", out, "--alpha"])
    assert proc.returncode == 0, describe_proc(proc)
    assert re.search(r"alpha.*1\.0", proc.stderr), describe_proc(proc)
    alpha_state = dict(cached_state(TINY_ALPHA, seed=11))
    for k in list(alpha_state):
        if k.endswith(".alpha"):
            alpha_state[k] = np.ones(1, np.float32)
        else:
            alpha_state[k] = state[k]
    refs = ref.reference_outputs(TINY_ALPHA, alpha_state, np.load(x32))
    for i, r in zip(TINY.return_idx, refs):
        compare(r, np.load(out / f"stage{i}.npy"), config=f"stage{i} alpha defaulted to 1")


def test_partial_alpha_file_defaults_missing_ones(tmp_path, x32):
    state = dict(cached_state(TINY_ALPHA, seed=7))
    dropped = "stages.1.blocks.0.conv2.alpha"
    del state[dropped]
    w = tmp_path / "w.pdparams"
    pdw.write_pdparams(w, state)
    out = tmp_path / "out"
    proc = infer(w, x32, out)
    assert proc.returncode == 0, describe_proc(proc)
    full = dict(cached_state(TINY_ALPHA, seed=7))
    full[dropped] = np.ones(1, np.float32)
    refs = ref.reference_outputs(TINY_ALPHA, full, np.load(x32))
    for i, r in zip(TINY.return_idx, refs):
        compare(r, np.load(out / f"stage{i}.npy"), config=f"stage{i} with {dropped} absent")


def test_unexpected_backbone_key_refused(tmp_path, x32):
    state = dict(cached_state(TINY, seed=11))
    state["stages.0.blocks.0.conv2.conv.weight"] = np.zeros((12, 12, 3, 3), np.float32)
    w = tmp_path / "w.pdparams"
    pdw.write_pdparams(w, state)
    proc = infer(w, x32, tmp_path / "out")
    refused(proc, r"unexpected 'stages\.0\.blocks\.0\.conv2\.conv\.weight' \[12, 12, 3, 3\]")


def test_no_backbone_in_file_refused(tmp_path, x32):
    w = tmp_path / "w.pdparams"
    pdw.write_pdparams(w, {"neck.conv.weight": np.zeros((4, 4, 1, 1), np.float32)})
    proc = infer(w, x32, tmp_path / "out")
    refused(proc, r"no CSPResNet backbone", r"stem\.conv1\.conv\.weight")


def test_unwritable_output_folder_leaves_nothing(tmp_path, tiny_bytes, x32):
    w = tmp_path / "w.pdparams"
    w.write_bytes(tiny_bytes)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = run_cli(["infer", "--weights", w, "--input", x32, "--out", blocker / "out"])
    refused(proc, re.escape(str(blocker / "out")))


def test_random_tryout_writes_outputs(tmp_path):
    out = tmp_path / "out"
    proc = run_cli(["infer", "--arch", "s", "--random-input", "--input-size", "2,3,64,48", "--out", out,
                    "--return-idx", "0,3", "--threads", "2"])
    assert proc.returncode == 0, describe_proc(proc)
    a0, a3 = np.load(out / "stage0.npy"), np.load(out / "stage3.npy")
    assert a0.shape == (2, 64, 16, 12) and a3.shape == (2, 512, 2, 2)
    assert np.isfinite(a0).all() and np.isfinite(a3).all() and np.abs(a3).max() > 0
    assert "stride 4" in proc.stdout and "stride 32" in proc.stdout
    assert "random" in proc.stderr


@pytest.mark.parametrize("cmd", [[], ["summary"], ["infer"]])
def test_help(cmd):
    proc = run_cli(cmd + ["--help"])
    assert proc.returncode == 0, describe_proc(proc)
    assert "usage: cspresnet" in proc.stdout


@pytest.mark.parametrize("args", [["frobnicate"], ["infer"], ["summary", "--bogus"],
                                  ["summary", "--arch", "q"], ["infer", "--threads", "0", "--arch", "s"],
                                  ["summary", "--input-size", "1,4,64,64"]])
def test_usage_errors_exit_2(args):
    proc = run_cli(args)
    assert proc.returncode == 2, describe_proc(proc)
    assert proc.stderr.strip(), describe_proc(proc)


@pytest.mark.parametrize("idx,needle", [("", r"return-idx"), ("2,1", r"ascending"),
                                        ("0,1,2,3,3", r"return-idx")])
def test_bad_return_idx(idx, needle):
    proc = run_cli(["summary", "--arch", "s", "--return-idx", idx])
    assert proc.returncode in (1, 2), describe_proc(proc)
    assert re.search(needle, proc.stderr), describe_proc(proc)


def test_summary_from_weights_file(tmp_path, tiny_bytes):
    w = tmp_path / "w.pdparams"
    w.write_bytes(tiny_bytes)
    proc = run_cli(["summary", "--weights", w, "--input-size", "1,3,64,64"])
    assert proc.returncode == 0, describe_proc(proc)
    counts = ref.param_counts(TINY.build())
    assert f"Total params: {counts['total']:,}" in proc.stdout, proc.stdout[-800:]


@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (1, 3, 2, 3), (2, 3, 33, 1), (1, 3, 5, 70)])
def test_tiny_and_thin_inputs_match_reference(tmp_path, shape):
    """Any H, W >= 1 works: every stride-2 conv maps H to (H + 1) // 2."""
    cfg = TINY.replace(return_idx=(0, 1, 2, 3))
    state = cached_state(TINY, seed=11)
    w = tmp_path / "w.pdparams"
    pdw.write_pdparams(w, state)
    x = make_input(shape, seed=9)
    out = tmp_path / "out"
    proc = infer(w, write_input(tmp_path / "x.npy", x), out, return_idx=(0, 1, 2, 3))
    assert proc.returncode == 0, describe_proc(proc)
    refs = ref.reference_outputs(cfg, state, x)
    for i, r in enumerate(refs):
        compare(r, np.load(out / f"stage{i}.npy"), config=f"stage{i} input {shape}")


def test_file_with_odd_csp_mid_width_refused(tmp_path, x32):
    """A file whose stage widths give an odd CSP mid width: upstream cannot build it."""
    state = dict(cached_state(TINY, seed=11))
    # stage 3: 128 -> 254 gives mid (128 + 254) // 2 = 191
    state["stages.3.conv3.conv.weight"] = np.zeros((254, 192, 1, 1), np.float32)
    w = tmp_path / "odd.pdparams"
    pdw.write_pdparams(w, state)
    proc = infer(w, x32, tmp_path / "out")
    refused(proc, r"stage 3", r"191", r"odd")
    assert no_outputs(tmp_path / "out")
