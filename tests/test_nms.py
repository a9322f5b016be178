"""The library's multiclass NMS (src/postprocess/nms.c, through build/tests/nms_driver)
against the reference port of Paddle's multiclass_nms3 (tests/ref/ppyoloe_torch.py):
the same rows, in the same order, bit for bit, on hand-made and random cases with ties,
NaNs, degenerate boxes, every score above the threshold, truncation and empty images."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

import ppyoloe_torch as P
from conftest import get_build_dir

DRIVER = get_build_dir() / "tests" / "nms_driver"


def run_nms(tmp_path, boxes, scores, score_threshold=0.01, nms_top_k=1000, keep_top_k=300, nms_threshold=0.7,
            background_label=-1, timeout=120):
    boxes = np.ascontiguousarray(boxes, dtype=np.float32)
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    np.save(tmp_path / "b.npy", boxes)
    np.save(tmp_path / "s.npy", scores)
    assert DRIVER.is_file(), f"{DRIVER} missing: build with make"
    p = subprocess.run([str(DRIVER), str(tmp_path / "b.npy"), str(tmp_path / "s.npy"), repr(float(score_threshold)),
                        str(nms_top_k), str(keep_top_k), repr(float(nms_threshold)), str(background_label),
                        str(tmp_path)], capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr
    got_rows = np.load(tmp_path / "rows.npy")
    got_num = np.load(tmp_path / "bbox_num.npy").astype(np.int32)
    want_rows, want_num = P.multiclass_nms3(boxes, scores, score_threshold=np.float32(score_threshold),
                                            nms_top_k=nms_top_k, keep_top_k=keep_top_k,
                                            nms_threshold=np.float32(nms_threshold),
                                            background_label=background_label)
    return got_rows, got_num, want_rows, want_num


def assert_same(got_rows, got_num, want_rows, want_num):
    assert got_num.tolist() == want_num.tolist()
    assert got_rows.shape == want_rows.shape
    # bit for bit, NaN where the reference has NaN
    assert np.array_equal(got_rows.view(np.uint32), want_rows.view(np.uint32)), \
        np.argwhere(got_rows.view(np.uint32) != want_rows.view(np.uint32))[:5]


def clustered_boxes(rng, n, l, clusters=6, size=640.0):
    """Boxes jittered around a few centres, so IoUs fall on both sides of 0.7."""
    centres = rng.uniform(0, size, (n, clusters, 2))
    pick = rng.integers(0, clusters, (n, l))
    c = np.take_along_axis(centres, pick[..., None], axis=1) + rng.normal(0, 6, (n, l, 2))
    wh = rng.uniform(20, 80, (n, l, 2))
    return np.concatenate([c - wh / 2, c + wh / 2], axis=-1)


def test_hand_cases_equal_the_reference(tmp_path):
    boxes = np.array([[[0, 0, 2, 1], [1, 0, 3, 1], [0, 0, 2, 0.8], [5, 5, 6, 6], [5, 5, 6, 6]]])
    scores = np.array([[[0.9, 0.8, 0.85, 0.3, 0.01], [0.1, 0.95, 0.05, 0.3, 0.3]]])
    for thr in (0.7, np.float32(1.0) / np.float32(3.0), 0.3):
        for keep in (-1, 2, 3):
            r = run_nms(tmp_path, boxes, scores, nms_threshold=thr, keep_top_k=keep)
            assert_same(*r)
    got_rows, got_num, _, _ = run_nms(tmp_path, boxes, scores, keep_top_k=3)
    # the three best overall (0.95, 0.9, 0.8), regrouped: label 0 first
    assert got_num.tolist() == [3] and got_rows[:, 0].tolist() == [0, 0, 1]
    assert got_rows[:, 1].tolist() == pytest.approx([0.9, 0.8, 0.95])


@pytest.mark.parametrize("seed", range(6))
def test_random_cases_equal_the_reference(tmp_path, seed):
    rng = np.random.default_rng(seed)
    n, c, l = int(rng.integers(1, 4)), int(rng.integers(1, 7)), int(rng.integers(1, 300))
    boxes = clustered_boxes(rng, n, l)
    scores = rng.uniform(0, 1, (n, c, l)) ** 3
    if seed % 2:
        scores = np.round(scores * 8) / 8          # many ties, some exactly at 0
    if seed % 3 == 0:
        boxes[rng.uniform(size=boxes.shape) < 0.02] = np.nan
        scores[rng.uniform(size=scores.shape) < 0.02] = np.nan
        boxes[:, ::7, 2] = boxes[:, ::7, 0] - 1.0  # degenerate: x2 < x1, area 0
    for kw in (dict(), dict(keep_top_k=max(1, l // 3)), dict(nms_top_k=5, keep_top_k=-1),
               dict(nms_top_k=-1, keep_top_k=-1, nms_threshold=0.45, score_threshold=0.2),
               dict(background_label=0)):
        assert_same(*run_nms(tmp_path, boxes, scores, **kw))


def test_all_equal_and_all_above_threshold(tmp_path):
    rng = np.random.default_rng(7)
    boxes = clustered_boxes(rng, 2, 1500, clusters=40)
    scores = np.full((2, 3, 1500), 0.5, np.float32)          # every score equal, every one above
    r = run_nms(tmp_path, boxes, scores)
    assert_same(*r)
    assert r[1].tolist() == [300, 300]                       # keep_top_k cuts both images
    scores[1] = 0.0                                          # the second image keeps nothing
    r = run_nms(tmp_path, boxes, scores)
    assert_same(*r)
    assert r[1][1] == 0 and r[0].shape[0] == r[1][0]         # no -1 row for the empty image


def test_worst_case_is_bounded(tmp_path):
    """80 classes x 8400 anchors, every score above the threshold, every box disjoint:
    nms_top_k bounds each class to 1000 candidates and 1000 kept; the run finishes well
    inside the timeout and gives keep_top_k rows."""
    l = 8400
    xs = np.arange(l, dtype=np.float32) * 3
    boxes = np.stack([xs, xs * 0, xs + 1, xs * 0 + 1], axis=-1)[None]
    scores = np.random.default_rng(3).uniform(0.5, 1.0, (1, 80, l)).astype(np.float32)
    np.save(tmp_path / "b.npy", boxes)
    np.save(tmp_path / "s.npy", scores)
    p = subprocess.run([str(DRIVER), str(tmp_path / "b.npy"), str(tmp_path / "s.npy"), "0.01", "1000", "300", "0.7",
                        "-1", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    rows = np.load(tmp_path / "rows.npy")
    assert rows.shape == (300, 6)
    top = np.sort(scores.ravel())[::-1][:300]
    assert np.array_equal(np.sort(rows[:, 1])[::-1], top)


def test_nan_threshold_is_refused(tmp_path):
    np.save(tmp_path / "b.npy", np.zeros((1, 2, 4), np.float32))
    np.save(tmp_path / "s.npy", np.zeros((1, 1, 2), np.float32))
    p = subprocess.run([str(DRIVER), str(tmp_path / "b.npy"), str(tmp_path / "s.npy"), "nan", "1000", "300", "0.7",
                        "-1", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "threshold is NaN" in p.stderr, p.stderr
    assert not (tmp_path / "rows.npy").exists()
