"""Training (src/train, `cspresnet train`) against PyTorch on the port in tests/ref.

The C side runs through build/tests/test_train (tests/c/test_train.c), a driver of the
public trainer API: it loads a .pdparams file, trains the model + built-in linear head
for a few steps on given batches and writes the losses, the learning rates and every
tensor afterwards. The reference builds the same network from tests/ref (BN in train
mode: batch mean and biased variance, running statistics r = 0.9 r + 0.1 batch),
attaches nn.Linear to the pooled last stage with the driver's initial head, and uses
torch.optim.SGD (momentum; weight_decay = Paddle's L2Decay added to the gradient) with
BN weight/bias in a group without decay, or torch.optim.AdamW; schedules are
torch's OneCycleLR and a LambdaLR of PaddleDetection's LinearWarmup + CosineDecay.
Updates are compared as deltas (new - old), so a wrong decay rule cannot hide in the
size of the weights.
"""
from __future__ import annotations

import math
import os
import subprocess
import types

import numpy as np
import pytest
import torch

import cspresnet_torch as ref
import pdparams_writer as pdw
from conftest import compare, describe_proc, get_build_dir, run_cli

DRIVER = str(get_build_dir() / "tests" / "test_train")
TINY = dict(layers=(1, 1, 1, 1), channels=(8, 8, 16, 16, 32), return_idx=(3,))
CFG = ref.Config(**TINY, use_alpha=True)
FMNIST = "/usr/share/datasets/fashion-mnist"


def run_driver(args):
    proc = subprocess.run([DRIVER] + [str(a) for a in args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, describe_proc(proc)
    return proc


def make_case(tmp_path, cfg=CFG, n=4, size=19, batches=1, seed=5):
    state = ref.random_state(cfg.build(), seed)
    pdw.write_pdparams(tmp_path / "w.pdparams", state)
    rng = np.random.default_rng(seed)
    shape = (batches, n, 3, size, size) if batches > 1 else (n, 3, size, size)
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.integers(0, 10, size=shape[:-3]).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    return state, x, y


def c_run(tmp_path, name, opts):
    out = tmp_path / name
    run_driver([tmp_path / "w.pdparams", tmp_path / "x.npy", tmp_path / "y.npy", out] + opts)
    params = {p.name[:-4]: np.load(p) for p in (out / "params").glob("*.npy")}
    return dict(out=out, losses=np.load(out / "losses.npy"), lrs=np.load(out / "lrs.npy"), params=params,
                head_w=np.load(out / "head_weight.npy"), head_b=np.load(out / "head_bias.npy"),
                head0_w=np.load(out / "head0_weight.npy"), head0_b=np.load(out / "head0_bias.npy"))


def train_bn_forward(self, x):
    """paddle BatchNorm2D in train mode: batch statistics, running update momentum 0.9."""
    mean = x.mean(dim=(0, 2, 3))
    var = ((x - mean.view(1, -1, 1, 1)) ** 2).mean(dim=(0, 2, 3))
    with torch.no_grad():
        self._mean.mul_(0.9).add_(0.1 * mean)
        self._variance.mul_(0.9).add_(0.1 * var)
    shape = (1, -1, 1, 1)
    return ((x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
            * self.weight.view(shape) + self.bias.view(shape))


class Net(torch.nn.Module):
    def __init__(self, cfg, state, head_w, head_b, train_bn, dtype):
        super().__init__()
        self.backbone = cfg.build().to(dtype)
        ref.load_numpy_state(self.backbone, state)
        if train_bn:
            for m in self.backbone.modules():
                if isinstance(m, ref.BatchNorm2D):
                    m.forward = types.MethodType(train_bn_forward, m)
        self.fc = torch.nn.Linear(head_w.shape[1], head_w.shape[0]).to(dtype)
        with torch.no_grad():
            self.fc.weight.copy_(torch.from_numpy(head_w))
            self.fc.bias.copy_(torch.from_numpy(head_b))

    def forward(self, x):
        return self.fc(self.backbone(x)[-1].mean(dim=(2, 3)))


def schedule_lambda(kind, total, warmup=0, factor=0.0, base=1.0, min_lr=0.0):
    """PaddleDetection's LinearWarmup + CosineDecay (absolute step over max_iters)."""
    def f(t):
        if t < warmup:
            return factor + (1 - factor) * t / warmup
        t = min(t, total)
        return (min_lr + (base - min_lr) * 0.5 * (math.cos(t * math.pi / total) + 1)) / base
    return f


def torch_run(state, x, y, head_w, head_b, steps, optimizer="sgd", lr=0.1, momentum=0.9, wd=5e-4,
              schedule="constant", total=None, warmup=0, train_bn=True, dtype=torch.float64, cfg=CFG, eps=1e-8):
    net = Net(cfg, state, head_w, head_b, train_bn, dtype)
    decay, no_decay = [], []
    for name, p in net.named_parameters():
        (no_decay if name.endswith(".bn.weight") or name.endswith(".bn.bias") else decay).append(p)
    groups = [dict(params=decay, weight_decay=wd), dict(params=no_decay, weight_decay=0.0)]
    if optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=lr, momentum=momentum)
    else:
        opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=eps)
    if schedule == "one-cycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.3,
                                                    anneal_strategy="cos", cycle_momentum=False,
                                                    div_factor=25.0, final_div_factor=1e4)
    elif schedule == "cosine":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule_lambda("cosine", total, warmup, base=lr))
    else:
        sched = None
    losses, lrs = [], []
    xs = x if x.ndim == 5 else x[None]
    ys = y if y.ndim == 2 else y[None]
    for s in range(steps):
        xb = torch.from_numpy(xs[s % len(xs)]).to(dtype)
        yb = torch.from_numpy(ys[s % len(ys)].astype(np.int64))
        lrs.append(opt.param_groups[0]["lr"])
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(xb), yb)
        loss.backward()
        opt.step()
        if sched:
            sched.step()
        losses.append(float(loss))
    sd = {k[len("backbone."):]: v.detach().numpy() for k, v in net.state_dict().items() if k.startswith("backbone.")}
    return dict(losses=np.array(losses), lrs=np.array(lrs), params=sd,
                head_w=net.fc.weight.detach().numpy(), head_b=net.fc.bias.detach().numpy())


def compare_update(state, head0, c, t, desc, t32=None, floor=1e-4):
    """Compares new - old of every tensor (running statistics included) and the head with
    the float64 reference: within 1e-4 of max|ref|, or, where PyTorch's own float32 run
    misses that (train-mode BN sums with heavy cancellation, as in test_grad.py), within
    3x PyTorch float32's error."""
    assert set(c["params"]) == set(state), desc
    for key, old in state.items():
        rtol = floor
        if not np.any(t["params"][key] - old):  # untouched (frozen BN statistics)
            assert np.array_equal(c["params"][key], old), f"{key} changed; {desc}"
            continue
        if t32 is not None:
            d = t["params"][key] - old
            err32 = float(np.abs((t32["params"][key] - old) - d).max() / max(np.abs(d).max(), 1e-30))
            rtol = max(rtol, 3 * err32)
        compare(t["params"][key] - old, c["params"][key] - old, f"update of {key}; {desc}; rtol {rtol:.3g}",
                rtol=rtol)
    compare(t["head_w"] - head0[0], c["head_w"] - head0[0], f"update of head.weight; {desc}")
    compare(t["head_b"] - head0[1], c["head_b"] - head0[1], f"update of head.bias; {desc}")


@pytest.mark.parametrize("optimizer,wd,train_bn", [("sgd", 0.05, True), ("adamw", 0.1, True), ("sgd", 0.05, False)],
                         ids=["sgd-trainbn", "adamw-trainbn", "sgd-frozenbn"])
def test_one_step_matches_torch(tmp_path, optimizer, wd, train_bn):
    state, x, y = make_case(tmp_path, n=8, size=33)
    lr = 0.1 if optimizer == "sgd" else 0.01
    # Adam's first step is lr * g / (|g| + eps): with a tiny eps it is the sign of g, and
    # the sign of a gradient that is float32 noise is noise; eps 1e-2 (above most |g|
    # here) keeps the update continuous in g, so gradient rounding is not amplified
    eps = 1e-2
    opts = ["--optimizer", optimizer, "--lr", lr, "--wd", wd, "--eps", eps, "--steps", 1] + \
        ([] if train_bn else ["--freeze-bn"])
    c = c_run(tmp_path, "c", opts)
    t = torch_run(state, x, y, c["head0_w"], c["head0_b"], 1, optimizer=optimizer, lr=lr, wd=wd, train_bn=train_bn, eps=eps)
    t32 = torch_run(state, x, y, c["head0_w"], c["head0_b"], 1, optimizer=optimizer, lr=lr, wd=wd,
                    train_bn=train_bn, dtype=torch.float32, eps=eps)
    desc = f"{optimizer} lr {lr} wd {wd} train_bn={train_bn} {CFG.describe()} input {x.shape}"
    assert abs(c["losses"][0] - t["losses"][0]) <= 1e-5 * abs(t["losses"][0]), desc
    # AdamW divides every element by (|g| + eps): small gradients' rounding grows relative
    # to the tensor's largest update by up to max|g| / eps, hence 3e-4 there
    compare_update(state, (c["head0_w"], c["head0_b"]), c, t, desc, t32,
                   floor=3e-4 if optimizer == "adamw" else 1e-4)
    # the decay rule is visible: BN weights moved by their gradient only, conv weights also by wd
    if not train_bn:
        for key in state:
            if key.endswith("_mean") or key.endswith("_variance"):
                assert np.array_equal(c["params"][key], state[key]), f"{key} changed with frozen BN"


@pytest.mark.parametrize("schedule,opts,total,warmup", [
    ("one-cycle", [], 40, 0),
    ("cosine", ["--warmup", 7], 40, 7),
    ("one-cycle", [], 7, 0),
])
def test_schedule_matches_torch(tmp_path, schedule, opts, total, warmup):
    make_case(tmp_path, n=1, size=8)
    lr = 0.05
    c = c_run(tmp_path, "c", ["--schedule", schedule, "--total", total, "--lr", lr, "--steps", total,
                              "--lr-only"] + opts)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr, momentum=0.9)
    if schedule == "one-cycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, cycle_momentum=False)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule_lambda("cosine", total, warmup, base=lr))
    want = []
    for _ in range(total):
        want.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    want = np.array(want)
    assert np.all(np.abs(c["lrs"] - want) <= 1e-6 * lr), f"{schedule}: ours {c['lrs']} torch {want}"


def test_ten_steps_losses_match_torch(tmp_path):
    # batch 32: with small batches (6..16) train-mode BN makes ten steps chaotic enough
    # that PyTorch's own float32 run leaves 1e-4 of the float64 losses
    state, x, y = make_case(tmp_path, n=32, size=20, batches=10)
    c = c_run(tmp_path, "c", ["--lr", 0.05, "--wd", 5e-4, "--schedule", "one-cycle", "--total", 10, "--steps", 10])
    t = torch_run(state, x, y, c["head0_w"], c["head0_b"], 10, lr=0.05, wd=5e-4, schedule="one-cycle", total=10)
    rel = np.abs(c["losses"] - t["losses"]) / np.abs(t["losses"])
    assert rel.max() <= 1e-4, f"losses ours {c['losses']} torch {t['losses']} rel {rel}"
    assert np.all(np.abs(c["lrs"] - t["lrs"]) <= 1e-6 * 0.05)
    for key, v in t["params"].items():
        compare(v, c["params"][key], f"{key} after 10 steps", rtol=1e-3)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_resume_is_exact(tmp_path, optimizer):
    make_case(tmp_path, n=4, size=17, batches=3)
    base = ["--optimizer", optimizer, "--lr", 0.05 if optimizer == "sgd" else 0.01,
            "--schedule", "one-cycle", "--total", 6, "--threads", 2]
    straight = c_run(tmp_path, "straight", base + ["--steps", 6])
    ckpt = tmp_path / "half.ckpt"
    first = c_run(tmp_path, "first", base + ["--steps", 3, "--save-at", 3, ckpt])
    second = c_run(tmp_path, "second", base + ["--steps", 3, "--resume", ckpt, "--threads", 1])
    losses = np.concatenate([first["losses"], second["losses"]])
    assert losses.tobytes() == straight["losses"].tobytes(), f"{losses} vs {straight['losses']}"
    for key, v in straight["params"].items():
        assert v.tobytes() == second["params"][key].tobytes(), f"{key} differs after resume ({optimizer})"
    assert straight["head_w"].tobytes() == second["head_w"].tobytes()
    # the checkpoint holds the weights of step 3 exactly
    assert not np.array_equal(first["params"]["stages.3.conv3.conv.weight"],
                              second["params"]["stages.3.conv3.conv.weight"])


def test_checkpoint_mismatch_is_refused(tmp_path):
    make_case(tmp_path, n=2, size=17)
    ckpt = tmp_path / "sgd.ckpt"
    c_run(tmp_path, "a", ["--steps", 1, "--save-at", 1, ckpt])
    proc = subprocess.run([DRIVER, tmp_path / "w.pdparams", tmp_path / "x.npy", tmp_path / "y.npy", tmp_path / "b",
                           "--optimizer", "adamw", "--resume", ckpt], capture_output=True, text=True)
    assert proc.returncode == 1, describe_proc(proc)
    assert "sgd.ckpt" in proc.stderr and "tensors" in proc.stderr, describe_proc(proc)
    data = ckpt.read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 2])
    proc = subprocess.run([DRIVER, tmp_path / "w.pdparams", tmp_path / "x.npy", tmp_path / "y.npy", tmp_path / "c",
                           "--resume", tmp_path / "cut.ckpt"], capture_output=True, text=True)
    assert proc.returncode == 1 and "cut.ckpt" in proc.stderr, describe_proc(proc)


@pytest.mark.parametrize("recompute", [False, True], ids=["plain", "recompute"])
def test_freeze_stages_leaves_frozen_untouched(tmp_path, recompute):
    state, x, y = make_case(tmp_path, n=4, size=19)
    c = c_run(tmp_path, "c", ["--freeze", 2, "--steps", 2, "--lr", 0.1] + (["--recompute"] if recompute else []))
    frozen = [k for k in state if k.startswith("stem.") or k.startswith("stages.0.") or k.startswith("stages.1.")]
    live = [k for k in state if k.startswith("stages.2.") or k.startswith("stages.3.")]
    assert frozen and live
    for k in frozen:
        assert np.array_equal(c["params"][k], state[k]), f"frozen {k} changed"
    for k in live:
        if k.endswith("alpha") or k.endswith("_variance") or k.endswith("_mean") or "weight" in k:
            assert not np.array_equal(c["params"][k], state[k]), f"trainable {k} did not change"
    # the trainable part follows torch with the frozen part in eval mode (no grad)
    if not recompute:
        return
    plain = c_run(tmp_path, "plain", ["--freeze", 2, "--steps", 2, "--lr", 0.1])
    for k in state:
        assert plain["params"][k].tobytes() == c["params"][k].tobytes(), f"recompute changes {k}"


# ---------------------------------------------------------------- the CLI

TINY_ARCH = ["--width-mult", "0.125", "--depth-mult", "0.33"]


def cli_train(out, *extra):
    return run_cli(["train", *TINY_ARCH, "--limit-train", 256, "--limit-test", 128, "--batch", 64, "--epochs", 1,
                    "--threads", 2, "--out", out, *extra])


def test_cli_train_writes_loadable_checkpoints(tmp_path):
    assert os.path.isdir(FMNIST), "install dataset-fashion-mnist (scripts/install-deps.sh test)"
    out = tmp_path / "run"
    proc = cli_train(out)
    assert proc.returncode == 0, describe_proc(proc)
    assert "test accuracy" in proc.stdout and "images/s" in proc.stdout, describe_proc(proc)
    for f in ["checkpoint.ckpt", "model.pdparams", "model.safetensors", "head.weight.npy", "head.bias.npy", "log.csv"]:
        assert (out / f).is_file(), f"{f} missing; {describe_proc(proc)}"
    rows = (out / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and len(rows) == 1 + 4, rows
    assert all(math.isfinite(float(r.split(",")[3])) for r in rows[1:])
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    outs = {}
    for fmt in ["pdparams", "safetensors"]:
        p = run_cli(["infer", "--weights", out / f"model.{fmt}", "--out", tmp_path / fmt, tmp_path / "x.npy"])
        assert p.returncode == 0, describe_proc(p)
        outs[fmt] = np.load(tmp_path / fmt / "stage3.npy")
    assert outs["pdparams"].tobytes() == outs["safetensors"].tobytes()
    # the saved backbone is the trained one: the pdparams file differs from the random init
    saved = pdw.read_pdparams(out / "model.pdparams")
    assert any("_mean" in k and np.any(np.asarray(v) != 0) for k, v in saved.items())


def test_cli_resume_is_exact(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    pa = cli_train(a)
    assert pa.returncode == 0, describe_proc(pa)
    pb = cli_train(b, "--stop-after", 2)
    assert pb.returncode == 0 and "--resume" in pb.stdout, describe_proc(pb)
    assert len((b / "log.csv").read_text().splitlines()) == 1 + 2
    pc = cli_train(b, "--resume", b / "checkpoint.ckpt", "--threads", 1)
    assert pc.returncode == 0, describe_proc(pc)
    assert (a / "log.csv").read_text() == (b / "log.csv").read_text()
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert (a / "head.weight.npy").read_bytes() == (b / "head.weight.npy").read_bytes()


def test_cli_train_errors(tmp_path):
    p = run_cli(["train", "--out", tmp_path / "o"])
    assert p.returncode == 2 and "--weights" in p.stderr, describe_proc(p)
    p = run_cli(["train", "--arch", "s", "--dataset", "cifar10"])
    assert p.returncode == 2 and "cifar10" in p.stderr, describe_proc(p)
    p = run_cli(["train", *TINY_ARCH, "--data-dir", tmp_path / "nothing", "--out", tmp_path / "o"])
    assert p.returncode == 1 and "train-images-idx3-ubyte.gz" in p.stderr, describe_proc(p)
    p = run_cli(["train", "--help"])
    assert p.returncode == 0 and "--resume" in p.stdout


def test_ctrl_c_stops_after_the_step_and_keeps_a_valid_checkpoint(tmp_path):
    """SIGINT mid-run: exit 130, a checkpoint of the last finished step, and --resume
    from it ends with exactly the files of an uninterrupted run."""
    from conftest import get_cli_path
    import signal
    import time
    straight = tmp_path / "straight"
    p = cli_train(straight, "--limit-train", 1024)
    assert p.returncode == 0, describe_proc(p)

    out = tmp_path / "run"
    args = [str(get_cli_path()), "train", *TINY_ARCH, "--limit-train", 1024, "--limit-test", 128,
            "--batch", 64, "--epochs", 1, "--threads", 2, "--out", out]
    proc = subprocess.Popen([str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    # plain (non-TTY) progress lines appear every spe/10 steps: wait for the first one
    header = []
    while True:
        line = proc.stdout.readline()
        assert line, f"training ended before printing progress: {header}"
        if line.startswith("epoch "):
            break
        header.append(line)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, f"exit {proc.returncode}\n{stdout}\n{stderr}"
    assert "interrupted after step" in stderr and "--resume" in stderr, stderr
    step = int(stderr.split("interrupted after step ")[1].split(";")[0])
    assert 1 <= step < 16, stderr
    rows = (out / "log.csv").read_text().splitlines()
    assert len(rows) == 1 + step, rows
    # the checkpointed weights load
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    q = run_cli(["infer", "--weights", out / "model.safetensors", "--input", tmp_path / "x.npy",
                 "--out", tmp_path / "o", "-q"])
    assert q.returncode == 0, describe_proc(q)
    assert not list(out.glob("*.tmp.*")), list(out.iterdir())
    r = cli_train(out, "--limit-train", 1024, "--resume", out / "checkpoint.ckpt")
    assert r.returncode == 0, describe_proc(r)
    assert (out / "log.csv").read_text() == (straight / "log.csv").read_text()
    assert (out / "model.safetensors").read_bytes() == (straight / "model.safetensors").read_bytes()
