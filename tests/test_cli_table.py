"""The CLI's flag tables, its public headers and its shape (issue 12, CLI part).

- every subcommand's --help has one row per flag it accepts, and it accepts exactly the
  flags its rows name (probed through the parser, never by reading the C);
- a row with a value placeholder needs a value; flags are parsed in order;
- the CLI includes only public headers (include/) and its own; cspresnet_io.h is
  installed and its .npy reader and writer, atomic writer and stream reader work from a
  program linked against the installed library, against numpy;
- one mkdir helper in cli/; no cli/ file over 800 lines, no function over 120;
- the C tests share tests/c/harness.h instead of their own RNG and counters.
"""
from __future__ import annotations

import os
import re
import subprocess

import numpy as np
import pytest

from conftest import REPO_ROOT, describe_proc, get_build_dir, run_cli

CLI_DIR = REPO_ROOT / "cli"
TOKEN = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-zA-Z])(?![\w-])")
ROW = re.compile(r"^  (?:(-[a-zA-Z]), )?(--[a-z][a-z0-9-]*)(?: (\S+))?(?: {2,}\S|$)")


def subcommands():
    proc = run_cli(["--help"])
    assert proc.returncode == 0, describe_proc(proc)
    text = proc.stdout.split("commands:", 1)[1].split("\n\n", 1)[0]
    names = [ln.split()[0] for ln in text.splitlines() if ln.startswith("  ")]
    assert len(names) >= 7, proc.stdout
    return names


COMMANDS = subcommands()


def help_text(cmd):
    proc = run_cli([cmd, "--help"])
    assert proc.returncode == 0 and proc.stdout.startswith("usage: cspresnet"), describe_proc(proc)
    return proc.stdout


def help_rows(cmd):
    """{flag or alias: placeholder or None} of the help's option rows."""
    rows = {}
    for line in help_text(cmd).splitlines():
        m = ROW.match(line)
        if m:
            alias, name, meta = m.groups()
            rows[name] = meta
            if alias:
                rows[alias] = meta
    return rows


def candidates():
    """Every flag word any subcommand's help mentions, and some that none takes."""
    words = {"--bogus", "-x", "--out", "-o", "--help", "-h", "--version"}
    for cmd in COMMANDS:
        words |= set(TOKEN.findall(help_text(cmd)))
    return sorted(words)


CANDIDATES = candidates()


def accepted(cmd, flag):
    """Whether the parser knows flag. Two unknown options follow it, so that a flag taking
    a value takes the first and the second stops the command before it runs anything."""
    proc = run_cli([cmd, flag, "--no-such-option-1", "--no-such-option-2"], timeout=60)
    assert proc.returncode in (0, 2), describe_proc(proc)
    return f"unknown option '{flag}'" not in proc.stderr and f"unexpected argument '{flag}'" not in proc.stderr


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_rows_are_exactly_the_flags_the_parser_accepts(cmd):
    rows = help_rows(cmd)
    assert "--help" in rows and "-h" in rows and "--version" in rows, help_text(cmd)
    took = {f for f in CANDIDATES if accepted(cmd, f)}
    assert took == set(rows), (f"{cmd}: accepted but without a --help row: {sorted(took - set(rows))}; "
                               f"a row but refused: {sorted(set(rows) - took)}")


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_flag_the_help_names_is_accepted(cmd):
    """Usage lines and prose too: no flag named anywhere in --help is unknown."""
    named = set(TOKEN.findall(help_text(cmd)))
    refused = sorted(f for f in named if not accepted(cmd, f))
    assert not refused, f"{cmd} --help names {refused}, which the parser refuses"


@pytest.mark.parametrize("cmd", COMMANDS)
def test_a_placeholder_means_a_value(cmd):
    for flag, meta in help_rows(cmd).items():
        if meta is None:
            continue
        proc = run_cli([cmd, flag])
        assert proc.returncode == 2, describe_proc(proc)
        assert f"{flag} needs a value (see cspresnet {cmd} --help)" in proc.stderr, describe_proc(proc)
        assert not proc.stdout, describe_proc(proc)


def test_flags_are_parsed_in_order():
    bad = run_cli(["bench", "--runs", "0", "--help"])
    assert bad.returncode == 2 and "--runs needs a count in 1..100000" in bad.stderr, describe_proc(bad)
    ok = run_cli(["bench", "--runs", "3", "--help"])
    assert ok.returncode == 0 and "--runs K" in ok.stdout, describe_proc(ok)
    alias = run_cli(["convert", "--out", "x.safetensors", "-h"])
    assert alias.returncode == 0 and "-o, --out OUT" in alias.stdout, describe_proc(alias)


def test_cli_includes_only_public_headers():
    public = {p.name for p in (REPO_ROOT / "include").glob("*.h")}
    own = {p.name for p in CLI_DIR.glob("*.h")}
    assert "cspresnet_io.h" in public
    for src in sorted(CLI_DIR.glob("*.[ch]")):
        for inc in re.findall(r'^#include "([^"]+)"', src.read_text(), re.M):
            assert inc in public or inc in own, f"{src.name} includes the library internal {inc}"


def test_one_mkdir_helper_in_cli():
    calls = [(p.name, n) for p in sorted(CLI_DIR.glob("*.c"))
             for n, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"\bmkdir\s*\(", line)]
    assert len(calls) == 1, f"mkdir called in more than one place: {calls}"


def functions(text):
    """(name, lines) of each function defined at the top level of a C file."""
    lines, out, start = text.splitlines(), [], None
    for i, line in enumerate(lines):
        if line == "{":
            j = i
            while j > 0 and lines[j - 1].strip() and not lines[j - 1].rstrip().endswith((";", "}", "*/")) \
                    and not lines[j - 1].startswith("#"):
                j -= 1
            start = j
        elif line == "}" and start is not None:
            out.append((lines[start].split("(")[0], i - start + 1))
            start = None
    return out


def test_cli_files_and_functions_are_small():
    for src in sorted(CLI_DIR.glob("*.[ch]")):
        text = src.read_text()
        assert text.count("\n") <= 800, f"{src.name} has {text.count(chr(10))} lines"
        for name, n in functions(text):
            assert n <= 120, f"{src.name}: {name} is {n} lines"


def test_c_tests_share_the_harness():
    harness = REPO_ROOT / "tests" / "c" / "harness.h"
    assert harness.is_file()
    own = re.compile(r"^\s*(#define CHECK\b|static int (passed|failed|failures)\b|static unsigned[\w ]* rng\b"
                     r"|static (float|double) [fu]rand\()", re.M)
    for src in sorted((REPO_ROOT / "tests" / "c").glob("*.c")):
        text = src.read_text()
        assert not own.search(text), f"{src.name} defines its own RNG or counters"
        if re.search(r"\bCHECK\(|\brng_", text):
            assert '#include "harness.h"' in text, src.name


# ---- the public I/O header, from an installed copy

PROGRAM = r"""
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cspresnet_io.h>

static int first_bytes(const uint8_t *head, size_t n) { (void)head; return n >= 4; }

int main(int argc, char **argv)
{
    char err[1024];
    if (argc != 6)
        return 2;
    float v[6] = {0.5f, -1.25f, 3.0f, 1e-3f, -0.0f, 65504.0f};
    int64_t shape[2] = {2, 3};
    if (cspresnet_npy_write(argv[1], v, 2, shape, err, sizeof err) != CSPRESNET_OK) { puts(err); return 1; }
    cspresnet_array a;
    if (cspresnet_npy_read(argv[2], &a, err, sizeof err) != CSPRESNET_OK) { puts(err); return 1; }
    printf("ndim %d shape %lld %lld numel %lld\n", a.ndim, (long long)a.shape[0], (long long)a.shape[1],
           (long long)a.numel);
    for (int64_t i = 0; i < a.numel; i++)
        printf("%.9g\n", a.data[i]);
    cspresnet_array_free(&a);
    cspresnet_status st = cspresnet_npy_read(argv[3], &a, err, sizeof err);
    printf("refused %s: %s\n", cspresnet_status_name(st), err);
    st = cspresnet_write_file_atomic("/dev/full", "x", 1, err, sizeof err);
    printf("full %s: %s\n", cspresnet_status_name(st), err);
    cspresnet_atomic_file *f;
    if (cspresnet_atomic_file_open(argv[4], &f, err, sizeof err) != CSPRESNET_OK) { puts(err); return 1; }
    cspresnet_atomic_file_write(f, "half", 4, err, sizeof err);
    cspresnet_atomic_file_abort(f);
    if (cspresnet_atomic_file_open(argv[5], &f, err, sizeof err) != CSPRESNET_OK ||
        cspresnet_atomic_file_write(f, "whole\n", 6, err, sizeof err) != CSPRESNET_OK ||
        cspresnet_atomic_file_commit(f, err, sizeof err) != CSPRESNET_OK) { puts(err); return 1; }
    uint8_t *buf = NULL;
    size_t size = 0;
    st = cspresnet_stream_read_all(stdin, "stdin", 1000, NULL, &buf, &size, err, sizeof err);
    printf("stream %s %zu %.*s\n", cspresnet_status_name(st), size, (int)size, (const char *)buf);
    free(buf);
    buf = NULL;
    st = cspresnet_stream_read_all(stdin, "stdin", 1000, first_bytes, &buf, &size, err, sizeof err);
    printf("rest %s %zu\n", cspresnet_status_name(st), size);
    free(buf);
    return 0;
}
"""


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    p = tmp_path_factory.mktemp("prefix") / "usr"
    subprocess.run(["make", "-s", "-C", str(REPO_ROOT), f"BUILD={get_build_dir()}", f"PREFIX={p}", "install"],
                   check=True, capture_output=True, timeout=600)
    return p


def test_installed_io_header_reads_and_writes_npy_and_files_atomically(prefix, tmp_path):
    header = prefix / "include" / "cspresnet_io.h"
    assert header.is_file(), "make install does not install cspresnet_io.h"
    src = tmp_path / "io.c"
    src.write_text(PROGRAM)
    exe = tmp_path / "io"
    lib = prefix / "lib"
    asan = ["-fsanitize=address,undefined"] if "fsanitize" in os.environ.get("CFLAGS", "") else []
    subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", *asan, f"-I{prefix / 'include'}", str(src),
                    "-o", str(exe), str(lib / "libcspresnet.a"), "-lm", "-lpthread"], check=True, timeout=120)
    fortran = np.asfortranarray(np.arange(6, dtype=">f8").reshape(2, 3) / 4 - 1)
    np.save(tmp_path / "in.npy", fortran)
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY\x01\x00" + b"{'descr': '<i4'}")
    out, aborted, whole = tmp_path / "out.npy", tmp_path / "aborted.txt", tmp_path / "whole.txt"
    proc = subprocess.run([str(exe), str(out), str(tmp_path / "in.npy"), str(tmp_path / "bad.npy"), str(aborted),
                           str(whole)], input=b"from a pipe", capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    lines = proc.stdout.decode().splitlines()
    got = np.load(out)
    assert got.dtype == np.float32 and got.shape == (2, 3)
    assert np.array_equal(got, np.array([0.5, -1.25, 3.0, 1e-3, -0.0, 65504.0], np.float32).reshape(2, 3))
    assert lines[0] == "ndim 2 shape 2 3 numel 6", lines
    assert np.array_equal(np.array([float(x) for x in lines[1:7]], np.float32), fortran.astype(np.float32).ravel())
    assert lines[7].startswith("refused ") and "bad.npy" in lines[7], lines
    assert lines[8].startswith("full ") and "/dev/full" in lines[8] and "No space left" in lines[8], lines
    assert not aborted.exists() and whole.read_text() == "whole\n"
    assert not list(tmp_path.glob("*.tmp.*")), "a temporary file was left behind"
    assert lines[9] == "stream ok 11 from a pipe", lines
    assert lines[10] == "rest ok 0", lines
