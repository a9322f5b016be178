"""Writes .pdparams files the way paddle.save does (SPEC §3).

paddle.save(state_dict, path) converts every tensor to a numpy ndarray (C order) and
pickles, with Python's own pickle, a dict ``key -> ndarray`` followed by one extra entry
``"StructuredToParameterName@@"`` mapping each key to the parameter's internal name
(a str). Protocol 4 since Paddle 2.1; protocol 2 from Paddle 2.0 / 1.8.

    write_pdparams(path, state, protocol=4, prefix="", extra=None, dtype=None)

``state``: mapping key -> array-like (kept in its order). ``prefix`` is prepended to the
backbone keys (``"backbone."`` for a full detector checkpoint). ``extra``: more entries
(e.g. fake ``neck.*`` / ``yolo_head.*`` arrays), written after the backbone's, unprefixed.
``dtype``: convert every array (float64 / float16 files for the conversion tests).
"""
from __future__ import annotations

import collections
import pickle
import re
from typing import Dict, Mapping, Optional

import numpy as np

NAME_TABLE_KEY = "StructuredToParameterName@@"


def paddle_param_names(keys) -> Dict[str, str]:
    """Plausible Paddle internal names (conv2d_3.w_0, batch_norm2d_3.w_1, ...) for keys."""
    counters: Dict[str, int] = collections.defaultdict(int)
    layer_ids: Dict[str, str] = {}
    suffix_of = {"weight": "w_0", "bias": "b_0", "_mean": "w_1", "_variance": "w_2"}
    names = {}
    for key in keys:
        layer, _, leaf = key.rpartition(".")
        if layer.endswith(".bn") or layer == "bn":
            kind = "batch_norm2d"
        elif layer.endswith(".conv") or layer.endswith(".fc") or layer in ("conv", "fc"):
            kind = "conv2d"
        elif leaf == "alpha":
            kind = "create_parameter"
            layer = key
        else:
            kind = re.sub(r"[^a-z0-9]+", "_", layer.split(".")[0].lower()) or "param"
        if layer not in layer_ids:
            layer_ids[layer] = f"{kind}_{counters[kind]}"
            counters[kind] += 1
        names[key] = f"{layer_ids[layer]}.{suffix_of.get(leaf, 'w_0')}"
    return names


def build_saved_dict(state: Mapping[str, object], prefix: str = "",
                     extra: Optional[Mapping[str, object]] = None,
                     dtype=None) -> "collections.OrderedDict[str, object]":
    """The object paddle.save pickles: arrays (C order) then the name table."""
    out: "collections.OrderedDict[str, object]" = collections.OrderedDict()
    for key, value in state.items():
        a = np.asarray(value)
        out[prefix + key] = np.ascontiguousarray(a.astype(dtype) if dtype is not None else a)
    for key, value in (extra or {}).items():
        a = np.asarray(value)
        out[key] = np.ascontiguousarray(a.astype(dtype) if dtype is not None else a)
    out[NAME_TABLE_KEY] = paddle_param_names(list(out.keys()))
    # paddle.save builds a plain dict
    return dict(out)


def write_pdparams(path, state: Mapping[str, object], protocol: int = 4, prefix: str = "",
                   extra: Optional[Mapping[str, object]] = None, dtype=None) -> dict:
    """Writes ``state`` to ``path`` like paddle.save; returns the pickled dict."""
    if protocol not in (2, 3, 4):
        raise ValueError("paddle.save uses protocol 2..4")
    obj = build_saved_dict(state, prefix=prefix, extra=extra, dtype=dtype)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return obj


def read_pdparams(path) -> dict:
    """Reads a file back with Python's pickle (trusted test files only)."""
    with open(path, "rb") as f:
        return pickle.load(f)


def fake_detector_extras(seed: int = 0, with_aux: bool = False) -> "collections.OrderedDict[str, np.ndarray]":
    """A few neck.* / yolo_head.* (and aux_*) entries of a full PP-YOLOE checkpoint."""
    rng = np.random.default_rng(seed)
    shapes = [
        ("neck.fpn_stages.0.0.conv1.conv.weight", (192, 512, 1, 1)),
        ("neck.fpn_stages.0.0.conv1.bn.weight", (192,)),
        ("neck.fpn_stages.0.0.conv1.bn.bias", (192,)),
        ("neck.fpn_stages.0.0.conv1.bn._mean", (192,)),
        ("neck.fpn_stages.0.0.conv1.bn._variance", (192,)),
        ("neck.fpn_routes.0.conv.weight", (96, 192, 1, 1)),
        ("yolo_head.stem_cls.0.fc.weight", (384, 384, 1, 1)),
        ("yolo_head.stem_cls.0.fc.bias", (384,)),
        ("yolo_head.pred_cls.0.weight", (80, 384, 3, 3)),
        ("yolo_head.pred_cls.0.bias", (80,)),
        ("yolo_head.pred_reg.0.weight", (68, 384, 3, 3)),
        ("yolo_head.pred_reg.0.bias", (68,)),
        ("yolo_head.proj_conv.weight", (1, 17, 1, 1)),
    ]
    if with_aux:
        shapes += [("aux_neck.fpn_routes.0.conv.weight", (96, 192, 1, 1)),
                   ("aux_head.pred_cls.0.bias", (80,))]
    return collections.OrderedDict(
        (k, rng.standard_normal(s).astype(np.float32)) for k, s in shapes)
