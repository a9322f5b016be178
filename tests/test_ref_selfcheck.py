"""Self-checks of the Python reference side (no CLI needed): the PyTorch port's keys,
order and counts against SPEC §2/§3, its semantics against direct formulas, and the
.pdparams writer against SPEC §3."""
from __future__ import annotations

import pickle
import pickletools

import numpy as np
import pytest
import torch

import cspresnet_torch as ref
import pdparams_writer as pdw

SPEC_PARAMS = {
    "s": (3_000_928, 2_992_976, 7_952, 193),
    "m": (9_333_888, 9_317_424, 16_464, 283),
    "l": (21_186_752, 21_158_752, 28_000, 373),
    "x": (40_283_200, 40_240_640, 42_560, 463),
}
SPEC_GFLOPS = {"s": 8.80, "m": 27.29, "l": 61.91, "x": 117.70}


@pytest.mark.parametrize("arch", ["s", "m", "l", "x"])
def test_port_counts_match_spec(arch):
    c = ref.param_counts(ref.preset(arch).build())
    assert (c["total"], c["trainable"], c["non_trainable"], c["tensors"]) == SPEC_PARAMS[arch]


@pytest.mark.parametrize("arch", ["s", "m", "l", "x"])
def test_port_flops_match_spec(arch):
    g = ref.conv_flops(ref.preset(arch).build(), (1, 3, 640, 640), device="meta") / 1e9
    assert abs(g - SPEC_GFLOPS[arch]) <= 0.005 * SPEC_GFLOPS[arch], g


def test_preset_shapes():
    expect = {
        "t": ([1, 2, 2, 1], [24, 48, 96, 192, 384], True),
        "s": ([1, 2, 2, 1], [32, 64, 128, 256, 512], False),
        "m": ([2, 4, 4, 2], [48, 96, 192, 384, 768], False),
        "l": ([3, 6, 6, 3], [64, 128, 256, 512, 1024], False),
        "x": ([4, 8, 8, 4], [80, 160, 320, 640, 1280], False),
    }
    for name, (layers, channels, alpha) in expect.items():
        cfg = ref.preset(name)
        m = cfg.build()
        assert (m.layers, m.channels, cfg.use_alpha) == (layers, channels, alpha), name
        assert tuple(cfg.return_idx) == (1, 2, 3) and cfg.use_large_stem
        keys = list(m.state_dict())
        assert ("stages.0.blocks.0.conv2.alpha" in keys) == alpha
        assert "stem.conv3.conv.weight" in keys


def test_key_order_is_paddles():
    keys = list(ref.preset("t").build().state_dict())
    assert keys[:5] == ["stem.conv1.conv.weight", "stem.conv1.bn.weight", "stem.conv1.bn.bias",
                        "stem.conv1.bn._mean", "stem.conv1.bn._variance"]
    i = keys.index("stages.0.blocks.0.conv2.alpha")
    assert keys[i - 1] == "stages.0.blocks.0.conv1.bn._variance"
    assert keys[i + 1] == "stages.0.blocks.0.conv2.conv1.conv.weight"
    stage1 = [k[len("stages.1."):] for k in keys if k.startswith("stages.1.")]
    heads = []
    for k in stage1:
        h = k.split(".")[0]
        if not heads or heads[-1] != h:
            heads.append(h)
    assert heads == ["conv_down", "conv1", "conv2", "blocks", "attn", "conv3"]
    assert stage1[-7:-5] == ["attn.fc.weight", "attn.fc.bias"]
    assert keys[-1] == "stages.3.conv3.bn._variance"
    small = list(ref.Config(use_large_stem=False, width_mult=0.25).build().state_dict())
    assert "stem.conv3.conv.weight" not in small and small[5] == "stem.conv2.conv.weight"


def test_scaling_uses_python_round():
    # round-half-to-even: 0.5*3 = 1.5 -> 2, 0.5*6 = 3; 2.5 -> 2 ; max(.., 1)
    layers, channels = ref.scaled_arch(width_mult=0.25, depth_mult=0.5)
    assert layers == [2, 3, 3, 2] and channels == [16, 32, 64, 128, 256]
    layers, _ = ref.scaled_arch(layers=(5, 1, 1, 1), depth_mult=0.5)
    assert layers == [2, 1, 1, 1]
    layers, _ = ref.scaled_arch(depth_mult=0.1)
    assert layers == [1, 1, 1, 1]


def test_semantics_against_formulas():
    """Blocks computed by hand in numpy (float64) vs the port's modules."""
    rng = np.random.default_rng(0)
    cfg = ref.Config(width_mult=0.25, depth_mult=0.33, use_alpha=True, return_idx=(0,))
    model = cfg.build().double()
    state = ref.randomize(model, seed=3)
    st = {k: v.astype(np.float64) for k, v in state.items()}

    def conv(x, w, stride, pad):
        return torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w),
                                          stride=stride, padding=pad).numpy()

    def convbn(x, p, stride, pad, act):
        y = conv(x, st[p + "conv.weight"], stride, pad)
        s = (1, -1, 1, 1)
        y = (y - st[p + "bn._mean"].reshape(s)) / np.sqrt(st[p + "bn._variance"].reshape(s) + 1e-5) \
            * st[p + "bn.weight"].reshape(s) + st[p + "bn.bias"].reshape(s)
        return act(y)

    silu = lambda v: v / (1.0 + np.exp(-v))
    ident = lambda v: v
    x = rng.standard_normal((2, 3, 20, 18))
    h = convbn(x, "stem.conv1.", 2, 1, silu)
    h = convbn(h, "stem.conv2.", 1, 1, silu)
    h = convbn(h, "stem.conv3.", 1, 1, silu)
    p = "stages.0."
    h = convbn(h, p + "conv_down.", 2, 1, silu)
    y1 = convbn(h, p + "conv1.", 1, 0, silu)
    y2 = convbn(h, p + "conv2.", 1, 0, silu)
    b = p + "blocks.0."
    t = convbn(y2, b + "conv1.", 1, 1, silu)
    t = silu(convbn(t, b + "conv2.conv1.", 1, 1, ident)
             + st[b + "conv2.alpha"][0] * convbn(t, b + "conv2.conv2.", 1, 0, ident))
    y2 = y2 + t
    y = np.concatenate([y1, y2], axis=1)
    se = y.mean(axis=(2, 3), keepdims=True)
    se = conv(se, st[p + "attn.fc.weight"], 1, 0) + st[p + "attn.fc.bias"].reshape(1, -1, 1, 1)
    y = y * np.clip(0.1666667 * se + 0.5, 0.0, 1.0)
    expect = convbn(y, p + "conv3.", 1, 0, silu)
    with torch.no_grad():
        got = model(torch.from_numpy(x))[0].numpy()
    assert got.shape == (2, 32, 5, 5)
    np.testing.assert_allclose(got, expect, rtol=1e-10, atol=1e-10)


def test_hardsigmoid_constant_and_acts():
    v = torch.tensor([-4.0, -3.0, 0.0, 1.0, 2.9, 3.0, 3.1], dtype=torch.float64)
    np.testing.assert_allclose(ref.paddle_hardsigmoid(v).numpy(),
                               np.clip(0.1666667 * v.numpy() + 0.5, 0, 1), rtol=1e-14)
    # paddle's slope 0.1666667 saturates just below 3 (1/6 would give 0.99999995 here)
    assert ref.paddle_hardsigmoid(torch.tensor([2.9999997], dtype=torch.float64)).item() == 1.0
    z = torch.linspace(-8, 8, 33, dtype=torch.float64)
    zn = z.numpy()
    np.testing.assert_allclose(ref.get_act("leaky_relu")(z).numpy(), np.where(zn > 0, zn, 0.01 * zn))
    np.testing.assert_allclose(ref.get_act("relu6")(z).numpy(), np.clip(zn, 0, 6))
    np.testing.assert_allclose(ref.get_act("hardswish")(z).numpy(), zn * np.clip(zn + 3, 0, 6) / 6)
    from math import erf
    np.testing.assert_allclose(ref.get_act("gelu")(z).numpy(),
                               [0.5 * a * (1 + erf(a / 2 ** 0.5)) for a in zn], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ref.get_act("mish")(z).numpy(), zn * np.tanh(np.log1p(np.exp(zn))),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ref.get_act("swish")(z).numpy(), zn / (1 + np.exp(-zn)), rtol=1e-12)
    assert ref.get_act("none")(z) is z and ref.get_act("identity")(z) is z
    with pytest.raises(ValueError):
        ref.get_act("swishy")


def test_random_state_ranges_and_magnitudes():
    cfg = ref.preset("s", return_idx=(0, 1, 2, 3))
    state = ref.random_state(cfg.build(), seed=1)
    assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in state.values())
    for k, v in state.items():
        if k.endswith("bn.weight") or k.endswith("alpha"):
            assert 0.5 <= v.min() and v.max() <= 1.5, k
        if k.endswith("bn._variance"):
            assert v.min() > 0, k
    # deterministic
    again = ref.random_state(cfg.build(), seed=1)
    assert all(np.array_equal(state[k], again[k]) for k in state)
    # O(1) activations that depend on the input at every level
    r = np.random.default_rng(0)
    x1 = r.standard_normal((1, 3, 64, 64)).astype(np.float32)
    x2 = r.standard_normal((1, 3, 64, 64)).astype(np.float32)
    o1 = ref.reference_outputs(cfg, state, x1)
    o2 = ref.reference_outputs(cfg, state, x2)
    for a, b in zip(o1, o2):
        assert 0.05 < a.std() and np.abs(a).max() < 100
        assert (a - b).std() > 0.2 * a.std()


@pytest.mark.parametrize("protocol", [2, 4])
def test_pdparams_roundtrip(tmp_path, protocol):
    state = ref.random_state(ref.preset("t").build(), seed=2, calibrate=False)
    extra = pdw.fake_detector_extras(seed=1)
    path = tmp_path / "w.pdparams"
    pdw.write_pdparams(path, state, protocol=protocol, prefix="backbone.", extra=extra)
    data = path.read_bytes()
    assert data[:2] == bytes([0x80, protocol])
    back = pdw.read_pdparams(path)
    assert type(back) is dict
    keys = list(back)
    assert keys[-1] == pdw.NAME_TABLE_KEY
    assert keys[:-1] == ["backbone." + k for k in state] + list(extra)
    table = back[pdw.NAME_TABLE_KEY]
    assert set(table) == set(keys[:-1]) and all(isinstance(v, str) for v in table.values())
    for k, v in state.items():
        a = back["backbone." + k]
        assert type(a) is np.ndarray and a.dtype == np.float32 and a.flags.c_contiguous
        assert np.array_equal(a, v)
    # only the opcodes SPEC §3 lists for such files
    ops = {op.name for op, _, _ in pickletools.genops(data)}
    if protocol == 4:
        allowed = {"PROTO", "FRAME", "EMPTY_DICT", "MEMOIZE", "MARK", "SHORT_BINUNICODE",
                   "BINUNICODE", "STACK_GLOBAL", "BININT1", "BININT2", "BININT", "TUPLE1",
                   "TUPLE2", "TUPLE3", "TUPLE", "SHORT_BINBYTES", "BINBYTES", "BINBYTES8",
                   "REDUCE", "BUILD", "NEWTRUE", "NEWFALSE", "NONE", "BINGET", "LONG_BINGET",
                   "SETITEMS", "SETITEM", "STOP"}
        assert ops <= allowed, ops - allowed
    else:
        assert {"GLOBAL", "BINUNICODE"} <= ops and ops.isdisjoint({"STACK_GLOBAL", "FRAME"})
        assert b"_codecs\nencode" in data and b"latin1" in data
    assert b"numpy.core.multiarray" in data and b"_reconstruct" in data


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_pdparams_dtype_override(tmp_path, dtype):
    state = ref.random_state(ref.Config(width_mult=0.25, depth_mult=0.33).build(), seed=2,
                             calibrate=False)
    path = tmp_path / "w.pdparams"
    pdw.write_pdparams(path, state, dtype=dtype)
    back = pdw.read_pdparams(path)
    for k, v in state.items():
        assert back[k].dtype == dtype and np.array_equal(back[k], v.astype(dtype))


def test_pdparams_plain_pickle_dict(tmp_path):
    """What pickle writes for one array: _reconstruct + BUILD(1, shape, dtype, False, bytes)."""
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    path = tmp_path / "one.pdparams"
    pdw.write_pdparams(path, {"k": a})
    with open(path, "rb") as f:
        back = pickle.load(f)
    assert np.array_equal(back["k"], a) and list(back["StructuredToParameterName@@"]) == ["k"]
    red = a.__reduce_ex__(4)
    assert red[0].__name__ == "_reconstruct"
    assert red[2][:4] == (1, (2, 3), np.dtype("float32"), False) and red[2][4] == a.tobytes()
