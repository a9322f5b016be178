"""`cspresnet convert` to .pdparams: the way back to Paddle.

    cspresnet convert --weights IN -o OUT.pdparams

OUT must be what paddle.save of the backbone gives: Python's pickle.load (with numpy)
returns a dict with the upstream keys in Paddle's order, float32 C-order arrays equal
bit for bit to the source, then "StructuredToParameterName@@" (dict str -> str). The
reference dict is built by tests/ref/pdparams_writer (Python's own pickle), so the
expected bytes come from CPython's pickler, not from our code. A deployed model has no
.pdparams layout upstream and is refused.
"""
from __future__ import annotations

import pickle
import pickletools
from pathlib import Path

import numpy as np
import pytest

import cspresnet_torch as ref
import pdparams_writer as pdw
from conftest import describe_proc, run_cli

_STATE = {}


def state_s_alpha():
    if "s" not in _STATE:
        _STATE["s"] = ref.random_state(ref.preset("s", use_alpha=True).build(), 21, calibrate=False)
    return _STATE["s"]


def convert(src, out, *extra):
    return run_cli(["convert", "--weights", src, "-o", out, *map(str, extra)])


def check_same_dict(path: Path, state):
    with open(path, "rb") as f:
        d = pickle.load(f)
    assert isinstance(d, dict)
    keys = list(d.keys())
    assert keys[:-1] == list(state.keys()), "keys or their order differ"
    assert keys[-1] == pdw.NAME_TABLE_KEY
    for k, v in state.items():
        a = d[k]
        assert isinstance(a, np.ndarray) and a.dtype == np.float32 and a.flags.c_contiguous, k
        assert a.shape == v.shape, k
        np.testing.assert_array_equal(a.view(np.uint32), np.asarray(v, np.float32).view(np.uint32), err_msg=k)
    table = d[pdw.NAME_TABLE_KEY]
    assert isinstance(table, dict) and list(table) == list(state)
    assert all(isinstance(v, str) and v for v in table.values())
    return d


def test_pdparams_roundtrip_is_what_python_pickles(tmp_path):
    state = state_s_alpha()
    src = tmp_path / "src.pdparams"
    pdw.write_pdparams(src, state, protocol=4)
    out = tmp_path / "out.pdparams"
    proc = convert(src, out)
    assert proc.returncode == 0, describe_proc(proc)
    check_same_dict(out, state)
    raw = out.read_bytes()
    assert raw[:2] == b"\x80\x04", "protocol 4 expected"
    # byte for byte what CPython's pickler writes for the dict paddle.save builds
    assert raw == pickle.dumps(pdw.build_saved_dict(state), protocol=4)
    # only the opcodes and globals SPEC §3 lists
    allowed = {"PROTO", "FRAME", "EMPTY_DICT", "MEMOIZE", "MARK", "SHORT_BINUNICODE", "BINUNICODE",
               "STACK_GLOBAL", "BININT1", "BININT2", "BININT", "TUPLE1", "TUPLE2", "TUPLE3", "TUPLE",
               "SHORT_BINBYTES", "BINBYTES", "BINBYTES8", "REDUCE", "BUILD", "NEWTRUE", "NEWFALSE", "NONE",
               "BINGET", "LONG_BINGET", "SETITEMS", "SETITEM", "STOP"}
    seen = {op.name for op, _, _ in pickletools.genops(raw)}
    assert seen <= allowed, seen - allowed


@pytest.mark.parametrize("protocol,dtype,prefix", [(2, None, "backbone."), (4, np.float64, ""),
                                                   (4, None, "backbone.")])
def test_pdparams_from_other_sources(tmp_path, protocol, dtype, prefix):
    """Protocol-2, float64 and detector-checkpoint sources all give the backbone dict
    (bare keys, float32)."""
    state = state_s_alpha()
    src = tmp_path / "src.pdparams"
    pdw.write_pdparams(src, state, protocol=protocol, prefix=prefix, dtype=dtype,
                       extra=pdw.fake_detector_extras() if prefix else None)
    out = tmp_path / "out.pdparams"
    proc = convert(src, out)
    assert proc.returncode == 0, describe_proc(proc)
    expect = {k: np.asarray(v, dtype or np.float32).astype(np.float32) for k, v in state.items()}
    check_same_dict(out, expect)


def test_our_pdparams_reads_back_and_infers_identically(tmp_path):
    state = state_s_alpha()
    src = tmp_path / "src.pdparams"
    pdw.write_pdparams(src, state, protocol=2)
    out = tmp_path / "ours.pdparams"
    assert convert(src, out).returncode == 0
    np.save(tmp_path / "x.npy", np.random.default_rng(3).standard_normal((1, 3, 64, 64)).astype(np.float32))
    res = []
    for w, tag in ((src, "a"), (out, "b")):
        p = run_cli(["infer", "--weights", w, "--input", tmp_path / "x.npy", "--out", tmp_path / tag,
                     "--return-idx", "0,1,2,3", "-q"])
        assert p.returncode == 0, describe_proc(p)
        res.append([np.load(tmp_path / tag / f"stage{i}.npy") for i in range(4)])
    for a, b in zip(*res):
        np.testing.assert_array_equal(a, b)


def test_safetensors_to_pdparams_roundtrip(tmp_path):
    state = state_s_alpha()
    src = tmp_path / "src.pdparams"
    pdw.write_pdparams(src, state)
    st = tmp_path / "mid.safetensors"
    back = tmp_path / "back.pdparams"
    assert convert(src, st).returncode == 0
    proc = convert(st, back)
    assert proc.returncode == 0, describe_proc(proc)
    check_same_dict(back, state)


def test_deployed_to_pdparams_is_refused(tmp_path):
    state = state_s_alpha()
    src = tmp_path / "src.pdparams"
    pdw.write_pdparams(src, state)
    out = tmp_path / "out.pdparams"
    proc = convert(src, out, "--deploy")
    assert proc.returncode == 1, describe_proc(proc)
    assert "deploy" in proc.stderr and "pdparams" in proc.stderr, proc.stderr
    assert not out.exists()
    # a deployed safetensors file cannot go back either
    st = tmp_path / "d.safetensors"
    assert convert(src, st, "--deploy").returncode == 0
    proc = convert(st, out)
    assert proc.returncode == 1, describe_proc(proc)
    assert "deployed" in proc.stderr and "cannot be written as .pdparams" in proc.stderr, proc.stderr
    assert not out.exists()
    assert not list(tmp_path.glob("*.tmp.*")), "temporary file left behind"


def test_usage(tmp_path):
    h = run_cli(["convert", "--help"])
    assert h.returncode == 0 and "safetensors" in h.stdout and "pdparams" in h.stdout
    src = tmp_path / "src.pdparams"
    pdw.write_pdparams(src, state_s_alpha())
    p = convert(src, tmp_path / "out.bin")
    assert p.returncode == 2 and "safetensors" in p.stderr, describe_proc(p)
    p = run_cli(["convert", "--weights", src])
    assert p.returncode == 2, describe_proc(p)
    p = convert(tmp_path / "missing.pdparams", tmp_path / "o.safetensors")
    assert p.returncode == 1 and "missing.pdparams" in p.stderr, describe_proc(p)
