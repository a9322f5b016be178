"""`cspresnet bench --detector`: the whole PP-YOLOE pipeline timed (forward, decoding, NMS with
PP-YOLOE+'s defaults), its report and RESULT line (nms_ms, detections, detector=1), random
weights from --arch / --classes or a detector checkpoint from --weights, and the refusals
(a backbone file, --classes without --detector or with a checkpoint, --layers). On a port
checkpoint and an .npy input the detection count of the timed pipeline must equal the
port's multiclass_nms3 on the port's outputs, so the NMS really runs on the real outputs."""
from __future__ import annotations

import re

import numpy as np
import pytest

import cspresnet_torch as bb
import pdparams_writer
import ppyoloe_torch as P
from conftest import describe_proc, run_cli


def result(proc):
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("RESULT "), describe_proc(proc)
    return dict(re.findall(r"(\w+)=(\S+)", last))


def test_random_detector_s_reports_nms():
    p = run_cli(["bench", "--detector", "--arch", "s", "--size", "160", "--runs", "1", "--threads", "1"])
    assert p.returncode == 0, describe_proc(p)
    kv = result(p)
    assert kv["detector"] == "1" and kv["precision"] == "fp32", describe_proc(p)
    assert 0 < float(kv["nms_ms"]) <= float(kv["median_ms"]), describe_proc(p)
    # the random head's scores spread: some, not all, of the 80 x 525 candidates survive
    assert 0 < int(kv["detections"]) <= 300, describe_proc(p)
    assert "neck 384,192,96 x 1, 80 classes, input 1x3x160x160" in p.stdout, describe_proc(p)
    assert re.search(r"^nms +median [0-9.]+ ms", p.stdout, re.M), describe_proc(p)


def test_classes_batch_and_quiet():
    p = run_cli(["bench", "--detector", "--arch", "t", "--classes", "3", "--size", "96", "--batch", "2",
                 "--runs", "1", "--warmup", "0", "-q"])
    assert p.returncode == 0 and len(p.stdout.strip().splitlines()) == 1, describe_proc(p)
    kv = result(p)
    assert kv["detector"] == "1" and float(kv["images_per_s"]) > 0, describe_proc(p)


def test_deploy_runs_or_says_unsupported():
    p = run_cli(["bench", "--detector", "--arch", "s", "--size", "64", "--runs", "1", "--warmup", "0", "--deploy"])
    if p.returncode == 1:
        assert "not supported" in p.stderr and not p.stdout, describe_proc(p)
    else:
        assert p.returncode == 0 and result(p)["detector"] == "1", describe_proc(p)
        assert ", deployed, input" in p.stdout, describe_proc(p)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench_det")
    cfg = P.DetectorConfig(backbone=bb.Config(width_mult=0.25, depth_mult=0.5), num_classes=3)
    x = np.random.default_rng(5).random((2, 3, 128, 96), dtype=np.float32)
    state = P.random_detector_state(cfg, seed=11, calib_input=x)
    path = d / "det.pdparams"
    pdparams_writer.write_pdparams(path, state)
    np.save(d / "x.npy", x)
    return cfg, state, path, d / "x.npy", x


def test_checkpoint_detections_match_port(checkpoint):
    cfg, state, path, x_path, x = checkpoint
    p = run_cli(["bench", "--detector", "--weights", str(path), "--input", str(x_path), "--runs", "2",
                 "--warmup", "0", "--threads", "1"])
    assert p.returncode == 0, describe_proc(p)
    boxes, scores = P.detector_outputs(cfg, state, x)
    rows, nums = P.multiclass_nms3(boxes.astype(np.float32), scores.astype(np.float32), **P.NMS_DEFAULTS)
    assert len(rows) > 0 and nums.sum() == len(rows)
    kv = result(p)
    assert int(kv["detections"]) == len(rows), describe_proc(p) + f"\nport: {len(rows)} rows ({nums})"
    assert "3 classes, input 2x3x128x96" in p.stdout, describe_proc(p)


def test_checkpoint_refuses_classes(checkpoint):
    _, _, path, _, _ = checkpoint
    p = run_cli(["bench", "--detector", "--weights", str(path), "--classes", "5", "--size", "64"])
    assert p.returncode == 2 and "--classes is for random weights" in p.stderr, describe_proc(p)


def test_backbone_file_is_refused(tmp_path):
    state = bb.random_state(bb.Config(width_mult=0.25, depth_mult=0.33).build(), seed=1, calib_shape=(1, 3, 64, 64))
    path = tmp_path / "backbone.pdparams"
    pdparams_writer.write_pdparams(path, state)
    p = run_cli(["bench", "--detector", "--weights", str(path), "--size", "64", "--runs", "1"])
    assert p.returncode == 1 and "not a detector checkpoint" in p.stderr and str(path) in p.stderr, describe_proc(p)
    assert "RESULT" not in p.stdout, describe_proc(p)
    # the same file is a fine backbone
    ok = run_cli(["bench", "--weights", str(path), "--size", "64", "--runs", "1", "-q"])
    assert ok.returncode == 0 and "detector=1" not in ok.stdout and "nms_ms" not in ok.stdout, describe_proc(ok)


@pytest.mark.parametrize("args, message", [
    (["--classes", "3"], "--classes goes with --detector"),
    (["--detector", "--width-mult", "0.25", "--layers", "1,1,1,1"], "--detector takes --arch P or --width-mult"),
    (["--detector", "--return-idx", "3"], "not --layers, --channels or --return-idx"),
    (["--detector", "--classes", "0"], "--classes needs a count in 1..100000"),
])
def test_usage_errors(args, message):
    p = run_cli(["bench", *args, "--size", "64", "--runs", "1"])
    assert p.returncode == 2 and message in p.stderr and not p.stdout, describe_proc(p)
