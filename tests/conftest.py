"""Shared pytest fixtures and helpers for the cspresnet tests.

Build directory: $CSPRESNET_BUILD (default ``build``), relative to the repository root
(the parent of tests/) unless absolute. The CLI is ``<build>/cspresnet``. A missing CLI
makes the tests that need it FAIL (never skip).

Fixtures: ``repo_root``, ``build_dir``, ``cli_path``, ``run_cli`` (callable),
``compare`` (callable). The same helpers are importable as plain functions:
``from conftest import run_cli, compare`` (tests/ is on sys.path under pytest's default
import mode); tests/ref is put on sys.path so ``import cspresnet_torch`` and
``import pdparams_writer`` work from any test file.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
REF_DIR = TESTS_DIR / "ref"
if str(REF_DIR) not in sys.path:
    sys.path.insert(0, str(REF_DIR))

CLI_TIMEOUT_S = 300


def get_build_dir() -> Path:
    b = Path(os.environ.get("CSPRESNET_BUILD", "build"))
    return b if b.is_absolute() else REPO_ROOT / b


def get_cli_path() -> Path:
    return get_build_dir() / "cspresnet"


def run_cli(args, timeout=CLI_TIMEOUT_S, check_binary=True, **kw) -> subprocess.CompletedProcess:
    """Runs ``<build>/cspresnet *args`` capturing text stdout/stderr; never raises on a
    non-zero exit (the caller asserts the return code). Fails the test if the binary is
    missing or the command times out."""
    cli = get_cli_path()
    if check_binary and not (cli.is_file() and os.access(cli, os.X_OK)):
        pytest.fail(f"CLI binary {cli} is missing or not executable: build it first (make), "
                    f"or point CSPRESNET_BUILD at the build folder", pytrace=False)
    cmd = [str(cli)] + [str(a) for a in args]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              errors="replace", **kw)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"timed out after {timeout}s: {' '.join(cmd)}\n"
                    f"stdout: {e.stdout!r}\nstderr: {e.stderr!r}", pytrace=False)


def describe_proc(proc: subprocess.CompletedProcess) -> str:
    args = proc.args if isinstance(proc.args, str) else " ".join(map(str, proc.args))
    return (f"command: {args}\nexit code: {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")


def infer_deployed(weights, x_path, out_dir, precision, extra=(), threads=2, isa=None):
    """`cspresnet infer --deploy --precision P` of an .npy batch with every stage returned
    (CSPRESNET_ISA=isa, or unset for this CPU's best kernels); the four stage maps."""
    env = dict(os.environ)
    env.pop("CSPRESNET_ISA", None)
    if isa:
        env["CSPRESNET_ISA"] = isa
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    proc = run_cli(["infer", "--weights", weights, "--input", x_path, "--out", out_dir, "--return-idx", "0,1,2,3",
                    "--deploy", "--precision", precision, "--threads", threads, "-q", *extra], env=env)
    assert proc.returncode == 0, describe_proc(proc)
    return [np.load(Path(out_dir) / f"stage{i}.npy") for i in range(4)]


def compare(ref, out, config="", rtol=1e-4) -> float:
    """Asserts max|out - ref| <= rtol * max|ref| (and equal shapes, finite values).
    ``config`` (any printable) is shown on failure. Returns the relative error."""
    ref = np.asarray(ref, dtype=np.float64)
    out = np.asarray(out)
    assert out.shape == ref.shape, f"shape {out.shape} != reference {ref.shape}\n{config}"
    assert np.all(np.isfinite(out)), f"non-finite values in output\n{config}"
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    assert scale > 0.0, f"degenerate reference (all zeros)\n{config}"
    diff = np.abs(out.astype(np.float64) - ref)
    worst = float(diff.max())
    if worst > rtol * scale:
        idx = np.unravel_index(int(np.argmax(diff)), diff.shape)
        pytest.fail(f"max|diff| = {worst:.6g} > {rtol:g} * max|ref| = {rtol * scale:.6g} "
                    f"(relative {worst / scale:.3g}); worst at {idx}: out {out[idx]!r} "
                    f"ref {ref[idx]!r}; {int((diff > rtol * scale).sum())} of {diff.size} "
                    f"values off\n{config}", pytrace=False)
    return worst / scale


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def build_dir() -> Path:
    return get_build_dir()


@pytest.fixture(scope="session")
def cli_path() -> Path:
    return get_cli_path()


@pytest.fixture(name="run_cli")
def run_cli_fixture():
    return run_cli


@pytest.fixture(name="compare")
def compare_fixture():
    return compare
