#!/usr/bin/python3
"""train_bench.py - one training step of CSPResNet-s + linear head (batch 16, 224x224,
SGD momentum 0.9, weight decay 5e-4, train-mode BN), ours against PyTorch, at 1 and 2
threads. Not part of the test suite.

Ours runs through build/tests/test_train (the public trainer API; it reports the wall
time of every step: forward, backward, optimizer). PyTorch runs in a subprocess with
torch.set_num_threads, on the network as PyTorch users train it (bench/anchors.py): the
port's module tree with F.batch_norm (nn.BatchNorm2d, train mode, Paddle's momentum 0.9
and biased running variance). Before timing, one step of that network is checked against
the port with tests/test_train.py's arithmetic train-mode BN (loss, every gradient, the
running statistics, float64, 1e-6 relative). The runs are interleaved (ours 1t, torch 1t,
ours 2t, torch 2t, repeated --rounds times); each reports the median of --steps timed
steps after one warm-up step; the table gives the median over rounds and the ratio
torch / ours. --old-anchor (or BENCH_OLD_ANCHOR=1) also times PyTorch on the port's
arithmetic BN in the same rounds and adds its columns.

Usage: /usr/bin/python3 bench/train_bench.py [--rounds 2] [--steps 3] [--old-anchor] [--out bench/train_results.md]
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [os.path.join(ROOT, "tests", "ref"), os.path.join(ROOT, "tests")]

TORCH_STEP = r"""
import sys, time, json, types, statistics
sys.path[:0] = [{ref!r}, {tests!r}, {bench!r}]
import numpy as np, torch
import anchors
import cspresnet_torch as ref
from test_train import Net
torch.set_num_threads({threads})
state = dict(np.load({state!r}))
x = torch.from_numpy(np.load({x!r})); y = torch.from_numpy(np.load({y!r}).astype(np.int64))
cfg = ref.preset("s", return_idx=(3,))
hw = np.load({hw!r}); hb = np.load({hb!r})
net = Net(cfg, state, hw, hb, {bn!r} == "port", torch.float32)
if {bn!r} == "standard":
    net.backbone = anchors.standard(net.backbone, train=True)
decay = [p for n, p in net.named_parameters() if not (n.endswith(".bn.weight") or n.endswith(".bn.bias"))]
nodecay = [p for n, p in net.named_parameters() if n.endswith(".bn.weight") or n.endswith(".bn.bias")]
opt = torch.optim.SGD([dict(params=decay, weight_decay=5e-4), dict(params=nodecay, weight_decay=0.0)],
                      lr=0.01, momentum=0.9)
times = []
for i in range({steps} + 1):
    t0 = time.perf_counter()
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(net(x), y)
    loss.backward()
    opt.step()
    times.append(time.perf_counter() - t0)
print(json.dumps(dict(median=statistics.median(times[1:]), version=torch.__version__)))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(HERE, "train_results.md"))
    ap.add_argument("--old-anchor", action="store_true",
                    default=os.environ.get("BENCH_OLD_ANCHOR", "") not in ("", "0"),
                    help="also time PyTorch on the port's arithmetic BN")
    a = ap.parse_args()
    import numpy as np
    sys.path.insert(0, HERE)
    import anchors
    import cspresnet_torch as ref
    import pdparams_writer as pdw

    try:
        err = anchors.check_train_grads()
    except anchors.AnchorError as e:
        raise SystemExit(f"anchor check failed: {e}")
    print(f"F.batch_norm step vs the port's train BN (float64): worst relative difference {err:.1e}", flush=True)

    build = os.environ.get("CSPRESNET_BUILD", os.path.join(ROOT, "build"))
    driver = os.path.join(build, "tests", "test_train")
    work = tempfile.mkdtemp(prefix="train_bench.")
    cfg = ref.preset("s", return_idx=(3,))
    state = ref.random_state(cfg.build(), 0)
    pdw.write_pdparams(os.path.join(work, "w.pdparams"), state)
    np.savez(os.path.join(work, "state.npz"), **state)
    rng = np.random.default_rng(0)
    np.save(os.path.join(work, "x.npy"), rng.standard_normal((16, 3, 224, 224)).astype(np.float32))
    np.save(os.path.join(work, "y.npy"), rng.integers(0, 10, 16).astype(np.float32))

    def ours(threads):
        out = os.path.join(work, f"ours{threads}")
        subprocess.run([driver, os.path.join(work, "w.pdparams"), os.path.join(work, "x.npy"),
                        os.path.join(work, "y.npy"), out, "--steps", str(a.steps + 1), "--threads", str(threads),
                        "--lr", "0.01", "--wd", "5e-4"], check=True, capture_output=True)
        return float(np.median(np.load(os.path.join(out, "seconds.npy"))[1:]))

    def torch_(threads, bn):
        code = TORCH_STEP.format(ref=os.path.join(ROOT, "tests", "ref"), tests=os.path.join(ROOT, "tests"),
                                 bench=HERE, bn=bn, threads=threads, state=os.path.join(work, "state.npz"),
                                 x=os.path.join(work, "x.npy"), y=os.path.join(work, "y.npy"),
                                 hw=os.path.join(work, "ours1", "head0_weight.npy"),
                                 hb=os.path.join(work, "ours1", "head0_bias.npy"), steps=a.steps)
        p = subprocess.run(["/usr/bin/python3", "-c", code], check=True, capture_output=True, text=True)
        return json.loads(p.stdout.strip().splitlines()[-1])

    kinds = ["ours", "torch"] + (["torch_port"] if a.old_anchor else [])
    res = {(k, t): [] for k in kinds for t in (1, 2)}
    version = "?"
    for r in range(a.rounds):
        for t in (1, 2):
            for k in kinds:
                if k == "ours":
                    res[(k, t)].append(ours(t))
                else:
                    j = torch_(t, "port" if k == "torch_port" else "standard")
                    version = j["version"]
                    res[(k, t)].append(j["median"])
            print(f"round {r + 1} threads {t}: " + ", ".join(f"{k} {res[(k, t)][-1] * 1e3:.0f} ms" for k in kinds),
                  flush=True)
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    lines = ["# One training step: CSPResNet-s + linear head, batch 16, 224x224, SGD", "",
             f"{datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, {cpu}, {os.cpu_count()} CPUs, "
             f"{platform.platform()}; PyTorch {version} (nn.BatchNorm2d / F.batch_norm, train mode, eager); "
             f"{a.rounds} interleaved rounds x {a.steps} steps "
             f"(median), load average {os.getloadavg()[0]:.1f} at the end (shared machine)", ""]
    if a.old_anchor:
        lines += ["| threads | cspresnet (ms) | PyTorch (ms) | PyTorch / cspresnet | PyTorch, port's BN (ms) "
                  "| port's BN / cspresnet |", "|---|---|---|---|---|---|"]
    else:
        lines += ["| threads | cspresnet (ms) | PyTorch (ms) | PyTorch / cspresnet |", "|---|---|---|---|"]
    for t in (1, 2):
        o, p = statistics.median(res[("ours", t)]), statistics.median(res[("torch", t)])
        row = f"| {t} | {o * 1e3:.0f} | {p * 1e3:.0f} | {p / o:.2f}x |"
        if a.old_anchor:
            q = statistics.median(res[("torch_port", t)])
            row += f" {q * 1e3:.0f} | {q / o:.2f}x |"
        lines.append(row)
    text = "\n".join(lines) + "\n"
    with open(a.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
