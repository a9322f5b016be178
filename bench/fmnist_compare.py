#!/usr/bin/env python3
"""Fashion-MNIST fine-tune, ours vs PyTorch 1.13, the issue's recipe (not part of the suite).

CSPResNet-s, random init, linear head on the global average pool of stage 3; 28x28 padded
to 32x32, gray to 3 channels, (x/255 - 0.2860) / 0.3530; batch 64 (last partial batch
dropped), SGD momentum 0.9, weight decay 5e-4, one-cycle to lr 0.05 (torch OneCycleLR).
PyTorch applies weight decay to every parameter (plain torch.optim.SGD); ours follows
upstream (no decay on BN weight/bias). PyTorch trains the network as its users do
(bench/anchors.py: nn.BatchNorm2d / F.batch_norm, Paddle's momentum and running variance);
--old-anchor trains the port's arithmetic BN instead. Runs ours first, then PyTorch,
sequentially, each on --threads threads, and prints test accuracy and seconds per epoch.

    /usr/bin/python3 bench/fmnist_compare.py --epochs 3 --threads 2
"""
import argparse
import gzip
import os
import re
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = "/usr/share/datasets/fashion-mnist"


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def prep(images):
    x = np.full((len(images), 32, 32), (0.0 - 0.2860) / 0.3530, np.float32)
    x[:, 2:30, 2:30] = (images.astype(np.float32) / 255.0 - 0.2860) / 0.3530
    return np.repeat(x[:, None], 3, axis=1)


def ours(a):
    out = os.path.join(HERE, "work", "fmnist_ours")
    cmd = [os.path.join(ROOT, "build", "cspresnet"), "train", "--arch", "s", "--epochs", str(a.epochs),
           "--threads", str(a.threads), "--out", out]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t0
    if p.returncode != 0:
        sys.exit(p.stderr)
    accs = [float(m) for m in re.findall(r"test accuracy ([0-9.]+) \(", p.stdout)]
    return accs, wall


def torch_run(a):
    import torch
    sys.path.insert(0, os.path.join(ROOT, "tests", "ref"))
    import cspresnet_torch as ref
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    xtr, ytr = prep(idx(f"{DATA}/train-images-idx3-ubyte.gz")), idx(f"{DATA}/train-labels-idx1-ubyte.gz")
    xte, yte = prep(idx(f"{DATA}/t10k-images-idx3-ubyte.gz")), idx(f"{DATA}/t10k-labels-idx1-ubyte.gz")
    backbone = ref.preset("s").build()
    if not a.old_anchor:
        sys.path.insert(0, HERE)
        import anchors
        backbone = anchors.standard(backbone, train=True)
    else:
        def bn_forward(self, x):  # Paddle's BatchNorm2D: batch statistics in train mode
            shape = (1, -1, 1, 1)
            if not self.training:
                return ((x - self._mean.view(shape)) / torch.sqrt(self._variance.view(shape) + self.eps)
                        * self.weight.view(shape) + self.bias.view(shape))
            mean = x.mean(dim=(0, 2, 3))
            var = ((x - mean.view(shape)) ** 2).mean(dim=(0, 2, 3))
            with torch.no_grad():
                self._mean.mul_(0.9).add_(0.1 * mean)
                self._variance.mul_(0.9).add_(0.1 * var)
            return ((x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
                    * self.weight.view(shape) + self.bias.view(shape))

        import types
        for m in backbone.modules():
            if isinstance(m, ref.BatchNorm2D):
                m.forward = types.MethodType(bn_forward, m)
    head = torch.nn.Linear(512, 10)
    params = list(backbone.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)
    spe = len(xtr) // 64
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=spe * a.epochs)
    accs, t0 = [], time.time()
    rng = np.random.default_rng(0)
    for ep in range(a.epochs):
        backbone.train()
        perm = rng.permutation(len(xtr))
        for b in range(spe):
            i = perm[b * 64:(b + 1) * 64]
            x, y = torch.from_numpy(xtr[i]), torch.from_numpy(ytr[i].astype(np.int64))
            loss = torch.nn.functional.cross_entropy(head(backbone(x)[-1].mean((2, 3))), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        backbone.eval()
        hits = 0
        with torch.no_grad():
            for b in range(0, len(xte), 256):
                logits = head(backbone(torch.from_numpy(xte[b:b + 256]))[-1].mean((2, 3)))
                hits += int((logits.argmax(1).numpy() == yte[b:b + 256]).sum())
        accs.append(hits / len(xte))
        print(f"torch epoch {ep + 1}: test accuracy {accs[-1]:.4f}", flush=True)
    return accs, time.time() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--torch-only", action="store_true")
    ap.add_argument("--old-anchor", action="store_true", help="PyTorch on the port's arithmetic BN")
    a = ap.parse_args()
    if a.torch_only:
        ta, tw = torch_run(a)
        print(f"torch: test accuracy per epoch {ta}, {tw:.0f} s ({tw / a.epochs:.0f} s/epoch incl. eval)")
        return
    oa, ow = ours(a)
    print(f"ours : test accuracy per epoch {oa}, {ow:.0f} s ({ow / a.epochs:.0f} s/epoch incl. eval)", flush=True)
    ta, tw = torch_run(a)
    print(f"torch: test accuracy per epoch {ta}, {tw:.0f} s ({tw / a.epochs:.0f} s/epoch incl. eval)")
    print(f"accuracy difference after {a.epochs} epochs: {100 * (oa[-1] - ta[-1]):+.2f} points; "
          f"speed ratio torch/ours {tw / ow:.2f}x")


if __name__ == "__main__":
    main()
