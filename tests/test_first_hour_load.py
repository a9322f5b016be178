"""Loading rough edges a new user meets in the first hour.

1. Weights from a pipe (/dev/stdin fed by subprocess) or a FIFO (os.mkfifo + a writer
   thread), .pdparams and safetensors: read once, whole, then parsed from memory; the
   outputs are bit-identical to those from the regular file, and a FIFO whose writer
   stops early gives exit 1, never a hang. An .npy batch on /dev/stdin is told by its
   bytes (its name has no .npy suffix).
2. NaN or Inf in the weights, or a negative BN variance, is refused at load (exit 1,
   the key and the first bad element's index named); a non-finite input value gets a
   warning naming the input file and the count.
3. A backbone key whose value is not an array (list, None, str, int) is named with the
   type found, instead of "missing" or "no key ends in ...".
4. The C API: cspresnet_forward takes the channel count and refuses 1 or 4 channels
   with CSPRESNET_ERR_SHAPE; cspresnet_model_load on a safetensors file says which
   loader to use; cspresnet_model_load_memory equals cspresnet_model_load
   (tests/c/test_api_input.c).
"""
from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

import cspresnet_torch as ref
import pdparams_writer as pdw
from conftest import describe_proc, get_build_dir, get_cli_path, run_cli

TIMEOUT_S = 60
_STATE = {}


def small_state():
    """A small CSPResNet (width 0.125, one block per stage) with seeded weights."""
    if "s" not in _STATE:
        cfg = ref.Config(width_mult=0.125, depth_mult=0.33)
        _STATE["s"] = ref.random_state(cfg.build(), 11, calib_shape=(1, 3, 32, 32))
    return _STATE["s"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("first_hour_load")
    pd = d / "w.pdparams"
    pdw.write_pdparams(pd, small_state())
    st = d / "w.safetensors"
    p = run_cli(["convert", "--weights", pd, "-o", st, "-q"])
    assert p.returncode == 0, describe_proc(p)
    x = d / "x.npy"
    np.save(x, np.random.default_rng(3).random((1, 3, 32, 32), dtype=np.float32))
    return {"pdparams": pd, "safetensors": st, "x": x, "dir": d}


def infer(weights, x, out, **kw):
    """`infer` with a hard timeout (a hang fails the test, it never blocks the suite)."""
    cmd = [str(get_cli_path()), "infer", "--weights", str(weights), "--input", str(x), "--out", str(out),
           "--return-idx", "0,1,2,3", "-q"]
    try:
        return subprocess.run(cmd, capture_output=True, timeout=TIMEOUT_S, **kw)
    except subprocess.TimeoutExpired:
        pytest.fail(f"hung: no exit within {TIMEOUT_S}s: {' '.join(cmd)}", pytrace=False)


def stages(out):
    return [np.load(Path(out) / f"stage{i}.npy") for i in range(4)]


def assert_same_bits(a, b):
    assert len(a) == len(b) == 4
    for i, (u, v) in enumerate(zip(a, b)):
        assert u.shape == v.shape and u.dtype == v.dtype == np.float32, i
        np.testing.assert_array_equal(u.view(np.uint32), v.view(np.uint32), err_msg=f"stage{i}")


@pytest.fixture(scope="module")
def expected(files):
    out = files["dir"] / "regular"
    p = infer(files["pdparams"], files["x"], out)
    assert p.returncode == 0, p.stderr
    return stages(out)


class FifoWriter:
    """Writes data into a FIFO from a thread, as a producer process would. stop() makes
    sure the thread ends even if the reader never opened the FIFO or stopped reading."""

    def __init__(self, path, data):
        self.path, self.data, self.error = str(path), data, None
        os.mkfifo(self.path)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            with open(self.path, "wb") as f:  # blocks until the reader opens
                f.write(self.data)
        except (BrokenPipeError, OSError) as e:  # the reader went away early
            self.error = e

    def stop(self):
        if self.thread.is_alive():  # nobody opened it: open the read end to unblock
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
            self.thread.join(5)
            os.close(fd)
        self.thread.join(5)
        assert not self.thread.is_alive()


# --------------------------------------------------------------------------- 1. streams

@pytest.mark.parametrize("fmt", ["pdparams", "safetensors"])
def test_weights_from_a_pipe_equal_the_regular_file(tmp_path, files, expected, fmt):
    data = files[fmt].read_bytes()
    out = tmp_path / "out"
    p = infer("/dev/stdin", files["x"], out, input=data)  # input= gives the child a pipe
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    assert_same_bits(stages(out), expected)


@pytest.mark.parametrize("fmt", ["pdparams", "safetensors"])
def test_weights_from_a_fifo_equal_the_regular_file(tmp_path, files, expected, fmt):
    fifo = tmp_path / f"weights.{fmt}"
    w = FifoWriter(fifo, files[fmt].read_bytes())
    try:
        out = tmp_path / "out"
        p = infer(fifo, files["x"], out)
    finally:
        w.stop()
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    assert w.error is None, f"the reader closed the FIFO before the end: {w.error!r}"
    assert_same_bits(stages(out), expected)


@pytest.mark.parametrize("fmt,cut", [("pdparams", 5), ("safetensors", 5), ("safetensors", 200),
                                     ("pdparams", 4000)])
def test_fifo_whose_writer_stops_early_fails_and_never_hangs(tmp_path, files, fmt, cut):
    """The writer sends a few bytes and closes: a reader that read the head and then
    reopened the FIFO would wait for a second writer forever."""
    fifo = tmp_path / "short"
    w = FifoWriter(fifo, files[fmt].read_bytes()[:cut])
    try:
        p = infer(fifo, files["x"], tmp_path / "out")
    finally:
        w.stop()
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 1, err
    assert err.count("\n") == 1 and str(fifo) in err, err
    assert not (tmp_path / "out").exists()


def test_non_weight_stream_is_not_read_to_its_end(tmp_path, files):
    p = infer("/dev/zero", files["x"], tmp_path / "out")
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 1 and "/dev/zero" in err and "not a pickle" in err, err


def test_npy_input_from_a_pipe(tmp_path, files, expected):
    out = tmp_path / "out"
    p = infer(files["pdparams"], "/dev/stdin", out, input=files["x"].read_bytes())
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    assert_same_bits(stages(out), expected)


def test_npy_input_on_stdin_redirected_from_a_file(tmp_path, files, expected):
    """/dev/stdin is then a regular file without the .npy suffix: told by its magic."""
    out = tmp_path / "out"
    with open(files["x"], "rb") as f:
        p = infer(files["pdparams"], "/dev/stdin", out, stdin=f)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    assert_same_bits(stages(out), expected)


def test_npy_input_and_weights_from_fifos(tmp_path, files, expected):
    wf, xf = tmp_path / "weights", tmp_path / "batch"
    ww = FifoWriter(wf, files["safetensors"].read_bytes())
    xw = FifoWriter(xf, files["x"].read_bytes())
    try:
        out = tmp_path / "out"
        p = infer(wf, xf, out)
    finally:
        ww.stop()
        xw.stop()
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    assert_same_bits(stages(out), expected)


def png_bytes(h=20, w=24):
    import zlib
    rgb = (np.arange(h * w * 3) % 251).astype(np.uint8).reshape(h, w, 3)
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_image_from_a_pipe_still_decodes(tmp_path, files):
    """A stream input that is not an .npy is still an image (told by its bytes)."""
    img = tmp_path / "i.png"
    img.write_bytes(png_bytes())
    a = run_cli(["infer", "--weights", files["pdparams"], img, "--size", "32,32", "--out", tmp_path / "a", "-q"])
    assert a.returncode == 0, describe_proc(a)
    p = subprocess.run([str(get_cli_path()), "infer", "--weights", str(files["pdparams"]), "/dev/stdin", "--size",
                        "32,32", "--out", str(tmp_path / "b"), "-q"], input=img.read_bytes(), capture_output=True,
                       timeout=TIMEOUT_S)
    assert p.returncode == 0, p.stderr
    for i in (1, 2, 3):
        np.testing.assert_array_equal(np.load(tmp_path / "a" / "i" / f"stage{i}.npy"),
                                      np.load(tmp_path / "b" / "stdin" / f"stage{i}.npy"))


# --------------------------------------------------------------------------- 2. non-finite

def refused(tmp_path, weights, x, *words):
    p = run_cli(["infer", "--weights", weights, "--input", x, "--out", tmp_path / "out", "-q"])
    assert p.returncode == 1, describe_proc(p)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, describe_proc(p)
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert not (tmp_path / "out").exists()
    return lines[0]


def edited_state(edits):
    state = {k: np.array(v, copy=True) for k, v in small_state().items()}
    for key, index, value in edits:
        state[key][index] = value
    return state


@pytest.mark.parametrize("key,index,value,word", [
    ("stem.conv1.conv.weight", (3, 1, 2, 0), np.nan, "NaN"),
    ("stages.2.blocks.0.conv2.conv1.bn.weight", (5,), np.inf, "+Inf"),
    ("stages.3.attn.fc.bias", (7,), -np.inf, "-Inf"),
])
@pytest.mark.parametrize("prefix", ["", "backbone."])
def test_non_finite_weight_is_refused_naming_key_and_index(tmp_path, files, key, index, value, word, prefix):
    assert key in small_state(), key
    w = tmp_path / "bad.pdparams"
    pdw.write_pdparams(w, edited_state([(key, index, value)]), prefix=prefix)
    idx = "[" + ", ".join(map(str, index)) + "]"
    refused(tmp_path, w, files["x"], f"'{prefix}{key}'", word, f"index {idx}", str(w))


def test_negative_bn_variance_is_refused(tmp_path, files):
    key = "stages.1.conv1.bn._variance"
    w = tmp_path / "neg.pdparams"
    pdw.write_pdparams(w, edited_state([(key, (2,), -0.5), (key, (4,), -1.0)]))
    msg = refused(tmp_path, w, files["x"], f"'{key}'", "negative", "index [2]", "-0.5", "2 negative values")
    assert "variance" in msg


def test_non_finite_weight_in_safetensors_is_refused(tmp_path, files):
    raw = bytearray(files["safetensors"].read_bytes())
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    key = "stages.0.blocks.0.conv1.conv.weight"
    begin = header[key]["data_offsets"][0]
    at = 8 + n + begin + 4 * 10  # flat element 10
    raw[at:at + 4] = struct.pack("<f", float("nan"))
    w = tmp_path / "bad.safetensors"
    w.write_bytes(bytes(raw))
    shape = header[key]["shape"]
    idx = np.unravel_index(10, shape)
    refused(tmp_path, w, files["x"], f"'{key}'", "NaN", "index [" + ", ".join(map(str, idx)) + "]")


def test_non_finite_input_gets_a_warning(tmp_path, files, expected):
    x = np.load(files["x"])
    x[0, 1, 4, 5] = np.nan
    x[0, 2, 0, 0] = np.inf
    x[0, 0, 31, 31] = -np.inf
    xp = tmp_path / "bad_input.npy"
    np.save(xp, x)
    p = run_cli(["infer", "--weights", files["pdparams"], "--input", xp, "--out", tmp_path / "out", "-q"])
    assert p.returncode == 0, describe_proc(p)
    assert "warning" in p.stderr and str(xp) in p.stderr and "3 non-finite" in p.stderr, p.stderr
    clean = run_cli(["infer", "--weights", files["pdparams"], "--input", files["x"], "--out", tmp_path / "o2",
                     "-q"])
    assert clean.returncode == 0 and clean.stderr == "", describe_proc(clean)


# --------------------------------------------------------------------------- 3. non-arrays

@pytest.mark.parametrize("key,value,found", [
    ("stem.conv1.conv.weight", [1.0, 2.0], "a list"),
    ("stages.0.conv1.bn._mean", None, "None"),
    ("stages.1.blocks.0.conv1.conv.weight", "weights", "a str"),
    ("stem.conv2.bn.weight", 3, "an int"),
])
@pytest.mark.parametrize("prefix", ["", "backbone."])
def test_non_array_value_is_named_with_its_type(tmp_path, files, key, value, found, prefix):
    assert key in small_state(), key
    saved = pdw.build_saved_dict(small_state(), prefix=prefix)
    saved[prefix + key] = value
    w = tmp_path / "typed.pdparams"
    with open(w, "wb") as f:
        pickle.dump(saved, f, protocol=4)
    msg = refused(tmp_path, w, files["x"], f"{prefix}{key}: expected an array, found {found}")
    assert "missing" not in msg and "no key ends" not in msg, msg


# --------------------------------------------------------------------------- 4. C API

def test_c_api_channels_safetensors_hint_and_memory_load(files):
    exe = get_build_dir() / "tests" / "test_api_input"
    assert exe.is_file(), f"{exe} missing: build first"
    p = subprocess.run([str(exe), str(files["safetensors"]), str(files["pdparams"])], capture_output=True, text=True,
                       timeout=TIMEOUT_S)
    assert p.returncode == 0, describe_proc(p)
    out = p.stdout
    assert "forward c=4: wrong input shape: input has 4 channels, the model takes 3" in out, out
    assert "forward c=1: wrong input shape: input has 1 channel, the model takes 3" in out, out
    assert f"{files['safetensors']} is a safetensors file" in out, out
    assert "cspresnet_model_load_safetensors" in out, out
    assert out.rstrip().endswith("OK"), out
