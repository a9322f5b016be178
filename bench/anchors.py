"""anchors.py - the ONNX Runtime and PyTorch anchors of the benchmarks, built as their users build them.

The port in tests/ref writes BN as arithmetic, (x - _mean) / sqrt(_variance + eps) * weight + bias,
so that its state_dict is Paddle's. Exported to ONNX that is Sub/Sqrt/Div/Mul/Add, which ONNX Runtime
does not fold into the convs, and in PyTorch it runs as a chain of elementwise kernels. A user's
export (paddle2onnx, or torch.onnx.export of nn.BatchNorm2d) writes BatchNormalization, which ORT
fuses into the preceding Conv; a PyTorch user runs nn.BatchNorm2d (F.batch_norm). Here the port's
module tree is kept (its convs, activations, ESE and concat are already the standard modules) and
every port BN is replaced by nn.BatchNorm2d holding the same weight, bias and running statistics:

  standard(port)             eval anchor: nn.BatchNorm2d, eval mode
  standard(port, train=True) train anchor: PaddleMomentumBN (nn.BatchNorm2d, momentum 0.1 = Paddle's
                             0.9, running variance from the biased batch variance as Paddle and the
                             port's train-mode BN do)
  export_onnx(...)           torch.onnx.export keeping BatchNormalization nodes (as paddle2onnx writes
                             them; torch's default export folds BN into the Conv weights itself)
  check_onnx_graph(...)      the exported graph has one BatchNormalization per BN and no Sub/Div/Sqrt
  torch_inference(...)       eager, frozen (trace + freeze) or optimized (+ optimize_for_inference)
  check_train_grads()        one train step of the standard modules against the port's train-mode BN

Each check raises AnchorError with the numbers when it fails; run this file to run the checks that
need no ONNX Runtime (the eval and train equivalences on small inputs).
"""
import collections
import copy
import os
import sys
import types

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [p for p in (os.path.join(ROOT, "tests", "ref"), os.path.join(ROOT, "tests")) if p not in sys.path]
import cspresnet_torch as ref  # noqa: E402

RTOL = 1e-4  # max|out - ref| <= RTOL * max|ref|, per output, as tests/conftest.py compare()
# ops that only the port's arithmetic BN puts into the graph (swish, ESE and the shortcuts have none)
PORT_BN_OPS = ("Sub", "Div", "Sqrt")


class AnchorError(RuntimeError):
    pass


class PaddleMomentumBN(nn.BatchNorm2d):
    """nn.BatchNorm2d whose running variance follows Paddle's BatchNorm2D in train mode:
    r = 0.9 r + 0.1 var_batch with the biased batch variance. F.batch_norm folds in the unbiased
    one (times n/(n-1)); the per-channel correction afterwards costs O(C), nothing next to the
    normalisation itself. Eval mode is nn.BatchNorm2d's."""

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        n = x.numel() // x.shape[1]
        # F.batch_norm updates its running_var argument in place and autograd keeps it for the
        # backward, so it gets a copy, from which running_var is then set
        var = self.running_var.clone()
        y = F.batch_norm(x, self.running_mean, var, self.weight, self.bias, True, self.momentum, self.eps)
        with torch.no_grad():
            # var = (1-m) r + m v n/(n-1); Paddle's r' = (1-m) r + m v = var - (var - (1-m) r) / n
            self.running_var.copy_(var - (var - (1.0 - self.momentum) * self.running_var) / n)
        return y


def standard(port, train=False, inplace=False):
    """A copy of ``port`` (a tests/ref CSPResNet; ``inplace``: port itself, so that a process that
    reports its peak RSS holds the weights once) with every ref.BatchNorm2D replaced by
    nn.BatchNorm2d (``train``: PaddleMomentumBN) carrying its weight, bias, _mean, _variance and
    eps. Same dtype; mode: eval unless ``train``."""
    net = port if inplace else copy.deepcopy(port)
    count = 0
    for mod in list(net.modules()):
        for name, child in list(mod.named_children()):
            if not isinstance(child, ref.BatchNorm2D):
                continue
            bn = (PaddleMomentumBN if train else nn.BatchNorm2d)(child.weight.numel(), eps=child.eps, momentum=0.1)
            bn = bn.to(child.weight.dtype)
            with torch.no_grad():
                bn.weight.copy_(child.weight)
                bn.bias.copy_(child.bias)
                bn.running_mean.copy_(child._mean)
                bn.running_var.copy_(child._variance)
            setattr(mod, name, bn)
            count += 1
    if count == 0 or any(isinstance(m, ref.BatchNorm2D) for m in net.modules()):
        raise AnchorError(f"standard(): replaced {count} BN layers, port BN left behind or none found")
    net.train(train)
    return net


def bn_count(port):
    return sum(isinstance(m, (ref.BatchNorm2D, nn.BatchNorm2d)) for m in port.modules())


class _Tuple(nn.Module):
    """Returns the backbone's list of stage outputs as a tuple (what tracing and export want)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return tuple(self.net(x))


def export_onnx(net, path, output_names, keep_bn=True, opset=13, size=640):
    """torch.onnx.export of ``net`` (eval mode), input 3 x size x size with a dynamic batch. ``keep_bn``: training=PRESERVE,
    so that nn.BatchNorm2d is written as BatchNormalization (torch's default EVAL export folds it
    into the Conv weights itself; the port's arithmetic BN stays arithmetic either way)."""
    net.eval()
    kw = dict(training=torch.onnx.TrainingMode.PRESERVE) if keep_bn else {}
    torch.onnx.export(_Tuple(net), torch.zeros(1, 3, size, size), path, opset_version=opset, input_names=["x"],
                      output_names=list(output_names), dynamic_axes={"x": {0: "n"}}, **kw)


def graph_ops(path, check=True):
    """Op type -> count of the graph in ``path``; ``check``: onnx.checker first (not for ORT's own
    optimized graphs, which hold its contrib ops)."""
    import onnx  # Debian python3-onnx (scripts/install-deps.sh bench)
    model = onnx.load(path)
    if check:
        onnx.checker.check_model(model)
    return collections.Counter(n.op_type for n in model.graph.node)


def check_onnx_graph(path, n_bn, own=None):
    """The standard export: exactly ``n_bn`` BatchNormalization nodes and none of the port's BN
    arithmetic beyond ``own`` (op -> count the network itself has: the detector's box decoding
    is one Sub, anchor points - distances). Returns the op counts."""
    ops = graph_ops(path)
    own = own or {}
    stray = {op: ops[op] for op in PORT_BN_OPS if ops[op] > own.get(op, 0)}
    if ops["BatchNormalization"] != n_bn or stray:
        raise AnchorError(f"{path}: {ops['BatchNormalization']} BatchNormalization nodes for {n_bn} BN layers, "
                          f"port BN ops {stray or 'none'}; all ops {dict(ops)}")
    return ops


def rel_err(out, want):
    """max|out - want| / max|want| (float64)."""
    out = np.asarray(out, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if out.shape != want.shape:
        raise AnchorError(f"shape {out.shape} != reference {want.shape}")
    scale = float(np.abs(want).max())
    if not np.all(np.isfinite(out)) or scale == 0.0:
        raise AnchorError("non-finite output or all-zero reference")
    return float(np.abs(out - want).max()) / scale


def check_close(outs, wants, what, rtol=RTOL):
    """Every output within rtol relative of its reference; returns the worst relative error."""
    if len(outs) != len(wants):
        raise AnchorError(f"{what}: {len(outs)} outputs, reference has {len(wants)}")
    errs = [rel_err(o, w) for o, w in zip(outs, wants)]
    if max(errs) > rtol:
        raise AnchorError(f"{what}: relative error per output {['%.3g' % e for e in errs]} > {rtol:g}")
    return max(errs)


TORCH_MODES = ("eager", "frozen", "optimized")


def torch_inference(net, x, mode):
    """A callable running ``net`` (standard modules, eval) on tensors like ``x``:
    eager (the module under no_grad), bf16 (eager under CPU autocast to bfloat16: oneDNN's
    bf16 convolutions, AMX where the CPU has it), frozen (torch.jit.trace + torch.jit.freeze: constants
    folded, Conv+BN fused) or optimized (trace + torch.jit.optimize_for_inference, which freezes
    and may move convs to oneDNN). Returns fn(x) -> tuple of outputs."""
    net.eval()
    if mode == "eager":
        def run(t):
            with torch.no_grad():
                return tuple(net(t))
        return run
    if mode == "bf16":   # bench/lowp_bench.py: CPU autocast, outputs back to float32
        def run(t):
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                return tuple(o.float() for o in net(t))
        return run
    if mode not in TORCH_MODES:
        raise AnchorError(f"unknown torch mode {mode!r}; known: {TORCH_MODES}")
    with torch.no_grad():
        traced = torch.jit.trace(_Tuple(net).eval(), x)
        script = torch.jit.freeze(traced) if mode == "frozen" else torch.jit.optimize_for_inference(traced)

    def run(t):
        with torch.no_grad():
            return tuple(script(t))
    return run


def check_eval(arch="s", size=96, seed=1, modes=TORCH_MODES):
    """The standard eval network (each torch mode) against the port, float32, on a small input.
    Returns {mode: relative error}."""
    cfg = ref.preset(arch)
    port = cfg.build()
    state = ref.random_state(port, seed=seed)
    ref.load_numpy_state(port, state)
    port.eval()
    x = torch.from_numpy(np.random.default_rng(seed).random((2, 3, size, size), dtype=np.float32))
    want = ref.reference_outputs(cfg, state, x.numpy())  # float64
    net = standard(port)
    return {m: check_close([o.numpy() for o in torch_inference(net, x, m)(x)], want, f"torch {m} {arch}")
            for m in modes}


def check_train_grads(seed=3, dtype=torch.float64, rtol=1e-6):
    """One forward + backward of CSPResNet-s + linear head (batch 4, 64x64, train mode) with
    PaddleMomentumBN against the port with tests/test_train.py's train-mode BN: loss, every
    gradient and the running statistics afterwards, each within rtol of its largest value.
    Returns the worst relative error."""
    from test_train import train_bn_forward  # the port's train-mode BN, as the suite and the old bench run it
    cfg = ref.preset("s", return_idx=(3,))
    port = cfg.build().to(dtype)
    ref.load_numpy_state(port, ref.random_state(cfg.build(), seed))
    std = standard(port, train=True)
    for m in port.modules():
        if isinstance(m, ref.BatchNorm2D):
            m.forward = types.MethodType(train_bn_forward, m)
    port.train()
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.standard_normal((4, 3, 64, 64))).to(dtype)
    y = torch.from_numpy(rng.integers(0, 10, 4))
    head = torch.nn.Linear(port.channels[-1], 10).to(dtype)

    def step(net):
        h = copy.deepcopy(head)
        loss = torch.nn.functional.cross_entropy(h(net(x)[-1].mean(dim=(2, 3))), y)
        net.zero_grad()
        loss.backward()
        grads = {n: p.grad.detach().clone() for n, p in net.named_parameters()}
        grads.update({"head." + n: p.grad.detach().clone() for n, p in h.named_parameters()})
        return float(loss), grads

    loss_p, grads_p = step(port)
    loss_s, grads_s = step(std)
    worst = abs(loss_p - loss_s) / abs(loss_p)
    if set(grads_p) != set(grads_s):
        raise AnchorError(f"train: parameter names differ: {sorted(set(grads_p) ^ set(grads_s))[:5]}")
    for name, g in grads_p.items():
        worst = max(worst, rel_err(grads_s[name], g))
    port_bn = {n: m for n, m in port.named_modules() if isinstance(m, ref.BatchNorm2D)}
    std_bn = {n: m for n, m in std.named_modules() if isinstance(m, nn.BatchNorm2d)}
    if set(port_bn) != set(std_bn) or not port_bn:
        raise AnchorError("train: BN layers differ between the port and the standard network")
    for name, m in port_bn.items():
        worst = max(worst, rel_err(std_bn[name].running_mean, m._mean), rel_err(std_bn[name].running_var, m._variance))
    if worst > rtol:
        raise AnchorError(f"train: standard BN differs from the port's by {worst:.3g} relative (> {rtol:g})")
    return worst


if __name__ == "__main__":
    print("eval, standard modules vs port:", {k: f"{v:.2e}" for k, v in check_eval().items()})
    print(f"train step, F.batch_norm vs port's train BN: worst relative difference {check_train_grads():.2e}")
