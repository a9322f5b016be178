#!/usr/bin/python3
"""Malformed-input corpus for every reader (tests/test_malformed.py replays it).

    tests/malformed/make_corpus.py OUTDIR [VALID.safetensors]

Run it as a process (it caps its own address space as a safety net for the oracles).
A valid safetensors file (from `cspresnet convert`) is mutated when given; --good-only
writes only the two valid files (to convert one first).

Writes OUTDIR/good.pdparams (a tiny valid CSPResNet: channels 8, one block per stage,
alpha), OUTDIR/good.npy (1x3x8x8 float32), the malformed files under OUTDIR/<reader>/, and OUTDIR/manifest.json: a list of
{"file", "reader", "expect", "why"} where reader is the CLI flag that reads the file
("weights" or "input") and expect is
  "fail"  the file is malformed: the CLI must exit 1 with a one-line message;
  "any"   a mutation that still decodes to a well-formed file (a bit flip in float data,
          a byte-order flag): exit 0 or 1, never a crash or a hang.
Bit flips are classified by an independent oracle: Python's own pickle with a whitelist
of numpy globals (the real numpy rebuilds the arrays) and numpy.load for .npy; a flip whose
result has the same keys, shapes and dtypes as the original is "any", everything else
"fail". Deterministic (seeded). Nothing here is committed as binary: generated at test time.
"""
import hashlib
import io
import json
import os
import pickle
import pickletools
import random
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "ref"))


# ----------------------------------------------------------------------------- baselines

def tiny_state():
    """state_dict of a tiny CSPResNet (channels 8 everywhere, 1 block per stage, alpha)."""
    import cspresnet_torch as ref
    cfg = ref.Config(layers=[1, 1, 1, 1], channels=[8, 8, 8, 8, 8], use_alpha=True)
    model = cfg.build()
    return ref.randomize(model, seed=3)


def name_table(state):
    return {k: f"p_{i}.w_0" for i, k in enumerate(state)}


def pdparams_bytes(obj, protocol=4):
    return pickle.dumps(obj, protocol=protocol)


def saved(state, **extra):
    d = {k: np.ascontiguousarray(v) for k, v in state.items()}
    d.update(extra)
    d["StructuredToParameterName@@"] = name_table(state)
    return d


def npy_bytes(arr, version=(1, 0)):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, version=version)
    return buf.getvalue()


def npy_raw(header, data=b"", version=(1, 0)):
    h = header.encode("latin1")
    pre = 10 if version[0] == 1 else 12
    h += b" " * (-(pre + len(h) + 1) % 64) + b"\n"
    if version[0] == 1:
        return b"\x93NUMPY" + bytes(version) + struct.pack("<H", len(h)) + h + data
    return b"\x93NUMPY" + bytes(version) + struct.pack("<I", len(h)) + h + data


def safetensors_bytes(state):
    header, blobs, off = {}, [], 0
    for k, v in state.items():
        raw = np.ascontiguousarray(v, dtype="<f4").tobytes()
        header[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


# ----------------------------------------------------------------------------- oracles

class SafeUnpickler(pickle.Unpickler):
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype"),
               ("_codecs", "encode"), ("numpy.core.numeric", "_frombuffer"),
               ("builtins", "bytes"), ("__builtin__", "bytes")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"forbidden {module}.{name}")
        if module == "__builtin__":
            module = "builtins"
        return super().find_class(module, name)


def signature_pdparams(data):
    """{key: (shape, kind, itemsize)} of the arrays, or None when the file does not load."""
    try:
        # Python's C unpickler sizes its memo by the largest index: a flipped LONG_BINPUT
        # would make the oracle itself allocate gigabytes. Ours refuses indices >= 1e6.
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("BINPUT", "LONG_BINPUT") and arg >= 1000000:
                return None
            if op.name == "STOP":
                break
        obj = SafeUnpickler(io.BytesIO(data)).load()
    except Exception:
        return None
    if not isinstance(obj, dict):
        return None
    sig = {}
    for k, v in obj.items():
        if not isinstance(k, str):
            return None
        if isinstance(v, np.ndarray):
            sig[k] = (v.shape, v.dtype.kind, v.dtype.itemsize)
    return sig


def signature_npy(data):
    try:
        a = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception:
        return None
    if a.dtype.kind != "f" or a.dtype.itemsize not in (2, 4, 8):  # read as numpy's astype(float32)
        return None
    return a.shape


# ----------------------------------------------------------------------------- pickle helpers

def su(s):
    b = s.encode() if isinstance(s, str) else s
    return b"\x8c" + bytes([len(b)]) + b


def bu(s):
    b = s.encode() if isinstance(s, str) else s
    return b"X" + struct.pack("<I", len(b)) + b


def glob(module, name):
    return su(module) + su(name) + b"\x93"


def dtype_op(code="f4", order="<"):
    return (glob("numpy", "dtype") + su(code) + b"\x89\x88\x87R"
            + b"K\x03" + su(order) + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t".replace(b"t", b"")
            + b"")


def dtype_obj(code="f4", order="<"):
    # numpy.dtype(code, False, True) then BUILD (3, order, None, None, None, -1, -1, 0)
    return (glob("numpy", "dtype") + su(code) + b"\x89\x88\x87R"
            + b"(K\x03" + su(order) + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")


def shape_op(shape):
    out = b"("
    for d in shape:
        if isinstance(d, bytes):
            out += d
        elif 0 <= d < 256:
            out += b"K" + bytes([d])
        elif -2**31 <= d < 2**31:
            out += b"J" + struct.pack("<i", d)
        else:
            raw = d.to_bytes(9, "little", signed=True)
            out += b"\x8a" + bytes([len(raw)]) + raw
    return out + b"t"


def array_op(shape, data, dtype=None, fortran=b"\x89", data_op=None):
    dt = dtype if dtype is not None else dtype_obj()
    d = data_op if data_op is not None else (b"B" + struct.pack("<I", len(data)) + data)
    return (glob("numpy.core.multiarray", "_reconstruct") + glob("numpy", "ndarray")
            + b"K\x00\x85" + b"C\x01b" + b"\x87R"
            + b"(K\x01" + shape_op(shape) + dt + fortran + d + b"tb")


def dict_pickle(items, proto=4):
    out = b"\x80" + bytes([proto]) + b"}("
    for k, v in items:
        out += (su(k) if isinstance(k, str) else k) + v
    return out + b"u."


def f32(n):
    return np.arange(n, dtype="<f4").tobytes()


# ----------------------------------------------------------------------------- generators

def structural_positions(data):
    """Byte positions of opcodes and of their arguments, except the payload of byte strings
    longer than 16 bytes (array data)."""
    pos = []
    ops = list(pickletools.genops(data))
    for i, (op, arg, at) in enumerate(ops):
        end = ops[i + 1][2] if i + 1 < len(ops) else len(data)
        if op.name in ("BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8") and end - at > 16:
            end = at + 1 + {"SHORT_BINBYTES": 1, "BINBYTES": 4}.get(op.name, 8)
        pos.extend(range(at, end))
    return pos


def pdparams_cases(state):
    cases = []  # (name, bytes, expect, why)
    base4 = pdparams_bytes(saved(state), 4)
    base2 = pdparams_bytes(saved(state), 2)
    sig = {k: (v.shape, v.dtype.kind, v.dtype.itemsize) for k, v in state.items()}
    rnd = random.Random(1234)

    # truncations at many offsets (a pickle cut anywhere loses its STOP)
    for name, base in (("p4", base4), ("p2", base2)):
        offs = sorted(set([0, 1, 2, 3, 4, 5, 8, 11, 16, 17, 31, 64, len(base) // 2, len(base) - 1,
                           len(base) - 2] + rnd.sample(range(len(base)), 40)))
        for off in offs:
            cases.append((f"trunc_{name}_{off}", base[:off], "fail", f"truncated at {off}"))

    # bit flips in structure, classified by the oracle
    for name, base in (("p4", base4), ("p2", base2)):
        positions = structural_positions(base)
        for n in range(90):
            at = rnd.choice(positions)
            bit = rnd.randrange(8)
            data = bytearray(base)
            data[at] ^= 1 << bit
            data = bytes(data)
            expect = "any" if signature_pdparams(data) == sig else "fail"
            cases.append((f"flip_{name}_{at}_{bit}", data, expect, f"bit {bit} of byte {at} flipped"))

    stem = "stem.conv1.conv.weight"
    good_items = [(k, array_op(v.shape, np.ascontiguousarray(v, "<f4").tobytes()))
                  for k, v in state.items()]

    def with_item(key, op):  # replace (or add) one entry, keep the rest valid
        return dict_pickle([(k, (op if k == key else v)) for k, v in good_items]
                           + ([] if key in state else [(key, op)]))

    hand = [
        # wrong types
        ("top_level_list", b"\x80\x04](K\x01K\x02e.", "top-level list"),
        ("top_level_int", b"\x80\x04K\x05.", "top-level int"),
        ("top_level_none", b"\x80\x02N.", "top-level None"),
        ("key_is_int", dict_pickle([(b"K\x07", array_op((2,), f32(2)))]), "int key"),
        ("key_is_bytes", dict_pickle([(b"C\x03abc", array_op((2,), f32(2)))]), "bytes key"),
        ("shape_entry_str", with_item(stem, array_op((su("8"), 3, 3, 3), f32(8 * 27))), "str in shape"),
        ("shape_entry_float", with_item(stem, array_op((b"G" + struct.pack(">d", 8.0), 3, 3, 3), f32(216))), "float in shape"),
        ("shape_not_tuple", with_item(stem, array_op((), f32(216)).replace(b"(K\x01(t", b"(K\x01K\x08")), "shape is an int"),
        ("data_is_str", with_item(stem, array_op((8, 3, 3, 3), b"", data_op=bu("x" * 10))), "data is str"),
        ("data_is_list", with_item(stem, array_op((2,), b"", data_op=b"](K\x01K\x02e")), "object array"),
        ("state_wrong_len", with_item(stem, array_op((2,), f32(2)).replace(b"(K\x01(", b"((", 1)), "BUILD state of 4 with garbage"),
        ("reduce_non_callable", b"\x80\x04}(" + su("a") + b"K\x01)R" + b"u.", "REDUCE on int"),
        ("build_on_int", b"\x80\x04}(" + su("a") + b"K\x01)b" + b"u.", "BUILD on int"),
        ("dtype_arg_int", with_item(stem, array_op((2,), f32(2), dtype=glob("numpy", "dtype") + b"K\x04\x85R")), "dtype(int)"),
        ("no_build", with_item(stem, glob("numpy.core.multiarray", "_reconstruct") + glob("numpy", "ndarray") + b"K\x00\x85C\x01b\x87R"), "array never built"),
        # huge / negative / overflowing shapes
        ("tiny_claims_1e12", dict_pickle([(stem, array_op((10**12,), f32(1)))]), "1e12 elements, 4 bytes"),
        ("shape_overflow", dict_pickle([(stem, array_op((2**62, 2**62), f32(1)))]), "numel overflows"),
        ("shape_int64_max", dict_pickle([(stem, array_op((2**63 - 1,), f32(1)))]), "int64 max"),
        ("shape_too_big_int", dict_pickle([(stem, array_op(((1 << 70),), f32(1)))]), "dimension over 64 bits"),
        ("shape_negative", with_item(stem, array_op((-8, 3, 3, 3), f32(216))), "negative dim"),
        ("shape_neg_pair", with_item(stem, array_op((-1, -216), f32(216))), "two negatives make a positive"),
        ("shape_9_dims", with_item(stem, array_op((1,) * 9, f32(1))), "9 dimensions"),
        ("stem_huge_channels", with_item(stem, array_op((10**6, 3, 3, 3), f32(216))), "1e6 channels, little data"),
        ("data_short", with_item(stem, array_op((8, 3, 3, 3), f32(215))), "one value short"),
        ("data_long", with_item(stem, array_op((8, 3, 3, 3), f32(217))), "one value too many"),
        ("binbytes_len_huge", b"\x80\x04}(" + su("a") + b"B\xff\xff\xff\x7f" + b"u.", "BINBYTES claims 2 GiB"),
        ("binbytes8_len_huge", b"\x80\x04}(" + su("a") + b"\x8e" + b"\xff" * 8 + b"u.", "BINBYTES8 claims 2^64"),
        ("binunicode_len_huge", b"\x80\x04}(" + b"X\xff\xff\xff\xff" + b"u.", "BINUNICODE claims 4 GiB"),
        ("frame_len_huge", b"\x80\x04\x95" + b"\xff" * 8 + b"}.", "FRAME claims 2^64"),
        ("long4_huge", b"\x80\x04\x8b\xff\xff\xff\x7f.", "LONG4 claims 2 GiB"),
        # duplicate keys: the later wins, as in Python; a later bad value must be refused
        ("dup_key_later_bad", dict_pickle(good_items + [(stem, array_op((8, 3, 3, 2), f32(144)))]), "duplicate key, later has the wrong shape"),
        ("dup_key_later_none", dict_pickle(good_items + [(stem, b"N")]), "duplicate key, later is None"),
        # deep nesting
        ("marks_1001", b"\x80\x04" + b"(" * 1001 + b"t" * 1001 + b".", "1001 nested MARKs"),
        ("lists_100k_deep", b"\x80\x04" + b"]" * 100000 + b"a" * 99999 + b".", "100,000 nested lists"),
        ("tuples_100k_deep", b"\x80\x04N" + b"\x85" * 100000 + b".", "100,000 nested 1-tuples"),
        ("dicts_deep_value", b"\x80\x04}(" + su("x") + b"}" * 50000 + (su("k") + b"s") * 0 + b"u.", "odd items"),
        # memo
        ("memo_get_unset", b"\x80\x04}(" + su("a") + b"j\x05\x00\x00\x00u.", "LONG_BINGET of an unset index"),
        ("memo_put_huge", b"\x80\x04}(" + su("a") + b"r\xff\xff\xff\xff" + b"u.", "LONG_BINPUT 2^32-1"),
        ("memo_get_empty_stack", b"\x80\x04\x94.", "MEMOIZE on an empty stack"),
        # stack misuse
        ("stop_empty", b"\x80\x04.", "STOP on an empty stack"),
        ("stop_with_mark", b"\x80\x04(}.", "STOP inside a MARK"),
        ("setitems_no_mark", b"\x80\x04}" + su("a") + b"Nu.", "SETITEMS without MARK"),
        ("setitem_odd", b"\x80\x04}(" + su("a") + b"u.", "SETITEMS with an odd count"),
        ("append_to_dict", b"\x80\x04}Na.", "APPEND to a dict"),
        ("pop_empty", b"\x80\x040.", "POP on empty stack"),
        # wrong dtypes
        ("dtype_i8", with_item(stem, array_op((8, 3, 3, 3), np.zeros(216, "<i8").tobytes(), dtype=dtype_obj("i8"))), "int64 weights"),
        ("dtype_u1", with_item(stem, array_op((8, 3, 3, 3), bytes(216), dtype=dtype_obj("u1", "|"))), "uint8 weights"),
        ("dtype_b1", with_item(stem, array_op((8, 3, 3, 3), bytes(216), dtype=dtype_obj("b1", "|"))), "bool weights"),
        ("dtype_c8", with_item(stem, array_op((8, 3, 3, 3), bytes(216 * 8), dtype=dtype_obj("c8"))), "complex weights"),
        ("dtype_U4", with_item(stem, array_op((8, 3, 3, 3), bytes(216 * 16), dtype=dtype_obj("U4"))), "unicode weights"),
        ("dtype_unknown", with_item(stem, array_op((8, 3, 3, 3), f32(216), dtype=dtype_obj("float32"))), "dtype name not a code"),
        ("dtype_byteorder_bad", with_item(stem, array_op((8, 3, 3, 3), f32(216), dtype=dtype_obj("f4", "?"))), "byte order '?'"),
        ("dtype_structured", with_item(stem, array_op((8, 3, 3, 3), f32(216), dtype=(glob("numpy", "dtype") + su("V4") + b"\x89\x88\x87R(K\x03" + su("|") + b"N(" + su("a") + b"tNJ\x04\x00\x00\x00K\x01K\x10tb"))), "structured dtype"),
        # inconsistent metadata / model level
        ("key_with_nul", dict_pickle([(su("stem\x00x"), array_op((2,), f32(2)))]), "NUL in key"),
        ("key_bad_utf8", dict_pickle([(b"\x8c\x02\xff\xfe", array_op((2,), f32(2)))]), "invalid UTF-8 key"),
        ("key_too_long", dict_pickle([(bu("k" * 2000), array_op((2,), f32(2)))]), "2000-byte key"),
        ("missing_stem", dict_pickle([it for it in good_items if it[0] != stem]), "stem weight missing"),
        ("missing_bn_mean", dict_pickle([it for it in good_items if it[0] != "stages.2.conv1.bn._mean"]), "one BN mean missing"),
        ("stem_wrong_cin", with_item(stem, array_op((4, 4, 3, 3), f32(144))), "stem conv reads 4 channels"),
        ("bn_wrong_len", with_item("stages.1.conv2.bn.weight", array_op((3,), f32(3))), "BN weight of 3 for 4 channels"),
        ("extra_backbone_key", with_item("stages.0.blocks.0.conv2.conv.weight", array_op((4, 4, 3, 3), f32(144))), "deployed key mixed in"),
        ("fifth_stage", with_item("stages.4.conv3.conv.weight", array_op((8, 8, 1, 1), f32(64))), "5 stages"),
        ("fortran_bad_flag", with_item(stem, array_op((8, 3, 3, 3), f32(216), fortran=su("x"))), "is_fortran is a str"),
        ("frombuffer_bad_order", dict_pickle([(stem, glob("numpy.core.numeric", "_frombuffer") + b"C\x04\x00\x00\x00\x00" + dtype_obj() + b"K\x01\x85" + su("X") + b"(t".replace(b"(t", b"") + b"\x94" + b"t".replace(b"t", b"") + b"")]), "bad _frombuffer call"),
        ("only_name_table", pdparams_bytes({"StructuredToParameterName@@": {"a": "b"}}), "no arrays at all"),
        ("empty_dict", pdparams_bytes({}), "empty state dict"),
        # unsafe content
        ("global_os_system", b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.", "os.system"),
        ("global_posix_system", b"\x80\x04" + glob("posix", "system") + su("true") + b"\x85R.", "posix.system"),
        ("global_builtins_eval", b"\x80\x04" + glob("builtins", "eval") + su("1") + b"\x85R.", "eval"),
        ("global_subprocess", b"\x80\x04" + glob("subprocess", "Popen") + b".", "subprocess.Popen, never called"),
        ("global_numpy_load", b"\x80\x04" + glob("numpy", "load") + b".", "numpy.load"),
        ("opcode_inst", b"\x80\x02(ios\nsystem\nS'true'\n.", "INST"),
        ("opcode_obj", b"\x80\x02(" + b"N" + b"o.", "OBJ"),
        ("opcode_newobj", b"\x80\x02N)\x81.", "NEWOBJ"),
        ("opcode_persid", b"\x80\x02Pabc\n.", "PERSID"),
        ("opcode_binpersid", b"\x80\x02N" + b"Q.", "BINPERSID"),
        ("opcode_ext1", b"\x80\x02\x82\x01.", "EXT1"),
        ("opcode_reduce_bytes_args", b"\x80\x04" + glob("builtins", "bytes") + su("x") + b"\x85R.", "bytes('x')"),
        ("codecs_other_encoding", b"\x80\x02" + b"c_codecs\nencode\n" + bu("abc") + bu("rot13") + b"\x86R.", "rot13"),
        ("codecs_repeat_decode", b"\x80\x02" + b"c_codecs\nencode\nq\x00" + bu("a" * 4096) + b"q\x01" + bu("latin1") + b"q\x02" + b"}(" + b"".join(su(f"k{i}") + b"h\x00h\x01h\x02\x86R" for i in range(64)) + b"u.", "memoized text decoded 64 times"),
        ("protocol_0", b"(dp0\nS'a'\np1\nI1\ns.", "protocol 0"),
        ("protocol_1", b"}q\x00U\x01aq\x01K\x01s.", "protocol 1"),
        ("protocol_6", b"\x80\x06}.", "protocol 6"),
        ("unknown_opcode", b"\x80\x04\xff.", "byte 0xff"),
        ("empty_file", b"", "empty"),
        ("png_file", b"\x89PNG\r\n\x1a\n" + bytes(64), "a PNG"),
        ("zip_file", b"PK\x03\x04" + bytes(64), "torch.save zip"),
        ("text_file", b"hello world\n", "text"),
    ]
    # the sort of 100,000 memoized 1 KiB keys must not take quadratic time
    key = b"A" * 1024
    atk = b"\x80\x04" + bu(key) + b"r\x00\x00\x00\x00" + bu(key) + b"r\x01\x00\x00\x00" + b"}("
    atk += b"".join(b"j" + struct.pack("<I", i & 1) + b"N" for i in range(99990)) + b"u."
    hand.append(("keys_100k_shared", atk, "100k keys sharing two 1 KiB texts"))
    atk2 = b"\x80\x04}(" + b"".join(su(f"k{i}") + b"N" for i in range(100001)) + b"u."
    hand.append(("keys_over_limit", atk2, "100,001 keys"))
    # one 1 MiB array shared by 70 keys: 70 MiB described by a 1 MiB file
    big = array_op((262144,), bytes(1 << 20)) + b"\x94"
    amp = b"\x80\x04}(" + su("stem.conv1.conv.weight") + big + b"".join(
        su(f"x{i}") + b"h\x00" for i in range(70)) + b"u."
    # the memo index of the array is not 0: compute it with the oracle-free approach below
    hand.append(("shared_array_70x", amp.replace(b"h\x00", b"j" + struct.pack("<I", amp_index(amp))), "70 keys share one 1 MiB array"))
    for name, data, why in hand:
        cases.append((f"hand_{name}", data, "fail", why))
    return cases


def amp_index(data):
    """The memo index that the MEMOIZE right after the 1 MiB array gets."""
    count = 0
    for op, arg, at in pickletools.genops(data[:data.index(b"\x94", data.index(bytes(1 << 20))) + 1] + b"."):
        if op.name == "MEMOIZE":
            count += 1
    return count - 1


def npy_cases():
    cases = []
    rnd = random.Random(99)
    good = np.arange(192, dtype="<f4").reshape(1, 3, 8, 8) / 7
    base = npy_bytes(good)
    hdr_len = 10 + struct.unpack("<H", base[8:10])[0]
    offs = sorted(set(list(range(0, hdr_len + 1, 3)) + [hdr_len - 1, hdr_len + 1, len(base) - 1, len(base) - 4]
                      + rnd.sample(range(hdr_len, len(base)), 10)))
    for off in offs:
        cases.append((f"trunc_{off}", base[:off], "fail", f"truncated at {off}"))
    for _ in range(60):
        at = rnd.randrange(hdr_len)
        bit = rnd.randrange(8)
        data = bytearray(base)
        data[at] ^= 1 << bit
        data = bytes(data)
        s = signature_npy(data)
        ok = s is not None and len(s) == 4 and s[1] == 3 and min(s) >= 1
        cases.append((f"flip_{at}_{bit}", data, "any" if ok else "fail", f"bit {bit} of byte {at}"))
    d = good.tobytes()
    H = "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }"
    hand = [
        ("bad_magic", b"\x93NUMPZ" + base[6:], "magic"),
        ("version_4", base[:6] + b"\x04\x00" + base[8:], "version 4.0"),
        ("version_1_1", base[:6] + b"\x01\x01" + base[8:], "version 1.1"),
        ("version_0", base[:6] + b"\x00\x00" + base[8:], "version 0.0"),
        ("hlen_past_end", base[:8] + b"\xff\xff" + base[10:], "header length 65535"),
        ("hlen_v2_huge", b"\x93NUMPY\x02\x00\xff\xff\xff\xff" + b"{}", "header length 4 GiB"),
        ("tiny_claims_1e12", npy_raw(H % "(1000000, 3, 1000, 1000)", b"\0" * 4), "1e12 elements"),
        ("shape_overflow", npy_raw(H % "(4611686018427387904, 4611686018427387904)"), "overflow"),
        ("shape_huge_digits", npy_raw(H % "(1, 3, 99999999999999999999999, 8)"), "dimension over 64 bits"),
        ("shape_negative", npy_raw(H % "(1, 3, -8, 8)", d), "negative"),
        ("shape_neg_pair", npy_raw(H % "(-1, 3, -8, 8)", d), "two negatives"),
        ("shape_9_dims", npy_raw(H % "(1, 1, 1, 1, 1, 1, 1, 1, 1)", b"\0" * 4), "9 dims"),
        ("shape_float", npy_raw(H % "(1, 3, 8.0, 8)", d), "float dim"),
        ("shape_not_tuple", npy_raw(H % "[1, 3, 8, 8]", d), "list shape"),
        ("shape_zero_dim", npy_raw(H % "(1, 3, 0, 8)"), "zero height"),
        ("shape_3d", npy_bytes(good[0]), "3-D input"),
        ("shape_4_channels", npy_bytes(np.zeros((1, 4, 8, 8), "<f4")), "4 channels"),
        ("shape_0d", npy_bytes(np.array(1.0, "<f4")), "0-d"),
        ("descr_u1", npy_bytes(good.astype("|u1")), "uint8"),
        ("descr_i4", npy_bytes(good.astype("<i4")), "int32"),
        ("descr_big_i8", npy_bytes(good.astype(">i8")), "big-endian int64"),
        ("descr_structured", npy_raw("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1, 3, 8, 8), }", d), "structured"),
        ("descr_object", npy_raw("{'descr': '|O', 'fortran_order': False, 'shape': (1, 3, 8, 8), }", d), "object"),
        ("fortran_maybe", npy_raw("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1, 3, 8, 8), }", d), "bad bool"),
        ("missing_descr", npy_raw("{'fortran_order': False, 'shape': (1, 3, 8, 8), }", d), "no descr"),
        ("missing_shape", npy_raw("{'descr': '<f4', 'fortran_order': False, }", d), "no shape"),
        ("repeated_key", npy_raw("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 8, 8), }", d), "repeated descr"),
        ("extra_key", npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 8, 8), 'x': 1, }", d), "extra key"),
        ("unterminated_string", npy_raw("{'descr: '<f4', 'fortran_order': False, 'shape': (1, 3, 8, 8), }", d), "quote"),
        ("escaped_string", npy_raw("{'descr': '<\\x66', 'fortran_order': False, 'shape': (1, 3, 8, 8), }", d), "escape"),
        ("not_a_dict", npy_raw("(1, 3, 8, 8)", d), "tuple header"),
        ("text_after_dict", npy_raw(H % "(1, 3, 8, 8)" + " junk", d), "junk"),
        ("header_nul", npy_raw(H % "(1, 3, 8, 8)" + "\0", d), "NUL in header"),
        ("trailing_data", base + b"\0\0\0\0", "4 bytes too many"),
        ("short_data", base[:-1], "1 byte short"),
        ("empty_file", b"", "empty"),
        ("pdparams_as_input", pdparams_bytes({"a": good}), "a pickle"),
        ("png_as_npy", b"\x89PNG\r\n\x1a\n" + bytes(64), "a PNG"),
    ]
    for name, data, why in hand:
        cases.append((f"hand_{name}", data, "fail", why))
    return cases


def safetensors_cases(state, base=None):
    cases = []
    rnd = random.Random(5)
    if base is None:
        base = safetensors_bytes(state)
    hlen = 8 + struct.unpack("<Q", base[:8])[0]
    offs = sorted(set([0, 1, 4, 7, 8, 9, hlen // 2, hlen - 1, hlen, hlen + 1, len(base) - 1]
                      + rnd.sample(range(len(base)), 15)))
    for off in offs:
        cases.append((f"trunc_{off}", base[:off], "fail", f"truncated at {off}"))
    hdr = json.loads(base[8:hlen])
    stem = "stem.conv1.conv.weight"

    def mk(h, data=None):
        j = json.dumps(h).encode()
        return struct.pack("<Q", len(j)) + j + (base[hlen:] if data is None else data)

    def edit(fn):
        h = json.loads(base[8:hlen])
        fn(h)
        return mk(h)

    hand = [
        ("hlen_huge", struct.pack("<Q", 2**63) + base[8:], "header length 2^63"),
        ("hlen_past_end", struct.pack("<Q", len(base)) + base[8:], "header past the end"),
        ("header_not_json", struct.pack("<Q", 5) + b"{abc}" + base[hlen:], "not JSON"),
        ("header_list", mk([1, 2]), "JSON list"),
        ("shape_huge", edit(lambda h: h[stem].update(shape=[10**6, 10**6, 10**6, 10**6])), "huge shape"),
        ("shape_negative", edit(lambda h: h[stem].update(shape=[-8, 3, 3, 3])), "negative"),
        ("shape_str", edit(lambda h: h[stem].update(shape=["8", 3, 3, 3])), "str dim"),
        ("offsets_reversed", edit(lambda h: h[stem].update(data_offsets=h[stem]["data_offsets"][::-1])), "end < begin"),
        ("offsets_past_end", edit(lambda h: h[stem].update(data_offsets=[0, 10**12])), "past the end"),
        ("offsets_mismatch", edit(lambda h: h[stem].update(data_offsets=[0, 8])), "size != shape"),
        ("dtype_bad", edit(lambda h: h[stem].update(dtype="F33")), "unknown dtype"),
        ("dtype_i64", edit(lambda h: h[stem].update(dtype="I64", shape=[4, 3, 3, 3])), "int64"),
        ("missing_dtype", edit(lambda h: h[stem].pop("dtype")), "no dtype"),
        ("dup_key", mk(hdr).replace(b'"stem.conv1.bn.weight"', b'"' + stem.encode() + b'"', 1), "duplicate key"),
        ("deep_nesting", struct.pack("<Q", 20000) + b"[" * 10000 + b"]" * 10000 + base[hlen:], "10,000 nested arrays"),
    ]
    for name, data, why in hand:
        cases.append((f"hand_{name}", data, "fail", why))
    return cases


def generate(out, safetensors_base=None):
    """safetensors_base: a valid file (from `cspresnet convert`, with the architecture in
    its __metadata__) to mutate; without it, a metadata-free file is made here."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft > 8 << 30:  # a safety net for the oracles
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, hard))
    os.makedirs(out, exist_ok=True)
    state = tiny_state()
    with open(os.path.join(out, "good.pdparams"), "wb") as f:
        f.write(pdparams_bytes(saved(state), 4))
    good = np.arange(192, dtype="<f4").reshape(1, 3, 8, 8) / 7
    with open(os.path.join(out, "good.npy"), "wb") as f:
        f.write(npy_bytes(good))
    if safetensors_base == "--good-only":
        return []
    st_base = None
    if safetensors_base:
        with open(safetensors_base, "rb") as f:
            st_base = f.read()
    manifest, seen = [], set()
    for reader, kind, cases in (("weights", "pdparams", pdparams_cases(state)),
                                ("input", "npy", npy_cases()),
                                ("weights", "safetensors", safetensors_cases(state, st_base))):
        os.makedirs(os.path.join(out, kind), exist_ok=True)
        for name, data, expect, why in cases:
            digest = hashlib.sha256(data).hexdigest()
            if digest in seen:
                continue  # distinct files only
            seen.add(digest)
            path = os.path.join(out, kind, name + "." + kind)
            with open(path, "wb") as f:
                f.write(data)
            manifest.append({"file": path, "reader": reader, "kind": kind, "expect": expect, "why": why})
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: make_corpus.py OUTDIR [VALID.safetensors | --good-only]")
    m = generate(sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else None)
    for kind in ("pdparams", "npy", "safetensors"):
        fail = sum(1 for e in m if e["kind"] == kind and e["expect"] == "fail")
        anyc = sum(1 for e in m if e["kind"] == kind and e["expect"] == "any")
        print(f"{kind}: {fail} malformed, {anyc} still well-formed mutations")
