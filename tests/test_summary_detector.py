"""`cspresnet summary --detector` and `summary --weights DETECTOR_FILE`: the whole PP-YOLOE
detector's paddle.summary table against SPEC §5's upstream numbers and the PyTorch port
(tests/ref/ppyoloe_torch.py).

* totals: every state-dict element, BN statistics included (SPEC §5, 80 classes, no alpha);
* the paper's deployed counts (trainable parameters after upstream's convert_to_deploy,
  which fuses only the RepVGG blocks) to their printed precision, and its FLOPs: 2 x the
  conv MACs of that deployed graph equal the port's forward-hook count, per part and in
  total, and sit under the paper's figure by < 0.7% (the paper's counter also counts
  some element-wise work); with every bias add and BN element one multiply-add more, the
  total is within 0.06 G of the paper's;
* every row (class-k name, input and output shapes, own parameters) against the port's
  modules seen by forward hooks, as paddle.summary sees them: every layer except
  Sequential / ModuleList containers and the model itself, a row when its forward ends,
  one row per layer (a layer called again keeps its first place and takes the last
  call's shapes), own parameters and buffers;
* a detector .pdparams given to --weights gives the same table as --detector with the
  matching flags;
* no weight arena: an x detector's (and backbone's) summary runs in 128 MiB of address
  space (their weights alone are 410 and 161 MB).
"""
from __future__ import annotations

import ast
import re
import resource

import pytest
import torch
import torch.nn as nn

import cspresnet_torch as bb
import pdparams_writer
import ppyoloe_torch as P
from conftest import describe_proc, get_cli_path, run_cli
from cspresnet_torch import RepVggBlock

# SPEC §5: all state-dict elements, 80 classes, no alpha
SPEC_TOTAL = {"s": 8_105_517, "m": 24_176_429, "l": 54_147_469, "x": 102_434_541}
# the PP-YOLOE paper: deployed trainable parameters (M) and GFLOPs at 640
PAPER_PARAMS_M = {"s": 7.93, "m": 23.43, "l": 52.20, "x": 98.42}
PAPER_GFLOPS = {"s": 17.36, "m": 49.91, "l": 110.07, "x": 206.59}

# a custom detector: width 0.25, depth 0.5 (neck [192, 96, 48], 2 blocks), 3 classes
CUSTOM = dict(cfg=lambda alpha=False: P.DetectorConfig(
    backbone=bb.Config(width_mult=0.25, depth_mult=0.5, use_alpha=alpha), num_classes=3),
    flags=["--width-mult", "0.25", "--depth-mult", "0.5", "--classes", "3"])


def summary(*args):
    proc = run_cli(["summary", *args])
    assert proc.returncode == 0, describe_proc(proc)
    return proc.stdout


def count(text: str, label: str) -> int:
    m = re.search(rf"^{re.escape(label)}: ([\d,]+)", text, re.M)
    assert m, f"no line '{label}: N' in:\n{text[-3000:]}"
    return int(m.group(1).replace(",", ""))


def gflops(text: str, label: str) -> float:
    m = re.search(rf"^\s*{re.escape(label)}\b.*?: +([0-9.]+) G", text, re.M)
    assert m, f"no line '{label} ...: X G' in:\n{text[-3000:]}"
    return float(m.group(1))


def deployed_part(text: str, part: str) -> float:
    tail = text[text.index("Deployed FLOPs for input"):]
    m = re.search(rf"^  {part} +FLOPs: +([0-9.]+) G", tail, re.M)
    assert m, f"no deployed FLOPs line for {part}:\n{tail}"
    return float(m.group(1))


# ------------------------------------------------------------------ the table's rows

def split_row(line: str):
    """'Name-k [[...]] [...] 1,234' -> (name, inputs, outputs, params)."""
    name, rest = line.split(None, 1)
    groups, i = [], 0
    while len(groups) < 2:
        start = rest.index("[", i)
        depth = 0
        for j in range(start, len(rest)):
            depth += {"[": 1, "]": -1}.get(rest[j], 0)
            if depth == 0:
                break
        groups.append(ast.literal_eval(rest[start:j + 1]))
        i = j + 1
    return name, groups[0], groups[1], int(rest[i:].strip().replace(",", ""))


def table_rows(text: str):
    lines = text.splitlines()
    first = next(i for i, l in enumerate(lines) if l.startswith("=====")) + 1
    last = next(i for i in range(first, len(lines)) if lines[i].startswith("====="))
    return [split_row(l) for l in lines[first:last]]


def shapes(v):
    if isinstance(v, torch.Tensor):
        return list(v.shape)
    return [shapes(x) for x in v]


def port_rows(model: nn.Module, x_shape):
    """paddle.summary's rows of the port: (Class-k, input shapes, output shapes, own
    parameters + buffers), one per layer, at its first call, with its last call's shapes."""
    seen = {}

    def hook(mod, inp, out):
        own = sum(t.numel() for t in mod.parameters(recurse=False)) + \
            sum(t.numel() for t in mod.buffers(recurse=False))
        cls = {"Conv2d": "Conv2D"}.get(type(mod).__name__, type(mod).__name__)
        row = (cls, shapes(inp), shapes(out), own)
        if id(mod) in seen:
            seen[id(mod)][1] = row
        else:
            seen[id(mod)] = [len(seen), row]

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if m is not model and not isinstance(m, (nn.Sequential, nn.ModuleList))]
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(*x_shape))
    finally:
        for h in handles:
            h.remove()
    counters, rows = {}, []
    for _, (cls, i, o, n) in sorted(seen.values(), key=lambda v: v[0]):
        counters[cls] = counters.get(cls, 0) + 1
        rows.append((f"{cls}-{counters[cls]}", i, o, n))
    return rows


def assert_rows_match(got, want, what):
    assert len(got) == len(want), f"{what}: {len(got)} rows, the port has {len(want)}"
    for k, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"{what}: row {k}\n  ours: {g}\n  port: {w}"


# ------------------------------------------------------------------ the paper's counts

def port_deployed_flops(cfg, size):
    """Per part (backbone, neck, yolo_head): 2 x conv MACs of the graph upstream's
    convert_to_deploy leaves, and the total with each bias add and BN element one
    multiply-add more, from forward hooks."""
    model = cfg.build().eval()
    fused_away = {id(m.conv2.conv) for m in model.modules() if isinstance(m, RepVggBlock)}
    rep_bns = {id(b) for m in model.modules() if isinstance(m, RepVggBlock) for b in (m.conv1.bn, m.conv2.bn)}
    rep_3x3 = {id(m.conv1.conv) for m in model.modules() if isinstance(m, RepVggBlock)}
    macs = {"backbone": 0, "neck": 0, "yolo_head": 0}
    adds = [0]
    handles = []
    for part in macs:
        for m in getattr(model, part).modules():
            if isinstance(m, nn.Conv2d) and id(m) not in fused_away:
                def conv_hook(mod, inp, out, part=part):
                    macs[part] += out.numel() * mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1]
                    if mod.bias is not None or id(mod) in rep_3x3:
                        adds[0] += out.numel()
                handles.append(m.register_forward_hook(conv_hook))
            elif isinstance(m, bb.BatchNorm2D) and id(m) not in rep_bns:
                handles.append(m.register_forward_hook(lambda mod, inp, out: adds.__setitem__(0, adds[0] + out.numel())))
    try:
        with torch.no_grad():
            model.to("meta")(torch.zeros(1, 3, *size, device="meta"))
    finally:
        for h in handles:
            h.remove()
    parts = {k: 2 * v / 1e9 for k, v in macs.items()}
    return parts, 2 * (sum(macs.values()) + adds[0]) / 1e9


@pytest.mark.parametrize("arch", ["s", "m", "l", "x"])
def test_totals_and_paper_counts(arch):
    out = summary("--detector", "--arch", arch)
    assert count(out, "Total params") == SPEC_TOTAL[arch]
    total_nt = count(out, "Non-trainable params")
    assert count(out, "Trainable params") + total_nt == SPEC_TOTAL[arch]
    # BN statistics: everything the port keeps as buffers
    model = P.detector_preset(arch, plus=False).build()
    assert total_nt == sum(b.numel() for b in model.buffers())
    rows = table_rows(out)
    assert sum(r[3] for r in rows) == SPEC_TOTAL[arch], "the rows must add up to the total"

    deployed = count(out, "Deployed params")
    assert round(deployed / 1e6, 2) == PAPER_PARAMS_M[arch], deployed
    assert re.search(rf"^Deployed params: [\d,]+ \({PAPER_PARAMS_M[arch]:.2f} M\)$", out, re.M), out[-1500:]
    assert deployed == P.paper_counts(P.detector_preset(arch, plus=False))["params"]

    flops = gflops(out, "Deployed total FLOPs")
    parts, with_adds = port_deployed_flops(P.detector_preset(arch, plus=False), (640, 640))
    assert abs(flops - sum(parts.values())) < 0.0015, (flops, parts)
    for ours, theirs in [("backbone", "backbone"), ("neck", "neck"), ("head", "yolo_head")]:
        assert abs(deployed_part(out, ours) - parts[theirs]) < 0.0015, (ours, parts)
    assert 0.0 < PAPER_GFLOPS[arch] - flops < 0.007 * PAPER_GFLOPS[arch], flops
    adds_line = gflops(out, "Deployed total FLOPs with bias and BN adds")
    assert abs(adds_line - with_adds) < 0.0015, (adds_line, with_adds)
    assert 0.0 < PAPER_GFLOPS[arch] - adds_line <= 0.06, adds_line


def test_paper_counts_follow_alpha_and_classes():
    """alpha adds one parameter per backbone BasicBlock to the total, none to the
    deployed count (fused away); classes change the head's pred_cls."""
    base = summary("--detector", "--arch", "s")
    alpha = summary("--detector", "--arch", "s", "--alpha")
    blocks = sum(bb.preset("s").build().layers)
    assert count(alpha, "Total params") == count(base, "Total params") + blocks
    assert count(alpha, "Deployed params") == count(base, "Deployed params")
    c365 = summary("--detector", "--arch", "s", "--classes", "365")
    port = P.detector_preset("s", plus=False, num_classes=365).build()
    assert count(c365, "Total params") == sum(v.numel() for v in port.state_dict().values())


@pytest.mark.parametrize("name", ["s", "custom-3cls", "custom-3cls-alpha"])
def test_rows_match_port_hooks(name):
    size = (1, 3, 96, 128)
    if name == "s":
        cfg, flags = P.detector_preset("s", plus=False), ["--arch", "s"]
    else:
        alpha = name.endswith("alpha")
        cfg, flags = CUSTOM["cfg"](alpha), CUSTOM["flags"] + (["--alpha"] if alpha else [])
    out = summary("--detector", *flags, "--input-size", ",".join(map(str, size)))
    got = table_rows(out)
    want = port_rows(cfg.build(), size)
    assert_rows_match(got, want, f"{name} at {size}")
    assert count(out, "Total params") == sum(v.numel() for v in cfg.build().state_dict().values())


def test_rows_fail_on_a_different_port():
    """The row comparison can fail: 4 classes in the port against 3 in the CLI."""
    size = (1, 3, 64, 64)
    out = summary("--detector", *CUSTOM["flags"], "--input-size", "1,3,64,64")
    want = port_rows(CUSTOM["cfg"]().replace(num_classes=4).build(), size)
    with pytest.raises(AssertionError):
        assert_rows_match(table_rows(out), want, "4 vs 3 classes")


def test_deploy_table_is_the_fully_fused_detector():
    """--deploy: every BN folded (no BatchNorm2D rows), one conv with bias per ConvBNLayer
    and per RepVggBlock; the count from the port's modules."""
    out = summary("--detector", "--arch", "s", "--deploy", "--input-size", "1,3,128,128")
    rows = table_rows(out)
    assert not any(r[0].startswith("BatchNorm2D") for r in rows)
    model = P.detector_preset("s", plus=False).build()
    in_rep = {id(c) for m in model.modules() if isinstance(m, RepVggBlock) for c in m.modules() if c is not m}
    want = 0
    for m in model.modules():
        if isinstance(m, RepVggBlock):
            want += m.ch_out * m.ch_in * 9 + m.ch_out
        elif isinstance(m, bb.ConvBNLayer) and id(m) not in in_rep:
            want += m.conv.weight.numel() + m.conv.out_channels
        elif isinstance(m, nn.Conv2d) and id(m) not in in_rep and not any(
                c is m for cb in model.modules() if isinstance(cb, bb.ConvBNLayer) for c in [cb.conv]):
            want += sum(p.numel() for p in m.parameters())
    assert count(out, "Total params") == want == sum(r[3] for r in rows)
    assert count(out, "Non-trainable params") == 0
    # the paper's lines do not depend on the table's form
    plain = summary("--detector", "--arch", "s", "--input-size", "1,3,128,128")
    assert count(out, "Deployed params") == count(plain, "Deployed params")


def after_arch_lines(text: str) -> str:
    lines = text.splitlines()
    assert lines[0].startswith("architecture from ") and lines[1].startswith("detector: "), text[:500]
    return "\n".join(lines[2:])


@pytest.mark.parametrize("alpha", [False, True], ids=["plain", "alpha"])
def test_weights_file_gives_the_detector_table(tmp_path, alpha):
    cfg = CUSTOM["cfg"](alpha)
    path = tmp_path / "det.pdparams"
    pdparams_writer.write_pdparams(path, P.random_detector_state(cfg, seed=3), protocol=4)
    flags = CUSTOM["flags"] + (["--alpha"] if alpha else [])
    from_file = summary("--weights", path, "--input-size", "1,3,96,128")
    from_flags = summary("--detector", *flags, "--input-size", "1,3,96,128")
    head = from_file.splitlines()[1]
    assert "neck channels 192,96,48" in head and "2 blocks" in head and "3 classes" in head, head
    assert after_arch_lines(from_file) == from_flags.rstrip("\n")
    # --deploy on the file: the fully fused table, as --detector --deploy
    dep_file = summary("--weights", path, "--deploy", "--input-size", "1,3,96,128")
    dep_flags = summary("--detector", *flags, "--deploy", "--input-size", "1,3,96,128")
    assert after_arch_lines(dep_file) == dep_flags.rstrip("\n")
    # -q: nothing printed, the file checked
    quiet = run_cli(["summary", "--weights", path, "-q"])
    assert quiet.returncode == 0 and quiet.stdout == "", describe_proc(quiet)
    # and it can fail: the file's table is not that of 4 classes
    other = summary("--detector", *CUSTOM["flags"][:-1], "4", "--input-size", "1,3,96,128")
    assert after_arch_lines(from_file) != other.rstrip("\n")


def test_weights_file_with_a_broken_head_is_the_backbone_with_a_note(tmp_path):
    state = bb.random_state(bb.preset("s").build(), 1)
    path = tmp_path / "half.pdparams"
    pdparams_writer.write_pdparams(path, state, prefix="backbone.", extra=pdparams_writer.fake_detector_extras())
    proc = run_cli(["summary", "--weights", path, "--input-size", "1,3,64,64"])
    assert proc.returncode == 0, describe_proc(proc)
    assert "CustomCSPPAN" not in proc.stdout and count(proc.stdout, "Total params") == 3_000_928
    assert "note: the backbone only" in proc.stderr and "neck" in proc.stderr, describe_proc(proc)
    refused = run_cli(["summary", "--weights", path, "--detector"])
    assert refused.returncode == 1 and "neck" in refused.stderr and not refused.stdout, describe_proc(refused)


@pytest.mark.parametrize("args,needle", [
    (["--classes", "3"], "--classes goes with --detector"),
    (["--detector", "--layers", "1,1,1,1"], "--detector takes --arch or --width-mult"),
    (["--detector", "--arch", "s", "--return-idx", "3"], "--detector takes --arch or --width-mult"),
    (["--detector", "--classes", "0"], "--classes '0'"),
])
def test_usage_errors(args, needle):
    proc = run_cli(["summary", *args])
    assert proc.returncode == 2 and needle in proc.stderr, describe_proc(proc)


def test_sizes_the_neck_cannot_take_are_refused():
    """67 x 45 (SPEC §5): the stride-16 map is 5 x 3, the upsampled stride-32 map 6 x 4;
    the FPN's concat cannot take them, and the message names both sizes."""
    h, w = 67, 45
    c4 = (-(-h // 16), -(-w // 16))
    up = (2 * -(-h // 32), 2 * -(-w // 32))
    proc = run_cli(["summary", "--detector", "--arch", "s", "--input-size", f"1,3,{h},{w}"])
    assert proc.returncode == 1 and not proc.stdout, describe_proc(proc)
    assert f"{c4[0]}x{c4[1]}" in proc.stderr and f"{up[0]}x{up[1]}" in proc.stderr, describe_proc(proc)


def _limit_address_space():
    limit = 128 << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@pytest.mark.parametrize("args", [["--detector", "--arch", "x"], ["--arch", "x"]], ids=["detector", "backbone"])
def test_no_weights_allocated(args):
    """An x detector's weights are 102.4 M floats = 410 MB, an x backbone's 161 MB; the
    summary runs in 128 MiB of address space (a build that allocates them exits 1)."""
    if b"__asan_init" in get_cli_path().read_bytes():
        pytest.skip("ASan reserves terabytes of address space")
    proc = run_cli(["summary", *args], preexec_fn=_limit_address_space)
    assert proc.returncode == 0, describe_proc(proc)
    assert "Total params" in proc.stdout
