"""No data loss and thread safety (issue 7).

- An output whose write fails (a full filesystem, /dev/full) makes the CLI exit 1 with
  the error, and leaves no file (and no temporary file) under the final name.
- A process killed at random moments while writing never leaves a truncated .npy: each
  output is either absent or complete.
- Several threads, each with its own context on one shared model, give bit-identical
  results (tests/c/test_threads_shared_model.c; `make tsan` runs it under TSan).
"""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import time

import numpy as np
import pytest

from conftest import describe_proc, get_build_dir, get_cli_path, run_cli

BIG = ["--arch", "s", "--random-input", "--input-size", "1,3,256,256", "--return-idx", "0,1,2,3"]  # stage0: 1x64x64x64 = 1 MiB


def test_threads_on_a_shared_model_give_identical_results():
    exe = get_build_dir() / "tests" / "test_threads_shared_model"
    assert exe.is_file(), f"{exe} missing"
    proc = subprocess.run([str(exe), "4"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, describe_proc(proc)
    assert "identical" in proc.stdout


def test_output_symlinked_to_dev_full_is_a_reported_write_error(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stage3.npy").symlink_to("/dev/full")
    proc = run_cli(["infer", "--arch", "s", "--random-input", "--input-size", "1,3,64,64", "--out", out, "-q"])
    assert proc.returncode == 1, describe_proc(proc)
    assert "No space left on device" in proc.stderr and "stage3.npy" in proc.stderr, describe_proc(proc)
    assert len(proc.stderr.strip().splitlines()) == 1, describe_proc(proc)
    # /dev/full is still the device (a rename would have replaced the link or, as root, the node)
    assert os.path.realpath(out / "stage3.npy") == "/dev/full"
    assert sorted(p.name for p in out.iterdir()) == ["stage3.npy"], "partial outputs left behind"


def test_full_filesystem_leaves_no_file_under_the_final_name(tmp_path):
    """A real ENOSPC: the outputs (1 MiB for stage 0) go to a 256 KiB tmpfs mounted in a
    private mount namespace (unshare -rm). Where namespaces are not allowed, a file-size
    limit (RLIMIT_FSIZE, EFBIG) makes the write fail instead. Either way: exit 1, the
    error on stderr, and nothing left in the output folder afterwards."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=256k tmpfs {mnt}"],
                           capture_output=True)
    if probe.returncode == 0:
        # list the folder inside the same namespace: the tmpfs vanishes with it
        cli = str(get_cli_path())
        inner = (f"mount -t tmpfs -o size=256k tmpfs {mnt} && {cli} infer {' '.join(BIG)} --out {mnt}/o -q; "
                 f"rc=$?; echo LISTING; ls -A {mnt}/o; exit $rc")
        proc = subprocess.run(["unshare", "-rm", "sh", "-c", inner], capture_output=True, text=True, timeout=300)
        want = "No space left on device"
        listing = proc.stdout.split("LISTING", 1)[1].split()
    else:
        out = tmp_path / "o"

        def limit():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, 256 << 10))
        proc = subprocess.run([str(get_cli_path()), "infer"] + BIG + ["--out", str(out), "-q"],
                              capture_output=True, text=True, timeout=300, preexec_fn=limit)
        want = "File too large"
        listing = [p.name for p in out.iterdir()] if out.exists() else []
    assert proc.returncode == 1, describe_proc(proc)
    assert want in proc.stderr and "write failed" in proc.stderr, describe_proc(proc)
    assert listing == [], f"left behind: {listing}"


def test_killed_while_writing_never_leaves_a_truncated_output(tmp_path):
    """SIGKILL at 12 different moments of a run writing 4 outputs: afterwards every
    stage{i}.npy under its final name loads completely with the right shape."""
    cli = str(get_cli_path())
    want = {0: (1, 64, 64, 64), 1: (1, 128, 32, 32), 2: (1, 256, 16, 16), 3: (1, 512, 8, 8)}
    # how long a full run takes here, to spread the kills over it
    t0 = time.monotonic()
    proc = run_cli(["infer"] + BIG + ["--out", tmp_path / "full", "-q", "--threads", "1"])
    full = time.monotonic() - t0
    assert proc.returncode == 0, describe_proc(proc)
    seen_complete = 0
    for k in range(12):
        out = tmp_path / f"o{k}"
        p = subprocess.Popen([cli, "infer"] + BIG + ["--out", str(out), "-q", "--threads", "1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(full * (0.4 + 2.0 * k / 11))  # the late kills may find the run finished: a short run's start-up time varies
        p.send_signal(signal.SIGKILL)
        p.wait()
        if not out.exists():
            continue
        for name in os.listdir(out):
            if ".tmp." in name:
                continue  # a killed process cannot remove its temporary file; never the final name
            stage = int(name[len("stage"):-len(".npy")])
            a = np.load(out / name)
            assert a.shape == want[stage], f"{name}: {a.shape}"
            seen_complete += 1
    # the kills must have landed both before and after some outputs were complete
    assert seen_complete >= 1
