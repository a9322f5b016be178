"""`cspresnet detect` against the PyTorch port (tests/ref/ppyoloe_torch.py).

Tensor mode: random detector weights (random_detector_state, BN statistics from the test
batch, head biases that spread the scores), written as .pdparams; DIR/boxes.npy and
scores.npy against detector_outputs with the scale factor applied there as SPEC §5 says
(boxes / [sx, sy, sx, sy]), within 1e-3 * max|ref| (1e-4 with --isa ref; twice PyTorch's
own float32 error where that is larger); DIR/nms.npy and bbox_num.npy against the port's
multiclass_nms3 run on the port's own boxes and scores: the same counts and labels, boxes
and scores within the tolerance. The NMS case is shown to suppress (the reference keeps
fewer rows than it had candidates) with and without keep_top_k's cut. Refusals: a
backbone-only file, a size the FPN cannot take, bad scale factors, non-finite outputs,
each with exit 1 and no file written.

Image mode: PNGs written here, decoded with cv2.imread, resized with cv2.INTER_CUBIC,
/255 (PP-YOLOE+), run through the port with scale_factor (size / original size) and its
NMS, turned into COCO rows by the test's own copy of ppdet's id map: DIR/detections.json
and DIR/images.json must hold them. --visualize pictures: the image's size, box edges
drawn, pixels away from the drawn boxes unchanged.
"""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import cspresnet_torch as bb
import pdparams_writer
import ppyoloe_torch as P
from conftest import compare, describe_proc, run_cli

CASES = {
    "custom-3cls": (lambda: P.DetectorConfig(backbone=bb.Config(width_mult=0.25, depth_mult=0.5), num_classes=3),
                    (2, 3, 160, 224)),
    "s": (lambda: P.detector_preset("s", plus=True), (1, 3, 160, 224)),
}
TOL = {"ref": 1e-4, "": 1e-3}
# ppdet's COCO label -> category id (metrics/coco_utils / json_results): the ids 1..90 COCO uses
COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
NMS_DEFAULT = dict(score_threshold=0.01, nms_top_k=1000, keep_top_k=300, nms_threshold=0.7)

_cache = {}


def case(tmp_path_factory, name):
    """(cfg, state, weights, x, scale, ref boxes, ref scores, float32 errors), built once."""
    if name not in _cache:
        make_cfg, shape = CASES[name]
        cfg = make_cfg()
        x = np.random.default_rng(3).random(shape).astype(np.float32)
        state = P.random_detector_state(cfg, seed=7, calib_input=x)
        d = tmp_path_factory.mktemp(name)
        weights = d / "det.pdparams"
        pdparams_writer.write_pdparams(weights, state)
        scale = np.array([[0.5, 0.8], [2.0, 1.25]][:shape[0]], np.float32)
        boxes, scores = P.detector_outputs(cfg, state, x, scale_factor=scale)
        b32, s32 = P.detector_outputs(cfg, state, x, scale_factor=scale, dtype=torch.float32)
        err = (np.abs(b32 - boxes).max() / np.abs(boxes).max(), np.abs(s32 - scores).max() / np.abs(scores).max())
        _cache[name] = (cfg, state, weights, x, scale, boxes, scores, err)
    return _cache[name]


def detect(args, out):
    return run_cli(["detect", "--out", out, "--threads", "2"] + [str(a) for a in args])


def nothing_written(out):
    return not out.exists() or not any(out.iterdir())


def same_detections(ref, got, tol_s, tol_b, where):
    """ref, got: rows (image, label, score, 4 box numbers) in the order written. The image
    and label sequences must be equal; within an (image, label) group, every row must
    match its own reference row (score within tol_s * max|score|, box within tol_b *
    max|box|), in any order: rows whose scores differ by float rounding may swap."""
    ref, got = np.asarray(ref, np.float64).reshape(-1, 7), np.asarray(got, np.float64).reshape(-1, 7)
    assert ref.shape == got.shape, f"{len(got)} rows, reference {len(ref)}\n{where}"
    np.testing.assert_array_equal(got[:, :2], ref[:, :2], err_msg=f"images and labels\n{where}")
    ts, tb = tol_s * np.abs(ref[:, 2]).max(), tol_b * np.abs(ref[:, 3:]).max()
    free = np.ones(len(ref), bool)
    for k, row in enumerate(got):
        ok = free & (ref[:, 0] == row[0]) & (ref[:, 1] == row[1]) & (np.abs(ref[:, 2] - row[2]) <= ts) & \
            (np.abs(ref[:, 3:] - row[3:]).max(axis=1) <= tb)
        if not ok.any():
            pytest.fail(f"row {k} {row.tolist()} has no reference row within score {ts:.3g}, box {tb:.3g}\n{where}",
                        pytrace=False)
        free[np.argmax(ok)] = False


def nms_rows(rows, num):
    return np.concatenate([np.repeat(np.arange(len(num)), num)[:, None], rows], axis=1)


def check_nms(ref, got, tol_b, tol_s, where):
    (ref_rows, ref_num), (rows, num) = ref, got
    assert num.dtype == np.int32 and list(num) == list(ref_num), f"bbox_num {num} != {ref_num}\n{where}"
    assert rows.dtype == np.float32 and rows.shape[1:] == (6,), where
    same_detections(nms_rows(ref_rows, ref_num), nms_rows(rows, num), tol_s, tol_b, where)


def candidates(scores, score_threshold=0.01, nms_top_k=1000):
    return int(np.minimum((scores > score_threshold).sum(axis=2), nms_top_k).sum())


@pytest.mark.parametrize("nms", [{}, {"keep_top_k": -1, "nms_threshold": 0.5}], ids=["defaults", "no-keep-cut"])
@pytest.mark.parametrize("isa", ["ref", ""], ids=["ref", "fast"])
@pytest.mark.parametrize("name", list(CASES))
def test_tensor_mode_matches_port(tmp_path_factory, tmp_path, name, isa, nms):
    cfg, _, weights, x, scale, boxes, scores, (eb, es) = case(tmp_path_factory, name)
    np.save(tmp_path / "x.npy", x)
    if x.shape[0] == 1:
        sf = f"{scale[0, 0]:.9g},{scale[0, 1]:.9g}"
    else:
        sf = tmp_path / "scale.npy"
        np.save(sf, scale)
    out = tmp_path / "out"
    args = ["--weights", weights, "--input", tmp_path / "x.npy", "--scale-factor", sf]
    args += ["--isa", isa] if isa else []
    for k, v in nms.items():
        args += ["--" + k.replace("_", "-"), v]
    p = detect(args, out)
    where = f"{name} isa={isa or 'best'} {nms} {cfg.describe()}\n{describe_proc(p)}"
    assert p.returncode == 0, where
    tol_b, tol_s = max(TOL[isa], 2 * eb), max(TOL[isa], 2 * es)
    compare(boxes, np.load(out / "boxes.npy"), where + "\nboxes", rtol=tol_b)
    compare(scores, np.load(out / "scores.npy"), where + "\nscores", rtol=tol_s)
    opts = dict(NMS_DEFAULT, **nms)
    # The reference kernels' NMS against the port's NMS of the port's outputs. The fast
    # path's outputs differ from the port's by up to 1e-3, which among ~2400 rows can move
    # one pair across the IoU threshold, so its NMS is checked on its own boxes and scores
    # (which the lines above hold within tolerance of the port's).
    nms_in = (boxes, scores) if isa == "ref" else (np.load(out / "boxes.npy"), np.load(out / "scores.npy"))
    ref = P.multiclass_nms3(nms_in[0].astype(np.float32), nms_in[1].astype(np.float32), **opts)
    check_nms(ref, (np.load(out / "nms.npy"), np.load(out / "bbox_num.npy")), tol_b, tol_s, where)
    # NMS really suppresses: fewer rows than candidates even without keep_top_k's cut
    uncut = P.multiclass_nms3(boxes.astype(np.float32), scores.astype(np.float32), **dict(opts, keep_top_k=-1))
    assert len(uncut[0]) < candidates(scores), where
    assert scores.max() - scores.min() > 0.1, where


def test_nms_check_can_fail(tmp_path_factory, tmp_path):
    """The same rows with the reference made on another scale factor fail the check."""
    cfg, state, weights, x, scale, boxes, scores, _ = case(tmp_path_factory, "custom-3cls")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "scale.npy", scale)
    out = tmp_path / "out"
    assert detect(["--weights", weights, "--input", tmp_path / "x.npy", "--scale-factor", tmp_path / "scale.npy"],
                  out).returncode == 0
    b2, s2 = P.detector_outputs(cfg, state, x, scale_factor=scale[::-1].copy())
    ref = P.multiclass_nms3(b2.astype(np.float32), s2.astype(np.float32))
    with pytest.raises(pytest.fail.Exception):
        check_nms(ref, (np.load(out / "nms.npy"), np.load(out / "bbox_num.npy")), 1e-3, 1e-3, "")


def test_backbone_file_is_refused(tmp_path):
    state = bb.random_state(bb.preset("s").build(), seed=1, calib_shape=(1, 3, 64, 64))
    weights = tmp_path / "backbone.pdparams"
    pdparams_writer.write_pdparams(weights, state)
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 64, 64), np.float32))
    out = tmp_path / "out"
    p = detect(["--weights", weights, "--input", tmp_path / "x.npy"], out)
    assert p.returncode == 1 and "is a backbone checkpoint, not a detector" in p.stderr, describe_proc(p)
    assert str(weights) in p.stderr and nothing_written(out), describe_proc(p)


def test_refusals_write_nothing(tmp_path_factory, tmp_path):
    _, _, weights, x, _, _, _, _ = case(tmp_path_factory, "custom-3cls")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "odd.npy", np.zeros((1, 3, 67, 45), np.float32))
    np.save(tmp_path / "s3.npy", np.ones((3, 2), np.float32))
    np.save(tmp_path / "sinf.npy", np.array([[1, 1], [np.inf, 1]], np.float32))
    bad = x.copy()
    bad[1, 0, 10, 10] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    cases = [
        ("odd.npy", [], 1, "neck.fpn_stages.1.concat"),
        ("x.npy", ["--scale-factor", "0,1"], 1, "image 0 has sy, sx = 0, 1"),
        ("x.npy", ["--scale-factor", "1,-2"], 1, "positive and finite"),
        ("x.npy", ["--scale-factor", "nan,1"], 1, "positive and finite"),
        ("x.npy", ["--scale-factor", tmp_path / "s3.npy"], 1, "expected [2, 2]"),
        ("x.npy", ["--scale-factor", tmp_path / "sinf.npy"], 1, "image 1 has sy, sx = inf, 1"),
        ("x.npy", ["--scale-factor", "half"], 2, "must be sy,sx"),
        ("nan.npy", [], 1, "image 1: "),
    ]
    for k, (inp, extra, rc, msg) in enumerate(cases):
        out = tmp_path / f"out{k}"
        p = detect(["--weights", weights, "--input", tmp_path / inp] + extra, out)
        assert p.returncode == rc and msg in p.stderr, describe_proc(p)
        assert nothing_written(out), describe_proc(p)


# ---- image mode

def scene(h, w, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(x / 11.0 + seed) * np.cos(y / 13.0)
    g = 255 * (x / (w - 1)) * ((y // 7) % 2 * 0.5 + 0.5)
    b = np.where((x - w / 3) ** 2 + (y - h / 2) ** 2 < (min(h, w) / 4) ** 2, 230, 40 + 150 * y / h)
    img = np.stack([r, g, b], -1) + rng.normal(0, 10, (h, w, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


SIZES = {"a.png": (120, 150), "b.png": (90, 200), "c.png": (160, 160)}
NET = (160, 224)  # --size H,W


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pictures")
    for k, (name, (h, w)) in enumerate(SIZES.items()):
        Image.fromarray(scene(h, w, k)).save(folder / name)
    return folder


def net_inputs(folder):
    """The port's pre-processed tensors (1, 3, H, W) and scale factors of the folder's images."""
    out = []
    for name in sorted(SIZES):
        rgb = cv2.imread(str(folder / name), cv2.IMREAD_COLOR)[..., ::-1]
        h, w = rgb.shape[:2]
        x = cv2.resize(rgb, (NET[1], NET[0]), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255.0
        out.append((np.ascontiguousarray(x.transpose(2, 0, 1)[None]), np.array([[NET[0] / h, NET[1] / w]], np.float32)))
    return out


_image_cache = {}


def image_case(tmp_path_factory, pictures, name):
    """(cfg, state, weights) with BN statistics from the pictures themselves: statistics
    from noise saturate every score to 1.0 on smooth pictures (all ties, a useless check)."""
    if name not in _image_cache:
        cfg = CASES[name][0]()
        calib = np.concatenate([x for x, _ in net_inputs(pictures)])
        state = P.random_detector_state(cfg, seed=11, calib_input=calib)
        weights = tmp_path_factory.mktemp("img-" + name) / "det.pdparams"
        pdparams_writer.write_pdparams(weights, state)
        _image_cache[name] = (cfg, state, weights)
    return _image_cache[name]


def port_coco_rows(cfg, state, folder):
    """The port's COCO results for the folder's images (sorted), as the CLI should write them."""
    rows, top = [], []
    for i, (x, sf) in enumerate(net_inputs(folder)):
        boxes, scores = P.detector_outputs(cfg, state, x, scale_factor=sf)
        top.append(scores.max())
        nms, _ = P.multiclass_nms3(boxes.astype(np.float32), scores.astype(np.float32))
        for lab, s, x1, y1, x2, y2 in nms.tolist():
            cat = COCO_IDS[int(lab)] if cfg.num_classes == 80 else int(lab) + 1
            rows.append((i, cat, [x1, y1, x2 - x1, y2 - y1], s))
    assert 0.2 < max(top) < 0.99, f"scores saturated or flat: best {top}"
    return rows


@pytest.mark.parametrize("name", list(CASES))
def test_image_mode_coco_results_match_port(tmp_path_factory, tmp_path, pictures, name):
    cfg, state, weights = image_case(tmp_path_factory, pictures, name)
    out = tmp_path / "out"
    p = detect(["--weights", weights, pictures, "--size", f"{NET[0]},{NET[1]}", "--batch", "2", "--isa", "ref"],
               out)
    where = f"{name}\n{describe_proc(p)}"
    assert p.returncode == 0, where
    images = json.loads((out / "images.json").read_text())
    assert [(d["id"], d["file_name"], d["height"], d["width"]) for d in images] == \
        [(i, n, *SIZES[n]) for i, n in enumerate(sorted(SIZES))], images
    got = json.loads((out / "detections.json").read_text())
    ref = port_coco_rows(cfg, state, pictures)
    assert len(got) == len(ref) and len(ref) > 3 * 50, where
    if cfg.num_classes == 80:
        assert sum(r[1] != COCO_IDS.index(r[1]) + 1 for r in ref) > 50, "the id map must matter here"
    same_detections([(r[0], r[1], r[3], *r[2]) for r in ref],
                    [(d["image_id"], d["category_id"], d["score"], *d["bbox"]) for d in got], 1e-3, 1e-3, where)
    assert sorted(p.name for p in out.iterdir()) == ["detections.json", "images.json"]


def test_visualize_draws_boxes(tmp_path_factory, tmp_path, pictures):
    _, _, weights = image_case(tmp_path_factory, pictures, "custom-3cls")
    first = tmp_path / "first"
    assert detect(["--weights", weights, pictures / "a.png", "--size", f"{NET[0]},{NET[1]}"], first).returncode == 0
    dets = json.loads((first / "detections.json").read_text())
    thr = sorted(d["score"] for d in dets)[-2]  # draw the best two
    out = tmp_path / "out"
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nbird\n")
    p = detect(["--weights", weights, pictures / "a.png", "--size", f"{NET[0]},{NET[1]}", "--visualize",
                "--draw-threshold", f"{thr:.9g}", "--labels", labels], out)
    assert p.returncode == 0, describe_proc(p)
    pic = np.asarray(Image.open(out / "a.png").convert("RGB"))
    orig = cv2.imread(str(pictures / "a.png"), cv2.IMREAD_COLOR)[..., ::-1]
    assert pic.shape == orig.shape, (pic.shape, orig.shape)
    drawn = [d["bbox"] for d in dets if d["score"] >= thr]
    assert len(drawn) >= 1
    h, w = orig.shape[:2]
    near = np.zeros((h, w), bool)
    for x, y, bw, bh in drawn:
        x0, y0 = int(np.clip(round(x), 0, w - 1)), int(np.clip(round(y), 0, h - 1))
        x1, y1 = int(np.clip(round(x + bw), 0, w - 1)), int(np.clip(round(y + bh), 0, h - 1))
        edge = [pic[y0, xx] for xx in range(x0, x1 + 1)] + [pic[yy, x0] for yy in range(y0, y1 + 1)]
        orig_edge = [orig[y0, xx] for xx in range(x0, x1 + 1)] + [orig[yy, x0] for yy in range(y0, y1 + 1)]
        assert np.mean([np.any(a != b) for a, b in zip(edge, orig_edge)]) > 0.9, (x0, y0, x1, y1)
        for ya, yb, xa, xb in ((y0, y0 + 1, x0, x1), (y1 - 1, y1, x0, x1), (y0, y1, x0, x0 + 1), (y0, y1, x1 - 1, x1)):
            near[max(ya - 1, 0):yb + 2, max(xa - 1, 0):xb + 2] = True  # the 2-px outline
        near[max(y0 - 14, 0):y0 + 14, max(x0 - 3, 0):x0 + 120] = True  # its label strip
    assert near.sum() < 0.8 * near.size, "too few pixels away from the drawn outlines"
    np.testing.assert_array_equal(pic[~near], orig[~near])


def test_unreadable_image_is_skipped_and_ids_keep_input_order(tmp_path_factory, tmp_path, pictures):
    _, _, weights = image_case(tmp_path_factory, pictures, "custom-3cls")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    out = tmp_path / "out"
    p = detect(["--weights", weights, tmp_path / "broken.png", pictures / "b.png", "--size", f"{NET[0]},{NET[1]}",
                "-q"], out)
    assert p.returncode == 1 and "broken.png" in p.stderr and not p.stdout, describe_proc(p)
    images = json.loads((out / "images.json").read_text())
    assert [(d["id"], d["file_name"]) for d in images] == [(1, "b.png")], images
    dets = json.loads((out / "detections.json").read_text())
    assert dets and {d["image_id"] for d in dets} == {1}, dets[:3]
