#!/usr/bin/python3
"""profile_threads.py - where the second thread's time goes, per layer kind.

Runs `cspresnet bench --profile --deploy` (random weights of a preset, 640x640, batch 1) at
1 and 2 threads, interleaved for --rounds rounds, for one or more builds (`--build DIR`,
repeatable: e.g. an older revision built in a worktree, then this one), takes per layer the
median over rounds of its ms/run, groups layers by kind and prints, per build and kind,
ms at 1 and 2 threads and the parallel efficiency (ms at 1 thread / ms at 2 threads; 2.0 is
perfect). Kinds: the stem's first conv (3 input channels), the other stem convs, the 3x3
stride-2 conv_down, 3x3 stride-1 convs (Winograd), 1x1 convs, the ESE; the rest (concat
elided in eval) counts as "other". Writes a Markdown table to --out (default stdout).

Usage: /usr/bin/python3 bench/profile_threads.py [--arch s] [--rounds 3] [--build build ...] [--out F]
"""
import argparse
import datetime
import re
import statistics
import subprocess
import sys


def kind(name):
    if name.startswith("stem.conv1"):
        return "stem conv1 (3 -> c, 3x3 s2)"
    if name.startswith("stem."):
        return "stem 3x3 s1"
    if "conv_down" in name:
        return "conv_down 3x3 s2"
    if name.endswith(".attn"):
        return "ESE"
    if ".blocks." in name:
        return "3x3 s1 (Winograd)"
    if re.search(r"\.conv[123]\.conv$", name):
        return "1x1"
    return "other"


def profile(build, arch, threads):
    out = subprocess.run([f"{build}/cspresnet", "bench", "--arch", arch, "--deploy", "--threads", str(threads),
                          "--runs", "5", "--warmup", "2", "--profile"], capture_output=True, text=True, check=True).stdout
    layers = {}
    total = None
    for line in out.splitlines():
        m = re.match(r"^(\S+)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)$", line)
        if m and m.group(1) != "layer":
            layers[m.group(1)] = float(m.group(2))
        m = re.search(r"median_ms=([0-9.]+)", line)
        if m:
            total = float(m.group(1))
    return layers, total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="s")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--build", action="append")
    ap.add_argument("--out")
    a = ap.parse_args()
    builds = a.build or ["build"]
    runs = {(b, t): [] for b in builds for t in (1, 2)}
    for _ in range(a.rounds):
        for b in builds:
            for t in (1, 2):
                runs[(b, t)].append(profile(b, a.arch, t))
    cpu = open("/proc/cpuinfo").read().split("model name")[1].split(":")[1].split("\n")[0].strip()
    lines = [f"# Per-layer profile, {a.arch} at 640x640, batch 1, deployed, 1 and 2 threads", "",
             f"{cpu}, 2 vCPUs; {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC; {a.rounds} interleaved rounds, "
             "each layer's median ms/run over rounds (`bench --profile`, 5 runs after 2 warm-up); efficiency = "
             "ms at 1 thread / ms at 2 threads (2.0 is perfect).", "",
             "| build | layer kind | ms, 1 thread | ms, 2 threads | efficiency |", "|---|---|---|---|---|"]
    for b in builds:
        sums = {}
        for t in (1, 2):
            names = runs[(b, t)][0][0].keys()
            for n in names:
                ms = statistics.median(r[0].get(n, 0.0) for r in runs[(b, t)])
                sums.setdefault(kind(n), [0.0, 0.0])[t - 1] += ms
        for k, (m1, m2) in sorted(sums.items(), key=lambda kv: -kv[1][0]):
            lines.append(f"| {b} | {k} | {m1:.2f} | {m2:.2f} | {m1 / m2 if m2 else 0:.2f}x |")
        t1 = statistics.median(r[1] for r in runs[(b, 1)])
        t2 = statistics.median(r[1] for r in runs[(b, 2)])
        lines.append(f"| {b} | **whole forward** (median) | {t1:.2f} | {t2:.2f} | {t1 / t2:.2f}x |")
    text = "\n".join(lines) + "\n"
    if a.out:
        open(a.out, "w").write(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
