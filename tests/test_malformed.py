"""Malformed-input corpus (tests/malformed/make_corpus.py) replayed through the CLI.

Every malformed file (>= 200 across .pdparams, .npy and safetensors) must make
`cspresnet infer` exit with status exactly 1 and one line on stderr naming the problem:
never a crash, a sanitizer report, a hang (timeout) or a second line. Under `make asan`
(CSPRESNET_BUILD=build-asan) the same run also checks for leaks (LeakSanitizer makes
the process exit non-zero with a report, which fails the test). Mutations that still
decode to a well-formed file are run too: exit 0 or 1, never a crash.
Also: the crash-regression corpus tests/regress/ replayed through the fuzz harnesses,
and sizes claimed by headers refused before allocation.
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, describe_proc, get_build_dir, get_cli_path

MAKE_CORPUS = REPO_ROOT / "tests" / "malformed" / "make_corpus.py"
REGRESS = REPO_ROOT / "tests" / "regress"
TIMEOUT_S = 60
SANITIZER_WORDS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer", "runtime error:",
                   "Segmentation fault", "core dumped")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("malformed")
    cli = get_cli_path()
    assert cli.is_file(), f"{cli} missing: build first"
    gen = [sys.executable if sys.executable.startswith("/usr/bin") else "/usr/bin/python3", str(MAKE_CORPUS)]
    subprocess.run(gen + [str(out), "--good-only"], check=True, capture_output=True, timeout=300)
    base_st = out / "good.safetensors"
    conv = subprocess.run([str(cli), "convert", "--weights", str(out / "good.pdparams"), "-o", str(base_st), "-q"],
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    args = [str(out)] + ([str(base_st)] if conv.returncode == 0 and base_st.is_file() else [])
    subprocess.run(gen + args, check=True, capture_output=True, timeout=300)
    manifest = json.loads((out / "manifest.json").read_text())
    return out, manifest, conv.returncode == 0


def run_case(out: Path, entry: dict, tmp: Path) -> subprocess.CompletedProcess | str:
    cli = str(get_cli_path())
    odir = tmp / (Path(entry["file"]).name + ".out")
    if entry["reader"] == "weights":
        cmd = [cli, "infer", "--weights", entry["file"], "--input", str(out / "good.npy"), "--out", str(odir), "-q"]
    else:
        cmd = [cli, "infer", "--weights", str(out / "good.pdparams"), "--input", entry["file"],
               "--out", str(odir), "-q"]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=TIMEOUT_S,
                              env={**os.environ, "ASAN_OPTIONS": "detect_leaks=1"})
    except subprocess.TimeoutExpired:
        return f"timed out after {TIMEOUT_S}s: {' '.join(cmd)}"


def check_failure(proc, entry) -> str | None:
    """None if proc failed cleanly (exit 1, one line on stderr, nothing else)."""
    if isinstance(proc, str):
        return proc
    err_lines = proc.stderr.rstrip("\n").split("\n") if proc.stderr.strip() else []
    if proc.returncode != 1:
        return f"exit {proc.returncode} (want 1)"
    if any(w in proc.stderr for w in SANITIZER_WORDS):
        return "sanitizer report"
    if len(err_lines) != 1 or not err_lines[0].startswith("cspresnet"):
        return f"{len(err_lines)} stderr lines (want one 'cspresnet ...' line)"
    return None


def replay(out, entries, tmp_path):
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda e: (e, run_case(out, e, tmp_path)), entries))


def test_baselines_are_valid(corpus, tmp_path):
    """The unmutated files load and run, so every refusal below is caused by the mutation."""
    out, _, converted = corpus
    for entry in ({"file": str(out / "good.pdparams"), "reader": "weights"},
                  {"file": str(out / "good.npy"), "reader": "input"}):
        proc = run_case(out, entry, tmp_path)
        assert not isinstance(proc, str), proc
        assert proc.returncode == 0, describe_proc(proc)
    assert converted, "cspresnet convert could not write the safetensors baseline"
    proc = run_case(out, {"file": str(out / "good.safetensors"), "reader": "weights"}, tmp_path)
    assert proc.returncode == 0, describe_proc(proc)


def test_corpus_is_large_distinct_and_covers_every_reader(corpus):
    _, manifest, _ = corpus
    fail = [e for e in manifest if e["expect"] == "fail"]
    assert len(fail) >= 200, len(fail)
    assert len({Path(e["file"]).read_bytes() for e in manifest}) == len(manifest), "duplicate files"
    kinds = {e["kind"] for e in fail}
    assert kinds == {"pdparams", "npy", "safetensors"}, kinds
    for prefix in ("trunc_", "flip_", "hand_"):
        assert sum(Path(e["file"]).name.startswith(prefix) for e in fail) >= 20, prefix


@pytest.mark.parametrize("kind", ["pdparams", "npy", "safetensors"])
def test_every_malformed_file_fails_cleanly(corpus, tmp_path, kind):
    out, manifest, _ = corpus
    entries = [e for e in manifest if e["kind"] == kind and e["expect"] == "fail"]
    assert entries
    bad = []
    for entry, proc in replay(out, entries, tmp_path):
        why = check_failure(proc, entry)
        if why:
            detail = proc if isinstance(proc, str) else describe_proc(proc)
            bad.append(f"{Path(entry['file']).name} ({entry['why']}): {why}\n{detail[-1500:]}")
    assert not bad, f"{len(bad)} of {len(entries)} files misbehaved:\n\n" + "\n\n".join(bad[:10])


def test_well_formed_mutations_never_crash(corpus, tmp_path):
    out, manifest, _ = corpus
    entries = [e for e in manifest if e["expect"] == "any"]
    assert entries
    bad = []
    for entry, proc in replay(out, entries, tmp_path):
        if isinstance(proc, str):
            bad.append(proc)
        elif proc.returncode != 0 and check_failure(proc, entry):
            bad.append(f"{Path(entry['file']).name}: {check_failure(proc, entry)}\n{describe_proc(proc)[-1500:]}")
        elif any(w in proc.stderr for w in SANITIZER_WORDS):
            bad.append(f"{Path(entry['file']).name}: sanitizer report\n{proc.stderr[-1500:]}")
    assert not bad, "\n\n".join(bad[:10])


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


@pytest.mark.parametrize("name,reader,words", [
    ("pdparams/hand_tiny_claims_1e12.pdparams", "weights", "needs"),
    ("pdparams/hand_stem_huge_channels.pdparams", "weights", "needs"),
    ("pdparams/hand_binbytes8_len_huge.pdparams", "weights", "remain"),
    ("pdparams/hand_shared_array_70x.pdparams", "weights", "shared between keys"),
    ("pdparams/hand_codecs_repeat_decode.pdparams", "weights", "decoded"),
    ("pdparams/hand_keys_over_limit.pdparams", "weights", "limit"),
    ("pdparams/hand_key_too_long.pdparams", "weights", "limit"),
    ("pdparams/hand_marks_1001.pdparams", "weights", "limit"),
    ("pdparams/hand_memo_put_huge.pdparams", "weights", "limit"),
    ("npy/hand_tiny_claims_1e12.npy", "input", "truncated"),
    ("npy/hand_hlen_v2_huge.npy", "input", "exceeds the limit"),
])
def test_claimed_sizes_are_refused_before_allocation(corpus, tmp_path, name, reader, words):
    """A small file claiming a huge tensor is refused by the size check (its message),
    not by a failed allocation; outside ASan (which reserves terabytes of shadow memory)
    the process also runs with a 1 GiB address-space limit."""
    out, _, _ = corpus
    path = out / name
    assert path.is_file() and path.stat().st_size < (2 << 20)
    entry = {"file": str(path), "reader": reader}
    cli = str(get_cli_path())
    odir = tmp_path / "o"
    cmd = ([cli, "infer", "--weights", str(path), "--input", str(out / "good.npy")] if reader == "weights" else
           [cli, "infer", "--weights", str(out / "good.pdparams"), "--input", str(path)]) + ["--out", str(odir), "-q"]
    asan = "asan" in str(get_build_dir())
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S,
                          preexec_fn=None if asan else _limit_memory)
    assert check_failure(proc, entry) is None, describe_proc(proc)
    assert words in proc.stderr and "out of memory" not in proc.stderr, describe_proc(proc)


def test_regression_corpus_replays_through_the_fuzz_harnesses():
    """Every file that once crashed a fuzzer (tests/regress/<kind>/) runs through the same
    harness code (tests/c/fuzz_replay.c): under `make asan` with ASan+UBSan."""
    replay_bin = get_build_dir() / "tests" / "fuzz_replay"
    assert replay_bin.is_file(), f"{replay_bin} missing: build first"
    total = 0
    for kind in ("pdparams", "npy"):
        files = sorted(str(p) for p in (REGRESS / kind).iterdir() if p.is_file())
        if not files:
            continue
        total += len(files)
        proc = subprocess.run([str(replay_bin), kind] + files, capture_output=True, text=True,
                              timeout=300, env={**os.environ, "ASAN_OPTIONS": "detect_leaks=1"})
        assert proc.returncode == 0, describe_proc(proc)
        assert proc.stdout.count("\nok ") + proc.stdout.startswith("ok ") == len(files), describe_proc(proc)
    assert total >= 3


def test_regression_safetensors_through_the_cli(tmp_path, corpus):
    out, _, _ = corpus
    files = sorted(p for p in (REGRESS / "safetensors").iterdir() if p.is_file()) \
        if (REGRESS / "safetensors").is_dir() else []
    for p in files:
        proc = run_case(out, {"file": str(p), "reader": "weights"}, tmp_path)
        assert not isinstance(proc, str), proc
        assert proc.returncode in (0, 1) and not any(w in proc.stderr for w in SANITIZER_WORDS), describe_proc(proc)
