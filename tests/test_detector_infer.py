"""detector_infer_config (src/model/detector_infer.c, through build/tests/detector_infer_driver)
on key lists of the reference port's state_dict (tests/ref/ppyoloe_torch.py): the neck and
head configuration read off the shapes for s, m with alpha, t (RepVGG attention conv),
custom widths and depths with 3 classes, another reg_max, pre-2022 anchor keys, aux_*
heads and the deployed naming; the parameter list it implies equals the port's, key by key
and in order; and broken files are refused with every missing, mis-shaped and unexpected
key named together."""
from __future__ import annotations

import functools
import re
import subprocess

import pytest

import cspresnet_torch as bb
import ppyoloe_torch as P
from conftest import get_build_dir

DRIVER = get_build_dir() / "tests" / "detector_infer_driver"

CONFIGS = {
    "s": lambda: P.detector_preset("s", plus=False),
    "m-alpha": lambda: P.detector_preset("m", plus=True),
    "t": lambda: P.detector_preset("t"),
    "t-relu": lambda: P.detector_preset("t", attn_conv=None, act="relu"),
    "custom-3cls": lambda: P.DetectorConfig(backbone=bb.Config(width_mult=0.25, depth_mult=0.5), num_classes=3),
    # odd neck widths (mid = cout // 2, conv3 2*mid -> cout) and depth 1.0
    "odd-width": lambda: P.DetectorConfig(backbone=bb.preset("l", width_mult=0.5), neck_base=(764, 380, 190),
                                          num_classes=7),
    "reg7-anchors": lambda: P.detector_preset("s", reg_max=7, anchor_keys_size=(640, 640)),
}


@functools.lru_cache(maxsize=None)
def port_keys(name):
    """(key, shape) of the port's whole state_dict, and the config facts the driver should find."""
    cfg = CONFIGS[name]()
    model = cfg.build()
    keys = tuple((k, tuple(v.shape)) for k, v in model.state_dict().items())
    attn = {"convbn": "convbn", "repvgg": "repvgg", None: "none"}[cfg.attn_conv]
    o = cfg.neck_channels()
    c = model.backbone.channels
    want = (f"neck_out={o[0]},{o[1]},{o[2]} backbone_out={c[2]},{c[3]},{c[4]} blocks={cfg.neck_blocks()} "
            f"spp=1 classes={cfg.num_classes} reg_max={cfg.reg_max} attn={attn}")
    return keys, want


def neck_head(keys):
    return [(k, s) for k, s in keys if k.startswith(("neck.", "yolo_head.")) and
            k not in ("yolo_head.anchor_points", "yolo_head.stride_tensor")]


def run_infer(tmp_path, keys, *args):
    assert DRIVER.is_file(), f"{DRIVER} missing: build with make"
    path = tmp_path / "keys.txt"
    path.write_text("".join(f"{k} {len(s)} {' '.join(map(str, s))}\n" for k, s in keys))
    return subprocess.run([str(DRIVER), str(path), *args], capture_output=True, text=True, timeout=60)


def parse_list(stdout):
    out = []
    for line in stdout.splitlines()[1:]:
        tag, key, dims = (line.split(" ") + [""])[:3]
        assert tag == "PARAM", line
        out.append((key, tuple(int(d) for d in dims.split(",") if d)))
    return out


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_infers_the_ports_configuration_and_parameter_list(tmp_path, name):
    keys, want = port_keys(name)
    keys = list(keys)
    if name == "t":
        # t-aux checkpoints carry training-only aux heads: ignored
        keys += [("aux_head.stem.0.conv.weight", (8, 8, 3, 3)), ("aux_head.pred.bias", (80,))]
    p = run_infer(tmp_path, keys, "--list")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] == want + " deployed=0"
    assert parse_list(p.stdout) == neck_head(keys)


def test_backbone_channels_given_are_checked(tmp_path):
    keys, want = port_keys("s")
    bo = re.search(r"backbone_out=(\S+)", want).group(1)
    assert run_infer(tmp_path, keys, bo).returncode == 0
    c3, c4, c5 = map(int, bo.split(","))
    p = run_infer(tmp_path, keys, f"{c3},{c4},{c5 * 2}")
    assert p.returncode == 1
    # fpn_stages.0's conv1 and conv2 take C5: [mid, C5, 1, 1] in the file, [mid, 2*C5, 1, 1] expected
    assert "2 mis-shaped: neck.fpn_stages.0.0.conv1.conv.weight (file [" in p.stderr, p.stderr
    assert f", {c5}, 1, 1], expected [" in p.stderr and f", {c5 * 2}, 1, 1])" in p.stderr, p.stderr


def test_missing_misshaped_and_unexpected_are_reported_together(tmp_path):
    keys, _ = port_keys("s")
    keys = [(k, s) for k, s in keys if k != "neck.pan_routes.1.bn._mean"]
    keys = [(k, (s[0], s[1] + 1) + s[2:]) if k == "yolo_head.pred_cls.1.weight" else (k, s) for k, s in keys]
    keys += [("neck.extra.weight", (3,)), ("something_else", (1,))]
    p = run_infer(tmp_path, keys)
    assert p.returncode == 1
    e = p.stderr
    assert "1 missing: neck.pan_routes.1.bn._mean" in e, e
    assert "1 mis-shaped: yolo_head.pred_cls.1.weight" in e, e
    assert "2 unexpected: neck.extra.weight, something_else" in e, e


def test_a_head_that_does_not_fit_its_neck(tmp_path):
    """The s neck with the m head: every head key is named as mis-shaped (a few shown,
    the rest counted), none missing."""
    s_keys, _ = port_keys("s")
    m_keys, _ = port_keys("m-alpha")
    keys = [kv for kv in s_keys if not kv[0].startswith("yolo_head.")] + \
           [kv for kv in m_keys if kv[0].startswith("yolo_head.")]
    p = run_infer(tmp_path, keys)
    assert p.returncode == 1
    s_head = {k: s for k, s in s_keys if k.startswith("yolo_head.")}
    bad = [k for k, s in m_keys if k.startswith("yolo_head.") and s_head[k] != s]
    assert len(bad) > 4
    assert f"{len(bad)} mis-shaped: {bad[0]} (file [" in p.stderr, p.stderr
    assert f"(+{len(bad) - 4} more)" in p.stderr and "missing" not in p.stderr, p.stderr


def test_many_missing_keys_are_counted(tmp_path):
    keys, _ = port_keys("custom-3cls")
    dropped = [k for k, _ in keys if k.startswith("neck.pan_stages.1.")]
    p = run_infer(tmp_path, [kv for kv in keys if not kv[0].startswith("neck.pan_stages.1.")])
    assert p.returncode == 1
    assert f"{len(dropped)} missing: {dropped[0]}, {dropped[1]}" in p.stderr, p.stderr


def test_a_backbone_only_file_is_refused(tmp_path):
    keys, _ = port_keys("s")
    p = run_infer(tmp_path, [kv for kv in keys if kv[0].startswith("backbone.")])
    assert p.returncode == 1 and "no PP-YOLOE neck" in p.stderr, p.stderr
    p = run_infer(tmp_path, [kv for kv in keys if not kv[0].startswith("yolo_head.pred_cls.0")])
    assert p.returncode == 1 and "class count" in p.stderr and "yolo_head.pred_cls.0.weight" in p.stderr


def deployed_keys(cfg):
    """The deployed naming (as build.c names the backbone's): each ConvBN becomes
    conv.weight + conv.bias, each RepVggBlock one 3x3 conv with bias at its path."""
    model = cfg.build()
    rep = {n: m for n, m in model.named_modules() if isinstance(m, bb.RepVggBlock)}
    convbn = {n: m for n, m in model.named_modules() if isinstance(m, bb.ConvBNLayer)}
    out, done = [], set()
    for k, v in model.state_dict().items():
        owner = next((n for n in rep if k.startswith(n + ".")), None)
        if owner is not None:
            if owner not in done:
                m = rep[owner]
                out += [(owner + ".conv.weight", (m.ch_out, m.ch_in, 3, 3)), (owner + ".conv.bias", (m.ch_out,))]
                done.add(owner)
            continue
        owner = next((n for n in convbn if k.startswith(n + ".")), None)
        if owner is not None:
            if owner not in done:
                w = convbn[owner].conv.weight
                out += [(owner + ".conv.weight", tuple(w.shape)), (owner + ".conv.bias", (w.shape[0],))]
                done.add(owner)
            continue
        out.append((k, tuple(v.shape)))
    return out


@pytest.mark.parametrize("name", ["s", "t"])
def test_deployed_naming(tmp_path, name):
    keys = deployed_keys(CONFIGS[name]())
    _, want = port_keys(name)
    p = run_infer(tmp_path, keys, "--list")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] == want + " deployed=1"
    assert parse_list(p.stdout) == neck_head(keys)
