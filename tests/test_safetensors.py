"""The native weight format: safetensors written by `convert`, read by every command.

    cspresnet convert --weights IN.pdparams -o OUT.safetensors [--deploy] [--act A]
    cspresnet infer --weights OUT.safetensors ...   (format told by content)

1. pdparams -> safetensors -> infer gives bit-identical outputs to infer from the
   pdparams (deployed and not), and the load is zero-copy (the log says so); a file
   whose data is not float-aligned loads by copying, with the same bits.
2. Python reads our file with only json and numpy (tests/ref-free reader below) and
   gets the source's tensors bit for bit, keys in Paddle order, the metadata that
   describes the architecture, data 64-byte aligned, no gaps (the format's rule).
3. Refusals, each exit 1 with a message naming the problem: header length past the end
   of the file, malformed JSON, offsets out of range, overlapping, gaps, unsupported
   dtype, tensor missing, unexpected tensor, metadata contradicting the shapes, bad
   metadata (a file without any is read off its shapes).
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

import cspresnet_torch as ref
import pdparams_writer as pdw
from conftest import describe_proc, run_cli

_STATE = {}


def state_for(name="s", alpha=True):
    key = (name, alpha)
    if key not in _STATE:
        _STATE[key] = ref.random_state(ref.preset(name, use_alpha=alpha).build(), 31)
    return _STATE[key]


def read_st(path):
    """(header length, metadata, [(name, info)], data bytes) with json + numpy only."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", None)
    return n, meta, list(header.items()), raw[8 + n:]


def write_st(path, tensors, meta, pad_to=8, dtype="F32", header_edit=None):
    """A safetensors file from {name: array} (float32, back to back), as any writer would."""
    header = {} if meta is None else {"__metadata__": meta}
    blobs, at = [], 0
    for k, v in tensors.items():
        b = np.ascontiguousarray(v, dtype="<f4").tobytes()
        header[k] = {"dtype": dtype, "shape": list(v.shape), "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    if header_edit:
        header_edit(header)
    text = json.dumps(header).encode()
    text += b" " * ((-(8 + len(text))) % pad_to)
    Path(path).write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    return path


def convert(src, out, *extra):
    return run_cli(["convert", "--weights", src, "-o", out, *map(str, extra)])


def infer_all(weights, x_path, out_dir, *extra):
    p = run_cli(["infer", "--weights", weights, "--input", x_path, "--out", out_dir, "--return-idx", "0,1,2,3",
                 *extra])
    assert p.returncode == 0, describe_proc(p)
    return p, [np.load(Path(out_dir) / f"stage{i}.npy") for i in range(4)]


@pytest.fixture
def source(tmp_path):
    src = tmp_path / "src.pdparams"
    pdw.write_pdparams(src, state_for())
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(7).standard_normal((1, 3, 64, 64)).astype(np.float32))
    return src, x


# --------------------------------------------------------------------------- 1. bit-identical

@pytest.mark.parametrize("deploy", [False, True], ids=["plain", "deployed"])
def test_safetensors_infer_bit_identical(tmp_path, source, deploy):
    src, x = source
    st = tmp_path / "w.safetensors"
    proc = convert(src, st, *(["--deploy"] if deploy else []))
    assert proc.returncode == 0, describe_proc(proc)
    _, a = infer_all(src, x, tmp_path / "a", *(["--deploy"] if deploy else []))
    p, b = infer_all(st, x, tmp_path / "b")
    assert "zero-copy" in p.stderr, p.stderr
    for i, (u, v) in enumerate(zip(a, b)):
        assert u.dtype == v.dtype == np.float32
        np.testing.assert_array_equal(u.view(np.uint32), v.view(np.uint32), err_msg=f"stage{i}")


def test_unaligned_file_is_copied_with_same_bits(tmp_path, source):
    """A header padded to 2 mod 4 leaves the data unaligned: the loader copies."""
    src, x = source
    st = tmp_path / "w.safetensors"
    assert convert(src, st).returncode == 0
    n, meta, items, data = read_st(st)
    tensors = {k: np.frombuffer(data[i["data_offsets"][0]:i["data_offsets"][1]], "<f4").reshape(i["shape"])
               for k, i in items}
    odd = tmp_path / "odd.safetensors"
    header = {"__metadata__": meta}
    header.update(dict(items))
    text = json.dumps(header).encode()
    text += b" " * ((2 - (8 + len(text))) % 4)
    assert (8 + len(text)) % 4 == 2
    odd.write_bytes(struct.pack("<Q", len(text)) + text + data)
    _, a = infer_all(st, x, tmp_path / "a")
    p, b = infer_all(odd, x, tmp_path / "b")
    assert "copied" in p.stderr, p.stderr
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert len(tensors) == len(items)


def test_format_told_by_content_not_name(tmp_path, source):
    src, x = source
    st = tmp_path / "w.safetensors"
    assert convert(src, st).returncode == 0
    disguised_st = tmp_path / "really_safetensors.pdparams"
    disguised_st.write_bytes(st.read_bytes())
    disguised_pk = tmp_path / "really_pickle.safetensors"
    disguised_pk.write_bytes(src.read_bytes())
    _, a = infer_all(src, x, tmp_path / "a")
    for w, tag in ((disguised_st, "b"), (disguised_pk, "c")):
        _, b = infer_all(w, x, tmp_path / tag)
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
    s = run_cli(["summary", "--weights", disguised_st, "--input-size", "1,3,64,64"])
    assert s.returncode == 0, describe_proc(s)


# --------------------------------------------------------------------------- 2. Python reads it

@pytest.mark.parametrize("deploy", [False, True], ids=["plain", "deployed"])
def test_python_reads_our_safetensors(tmp_path, deploy):
    name = "t"
    state = state_for(name, alpha=True)
    src = tmp_path / "ppyoloe_plus_crn_t.pdparams"
    pdw.write_pdparams(src, state, prefix="backbone.", extra=pdw.fake_detector_extras())
    out = tmp_path / "w.safetensors"
    proc = convert(src, out, "--act", "relu", *(["--deploy"] if deploy else []))
    assert proc.returncode == 0, describe_proc(proc)
    n, meta, items, data = read_st(out)
    assert (8 + n) % 64 == 0, "data section not 64-byte aligned"
    layers, channels = ref.scaled_arch(width_mult=0.375, depth_mult=0.33)
    assert meta == {"format_version": "1", "producer": meta["producer"],
                    "channels": ",".join(map(str, channels)), "layers": ",".join(map(str, layers)),
                    "act": "relu", "large_stem": "1", "alpha": "1", "return_idx": "1,2,3",
                    "deployed": "1" if deploy else "0", "source": src.name}
    assert all(isinstance(v, str) for v in meta.values())
    # back to back, covering the data section exactly, float-aligned
    at = 0
    for k, info in items:
        assert info["dtype"] == "F32"
        b, e = info["data_offsets"]
        assert b == at and e - b == 4 * int(np.prod(info["shape"])), k
        at = e
    assert at == len(data)
    got = {k: np.frombuffer(data[i["data_offsets"][0]:i["data_offsets"][1]], "<f4").reshape(i["shape"])
           for k, i in items}
    if not deploy:
        assert [k for k, _ in items] == list(state.keys()), "upstream keys in Paddle order"
        for k, v in state.items():
            np.testing.assert_array_equal(got[k].view(np.uint32), v.view(np.uint32), err_msg=k)
    else:
        assert all(k.endswith((".conv.weight", ".conv.bias", ".fc.weight", ".fc.bias")) for k in got)
        assert "stages.0.blocks.0.conv2.conv.weight" in got and got["stages.0.blocks.0.conv2.conv.weight"].shape[2:] == (3, 3)
        assert not any("bn." in k or k.endswith("alpha") for k in got)


# --------------------------------------------------------------------------- 3. refusals

@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A valid file's parts: metadata and tensors (s, alpha)."""
    d = tmp_path_factory.mktemp("good")
    src = d / "src.pdparams"
    pdw.write_pdparams(src, state_for())
    st = d / "w.safetensors"
    assert convert(src, st).returncode == 0
    n, meta, items, data = read_st(st)
    tensors = {k: np.frombuffer(data[i["data_offsets"][0]:i["data_offsets"][1]], "<f4").reshape(i["shape"])
               for k, i in items}
    return meta, tensors, st


def refused(path, *needles):
    p = run_cli(["infer", "--weights", path, "--random-input", "--input-size", "1,3,32,32", "--out", Path(path).parent / "o", "-q"])
    assert p.returncode == 1, describe_proc(p)
    for s in needles:
        assert s in p.stderr, f"'{s}' not in the message\n{describe_proc(p)}"
    assert str(path) in p.stderr, "the message must name the file"
    return p.stderr


def test_valid_crafted_file_loads(tmp_path, good):
    """Guards the refusal tests: the crafting itself gives a loadable file."""
    meta, tensors, _ = good
    f = write_st(tmp_path / "ok.safetensors", tensors, meta)
    p = run_cli(["infer", "--weights", f, "--random-input", "--input-size", "1,3,32,32", "--out", tmp_path / "o", "-q"])
    assert p.returncode == 0, describe_proc(p)


def test_refuse_header_length_past_eof(tmp_path, good):
    raw = bytearray(good[2].read_bytes())
    raw[:8] = struct.pack("<Q", len(raw))
    f = tmp_path / "h.safetensors"
    f.write_bytes(raw)
    refused(f, "header length", "past the end of the file")
    g = tmp_path / "short.safetensors"
    g.write_bytes(struct.pack("<Q", 500) + b"{}")
    refused(g, "header length 500", "past the end")


def test_refuse_malformed_json(tmp_path, good):
    raw = bytearray(good[2].read_bytes())
    i = raw.index(b'"channels"')
    raw[i] = ord("{")
    f = tmp_path / "j.safetensors"
    f.write_bytes(raw)
    refused(f, "malformed JSON", "offset")


def test_refuse_offsets_out_of_range(tmp_path, good):
    meta, tensors, _ = good
    def edit(h):
        h["stages.3.conv3.bn._variance"]["data_offsets"][1] += 4000
    f = write_st(tmp_path / "r.safetensors", tensors, meta, header_edit=edit)
    refused(f, "stages.3.conv3.bn._variance", "out of range")


def test_refuse_overlap(tmp_path, good):
    meta, tensors, _ = good
    def edit(h):
        # two tensors of the same size: point the second at the first's bytes
        a, b = h["stem.conv1.bn.weight"], h["stem.conv1.bn.bias"]
        b["data_offsets"] = list(a["data_offsets"])
    f = write_st(tmp_path / "o.safetensors", tensors, meta, header_edit=edit)
    refused(f, "overlap", "stem.conv1.bn")


def test_refuse_gap(tmp_path, good):
    meta, tensors, _ = good
    f = write_st(tmp_path / "g.safetensors", tensors, meta)
    f.write_bytes(f.read_bytes() + b"\0" * 16)  # 16 trailing bytes nobody owns
    refused(f, "belongs to no tensor")
    def shift(h):  # every tensor 16 bytes later: the first 16 bytes are unindexed
        for k, v in h.items():
            if k != "__metadata__":
                v["data_offsets"] = [v["data_offsets"][0] + 16, v["data_offsets"][1] + 16]
    g = write_st(tmp_path / "g2.safetensors", tensors, meta, header_edit=shift)
    raw = g.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    g.write_bytes(raw[:8 + n] + b"\0" * 16 + raw[8 + n:])
    refused(g, "bytes [0, 16)", "belong to no tensor", "stem.conv1.conv.weight")


def test_refuse_unsupported_dtype(tmp_path, good):
    meta, tensors, _ = good
    def edit(h):
        h["stem.conv2.conv.weight"]["dtype"] = "I64"   # I8 and I32 belong to int8 files (test_quantize.py)
    f = write_st(tmp_path / "d.safetensors", tensors, meta, header_edit=edit)
    refused(f, "stem.conv2.conv.weight", "dtype I64")


def test_refuse_tensor_missing(tmp_path, good):
    meta, tensors, _ = good
    t = {k: v for k, v in tensors.items() if k != "stages.2.blocks.1.conv2.conv1.bn._mean"}
    f = write_st(tmp_path / "m.safetensors", t, meta)
    refused(f, "tensor missing", "stages.2.blocks.1.conv2.conv1.bn._mean")


def test_refuse_unexpected_tensor(tmp_path, good):
    meta, tensors, _ = good
    t = dict(tensors)
    t["stages.0.blocks.9.conv1.conv.weight"] = np.zeros((2, 2), np.float32)
    f = write_st(tmp_path / "u.safetensors", t, meta)
    refused(f, "unexpected tensor", "stages.0.blocks.9.conv1.conv.weight")


def test_refuse_metadata_contradicting_shapes(tmp_path, good):
    meta, tensors, _ = good
    m = dict(meta, channels="32,64,128,256,1024")  # stage 3 out width doubled
    f = write_st(tmp_path / "c.safetensors", tensors, m)
    refused(f, "metadata contradicts", "stages.3.conv_down.conv.weight", "[384, 256, 3, 3]")
    m = dict(meta, deployed="1")  # un-deployed tensors under a deployed architecture
    f = write_st(tmp_path / "c2.safetensors", tensors, m)
    refused(f, "tensor missing", "stem.conv1.conv.bias")


def test_refuse_no_or_bad_metadata(tmp_path, good):
    meta, tensors, _ = good
    # without __metadata__ the shapes decide (tests/test_first_hour_formats.py), so a
    # tensor that contradicts them is what is refused
    k = "stages.1.blocks.0.conv1.conv.weight"
    t = dict(tensors, **{k: tensors[k][:, :, :1, :1]})
    f = write_st(tmp_path / "n.safetensors", t, None)
    refused(f, k, "inferred architecture needs")
    f = write_st(tmp_path / "b.safetensors", tensors, dict(meta, layers="1,2"))
    refused(f, "layers", "not 4 integers")
    f = write_st(tmp_path / "v.safetensors", tensors, dict(meta, format_version="9"))
    refused(f, "format_version")
