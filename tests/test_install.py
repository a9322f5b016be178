"""`make install PREFIX=...` and an embedder's program built against the installed copy.

Installs from the build folder under test into a temporary prefix, checks the layout
(static library, versioned shared library with soname links, header, CLI, pkg-config
file, man page), that the shared library needs nothing beyond libc/libm/pthreads, then
builds examples/features.c with `pkg-config --cflags --libs cspresnet` (shared) and
`pkg-config --static` (static), runs both and checks their output, and examples/detect.c
(shared): on a port checkpoint and batch its NMS rows must be the port's multiclass_nms3
rows, and on its own random detector it prints detections.
"""
from __future__ import annotations

import os
import re
import subprocess

import numpy as np
import pytest

from conftest import REPO_ROOT, get_build_dir

VERSION = "0.1.0"


def sh(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert proc.returncode == 0, f"{cmd}\nexit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    p = tmp_path_factory.mktemp("prefix") / "usr"
    build = get_build_dir()
    sh(["make", "-s", "-C", str(REPO_ROOT), f"BUILD={build}", f"PREFIX={p}", "install"])
    return p


def sanitizer_flags(lib):
    """The asan build's library needs the sanitizer runtime at link time too."""
    syms = sh(["nm", "-D", str(lib)])
    return ["-fsanitize=address,undefined"] if "__asan" in syms else []


def test_layout(prefix):
    lib = prefix / "lib"
    assert (lib / "libcspresnet.a").is_file()
    real = lib / f"libcspresnet.so.{VERSION}"
    assert real.is_file() and not real.is_symlink()
    assert os.readlink(lib / "libcspresnet.so.0") == f"libcspresnet.so.{VERSION}"
    assert os.readlink(lib / "libcspresnet.so") == "libcspresnet.so.0"
    dyn = sh(["objdump", "-p", str(real)])
    assert re.search(r"SONAME\s+libcspresnet\.so\.0\b", dyn), dyn
    needed = set(re.findall(r"NEEDED\s+(\S+)", dyn))
    allowed = {"libc.so.6", "libm.so.6", "libpthread.so.0", "libasan.so.8", "libubsan.so.1", "libgcc_s.so.1",
               "libstdc++.so.6"}
    assert needed <= allowed, f"the core library must need only libc/libm/pthreads: {needed}"
    assert (prefix / "include" / "cspresnet.h").is_file()
    man = (prefix / "share" / "man" / "man1" / "cspresnet.1").read_text()
    assert man.startswith(".TH CSPRESNET 1") and "EXIT STATUS" in man
    out = sh([str(prefix / "bin" / "cspresnet"), "--version"])
    assert out.strip() == f"cspresnet {VERSION}"
    pc = (lib / "pkgconfig" / "cspresnet.pc").read_text()
    assert f"prefix={prefix}\n" in pc and f"Version: {VERSION}" in pc


def pkg_config(prefix, *args):
    env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib" / "pkgconfig"))
    return sh(["pkg-config", *args, "cspresnet"], env=env).split()


def check_output(text):
    lines = text.strip().splitlines()
    assert lines[0] == f"cspresnet {VERSION}", text
    shapes = [re.match(r"stage (\d) stride (\d+): 1 x (\d+) x (\d+) x (\d+), mean (-?\d+\.\d+)$", ln) for ln in lines[1:]]
    assert all(shapes) and len(shapes) == 3, text
    got = [tuple(int(g) for g in m.groups()[:5]) for m in shapes]
    assert got == [(1, 8, 128, 40, 40), (2, 16, 256, 20, 20), (3, 32, 512, 10, 10)], got


def test_example_builds_against_installed_library(prefix, tmp_path):
    lib = prefix / "lib" / f"libcspresnet.so.{VERSION}"
    extra = sanitizer_flags(lib)
    src = REPO_ROOT / "examples" / "features.c"
    shared = tmp_path / "features_shared"
    sh(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", *extra, str(src), "-o", str(shared),
        *pkg_config(prefix, "--cflags", "--libs"), f"-Wl,-rpath,{prefix / 'lib'}"])
    assert str(prefix / "lib" / "libcspresnet.so.0") in sh(["ldd", str(shared)])
    out_shared = sh([str(shared)], env=dict(os.environ, ASAN_OPTIONS="detect_leaks=1"))
    check_output(out_shared)

    static = tmp_path / "features_static"
    libs = pkg_config(prefix, "--static", "--libs")
    libs = ["-Wl,-Bstatic" if a == "-lcspresnet" else a for a in libs]
    libs.insert(libs.index("-Wl,-Bstatic") + 1, "-lcspresnet")
    libs.insert(libs.index("-lcspresnet") + 1, "-Wl,-Bdynamic")
    sh(["cc", "-std=c11", *extra, str(src), "-o", str(static), *pkg_config(prefix, "--cflags"), *libs])
    assert "libcspresnet" not in sh(["ldd", str(static)])
    out_static = sh([str(static)])
    check_output(out_static)
    assert out_static == out_shared, "static and shared builds disagree"


DETECT_ROW = re.compile(r"  label (\d+) score (\S+) box (\S+) (\S+) (\S+) (\S+)$")


def detect_rows(text):
    """The example's output -> (header line, rows [M, 6], detections per image)."""
    lines = text.strip().splitlines()
    rows, nums = [], []
    for ln in lines[1:]:
        m = re.match(r"image (\d+): (\d+) detections$", ln)
        if m:
            nums.append(int(m.group(2)))
            continue
        m = DETECT_ROW.match(ln)
        assert m, f"unexpected line {ln!r} in\n{text}"
        rows.append([float(g) for g in m.groups()])
    return lines[0], np.array(rows, dtype=np.float64).reshape(-1, 6), nums


def test_detect_example_matches_port(prefix, tmp_path):
    import cspresnet_torch as bb
    import pdparams_writer
    import ppyoloe_torch as P
    lib = prefix / "lib" / f"libcspresnet.so.{VERSION}"
    exe = tmp_path / "detect"
    sh(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", *sanitizer_flags(lib), str(REPO_ROOT / "examples" / "detect.c"),
        "-o", str(exe), *pkg_config(prefix, "--cflags", "--libs"), f"-Wl,-rpath,{prefix / 'lib'}"])
    cfg = P.DetectorConfig(backbone=bb.Config(width_mult=0.25, depth_mult=0.5), num_classes=3)
    x = np.random.default_rng(8).random((2, 3, 96, 128), dtype=np.float32)
    state = P.random_detector_state(cfg, seed=9, calib_input=x)
    pdparams_writer.write_pdparams(tmp_path / "det.pdparams", state)
    np.save(tmp_path / "x.npy", x)
    head, rows, nums = detect_rows(sh([str(exe), str(tmp_path / "det.pdparams"), str(tmp_path / "x.npy")]))
    assert head == f"detector: 3 classes, input 2x3x96x128, 252 anchors, {len(rows)} detections", head
    boxes, scores = P.detector_outputs(cfg, state, x)
    want, want_nums = P.multiclass_nms3(boxes.astype(np.float32), scores.astype(np.float32), **P.NMS_DEFAULTS)
    assert nums == list(want_nums) and len(want) > 10, (nums, want_nums)
    assert np.array_equal(rows[:, 0], want[:, 0]), "labels differ"
    # rows in the port's order, but scores a float32 rounding apart may swap: each row must
    # have its own port row of the same image and label with the same score and box (the
    # fast kernels' tolerance of tests/test_detector.py: 1e-3 of the largest value)
    image = np.repeat(np.arange(len(nums)), nums)
    s_tol, b_tol = 1e-3 * want[:, 1].max(), 1e-3 * np.abs(want[:, 2:]).max()
    unused = set(range(len(want)))
    for i, r in enumerate(rows):
        match = [j for j in unused if image[j] == image[i] and want[j, 0] == r[0] and abs(want[j, 1] - r[1]) < s_tol
                 and np.abs(want[j, 2:] - r[2:]).max() < b_tol]
        assert match, f"row {i} {r} has no port row (port row {i}: {want[i]})"
        unused.remove(min(match, key=lambda j: abs(j - i)))
    # no arguments: its own random PP-YOLOE-s, some but not all 80 x 2100 candidates kept
    head, rows, nums = detect_rows(sh([str(exe)]))
    assert head.startswith("detector: 80 classes, input 1x3x320x320, 2100 anchors") and 0 < nums[0] <= 300, head
    assert len(set(rows[:, 0])) > 1 and (rows[:, 1] > 0.01).all(), rows[:5]


FORMATS_PROGRAM = r"""
#include <stdio.h>
#include <string.h>
#include <cspresnet_formats.h>
int main(int argc, char **argv)
{
    char err[256];
    cspresnet_config cfg;
    cspresnet_model *m = NULL, *back = NULL;
    if (argc != 2 || cspresnet_config_preset("t", &cfg) != CSPRESNET_OK ||
        cspresnet_model_create(&cfg, 3, &m, err, sizeof err) != CSPRESNET_OK ||
        cspresnet_model_save_safetensors(m, argv[1], NULL, err, sizeof err) != CSPRESNET_OK ||
        cspresnet_model_load_safetensors(argv[1], NULL, &back, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "failed: %s\n", err);
        return 1;
    }
    size_t n = cspresnet_model_param_count(back), same = 0;
    for (size_t i = 0; i < n; i++) {
        const float *a, *b;
        int64_t shape[4];
        int nd;
        cspresnet_model_param(m, i, NULL, &nd, shape, &a, NULL);
        cspresnet_model_param(back, i, NULL, NULL, NULL, &b, NULL);
        long numel = 1;
        for (int d = 0; d < nd; d++)
            numel *= (long)shape[d];
        same += memcmp(a, b, sizeof(float) * (size_t)numel) == 0;
    }
    printf("%zu of %zu tensors round-tripped\n", same, n);
    cspresnet_model_free(back);
    cspresnet_model_free(m);
    return same == n && n > 0 ? 0 : 1;
}
"""


def test_formats_module_is_installed_and_links(prefix, tmp_path):
    """The optional safetensors module: its static library, header and pkg-config file
    are installed, and a program built with `pkg-config cspresnet_formats` writes and
    reads back a model."""
    assert (prefix / "lib" / "libcspresnet_formats.a").is_file()
    assert (prefix / "include" / "cspresnet_formats.h").is_file()
    lib = prefix / "lib" / f"libcspresnet.so.{VERSION}"
    src = tmp_path / "roundtrip.c"
    src.write_text(FORMATS_PROGRAM)
    exe = tmp_path / "roundtrip"
    env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib" / "pkgconfig"))
    flags = sh(["pkg-config", "--cflags", "--libs", "cspresnet_formats"], env=env).split()
    sh(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", *sanitizer_flags(lib), str(src), "-o", str(exe), *flags,
        f"-Wl,-rpath,{prefix / 'lib'}"])
    out = sh([str(exe), str(tmp_path / "t.safetensors")])
    m = re.match(r"(\d+) of (\d+) tensors round-tripped", out)
    assert m and m.group(1) == m.group(2) and int(m.group(2)) > 50, out
