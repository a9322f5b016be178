#!/usr/bin/python3
"""Seed corpora for the libFuzzer harnesses in fuzz/ (run with Debian's /usr/bin/python3).

    fuzz/make_seeds.py OUTDIR      writes OUTDIR/pdparams/*, OUTDIR/npy/*, OUTDIR/safetensors/*

Valid files of several kinds, small so that the fuzzer mutates structure, not bulk data:
.pdparams written by Python's own pickle (protocols 2 to 5, float32/64/16, big-endian,
Fortran order, 0-d and empty arrays, a detector-style prefix and the name table, memoized
dtypes), .npy files of versions 1.0 to 3.0 and several shapes, and safetensors files
(8-byte header length, JSON header, data) with several dtypes. Deterministic: the same
bytes every run.
"""
import json
import os
import pickle
import struct
import sys

import numpy as np


def pdparams_seeds():
    rng = np.random.default_rng(7)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)
    base = {}
    base["stem.conv1.conv.weight"] = f32(2, 3, 1, 1)
    base["stem.conv1.bn.weight"] = f32(2)
    base["stem.conv1.bn._mean"] = f32(2)
    base["stages.0.blocks.0.conv2.alpha"] = np.ones((1,), np.float32)
    base["StructuredToParameterName@@"] = {"stem.conv1.conv.weight": "conv2d_0.w_0"}
    seeds = {}
    for proto in (2, 3, 4, 5):
        seeds[f"basic_p{proto}"] = pickle.dumps(base, protocol=proto)
    d = {}
    d["f64"] = rng.standard_normal((2, 2))
    d["f16"] = f32(3).astype(np.float16)
    d["big"] = f32(2, 2).astype(">f4")
    d["fortran"] = np.asfortranarray(f32(2, 3))
    d["zero_d"] = np.array(3.5, dtype=np.float32)
    d["empty"] = np.zeros((0, 3), np.float32)
    d["int"] = np.arange(4, dtype=np.int64)
    for proto in (2, 4, 5):
        seeds[f"dtypes_p{proto}"] = pickle.dumps(d, protocol=proto)
    det = dict(("backbone." + k, v) for k, v in base.items()
                                  if isinstance(v, np.ndarray))
    det["neck.fpn.weight"] = f32(1, 2)
    seeds["detector_p4"] = pickle.dumps(det, protocol=4)
    shared = np.ones((2,), np.float32)
    seeds["memo_shared_p4"] = pickle.dumps({"a": shared, "b": shared}, protocol=4)
    seeds["nested_values_p4"] = pickle.dumps(
        {"x": f32(1), "meta": [1, 2.5, "s", b"b", (None, True, False), {"k": [1 << 40, -3]}]},
        protocol=4)
    seeds["empty_dict_p2"] = pickle.dumps({}, protocol=2)
    return seeds


def npy_bytes(arr, version):
    import io
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, version=version)
    return buf.getvalue()


def npy_seeds():
    rng = np.random.default_rng(11)
    seeds = {}
    shapes = [(1, 3, 2, 2), (2, 3, 1, 3), (3,), (), (0, 3), (1, 1, 1, 1, 1, 1, 1, 2)]
    for i, shape in enumerate(shapes):
        a = rng.standard_normal(shape).astype(np.float32)
        seeds[f"v1_{i}"] = npy_bytes(a, (1, 0))
    a = rng.standard_normal((1, 3, 2, 2)).astype(np.float32)
    seeds["v2"] = npy_bytes(a, (2, 0))
    seeds["v3"] = npy_bytes(a, (3, 0))
    seeds["f8_refused"] = npy_bytes(a.astype(np.float64), (1, 0))
    seeds["fortran_refused"] = npy_bytes(np.asfortranarray(a[0, 0]), (1, 0))
    return seeds


def safetensors_bytes(tensors, metadata=None):
    header, blobs, off = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    names = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16",
             np.dtype(np.float64): "F64", np.dtype(np.int64): "I64", np.dtype(np.int8): "I8",
             np.dtype(np.int32): "I32"}
    for name, a in tensors.items():
        raw = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": names[a.dtype], "shape": list(a.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def safetensors_seeds():
    rng = np.random.default_rng(13)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)
    return {
        "basic": safetensors_bytes({"stem.conv1.conv.weight": f32(2, 3, 1, 1),
                                    "stem.conv1.bn.weight": f32(2)},
                                   metadata={"format": "pt"}),
        "dtypes": safetensors_bytes({"a": f32(2).astype(np.float16), "b": rng.standard_normal(3),
                                     "c": np.arange(2, dtype=np.int64), "d": f32(0, 2)}),
        "empty": safetensors_bytes({}),
        "model": tiny_model_safetensors(),
        "int8": tiny_int8_safetensors(),
    }


def tiny_model_safetensors():
    """A whole valid model (width 1/16, one block per stage) in our safetensors layout,
    so the fuzzer starts from a file that loads and mutates the metadata and offsets."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
    import cspresnet_torch as ref
    cfg = ref.Config(width_mult=0.0625, depth_mult=0.33)
    state = ref.random_state(cfg.build(), 5, calibrate=False)
    meta = {"format_version": "1", "channels": "4,8,16,32,64", "layers": "1,2,2,1", "act": "swish",
            "large_stem": "1", "alpha": "0", "return_idx": "1,2,3", "deployed": "0",
            "source": "make_seeds.py"}
    return safetensors_bytes(state, metadata=meta)


def tiny_int8_safetensors():
    """The tiny model as an int8 file (safetensors_lowp_read.c's layout): every conv but the
    stem's first as I8 weights with weight scales, input scales and zero points."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
    import cspresnet_torch as ref
    cfg = ref.Config(width_mult=0.0625, depth_mult=0.33)
    state, out = ref.random_state(cfg.build(), 5, calibrate=False), {}
    for k, v in state.items():
        v = np.asarray(v, np.float32)
        if not k.endswith(".conv.weight") or k.startswith("stem.conv1.") or v.ndim != 4:
            out[k] = v
            continue
        base, w = k[:-len(".weight")], v.reshape(v.shape[0], -1)
        s = (np.abs(w).max(axis=1) / np.float32(127)).astype(np.float32)
        out[k] = np.rint(w / np.where(s > 0, s, 1)[:, None]).clip(-127, 127).astype(np.int8).reshape(v.shape)
        out[base + ".weight_scale"] = s
        out[base + ".input_scale"] = np.array([0.01], np.float32)
        out[base + ".input_zero_point"] = np.array([20], np.int32)
    meta = {"format_version": "1", "channels": "4,8,16,32,64", "layers": "1,2,2,1", "act": "swish",
            "large_stem": "1", "alpha": "0", "return_idx": "1,2,3", "deployed": "0",
            "source": "make_seeds.py", "precision": "int8", "calibration": "minmax"}
    return safetensors_bytes(out, metadata=meta)


def image_seeds():
    """Small PNGs of every colour type and bit depth, JPEGs, EXIF-rotated ones, written with PIL."""
    import io
    from PIL import Image
    rng = np.random.default_rng(21)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    out = {}
    for mode in ("L", "RGB", "RGBA", "P"):
        img = Image.fromarray(rgb).convert(mode)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        out[f"{mode.lower()}.png"] = buf.getvalue()
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 65536, (4, 6), dtype=np.uint16)).save(buf, format="PNG")
    out["gray16.png"] = buf.getvalue()
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=80)
    out["rgb.jpg"] = buf.getvalue()
    for fmt, ext in (("JPEG", "jpg"), ("PNG", "png")):  # EXIF orientation blocks for the parser
        exif = Image.Exif()
        exif[0x0112] = 6
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format=fmt, exif=exif.tobytes())
        out[f"exif6.{ext}"] = buf.getvalue()
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_seeds.py OUTDIR")
    out = sys.argv[1]
    total = 0
    for kind, seeds in (("pdparams", pdparams_seeds()), ("npy", npy_seeds()),
                        ("safetensors", safetensors_seeds()), ("image", image_seeds())):
        os.makedirs(os.path.join(out, kind), exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(out, kind, name), "wb") as f:
                f.write(data)
            total += 1
    print(f"make_seeds: {total} seed files in {out}")


if __name__ == "__main__":
    main()
