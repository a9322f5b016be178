"""Deployed detectors and detector files through the CLI.

1. `detect --deploy` against the un-deployed PyTorch port (tests/ref/ppyoloe_torch.py):
   boxes and scores within 1e-3 * max|ref| (1e-4 with --isa ref; twice PyTorch's float32
   error where larger) and the port's NMS rows, as tests/test_detect_cli.py checks
   `detect` itself.
2. `convert` of a whole detector: to safetensors (loads back with bit-identical detect
   outputs; infer reads its backbone as from the .pdparams), `--deploy` to safetensors
   (read here with json + numpy: every neck / head RepVGG block and ConvBN folded bit for
   bit as upstream's _fuse_bn_tensor / get_equivalent_kernel_bias compute it, the
   convs without BN copied, no BN left; detect on it equals detect --deploy bit for bit;
   summary reads it as a deployed detector), and to .pdparams (Python's pickle gives the
   original checkpoint's keys, order and values).
3. Refusals name the key: a mis-shaped or missing neck / head tensor in a detector
   safetensors (detect) or .pdparams (convert), and nothing is written.
"""
from __future__ import annotations

import json
import pickle
import re
import struct

import numpy as np
import pytest

import pdparams_writer
import ppyoloe_torch as P
import test_deploy as tdep
import test_detect_cli as tdc
from conftest import compare, describe_proc, run_cli


def read_safetensors(path):
    return tdep.read_safetensors(path)


def write_safetensors(path, tensors, metadata=None):
    """A safetensors file of float32 tensors, in order, with json + struct only."""
    header, at, blobs = {}, 0, []
    if metadata is not None:
        header["__metadata__"] = metadata
    for k, v in tensors.items():
        b = np.ascontiguousarray(v, "<f4").tobytes()
        header[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    text = json.dumps(header).encode()
    text += b" " * (-(8 + len(text)) % 64)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def detect_npy(weights, x_path, out, *extra):
    p = run_cli(["detect", "--weights", weights, "--input", x_path, "--out", out, "--threads", "2", "-q", *extra])
    assert p.returncode == 0, describe_proc(p)
    return {k: np.load(out / f"{k}.npy") for k in ("boxes", "scores", "nms", "bbox_num")}


def assert_same_outputs(a, b, where):
    for k in a:
        assert a[k].shape == b[k].shape, f"{k}: {a[k].shape} vs {b[k].shape}\n{where}"
        np.testing.assert_array_equal(a[k].view(np.uint32), b[k].view(np.uint32), err_msg=f"{k}\n{where}")


# --------------------------------------------------------------------------- 1. detect --deploy

@pytest.mark.parametrize("isa", ["ref", ""], ids=["ref", "fast"])
@pytest.mark.parametrize("name", list(tdc.CASES))
def test_detect_deploy_matches_port(tmp_path_factory, tmp_path, name, isa):
    cfg, _, weights, x, scale, boxes, scores, (eb, es) = tdc.case(tmp_path_factory, name)
    np.save(tmp_path / "x.npy", x)
    sf = tmp_path / "scale.npy"
    np.save(sf, scale)
    out = tmp_path / "out"
    p = tdc.detect(["--weights", weights, "--input", tmp_path / "x.npy", "--scale-factor", sf, "--deploy"] +
                   (["--isa", isa] if isa else []), out)
    where = f"detect --deploy {name} isa={isa or 'best'} {cfg.describe()}\n{describe_proc(p)}"
    assert p.returncode == 0, where
    tol_b, tol_s = max(tdc.TOL[isa], 2 * eb), max(tdc.TOL[isa], 2 * es)
    compare(boxes, np.load(out / "boxes.npy"), where + "\nboxes", rtol=tol_b)
    compare(scores, np.load(out / "scores.npy"), where + "\nscores", rtol=tol_s)
    ref = P.multiclass_nms3(boxes.astype(np.float32), scores.astype(np.float32), **tdc.NMS_DEFAULT)
    tdc.check_nms(ref, (np.load(out / "nms.npy"), np.load(out / "bbox_num.npy")), tol_b, tol_s, where)


# --------------------------------------------------------------------------- 2. convert

@pytest.fixture(scope="module")
def det_s(tmp_path_factory):
    """PP-YOLOE+ s (backbone alpha): state, .pdparams, input .npy, reference outputs."""
    cfg, state, weights, x, _, _, _, _ = tdc.case(tmp_path_factory, "s")
    d = tmp_path_factory.mktemp("det_s")
    np.save(d / "x.npy", x)
    return cfg, state, weights, d / "x.npy", d


def test_safetensors_roundtrip_gives_identical_detections(det_s, tmp_path):
    cfg, state, weights, x_path, _ = det_s
    st = tmp_path / "det.safetensors"
    p = run_cli(["convert", "--weights", weights, "-o", st])
    assert p.returncode == 0 and "(safetensors, detector, " in p.stdout, describe_proc(p)
    meta, tensors = read_safetensors(st)
    assert meta["detector"] == "1" and meta["deployed"] == "0" and meta["alpha"] == "1", meta
    assert list(tensors) == list(state), "the tensors are not the checkpoint's keys in its order"
    for k, v in state.items():
        np.testing.assert_array_equal(tensors[k], v, err_msg=k)
    assert_same_outputs(detect_npy(weights, x_path, tmp_path / "a"), detect_npy(st, x_path, tmp_path / "b"),
                        "detect on the .pdparams and on its safetensors")
    # the backbone loader reads the detector file's backbone, as from the .pdparams
    maps = []
    for w, tag in ((weights, "pa"), (st, "pb")):
        p = run_cli(["infer", "--weights", w, "--input", x_path, "--out", tmp_path / tag, "-q"])
        assert p.returncode == 0, describe_proc(p)
        maps.append([np.load(tmp_path / tag / f"stage{i}.npy") for i in (1, 2, 3)])
    for a, b in zip(*maps):
        np.testing.assert_array_equal(a, b)


def test_detector_files_through_a_pipe(det_s, tmp_path):
    """A stream is read once: a detector safetensors or .pdparams on standard input
    detects as the file does; a backbone-only file through a pipe still converts."""
    _, state, weights, x_path, _ = det_s
    st = tmp_path / "det.safetensors"
    assert run_cli(["convert", "--weights", weights, "-o", st]).returncode == 0
    want = detect_npy(weights, x_path, tmp_path / "file")
    for src, tag in ((st, "st"), (weights, "pd")):
        with open(src, "rb") as f:
            p = run_cli(["detect", "--weights", "/dev/stdin", "--input", x_path, "--out", tmp_path / tag, "-q"],
                        stdin=f)
        assert p.returncode == 0, describe_proc(p)
        got = {k: np.load(tmp_path / tag / f"{k}.npy") for k in want}
        assert_same_outputs(want, got, f"detect from a pipe ({tag})")
    bk = tmp_path / "b.pdparams"
    assert run_cli(["convert", "--weights", weights, "-o", bk, "--backbone"]).returncode == 0
    with open(bk, "rb") as f:
        p = run_cli(["convert", "--weights", "/dev/stdin", "-o", tmp_path / "b.safetensors"], stdin=f)
    assert p.returncode == 0 and "(safetensors, detector" not in p.stdout, describe_proc(p)
    assert all(not k.startswith("backbone.") for k in read_safetensors(tmp_path / "b.safetensors")[1])


def fused_layers(state):
    """(RepVGG blocks, ConvBN layers) of a detector's un-deployed state dict."""
    blocks = sorted({m.group(1) for k in state for m in [re.match(r"(.*)\.conv1\.bn\.weight$", k)] if m
                     and m.group(1) + ".conv2.bn.weight" in state
                     and state[m.group(1) + ".conv2.conv.weight"].shape[2] == 1
                     and state[m.group(1) + ".conv1.conv.weight"].shape[2] == 3})
    convbn = sorted({k[:-len(".bn.weight")] for k in state if k.endswith(".bn.weight")} -
                    {b + ".conv1" for b in blocks} - {b + ".conv2" for b in blocks})
    return blocks, convbn


@pytest.mark.parametrize("name", ["s", "t"])
def test_deployed_safetensors_folds_like_upstream(tmp_path_factory, tmp_path, name):
    if name == "s":
        cfg, state, weights, _, _, _, _, _ = tdc.case(tmp_path_factory, "s")
    else:  # PP-YOLOE+ t: the head's ESEAttn convs are RepVGG blocks
        cfg = P.detector_preset("t", plus=True)
        state = P.random_detector_state(cfg, seed=5, calib_shape=(1, 3, 96, 96))
        weights = tmp_path / "t.pdparams"
        pdparams_writer.write_pdparams(weights, state)
    out = tmp_path / "d.safetensors"
    p = run_cli(["convert", "--weights", weights, "-o", out, "--deploy"])
    assert p.returncode == 0 and "deployed" in p.stdout, describe_proc(p)
    meta, fused = read_safetensors(out)
    assert meta["deployed"] == "1" and meta["detector"] == "1", meta
    blocks, convbn = fused_layers(state)
    assert any(b.startswith("neck.") for b in blocks)
    assert (name == "t") == any(b.startswith("yolo_head.") for b in blocks)
    assert any(b.startswith("backbone.") for b in blocks) and any(c.startswith("yolo_head.") for c in convbn) == \
        (name != "t")
    for b in blocks:
        k, bias = tdep.upstream_equivalent_kernel_bias(state, b)
        np.testing.assert_array_equal(fused[b + ".conv.weight"].view(np.uint32), k.numpy().view(np.uint32), b)
        np.testing.assert_array_equal(fused[b + ".conv.bias"].view(np.uint32), bias.numpy().view(np.uint32), b)
    for layer in convbn:
        k, bias = tdep.upstream_fuse_bn_tensor(state, layer)
        np.testing.assert_array_equal(fused[layer + ".conv.weight"].view(np.uint32), k.numpy().view(np.uint32),
                                      layer)
        np.testing.assert_array_equal(fused[layer + ".conv.bias"].view(np.uint32), bias.numpy().view(np.uint32),
                                      layer)
    kept = [k for k in state if re.search(r"\.fc\.|\.pred_(cls|reg)\.|proj_conv", k)]
    for k in kept:
        np.testing.assert_array_equal(fused[k], state[k], err_msg=k)
    expected = {f"{p}.conv.{w}" for p in blocks + convbn for w in ("weight", "bias")} | set(kept)
    assert set(fused) == expected
    assert not any(".bn." in k or k.endswith(".alpha") for k in fused)


def test_deployed_file_detects_as_detect_deploy(det_s, tmp_path):
    cfg, state, weights, x_path, _ = det_s
    out = tmp_path / "d.safetensors"
    assert run_cli(["convert", "--weights", weights, "-o", out, "--deploy"]).returncode == 0
    from_file = detect_npy(out, x_path, tmp_path / "a")
    assert_same_outputs(from_file, detect_npy(weights, x_path, tmp_path / "b", "--deploy"),
                        "detect on the deployed file and detect --deploy")
    # --deploy on a deployed file changes nothing
    assert_same_outputs(from_file, detect_npy(out, x_path, tmp_path / "c", "--deploy"), "--deploy twice")
    boxes, scores = P.detector_outputs(cfg, state, np.load(x_path))
    compare(boxes, from_file["boxes"], "deployed file: boxes", rtol=1e-3)
    compare(scores, from_file["scores"], "deployed file: scores", rtol=1e-3)
    # summary: the deployed detector the file holds, the totals of summary --deploy
    a = run_cli(["summary", "--weights", out])
    b = run_cli(["summary", "--weights", weights, "--deploy"])
    assert a.returncode == 0 and b.returncode == 0, describe_proc(a) + describe_proc(b)
    assert re.search(r"^architecture from .*, deployed$", a.stdout, re.M) and "detector: neck channels" in a.stdout
    tail = lambda s: s[s.index("Total params"):]  # noqa: E731
    assert tail(a.stdout) == tail(b.stdout)
    assert tdep.summary_counts(a.stdout)["Total params"] == sum(v.size for v in read_safetensors(out)[1].values())


def test_pdparams_of_a_detector_reads_back_in_python(det_s, tmp_path):
    _, state, weights, _, _ = det_s
    for src, tag in ((weights, "from-pdparams"), (None, "from-safetensors")):
        if src is None:
            src = tmp_path / "det.safetensors"
            assert run_cli(["convert", "--weights", weights, "-o", src]).returncode == 0
        out = tmp_path / f"{tag}.pdparams"
        p = run_cli(["convert", "--weights", src, "-o", out])
        assert p.returncode == 0, describe_proc(p)
        with open(out, "rb") as f:
            got = pickle.load(f)
        names = got.pop("StructuredToParameterName@@")
        assert list(got) == list(state), tag
        for k, v in state.items():
            assert got[k].dtype == np.float32 and got[k].shape == v.shape, k
            np.testing.assert_array_equal(got[k], v, err_msg=f"{tag}: {k}")
        assert set(names) == set(state) and len(set(names.values())) == len(state)
        assert names["yolo_head.pred_cls.0.weight"].startswith("conv2d_"), names["yolo_head.pred_cls.0.weight"]


def test_backbone_flag_converts_the_backbone_alone(det_s, tmp_path):
    _, state, weights, _, _ = det_s
    out = tmp_path / "b.pdparams"
    p = run_cli(["convert", "--weights", weights, "-o", out, "--backbone"])
    assert p.returncode == 0, describe_proc(p)
    with open(out, "rb") as f:
        got = pickle.load(f)
    got.pop("StructuredToParameterName@@")
    assert list(got) == [k[len("backbone."):] for k in state if k.startswith("backbone.")]


# --------------------------------------------------------------------------- 3. refusals

@pytest.mark.parametrize("fault", ["misshaped", "missing"])
def test_bad_detector_safetensors_is_refused_by_key(det_s, tmp_path, fault):
    _, state, _, x_path, _ = det_s
    tensors = dict(state)
    key = "neck.pan_stages.0.0.conv3.conv.weight" if fault == "misshaped" else "yolo_head.pred_reg.1.bias"
    if fault == "misshaped":
        tensors[key] = tensors[key][:, :-1]
    else:
        del tensors[key]
    st = tmp_path / "bad.safetensors"
    write_safetensors(st, tensors)
    out = tmp_path / "out"
    p = run_cli(["detect", "--weights", st, "--input", x_path, "--out", out])
    assert p.returncode == 1 and key in p.stderr, describe_proc(p)
    if fault == "misshaped":
        assert re.search(r"file \[\d+, \d+, 1, 1\], expected \[\d+, \d+, 1, 1\]", p.stderr), p.stderr
    assert tdc.nothing_written(out)


def test_convert_refuses_a_detector_with_a_misshaped_key(det_s, tmp_path):
    _, state, _, _, _ = det_s
    bad = dict(state)
    key = "neck.fpn_stages.1.0.convs.0.conv2.conv1.conv.weight"
    bad[key] = bad[key][:-1]
    src = tmp_path / "bad.pdparams"
    pdparams_writer.write_pdparams(src, bad)
    for out in (tmp_path / "o.safetensors", tmp_path / "o.pdparams"):
        p = run_cli(["convert", "--weights", src, "-o", out])
        assert p.returncode == 1 and key in p.stderr and "mis-shaped" in p.stderr, describe_proc(p)
        assert not out.exists()
    p = run_cli(["convert", "--weights", src, "-o", tmp_path / "d.pdparams", "--deploy"])
    assert p.returncode == 1 and not (tmp_path / "d.pdparams").exists(), describe_proc(p)
