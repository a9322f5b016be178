"""The .pdparams reader (src/io/pickle*.c, pdparams.c, array_convert.c) through
build/tests/test_io, on files written by Python's own pickle and numpy and on pickles
crafted opcode by opcode. Values are compared with numpy bit for bit."""
import copyreg
import io
import os
import pickle
import struct
import subprocess
import sys
import types
import zipfile

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, os.environ.get("CSPRESNET_BUILD", "build"))
DRIVER = os.path.join(BUILD, "tests", "test_io")


def run(*args, timeout=60):
    assert os.path.exists(DRIVER), f"{DRIVER} is missing: run make first"
    p = subprocess.run([DRIVER, *map(str, args)], capture_output=True, text=True,
                       timeout=timeout)
    # a sanitizer report also exits with 1: never let it pass as a clean refusal
    assert "Sanitizer" not in p.stderr and "runtime error" not in p.stderr, p.stderr
    return p


def listing(path, mem=False):
    """{key: (dtype, shape, numel, checksum)}, key order, skipped."""
    p = run("pdparams-mem" if mem else "pdparams", path)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[-1].startswith("skipped ")
    entries, order = {}, []
    for line in lines[:-1]:
        key, dtype, shape, numel, checksum = line.split(" ", 4)
        entries[key] = (dtype, tuple(int(x) for x in shape.strip("[]").split(",") if x),
                        int(numel), checksum)
        order.append(key)
    return entries, order, int(lines[-1].split()[1])


def values(path, key):
    p = run("pdparams-values", path, key)
    assert p.returncode == 0, p.stderr
    return np.array([float(x) for x in p.stdout.split()], dtype=np.float32)


def refused(path, *words, status=None):
    p = run("pdparams", path)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    msg = p.stderr
    assert msg.startswith(str(path)), msg
    assert len(msg.splitlines()[0]) > 0
    for w in words:
        assert w in msg, (w, msg)
    if status:
        assert f"status: {status}" in msg, msg
    return msg


def same_bits(got, want):
    want = np.ascontiguousarray(want, dtype=np.float32).ravel()
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), (got, want)


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- files written by Python

def sample_dict():
    rng = np.random.default_rng(7)
    with np.errstate(over="ignore"):
        wide = np.array([1e300, -1e300, 3.4028235677973366e38, 3.4028235677973362e38 * 1.0000001,
                         340282356779733661637539395458142568448.0, 1e-50, 0.1, -0.0,
                         np.inf, -np.inf, 1 / 3], dtype=np.float64)
    half = np.array([1.5, -2, 65504, 6e-8, -6e-8, 1e-5, 0.0, -0.0, np.inf, -np.inf],
                    dtype=np.float16)
    return {
        "stem.conv1.conv.weight": rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
        "stem.conv1.bn._mean": rng.standard_normal(8).astype(np.float32),
        "f64": rng.standard_normal((3, 5)),
        "f64.special": wide,
        "f16": half,
        "f16.random": rng.standard_normal((4, 6)).astype(np.float16),
        "big.f4": rng.standard_normal((2, 3)).astype(">f4"),
        "big.f8": rng.standard_normal(5).astype(">f8"),
        "big.f2": rng.standard_normal(5).astype(">f2"),
        "fortran.f4": np.asfortranarray(rng.standard_normal((3, 4)).astype(np.float32)),
        "fortran.f8.3d": np.asfortranarray(rng.standard_normal((2, 3, 4))),
        "fortran.big.4d": np.asfortranarray(rng.standard_normal((2, 3, 2, 5)).astype(">f4")),
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "int64": np.arange(4, dtype=np.int64),
        "bool": np.array([True, False]),
        "large": rng.standard_normal(40000).astype(np.float32),  # 160 KB: outside frames
        "stages.0.conv2.alpha": np.array([1.0], dtype=np.float32),
        "StructuredToParameterName@@": {"stem.conv1.conv.weight": "conv2d_0.w_0"},
        "lr": 0.5,
    }


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_python_pickle_round_trip(tmp_path, protocol):
    d = sample_dict()
    path = tmp_path / f"p{protocol}.pdparams"
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=protocol)
    entries, order, skipped = listing(path)
    arrays = [k for k, v in d.items() if isinstance(v, np.ndarray)]
    assert order == arrays
    assert skipped == 2
    assert listing(path, mem=True) == (entries, order, skipped)
    for key in arrays:
        arr = d[key]
        dtype, shape, numel, checksum = entries[key]
        assert shape == arr.shape, key
        assert numel == arr.size, key
        assert dtype[1:] == arr.dtype.str[1:], key
        assert dtype[0] == (">" if arr.dtype.byteorder == ">" else "<"), key
        if arr.dtype.kind != "f":
            assert checksum.startswith("unconverted:") and arr.dtype.str[1:] in checksum
            continue
        with np.errstate(over="ignore"):
            want = arr.astype(np.float32)
        same_bits(values(path, key), want)
        if np.isfinite(want).all():
            assert float(checksum) == pytest.approx(float(want.astype(np.float64).sum()),
                                                    rel=1e-5, abs=1e-4)


def test_int64_is_refused_at_conversion_with_its_dtype(tmp_path):
    path = tmp_path / "i.pdparams"
    pickle.dump({"w": np.ones(2, np.float32), "steps": np.arange(3)}, open(path, "wb"),
                protocol=4)
    entries, _, _ = listing(path)
    assert entries["steps"][3].startswith("unconverted:")
    assert "'i8'" in entries["steps"][3] and "steps" in entries["steps"][3]
    p = run("pdparams-values", path, "steps")
    assert p.returncode == 1 and "'i8'" in p.stderr and "unsupported" in p.stderr


def test_protocol_1_and_0_are_refused_clearly(tmp_path):
    for proto in (0, 1):
        path = write(tmp_path, f"p{proto}.pdparams",
                     pickle.dumps({"a": np.ones(1, np.float32)}, protocol=proto))
        refused(path, "not a pickle of protocol 2 to 5", status="format error")


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_numpy2_module_names(tmp_path, monkeypatch, protocol):
    """numpy >= 2 writes numpy._core.multiarray._reconstruct / numpy._core.numeric._frombuffer."""
    core = types.ModuleType("numpy._core")
    multiarray = types.ModuleType("numpy._core.multiarray")
    numeric = types.ModuleType("numpy._core.numeric")

    def _reconstruct(*a):
        raise AssertionError

    def _frombuffer(*a):
        raise AssertionError

    _reconstruct.__module__, _reconstruct.__qualname__ = "numpy._core.multiarray", "_reconstruct"
    _frombuffer.__module__, _frombuffer.__qualname__ = "numpy._core.numeric", "_frombuffer"
    multiarray._reconstruct, numeric._frombuffer = _reconstruct, _frombuffer
    monkeypatch.setitem(sys.modules, "numpy._core", core)
    monkeypatch.setitem(sys.modules, "numpy._core.multiarray", multiarray)
    monkeypatch.setitem(sys.modules, "numpy._core.numeric", numeric)

    def reduce_array(a):
        if protocol >= 5:
            order = "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"
            return (_frombuffer, (a.tobytes(order=order), a.dtype, a.shape, order))
        return (_reconstruct, (np.ndarray, (0,), b"b"), a.__reduce__()[2])

    d = {"a": np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
         "f": np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4) / 3)}
    buf = io.BytesIO()
    p = pickle.Pickler(buf, protocol=protocol)
    p.dispatch_table = copyreg.dispatch_table.copy()
    p.dispatch_table[np.ndarray] = reduce_array
    p.dump(d)
    data = buf.getvalue()
    assert b"numpy._core" in data and b"numpy.core" not in data
    path = write(tmp_path, "np2.pdparams", data)
    for key, arr in d.items():
        same_bits(values(path, key), arr)


# ---------------------------------------------------------------- crafted pickles

def su(s):  # SHORT_BINUNICODE
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def bu(s):  # BINUNICODE
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def bu8(s):  # BINUNICODE8
    b = s.encode()
    return b"\x8d" + struct.pack("<Q", len(b)) + b


def bytes_op(data, op):
    if op == "C":
        return b"C" + bytes([len(data)]) + data
    if op == "B":
        return b"B" + struct.pack("<I", len(data)) + data
    if op == "BINBYTES8":
        return b"\x8e" + struct.pack("<Q", len(data)) + data
    if op == "BYTEARRAY8":
        return b"\x96" + struct.pack("<Q", len(data)) + data
    if op == "latin1":  # protocol 2: _codecs.encode(text, 'latin1')
        return glob("_codecs", "encode") + bu(data.decode("latin1")) + bu("latin1") + b"\x86R"
    raise ValueError(op)


def glob(module, name, style="stack"):
    if style == "stack":
        return su(module) + su(name) + b"\x93"
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def int_op(v, op="K"):
    if op == "K":
        return b"K" + bytes([v])
    if op == "M":
        return b"M" + struct.pack("<H", v)
    if op == "J":
        return b"J" + struct.pack("<i", v)
    if op == "LONG1":
        n = (v.bit_length() + 8) // 8 if v else 0
        return b"\x8a" + bytes([n]) + v.to_bytes(n, "little", signed=True)
    if op == "LONG1_9":  # nine bytes, sign-extended
        return b"\x8a\x09" + v.to_bytes(9, "little", signed=True)
    if op == "LONG4":
        n = (v.bit_length() + 8) // 8 if v else 0
        return b"\x8b" + struct.pack("<I", n) + v.to_bytes(n, "little", signed=True)
    raise ValueError(op)


def tuple_op(parts, style="auto"):
    if style == "auto":
        style = "mark" if len(parts) > 3 else "small"
    if style == "mark":
        return b"(" + b"".join(parts) + b"t"
    if not parts:
        return b")"
    return b"".join(parts) + bytes([0x84 + len(parts)])


def dtype_op(code="f4", order="<", style="stack"):
    return (glob("numpy", "dtype", style) + su(code) + b"\x89\x88\x87R" + b"(" + int_op(3) +
            su(order) + b"NNN" + int_op(-1, "J") + int_op(-1, "J") + int_op(0) + b"tb")


def array_op(shape, data, dtype=None, fortran=b"\x89", int_style="K", data_op="C",
             module="numpy.core.multiarray", style="stack", shape_style="auto"):
    dtype = dtype if dtype is not None else dtype_op(style=style)
    head = (glob(module, "_reconstruct", style) + glob("numpy", "ndarray", style) +
            int_op(0) + b"\x85" + bytes_op(b"b", "C") + b"\x87R")
    shape_b = tuple_op([int_op(s, int_style) for s in shape], shape_style)
    state = b"(" + int_op(1) + shape_b + dtype + fortran + bytes_op(data, data_op) + b"tb"
    return head + state


def dict_pickle(items, proto=4):
    """items: list of (key_bytes_op, value_bytes_op)."""
    body = b"".join(k + v for k, v in items)
    return b"\x80" + bytes([proto]) + b"}(" + body + b"u."


def f32(*v):
    return np.array(v, dtype=np.float32)


@pytest.mark.parametrize("int_style", ["K", "M", "J", "LONG1", "LONG1_9", "LONG4"])
def test_int_opcodes_in_shapes(tmp_path, int_style):
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    data = dict_pickle([(su("w"), array_op(arr.shape, arr.tobytes(), int_style=int_style))])
    path = write(tmp_path, "ints.pdparams", data)
    entries, _, _ = listing(path)
    assert entries["w"][1] == (2, 3)
    same_bits(values(path, "w"), arr)


def test_large_dimensions_with_bigger_int_opcodes(tmp_path):
    arr = (np.arange(300 * 1, dtype=np.float32) * 0.5).reshape(300, 1)
    arr2 = np.arange(70000, dtype=np.float32).reshape(70000, 1)
    data = dict_pickle([
        (su("m"), array_op(arr.shape, arr.tobytes(), int_style="M", data_op="B")),
        (su("j"), array_op(arr2.shape, arr2.tobytes(), int_style="J", data_op="BINBYTES8")),
    ])
    path = write(tmp_path, "big.pdparams", data)
    same_bits(values(path, "m"), arr)
    same_bits(values(path, "j"), arr2)


@pytest.mark.parametrize("data_op", ["C", "B", "BINBYTES8", "BYTEARRAY8", "latin1"])
def test_bytes_opcodes(tmp_path, data_op):
    arr = f32(1.5, -2, 3e-3, 255, 0.0078125, 1e30)  # bytes >= 0x80 exercise latin-1
    data = dict_pickle([(su("w"), array_op(arr.shape, arr.tobytes(), data_op=data_op,
                                           style="global" if data_op == "latin1" else "stack"))],
                       proto=2 if data_op == "latin1" else 4)
    path = write(tmp_path, "b.pdparams", data)
    same_bits(values(path, "w"), arr)


@pytest.mark.parametrize("key_op", [su, bu, bu8])
def test_str_opcodes_for_keys(tmp_path, key_op):
    arr = f32(1, 2)
    key = "stages.0.blocks.1.conv2.conv1.bn._variance.ünïcode"
    path = write(tmp_path, "k.pdparams",
                 dict_pickle([(key_op(key), array_op(arr.shape, arr.tobytes()))]))
    entries, order, _ = listing(path)
    assert order == [key]
    same_bits(values(path, key), arr)


def test_tuple_styles_and_zero_d(tmp_path):
    a4 = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    a1 = f32(5, 6, 7)
    a0 = np.array(9.25, dtype=np.float32)
    data = dict_pickle([
        (su("t4"), array_op(a4.shape, a4.tobytes())),                      # TUPLE
        (su("t1"), array_op(a1.shape, a1.tobytes(), shape_style="mark")),  # TUPLE of one
        (su("t0"), array_op((), a0.tobytes())),                            # EMPTY_TUPLE
    ])
    path = write(tmp_path, "t.pdparams", data)
    entries, _, _ = listing(path)
    assert entries["t4"][1] == (1, 2, 3, 4)
    assert entries["t0"][1] == () and entries["t0"][2] == 1
    same_bits(values(path, "t4"), a4)
    same_bits(values(path, "t1"), a1)
    same_bits(values(path, "t0"), a0)


def test_memo_reuse_of_dtype_and_globals(tmp_path):
    """MEMOIZE / BINGET, BINPUT / LONG_BINGET, LONG_BINPUT / BINGET share one object."""
    a, b, c = f32(1, 2), f32(3, 4, 5), f32(6)
    dt = dtype_op()
    body = (su("a") + array_op(a.shape, a.tobytes(), dtype=dt + b"\x94") +   # memo 0 = dtype
            su("b") + array_op(b.shape, b.tobytes(), dtype=b"h\x00") +       # BINGET 0
            su("c") + array_op(c.shape, c.tobytes(), dtype=b"j\x00\x00\x00\x00"))  # LONG_BINGET
    data = b"\x80\x04}(" + body + b"u."
    path = write(tmp_path, "memo.pdparams", data)
    for k, v in (("a", a), ("b", b), ("c", c)):
        same_bits(values(path, k), v)
    # BINPUT / LONG_BINPUT with sparse indices, read back with LONG_BINGET / BINGET
    body = (su("a") + array_op(a.shape, a.tobytes(), dtype=dt + b"r\x40\x42\x0f\x00") +
            su("b") + array_op(b.shape, b.tobytes(), dtype=b"j\x40\x42\x0f\x00") +
            su("c") + array_op(c.shape, c.tobytes(), dtype=dtype_op() + b"q\x07") +
            su("d") + array_op(c.shape, c.tobytes(), dtype=b"h\x07"))
    path = write(tmp_path, "memo2.pdparams", b"\x80\x04}(" + body + b"u.")
    refused(path, "memo index 1000000", "limit")
    body = body.replace(b"r\x40\x42\x0f\x00", b"r\x3f\x42\x0f\x00").replace(
        b"j\x40\x42\x0f\x00", b"j\x3f\x42\x0f\x00")
    path = write(tmp_path, "memo3.pdparams", b"\x80\x04}(" + body + b"u.")
    for k, v in (("a", a), ("b", b), ("c", c), ("d", c)):
        same_bits(values(path, k), v)


def test_memoized_array_reused_under_two_keys(tmp_path):
    a = f32(1, 2, 3)
    body = su("x") + array_op(a.shape, a.tobytes()) + b"\x94" + su("y") + b"h\x00"
    path = write(tmp_path, "alias.pdparams", b"\x80\x04}(" + body + b"u.")
    entries, order, _ = listing(path)
    assert order == ["x", "y"]
    same_bits(values(path, "y"), a)


def test_containers_floats_and_misc_opcodes_are_skipped_values(tmp_path):
    a = f32(1, 2)
    misc = [
        (su("list"), b"](" + int_op(1) + int_op(2) + b"e" + int_op(3) + b"a"),  # APPENDS, APPEND
        (su("LIST"), b"(" + int_op(1) + b"N\x88\x89l"),                         # LIST
        (su("dict"), b"(" + su("k") + int_op(1) + b"d"),                         # DICT
        (su("setitem"), b"}" + su("z") + b"Ns"),                                 # SETITEM
        (su("float"), b"G" + struct.pack(">d", 0.25)),                           # BINFLOAT
        (su("pop"), int_op(1) + int_op(2) + b"0"),                               # POP
        (su("popmark"), int_op(4) + b"(" + int_op(1) + int_op(2) + b"1"),       # POP_MARK
        (su("dup"), b"N2\x86"),                                                  # DUP
        (su("tuple"), b")"),
        (su("bytes"), bytes_op(b"xyz", "BYTEARRAY8")),
    ]
    data = dict_pickle([(su("w"), array_op(a.shape, a.tobytes()))] + misc)
    path = write(tmp_path, "misc.pdparams", data)
    entries, order, skipped = listing(path)
    assert order == ["w"] and skipped == len(misc)


def test_setitem_top_level_and_duplicate_keys_later_wins(tmp_path):
    a, b, c = f32(1), f32(2, 3), f32(4, 5, 6)
    data = (b"\x80\x04}" + su("k") + array_op(a.shape, a.tobytes()) + b"s" +
            su("m") + array_op(b.shape, b.tobytes()) + b"s" +
            su("k") + array_op(c.shape, c.tobytes()) + b"s.")
    path = write(tmp_path, "dup.pdparams", data)
    entries, order, skipped = listing(path)
    assert order == ["k", "m"]       # Python keeps the first position ...
    same_bits(values(path, "k"), c)  # ... and the later value
    assert pickle.loads(data)["k"].tolist() == c.tolist()
    # a later non-array value replaces an array
    data = (b"\x80\x04}" + su("k") + array_op(a.shape, a.tobytes()) + b"s" + su("k") + b"Ns.")
    entries, order, skipped = listing(write(tmp_path, "dup2.pdparams", data))
    assert order == [] and skipped == 1


def test_fortran_flag_true_and_int(tmp_path):
    arr = np.arange(12, dtype=np.float32).reshape(3, 4) * 1.25
    fbytes = np.asfortranarray(arr).tobytes(order="F")
    for flag in (b"\x88", int_op(1)):
        data = dict_pickle([(su("f"), array_op(arr.shape, fbytes, fortran=flag))])
        same_bits(values(write(tmp_path, "f.pdparams", data), "f"), arr)


def test_frames(tmp_path):
    a, b = f32(1, 2, 3), f32(7, 8)
    inner = b"}(" + su("a") + array_op(a.shape, a.tobytes())
    rest = bu("b") + array_op(b.shape, b.tobytes()) + b"u."
    frame = lambda payload: b"\x95" + struct.pack("<Q", len(payload)) + payload
    ok = b"\x80\x04" + frame(inner) + frame(rest)
    path = write(tmp_path, "frames.pdparams", ok)
    same_bits(values(path, "a"), a)
    same_bits(values(path, "b"), b)
    # data after a frame ends, outside any frame
    same_bits(values(write(tmp_path, "f2.pdparams", b"\x80\x04" + frame(inner) + rest), "b"), b)
    # an opcode's operand that starts inside a frame and runs past its end (a read that
    # starts exactly at the end continues outside, as in Python)
    same_bits(values(write(tmp_path, "f3.pdparams",
                           b"\x80\x04" + frame(inner + rest[:1]) + rest[1:]), "b"), b)
    bad = b"\x80\x04" + frame(inner + rest[:3]) + rest[3:]
    refused(write(tmp_path, "cross.pdparams", bad), "frame", "offset")
    # a FRAME that starts before the current one is used up
    nested = b"\x80\x04" + b"\x95" + struct.pack("<Q", len(inner) + 20) + inner + frame(rest)
    refused(write(tmp_path, "nested.pdparams", nested), "FRAME at offset", "before")
    # a FRAME longer than the file
    long = b"\x80\x04\x95" + struct.pack("<Q", 1 << 40) + inner
    refused(write(tmp_path, "long.pdparams", long), "unexpected end of file", "FRAME")


def test_codecs_encode_variants(tmp_path):
    arr = f32(1, 2, 3)
    text = arr.tobytes().decode("latin1")
    enc = lambda name: (glob("_codecs", "encode", "global") + bu(text) + bu(name) + b"\x86R")

    def with_data(data_b):
        head = (glob("numpy.core.multiarray", "_reconstruct", "global") +
                glob("numpy", "ndarray", "global") + int_op(0) + b"\x85" + bytes_op(b"b", "C") +
                b"\x87R")
        state = (b"(" + int_op(1) + int_op(3) + b"\x85" + dtype_op(style="global") + b"\x89" +
                 data_b + b"tb")
        return b"\x80\x02}(" + bu("w") + head + state + b"u."

    for name in ("latin1", "latin-1", "LATIN1"):
        same_bits(values(write(tmp_path, "c.pdparams", with_data(enc(name))), "w"), arr)
    refused(write(tmp_path, "u8.pdparams", with_data(enc("utf-8"))), "utf-8", "latin1",
            status="unsupported")
    wide = glob("_codecs", "encode", "global") + bu("\u0100\u0101" * 6) + bu("latin1") + b"\x86R"
    refused(write(tmp_path, "wide.pdparams", with_data(wide)), "U+00FF")
    # an empty bytes object is written as bytes() by protocol 2
    empty = np.zeros((0,), np.float32)
    path = write(tmp_path, "e.pdparams", pickle.dumps({"e": empty}, protocol=2))
    assert b"bytes" in path.read_bytes()
    assert listing(path)[0]["e"][1:3] == ((0,), 0)


# ---------------------------------------------------------------- refusals

class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, 4])
def test_os_system_payload_is_refused_and_never_runs(tmp_path, protocol):
    marker = tmp_path / "pwned"
    d = {"a": np.ones(2, np.float32), "evil": Payload(marker)}
    data = pickle.dumps(d, protocol=protocol)
    if protocol == 2:
        off = data.index(b"cposix\nsystem\n")
    else:
        off = data.index(b"system\x94\x93") + 7
    path = write(tmp_path, "evil.pdparams", data)
    refused(path, "'posix.system'", "GLOBAL" if protocol == 2 else "STACK_GLOBAL",
            f"offset {off}", status="unsafe content refused")
    assert not marker.exists()
    # the same payload does run under Python's own pickle (so the test means something)
    pickle.loads(data)
    assert marker.exists()


@pytest.mark.parametrize("module,name,style", [
    ("os", "system", "global"), ("os", "system", "stack"), ("builtins", "eval", "stack"),
    ("builtins", "eval", "global"), ("posix", "system", "stack"), ("subprocess", "Popen", "stack"),
    ("numpy", "load", "stack"), ("numpy.core.multiarray", "scalar", "global"),
    ("builtins", "getattr", "stack"), ("__builtin__", "bytes ", "global"),
])
def test_forbidden_globals_are_refused_at_the_global_opcode(tmp_path, module, name, style):
    g = glob(module, name, style)
    data = b"\x80\x04}(" + su("k") + g + b"(" + su("echo hi") + b"tRu."
    off = data.index(g) + (len(g) - 1 if style == "stack" else 0)
    msg = refused(write(tmp_path, "g.pdparams", data), f"'{module}.{name}'",
                  f"offset {off}", status="unsafe content refused")
    assert ("STACK_GLOBAL" if style == "stack" else "GLOBAL") in msg


def test_forbidden_global_refused_even_if_never_called(tmp_path):
    data = b"\x80\x04}" + glob("os", "system") + b"0."
    refused(write(tmp_path, "g.pdparams", data), "'os.system'", status="unsafe content refused")


@pytest.mark.parametrize("op,at,status", [
    (b"Pfoo\n", 0, "unsafe"), (b"NQ", 1, "unsafe"), (b"(iarray\narray\n", 1, "unsafe"),
    (b"(No", 2, "unsafe"), (b"N)\x81", 2, "unsafe"), (b"N)}\x92", 3, "unsafe"),
    (b"\x82\x01", 0, "unsafe"), (b"\x83\x01\x00", 0, "unsafe"),
    (b"\x84\x01\x00\x00\x00", 0, "unsafe"), (b"I1\n", 0, "unsupported"),
    (b"S'x'\n", 0, "unsupported"), (b"U\x01x", 0, "unsupported"), (b"\x8f", 0, "unsupported"),
    (b"\x97", 0, "unsupported"), (b"g0\n", 0, "unsupported"), (b"F1.0\n", 0, "unsupported"),
])
def test_refused_opcodes_name_the_offset(tmp_path, op, at, status):
    prefix = b"\x80\x04}(" + su("k")
    data = prefix + op + b"u."
    msg = refused(write(tmp_path, "op.pdparams", data), f"offset {len(prefix) + at}",
                  f"(0x{op[at]:02x}")
    assert ("status: unsafe" if status == "unsafe" else "status: unsupported") in msg


@pytest.mark.parametrize("byte", [0x00, 0x7f, 0x99, 0xff, ord("A"), ord("z")])
def test_unknown_opcode(tmp_path, byte):
    data = b"\x80\x04}(" + su("k") + bytes([byte]) + b"u."
    off = len(b"\x80\x04}(" + su("k"))
    refused(write(tmp_path, "u.pdparams", data), f"unknown opcode 0x{byte:02x}", f"offset {off}",
            status="format error")


@pytest.mark.parametrize("op", [b"\x8e", b"\x96", b"\x8d"])
def test_huge_length_fields_fail_at_once(tmp_path, op):
    data = b"\x80\x04" + op + struct.pack("<Q", 1 << 60)
    assert len(data) == 11
    msg = refused(write(tmp_path, "huge.pdparams", data), "unexpected end of file",
                  str(1 << 60), "offset 2")
    p = run("pdparams", tmp_path / "huge.pdparams")
    assert p.returncode == 1


def test_huge_binbytes_and_long4(tmp_path):
    refused(write(tmp_path, "b.pdparams", b"\x80\x04B\xff\xff\xff\xff"), "4294967295")
    refused(write(tmp_path, "l.pdparams", b"\x80\x04\x8b\xff\xff\xff\x7f"), "unexpected end")
    refused(write(tmp_path, "i.pdparams", b"\x80\x04\x8a\x09" + b"\x00" * 8 + b"\x01."),
            "does not fit in 64 bits")


def test_shape_and_data_checks_name_the_key(tmp_path):
    a = f32(1, 2)
    cases = [
        ("huge", array_op((1 << 40, 1 << 40), a.tobytes(), int_style="LONG1"), "too large"),
        ("huge2", array_op((1 << 62, 4), a.tobytes(), int_style="LONG1"), "too large"),
        ("short", array_op((2, 3), a.tobytes()), "data holds 8 bytes"),
        ("long", array_op((1,), a.tobytes()), "needs 4"),
        ("million", array_op((1000000,), a.tobytes(), int_style="J"), "needs 4000000"),
        ("neg", array_op((2, -1), a.tobytes(), int_style="J"), "negative"),
        ("ndim", array_op((1,) * 9, a.tobytes()[:4]), "9 dimensions"),
    ]
    for key, arr_b, words in cases:
        data = dict_pickle([(su("ok"), array_op(a.shape, a.tobytes())), (su(key), arr_b)])
        refused(write(tmp_path, f"{key}.pdparams", data), f"key '{key}'", words)


def test_structural_errors(tmp_path):
    cases = [
        (b"", "empty file"),
        (b"\x80\x04", "unexpected end of file at offset 2"),
        (b"\x80\x06}.", "protocol 6"),
        (b"\x80\x04](K\x01e.", "top-level object is a list"),
        (b"\x80\x04}(K\x01K\x02u.", "key number 0 has type int"),
        (b"\x80\x04}(" + su("a") + b"u.", "odd number"),
        (b"\x80\x04K\x01\x86.", "needs 2 stack items"),
        (b"\x80\x04}(.", "unclosed MARK"),
        (b"\x80\x04t.", "without a MARK"),
        (b"\x80\x04h\x05.", "memo index 5 was never stored"),
        (b"\x80\x04\x94.", "needs 1 stack item"),
        (b"\x80\x04}K\x01a.", "APPEND at offset 5 applied to a dict"),
        (b"\x80\x04N)R.", "REDUCE at offset 4 calls a None"),
        (b"\x80\x04}Nb.", "BUILD at offset 4 on a dict"),
        (b"\x80\x04" + su("abc") + b".", "top-level object is a str"),
        (b"\x80\x04}" + su("a\x00b") + b"Ns.", "NUL"),
        (b"\x80\x04\x8c\x02\xc3\x28.", "invalid UTF-8"),
        (b"\x80\x04" + glob("numpy", "ndarray") + b")R.", "numpy.ndarray directly"),
        (b"\x80\x04}" + su("k") + glob("numpy.core.multiarray", "_reconstruct") +
         glob("numpy", "ndarray") + int_op(0) + b"\x85C\x01b\x87Rs.", "never got its state"),
        (b"\x80\x04}" + su("k") + glob("numpy.core.multiarray", "_reconstruct") +
         glob("numpy", "ndarray") + int_op(0) + b"\x85C\x01b\x87R" + b"K\x01b" + b"s.",
         "ndarray state must be a tuple"),
    ]
    for i, (data, words) in enumerate(cases):
        refused(write(tmp_path, f"s{i}.pdparams", data), words)


def test_deep_nesting(tmp_path):
    # MARKs nest at most 1000 deep
    refused(write(tmp_path, "marks.pdparams", b"\x80\x04" + b"(" * 5000 + b"t" * 5000 + b"."),
            "nests deeper than the limit of 1000", "offset 1002")
    ok = b"\x80\x04}(" + su("m") + b"(" * 990 + b")" + b"t" * 990 + b"u."
    assert listing(write(tmp_path, "marks_ok.pdparams", ok))[2] == 1
    # containers nest without limit and without recursion
    n = 200000
    lists = b"]" * n + b"a" * (n - 1)
    tuples = b"N" + b"\x85" * n
    data = b"\x80\x04}(" + su("lists") + lists + su("tuples") + tuples + b"u."
    assert listing(write(tmp_path, "deep.pdparams", data))[2] == 2


def test_truncated_files_never_crash(tmp_path):
    rng = np.random.default_rng(3)
    d = {"stem.conv1.conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
         "big": rng.standard_normal(20000).astype(np.float32),
         "half": rng.standard_normal(7).astype(np.float16),
         "StructuredToParameterName@@": {"a": "b"}}
    for protocol in (2, 4, 5):
        data = pickle.dumps(d, protocol=protocol)
        cuts = sorted(set(list(range(0, 40)) + list(rng.integers(40, len(data), 30)) +
                          [len(data) - 1, len(data) - 2]))
        for cut in cuts:
            path = write(tmp_path, "t.pdparams", data[:cut])
            p = run("pdparams", path)
            assert p.returncode == 1, (protocol, cut, p.returncode, p.stderr)
            assert p.stderr.startswith(str(path)), p.stderr
            if cut > 0:
                assert "unexpected end of file" in p.stderr, (protocol, cut, p.stderr)
        assert run("pdparams", write(tmp_path, "t.pdparams", data)).returncode == 0


def test_corrupted_bytes_never_crash(tmp_path):
    rng = np.random.default_rng(5)
    data = bytearray(pickle.dumps(sample_dict(), protocol=4))
    for i in range(60):
        bad = bytearray(data)
        for pos in rng.integers(0, len(bad), 3):
            bad[pos] = int(rng.integers(0, 256))
        p = run("pdparams", write(tmp_path, "c.pdparams", bytes(bad)))
        assert p.returncode in (0, 1), (i, p.returncode, p.stderr)


def test_not_a_pickle(tmp_path):
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as z:
        z.writestr("archive/data.pkl", b"x")
    npy = io.BytesIO()
    np.save(npy, np.ones(3, np.float32))
    cases = [(png, "PNG"), (zbuf.getvalue(), "zip"), (b"hello world\nthis is text\n", "text"),
             (npy.getvalue(), ".npy"), (b"\x00\x01\x02", "not a pickle")]
    for i, (data, words) in enumerate(cases):
        refused(write(tmp_path, f"n{i}.pdparams", data), "not a pickle", words,
                status="format error")


def test_missing_file_and_directory(tmp_path):
    p = run("pdparams", tmp_path / "nope.pdparams")
    assert p.returncode == 1 and "nope.pdparams" in p.stderr and "I/O error" in p.stderr
    p = run("pdparams", tmp_path)
    assert p.returncode == 1 and "directory" in p.stderr


def test_trailing_bytes_after_stop_are_ignored(tmp_path):
    a = f32(1, 2)
    data = pickle.dumps({"a": a}, protocol=4) + b"garbage after STOP"
    same_bits(values(write(tmp_path, "t.pdparams", data), "a"), a)


def test_every_float16_value_converts_like_numpy(tmp_path):
    bits = np.arange(65536, dtype=np.uint16)
    half = bits.view(np.float16)
    half = half[~np.isnan(half)]  # NaN payloads cannot round-trip through text
    path = tmp_path / "h.pdparams"
    pickle.dump({"h": half, "hb": half.astype(">f2")}, open(path, "wb"), protocol=4)
    same_bits(values(path, "h"), half.astype(np.float32))
    same_bits(values(path, "hb"), half.astype(np.float32))


def test_protocol2_latin1_round_trip_of_random_bytes(tmp_path):
    rng = np.random.default_rng(11)
    for n in range(0, 40):
        bits = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
        arr = bits.view(np.float32)
        arr = np.where(np.isnan(arr), np.float32(1.5), arr).astype(np.float32)
        path = write(tmp_path, "l.pdparams", pickle.dumps({"a": arr}, protocol=2))
        same_bits(values(path, "a"), arr)


def test_utf8_validation_matches_python(tmp_path):
    rng = np.random.default_rng(13)
    pool = [b"a", b"\x7f", b"\xc2\x80", b"\xc3\xbf", b"\xdf\xbf", b"\xe0\xa0\x80", b"\xed\xa0\x80",
            b"\xef\xbf\xbf", b"\xf0\x90\x80\x80", b"\xf4\x8f\xbf\xbf", b"\x80", b"\xc0\x80",
            b"\xc1\xbf", b"\xc2", b"\xe0\x80\x80", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80",
            b"\xff", b"\xe1\x80", b"\xf0\x80\x80\x80"]
    for i in range(150):
        s = b"".join(pool[j] for j in rng.integers(0, len(pool), int(rng.integers(1, 6))))
        try:
            s.decode("utf-8", "surrogatepass")
            valid = True
        except UnicodeDecodeError:
            valid = False
        data = b"\x80\x04}(" + su("k") + b"\x8c" + bytes([len(s)]) + s + b"u."
        p = run("pdparams", write(tmp_path, "u.pdparams", data))
        assert p.returncode == (0 if valid else 1), (s, p.stderr)
        if not valid:
            assert "invalid UTF-8" in p.stderr
