"""The .npy reader and writer (src/io/npy.c) through build/tests/test_io, against numpy."""
import os
import struct
import subprocess

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, os.environ.get("CSPRESNET_BUILD", "build"))
DRIVER = os.path.join(BUILD, "tests", "test_io")


def run(*args):
    assert os.path.exists(DRIVER), f"{DRIVER} is missing: run make first"
    p = subprocess.run([DRIVER, *map(str, args)], capture_output=True, text=True, timeout=60)
    assert "Sanitizer" not in p.stderr and "runtime error" not in p.stderr, p.stderr
    return p


def read(path):
    """(shape, float32 values) as the library reads them."""
    p = run("npy-read", path)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("shape ") and lines[1].startswith("numel ")
    shape = tuple(int(x) for x in lines[0][6:].strip("[]").split(",") if x)
    vals = np.array([float(x) for x in lines[2:]], dtype=np.float32)
    assert len(vals) == int(lines[1].split()[1])
    return shape, vals


def refused(path, *words, status=None):
    p = run("npy-read", path)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert p.stderr.startswith(str(path)), p.stderr
    for w in words:
        assert w in p.stderr, (w, p.stderr)
    if status:
        assert f"status: {status}" in p.stderr, p.stderr
    return p.stderr


def same_bits(got, want):
    want = np.ascontiguousarray(want, dtype=np.float32).ravel()
    assert got.shape == want.shape
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), (got, want)


def pattern(shape):
    n = int(np.prod(shape)) if shape else 1
    i = np.arange(n, dtype=np.int64)
    return (((i * 7919) % 1000).astype(np.float32) / np.float32(8) - np.float32(60)).reshape(shape)


def make_npy(header_dict, data, version=(1, 0), pad=True):
    """A .npy file with the given header text and raw data, built by hand."""
    h = header_dict.encode("latin1" if version[0] < 3 else "utf8")
    pre = 10 if version[0] == 1 else 12
    if pad:
        total = pre + len(h) + 1
        h += b" " * ((-total) % 64) + b"\n"
    lenfield = struct.pack("<H", len(h)) if version[0] == 1 else struct.pack("<I", len(h))
    return b"\x93NUMPY" + bytes(version) + lenfield + h + data


@pytest.mark.parametrize("dims", ["2,3,4,5", "1,3,8,8", "7", "", "0,3", "2,1,1,1,1,1,1,3"])
def test_write_then_numpy_and_our_reader_agree(tmp_path, dims):
    out = tmp_path / "x.npy"
    p = run("npy-write", out, dims)
    assert p.returncode == 0, p.stderr
    shape = tuple(int(x) for x in dims.split(",") if x)
    want = pattern(shape)
    got = np.load(out)
    assert got.dtype == np.dtype("<f4") and got.shape == shape and got.flags.c_contiguous
    assert np.array_equal(got, want)
    raw = out.read_bytes()
    assert raw[:8] == b"\x93NUMPY\x01\x00"
    hlen = struct.unpack("<H", raw[8:10])[0]
    assert (10 + hlen) % 64 == 0 and raw[10 + hlen - 1:10 + hlen] == b"\n"
    rshape, vals = read(out)
    assert rshape == shape
    same_bits(vals, want)
    assert sorted(os.listdir(tmp_path)) == ["x.npy"]  # no temporary file left


def test_write_replaces_an_existing_file(tmp_path):
    out = tmp_path / "x.npy"
    out.write_bytes(b"old contents")
    assert run("npy-write", out, "3,4").returncode == 0
    assert np.array_equal(np.load(out), pattern((3, 4)))
    assert sorted(os.listdir(tmp_path)) == ["x.npy"]


def test_write_failures_leave_nothing(tmp_path):
    p = run("npy-write", tmp_path / "no" / "such" / "dir" / "x.npy", "2,2")
    assert p.returncode == 1 and "x.npy" in p.stderr and "I/O error" in p.stderr
    target = tmp_path / "adir"
    target.mkdir()
    (target / "inside").write_bytes(b"keep")
    p = run("npy-write", target, "2,2")
    assert p.returncode == 1 and "rename" in p.stderr and str(target) in p.stderr
    assert sorted(os.listdir(tmp_path)) == ["adir"]   # the temporary file was removed
    assert os.listdir(target) == ["inside"]
    p = run("npy-write", tmp_path / "neg.npy", "2,-3")
    assert p.returncode == 1 and "dimension 1" in p.stderr
    assert not (tmp_path / "neg.npy").exists()


@pytest.mark.parametrize("shape", [(2, 3), (5,), (), (0,), (1, 3, 4, 4), (3, 0, 2)])
def test_read_numpy_written_files(tmp_path, shape):
    rng = np.random.default_rng(1)
    arr = rng.standard_normal(shape).astype(np.float32)
    path = tmp_path / "a.npy"
    np.save(path, arr)
    rshape, vals = read(path)
    assert rshape == shape
    same_bits(vals, arr)


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_read_versions(tmp_path, version):
    arr = np.array([[1.5, -2.25, 3e-9], [np.inf, -0.0, 7]], dtype=np.float32)
    path = tmp_path / "v.npy"
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
    path.write_bytes(make_npy(header, arr.tobytes(), version))
    rshape, vals = read(path)
    assert rshape == (2, 3)
    same_bits(vals, arr)
    # numpy's own writer for the same version
    with open(path, "wb") as f:
        np.lib.format.write_array(f, arr, version=version)
    same_bits(read(path)[1], arr)


def test_read_header_variants(tmp_path):
    arr = np.arange(4, dtype=np.float32)
    for i, header in enumerate([
        '{"descr": "<f4", "fortran_order": False, "shape": (4,)}',
        "{'shape': (4L,), 'fortran_order': False, 'descr': '<f4'}",
        "  {'descr':'<f4','fortran_order':False,'shape':(4,),}  ",
    ]):
        path = tmp_path / f"h{i}.npy"
        path.write_bytes(make_npy(header, arr.tobytes()))
        same_bits(read(path)[1], arr)


GOOD = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
DATA = np.arange(6, dtype=np.float32).tobytes()


@pytest.mark.parametrize("name,content,words,status", [
    ("magic", b"\x93NUMPX\x01\x00" + b"\x00" * 100, ["bad magic"], "format error"),
    ("png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, ["not a .npy file"], "format error"),
    ("empty", b"", ["bad magic"], "format error"),
    ("v4", make_npy(GOOD, DATA, (4, 0)), ["version 4.0"], "unsupported"),
    ("v1.1", make_npy(GOOD, DATA, (1, 1)), ["version 1.1"], "unsupported"),
    ("i8", make_npy(GOOD.replace("<f4", "<i8"), DATA * 2), ["'<i8'", "'<f4'"], "unsupported"),
    (">i4", make_npy(GOOD.replace("<f4", ">i4"), DATA), ["'>i4'"], "unsupported"),
    ("u1", make_npy(GOOD.replace("<f4", "|u1"), DATA[:6]), ["'|u1'"], "unsupported"),
    ("struct", make_npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (6,), }",
                        DATA), ["structured"], "unsupported"),
    ("short", make_npy(GOOD, DATA[:20]), ["truncated", "24 bytes", "only 20 bytes"],
     "format error"),
    ("trailing", make_npy(GOOD, DATA + b"xx"), ["2 bytes after the data"], "format error"),
    ("huge", make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, "
                      "1099511627776), }", DATA), ["too large"], "format error"),
    ("huge1d", make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }",
                        DATA), ["4000000000000 bytes", "only 24 bytes"], "format error"),
    ("hugedigits", make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': "
                            "(99999999999999999999999,), }", DATA), ["too large"],
     "format error"),
    ("negative", make_npy(GOOD.replace("(2, 3)", "(2, -3)"), DATA), ["negative"], "format error"),
    ("ndim", make_npy(GOOD.replace("(2, 3)", "(1,1,1,1,1,1,1,1,2,3)"), DATA),
     ["more than 8 dimensions"], "unsupported"),
    ("nokey", make_npy("{'descr': '<f4', 'shape': (2, 3), }", DATA), ["lacks the key"],
     "format error"),
    ("extrakey", make_npy(GOOD[:-1] + "'extra': 1, }", DATA), ["unexpected or repeated key"],
     "format error"),
    ("dupkey", make_npy(GOOD[:-1] + "'shape': (6,), }", DATA), ["repeated key 'shape'"],
     "format error"),
    ("notdict", make_npy("[1, 2, 3]", DATA), ["not a valid dict"], "format error"),
    ("junk", make_npy(GOOD + " junk", DATA), ["after the dict"], "format error"),
    ("hdrtrunc", make_npy(GOOD, DATA)[:40], ["header is truncated"], "format error"),
    ("preamble", b"\x93NUMPY\x01", ["preamble"], "format error"),
    ("hdrhuge", b"\x93NUMPY\x02\x00" + struct.pack("<I", 1 << 30) + b"{", ["exceeds the limit"],
     "format error"),
])
def test_refusals(tmp_path, name, content, words, status):
    path = tmp_path / f"{name}.npy"
    path.write_bytes(content)
    refused(path, *words, status=status)


def test_missing_file(tmp_path):
    p = run("npy-read", tmp_path / "missing.npy")
    assert p.returncode == 1 and "missing.npy" in p.stderr and "I/O error" in p.stderr
