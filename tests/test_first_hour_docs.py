"""What a new user meets in the first hour: README and man page against the real CLI,
linking against build/ and against an installed copy, and the --size spellings.

- README refusal examples are run and must be substrings of the real stderr;
- the README's table of common flags (--threads, -q, -v) agrees with every subcommand's
  --help and with what the parser accepts;
- every subcommand of `cspresnet --help` has a README section and a man page entry; grad's
  options appear in both; the man page names CSPRESNET_ISA (with every kernel set of
  src/kernels/select.c) and exit status 130;
- `pkg-config --static` links libcspresnet statically (no libcspresnet.so in ldd);
- a program built with -Lbuild -lcspresnet runs with LD_LIBRARY_PATH=build;
- `--size N` means N,N in infer and bench.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT, describe_proc, get_build_dir, run_cli

README = (REPO_ROOT / "README.md").read_text()
MAN = (REPO_ROOT / "man" / "cspresnet.1").read_text()
VERSION = "0.1.0"


def sh(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert proc.returncode == 0, f"{cmd}\nexit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def sanitizer_flags(lib):
    """The asan build's library needs the sanitizer runtime at link time too."""
    return ["-fsanitize=address,undefined"] if "__asan" in sh(["nm", "-D", str(lib)]) else []


def subcommands():
    """The command names listed by `cspresnet --help` (the lines under "commands:")."""
    proc = run_cli(["--help"])
    assert proc.returncode == 0, describe_proc(proc)
    names, inside = [], False
    for line in proc.stdout.splitlines():
        if line.strip() == "commands:":
            inside = True
        elif inside and re.match(r"  [a-z]+ ", line):
            names.append(line.split()[0])
        elif inside and not line.strip():
            break
    assert len(names) >= 5, proc.stdout
    return names


def readme_sections():
    """{command: text of its README section} for every heading naming `cspresnet X`."""
    sections = {}
    heads = list(re.finditer(r"^(#{2,4}) (.*)$", README, re.M))
    for k, h in enumerate(heads):
        end = heads[k + 1].start() if k + 1 < len(heads) else len(README)
        for name in re.findall(r"`cspresnet ([a-z]+)`", h.group(2)):
            sections[name] = sections.get(name, "") + README[h.end():end]
    return sections


def man_sections():
    """{.SH name: text} of the man page."""
    parts = re.split(r"^\.SH (.*)$", MAN, flags=re.M)
    return {parts[i].strip('"'): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def man_command_entries():
    """{command: text} of each `.TP` / `.B name` entry of the man page's COMMANDS."""
    entries = {}
    for m in re.finditer(r"^\.TP\n\.B (\S+)\n(.*?)(?=^\.TP|\Z)", man_sections()["COMMANDS"], re.M | re.S):
        entries[m.group(1)] = m.group(2)
    return entries


# ---- 12a: refusal examples quoted by the README are what the CLI prints

def readme_refusal_examples():
    """(argv, quoted message) for each "`ARGS` prints `MESSAGE`" or "`ARGS`: `MESSAGE`"
    in the README. ARGS without a leading `cspresnet` belong to the command of the
    section they are in."""
    found = []
    sections = readme_sections()
    pattern = re.compile(r"`((?:cspresnet )?[^`\n]*--[^`\n]*)`(?::|\s+prints|\s+is refused with|\s+fails with)\s+"
                         r"`([^`\n]+)`")
    for m in pattern.finditer(README):
        args = m.group(1)
        if not args.startswith("cspresnet "):
            owner = [c for c, text in sections.items() if m.group(0) in text]
            assert len(owner) == 1, f"cannot tell which command {m.group(0)!r} belongs to"
            args = f"cspresnet {owner[0]} {args}"
        found.append((shlex.split(args)[1:], m.group(2)))
    return found


def test_readme_refusal_examples_are_what_the_cli_prints():
    examples = readme_refusal_examples()
    assert any(a[:1] == ["summary"] and "--width-mult" in a for a, _ in examples), \
        f"the README's --width-mult 0.3 refusal example was not found: {examples}"
    assert any("--return-idx" in a for a, _ in examples), f"the return_idx example was not found: {examples}"
    for args, quoted in examples:
        text = re.sub(r"\s*(\.\.\.|…)$", "", quoted)
        proc = run_cli(args)
        assert proc.returncode in (1, 2), describe_proc(proc)
        assert text in proc.stderr, (f"README quotes {quoted!r} for `cspresnet {' '.join(args)}`, "
                                     f"but the CLI prints:\n{proc.stderr}")


# ---- 12b: the README's table of common flags against each --help and the parser

COMMON = {"--threads": ["--threads", "2"], "-q": ["-q"], "-v": ["-v"]}


def readme_common_flag_table():
    """{command: {flag: bool}} from the Conventions table `| `cmd` | yes | no | ... |`."""
    conv = README.split("### Conventions", 1)
    assert len(conv) == 2, "README has no Conventions section"
    lines = conv[1].split("\n#", 1)[0].splitlines()
    header = next((ln for ln in lines if ln.startswith("|") and "--threads" in ln), None)
    assert header, "the Conventions section has no table of --threads / -q / -v"
    cols = [c.strip().strip("`").split()[0] if c.strip() else "" for c in header.strip("|").split("|")]
    table = {}
    for ln in lines:
        m = re.match(r"\|\s*`([a-z]+)`\s*\|(.*)\|\s*$", ln)
        if m:
            cells = [c.strip() for c in m.group(2).split("|")]
            table[m.group(1)] = {cols[k + 1]: cells[k].startswith("yes") for k in range(len(cells))}
    return table


def help_lists(help_text, flag):
    if flag == "-q":
        return re.search(r"(?<![\w-])(-q|--quiet)(?![\w-])", help_text) is not None
    if flag == "-v":
        return re.search(r"(?<![\w-])(-v|--verbose)(?![\w-])", help_text) is not None
    return re.search(r"(?<![\w-])--threads(?![\w-])", help_text) is not None


def test_readme_common_flags_match_help_and_parser():
    table = readme_common_flag_table()
    for cmd in subcommands():
        assert cmd in table, f"README's Conventions table has no row for {cmd}: {table}"
        help_proc = run_cli([cmd, "--help"])
        assert help_proc.returncode == 0, describe_proc(help_proc)
        for flag, argv in COMMON.items():
            claim = table[cmd][flag]
            assert help_lists(help_proc.stdout, flag) == claim, \
                f"README says {cmd} {'takes' if claim else 'does not take'} {flag}; its --help disagrees"
            # flags are parsed in order, so an accepted flag before --help prints the help
            proc = run_cli([cmd, *argv, "--help"])
            if claim:
                assert proc.returncode == 0, describe_proc(proc)
            else:
                assert proc.returncode == 2 and f"unknown option '{argv[0]}'" in proc.stderr, describe_proc(proc)


def test_quiet_summary_bench_convert(tmp_path):
    """-q where it was missing: summary prints nothing, bench only its RESULT line,
    convert nothing; -v changes nothing there."""
    plain = run_cli(["summary", "--arch", "t", "--input-size", "1,3,64,64"])
    quiet = run_cli(["summary", "--arch", "t", "--input-size", "1,3,64,64", "-q"])
    verbose = run_cli(["summary", "--arch", "t", "--input-size", "1,3,64,64", "-v"])
    assert plain.returncode == quiet.returncode == verbose.returncode == 0, describe_proc(quiet)
    assert "Total params" in plain.stdout and quiet.stdout == "" and verbose.stdout == plain.stdout
    bad = run_cli(["summary", "--width-mult", "0.3", "-q"])
    assert bad.returncode == 1 and "stage 1" in bad.stderr, describe_proc(bad)

    b = run_cli(["bench", "--arch", "t", "--size", "32,32", "--runs", "1", "--warmup", "0", "--threads", "1", "-q"])
    assert b.returncode == 0, describe_proc(b)
    assert len(b.stdout.splitlines()) == 1 and b.stdout.startswith("RESULT median_ms="), b.stdout

    st = tmp_path / "t.safetensors"
    mk = run_cli(["convert", "--weights", "/nonexistent.pdparams", "-o", str(st), "-v"])
    assert mk.returncode == 1 and "/nonexistent.pdparams" in mk.stderr, describe_proc(mk)


# ---- 12c: a README section and a man page entry for every subcommand

def test_every_subcommand_is_documented():
    sections, entries = readme_sections(), man_command_entries()
    for cmd in subcommands():
        assert cmd in sections, f"README has no section headed `cspresnet {cmd}` (has {sorted(sections)})"
        assert cmd in entries, f"man/cspresnet.1 has no COMMANDS entry `.B {cmd}` (has {sorted(entries)})"


def test_grad_options_are_documented():
    help_text = run_cli(["grad", "--help"]).stdout
    opts = sorted(set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-[a-z])(?![\w-])", help_text)) - {"--help"})
    assert "--grad-dir" in opts and "--train-bn" in opts, opts
    readme = readme_sections()["grad"]
    man = man_command_entries()["grad"].replace("\\-", "-")
    for o in opts:
        assert o in readme, f"README's grad section does not mention {o}"
        assert o in man, f"man page's grad entry does not mention {o}"


def test_man_page_environment_and_exit_status():
    sec = {k: v.replace("\\-", "-") for k, v in man_sections().items()}
    env = sec.get("ENVIRONMENT", "")
    assert "CSPRESNET_ISA" in env, "man page ENVIRONMENT lacks CSPRESNET_ISA"
    tables = re.findall(r'\.isa = "([a-z0-9]+)"', (REPO_ROOT / "src" / "kernels" / "select.c").read_text())
    assert len(tables) >= 3, tables
    isa_text = env.split("CSPRESNET_ISA", 1)[1].split(".TP", 1)[0]
    for name in tables:
        assert re.search(rf"\b{name}\b", isa_text), f"man page's CSPRESNET_ISA does not list the {name} table"
    assert re.search(r"\b130\b", sec.get("EXIT STATUS", "")), "man page EXIT STATUS lacks 130"


# ---- 12d: pkg-config --static really links libcspresnet statically

@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    p = tmp_path_factory.mktemp("prefix") / "usr"
    sh(["make", "-s", "-C", str(REPO_ROOT), f"BUILD={get_build_dir()}", f"PREFIX={p}", "install"])
    return p


def pkg_config(prefix, *args):
    env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib" / "pkgconfig"))
    return sh(["pkg-config", *args], env=env).split()


FEATURES_LINES = ["stage 1 stride 8: 1 x 128 x 40 x 40", "stage 2 stride 16: 1 x 256 x 20 x 20",
                  "stage 3 stride 32: 1 x 512 x 10 x 10"]


def test_pkg_config_static_links_no_shared_libcspresnet(prefix, tmp_path):
    """What README's "Install and link" says: `pkg-config --static --libs cspresnet-static`
    links libcspresnet.a into an otherwise dynamic program."""
    lib = prefix / "lib" / f"libcspresnet.so.{VERSION}"
    src = REPO_ROOT / "examples" / "features.c"
    exe = tmp_path / "features_static"
    flags = pkg_config(prefix, "--static", "--cflags", "--libs", "cspresnet-static")
    sh(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", *sanitizer_flags(lib), str(src), "-o", str(exe), *flags])
    deps = sh(["ldd", str(exe)])
    assert "libcspresnet" not in deps, deps
    out = sh([str(exe)])
    for line in FEATURES_LINES:
        assert line in out, out
    assert "cspresnet-static" in README and "--static" in README.split("## Install and link", 1)[1]


def test_pkg_config_static_fully_static_program(prefix, tmp_path):
    """`cc -static $(pkg-config --static --libs cspresnet)`: the private libraries are
    listed, so a fully static program links and runs."""
    lib = prefix / "lib" / f"libcspresnet.so.{VERSION}"
    if sanitizer_flags(lib):
        pytest.skip("ASan/UBSan runtimes cannot be linked with -static")
    src = REPO_ROOT / "examples" / "features.c"
    exe = tmp_path / "features_full_static"
    flags = pkg_config(prefix, "--static", "--cflags", "--libs", "cspresnet")
    sh(["cc", "-std=c11", "-static", str(src), "-o", str(exe), *flags])
    ld = subprocess.run(["ldd", str(exe)], capture_output=True, text=True)
    assert "libcspresnet" not in ld.stdout and "not a dynamic executable" in (ld.stdout + ld.stderr), ld
    out = sh([str(exe)])
    for line in FEATURES_LINES:
        assert line in out, out


# ---- 12e: build/ has the soname link, so programs linked against it run

TINY = r"""
#include <stdio.h>
#include <cspresnet.h>
int main(void)
{
    cspresnet_config cfg;
    cspresnet_model *m = NULL;
    char err[256];
    if (cspresnet_config_preset("t", &cfg) != CSPRESNET_OK ||
        cspresnet_model_create(&cfg, 1, &m, err, sizeof err) != CSPRESNET_OK)
        return 1;
    printf("tensors %zu\n", cspresnet_model_param_count(m));
    cspresnet_model_free(m);
    return 0;
}
"""


def test_program_linked_against_build_runs(tmp_path):
    build = get_build_dir()
    assert os.readlink(build / "libcspresnet.so") == "libcspresnet.so.0"
    assert os.readlink(build / "libcspresnet.so.0") == f"libcspresnet.so.{VERSION}"
    real = build / f"libcspresnet.so.{VERSION}"
    assert real.is_file() and not real.is_symlink()
    src = tmp_path / "tiny.c"
    src.write_text(TINY)
    exe = tmp_path / "tiny"
    sh(["cc", "-std=c11", *sanitizer_flags(real), str(src), f"-I{REPO_ROOT / 'include'}", f"-L{build}",
        "-lcspresnet", "-o", str(exe)])
    env = dict(os.environ, LD_LIBRARY_PATH=str(build))
    assert str(build / "libcspresnet.so.0") in sh(["ldd", str(exe)], env=env)
    out = sh([str(exe)], env=env)
    m = re.match(r"tensors (\d+)$", out.strip())
    assert m and int(m.group(1)) > 50, out


# ---- 12f: --size N is N,N

def test_size_n_means_n_by_n(tmp_path):
    rng = np.random.default_rng(3)
    img = tmp_path / "x.png"
    Image.fromarray(rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)).save(img)
    outs = {}
    for spelling in ("48", "48,48"):
        d = tmp_path / f"o{spelling.replace(',', '_')}"
        proc = run_cli(["infer", "--arch", "t", "--size", spelling, "--threads", "1", "--save-input", "-q",
                        "--out", str(d), str(img)])
        assert proc.returncode == 0, describe_proc(proc)
        outs[spelling] = {p.name: np.load(p) for p in sorted((d / "x").glob("*.npy"))}
    assert set(outs["48"]) == {"input.npy", "stage1.npy", "stage2.npy", "stage3.npy"}, outs["48"].keys()
    assert outs["48"]["input.npy"].shape == (1, 3, 48, 48)
    for name, a in outs["48,48"].items():
        assert np.array_equal(a, outs["48"][name]), name

    for spelling in ("40", "40,40"):
        b = run_cli(["bench", "--arch", "t", "--size", spelling, "--runs", "1", "--warmup", "0", "--threads", "1"])
        assert b.returncode == 0 and "input 1x3x40x40" in b.stdout, describe_proc(b)
    for bad in ("0", "48,", "1,2,3", "x"):
        proc = run_cli(["infer", "--arch", "t", "--size", bad, "--out", str(tmp_path / "bad"), str(img)])
        assert proc.returncode == 2 and "--size" in proc.stderr, describe_proc(proc)
