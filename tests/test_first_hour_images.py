"""Rough edges a new user meets with images: PNGs with a tRNS chunk (palette, gray and
RGB transparency), libpng's warnings about harmless chunks (an odd iCCP profile), and
the file listing at the end of `cspresnet demo` when some photos cannot be read.

Reference: OpenCV's cv2.imread(path, cv2.IMREAD_COLOR) (python3-opencv), upstream's
decoder; decoded pixels must equal it exactly. The PNG files are written here byte by
byte (every colour type and bit depth that can carry tRNS), so the expected pixels are
also known independently of cv2: palette entries looked up, gray levels scaled to 8 bits
as libpng does (1 -> 255, 2 -> 85, 4 -> 17 per step), alpha and tRNS ignored, never
composited.
"""
from __future__ import annotations

import re
import struct
import subprocess
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT, describe_proc, run_cli

H, W = 7, 11  # odd sizes: rows of 1/2/4-bit pixels end inside a byte
SMALL_NET = ["--width-mult", "0.25", "--depth-mult", "0.33"]
SKIMAGE_DATA = Path("/usr/lib/python3/dist-packages/skimage/data")


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def pack_rows(samples: np.ndarray, depth: int) -> bytes:
    """samples (H, W * channels) of unsigned ints -> filter-0 scanlines, big-endian."""
    out = bytearray()
    for row in samples:
        out.append(0)
        if depth == 16:
            out += row.astype(">u2").tobytes()
        elif depth == 8:
            out += row.astype(np.uint8).tobytes()
        else:
            per = 8 // depth
            padded = np.zeros(-(-len(row) // per) * per, np.uint32)
            padded[:len(row)] = row
            for k in range(0, len(padded), per):
                byte = 0
                for v in padded[k:k + per]:
                    byte = byte << depth | int(v)
                out.append(byte)
    return bytes(out)


def png_file(color: int, depth: int, samples: np.ndarray, plte: bytes = b"", trns: bytes = b"",
             extra: bytes = b"") -> bytes:
    ihdr = struct.pack(">IIBBBBB", W, H, depth, color, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + extra
    if plte:
        body += chunk(b"PLTE", plte)
    if trns:
        body += chunk(b"tRNS", trns)
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IDAT", zlib.compress(pack_rows(samples, depth))) + \
        chunk(b"IEND", b"")


def transparency_pngs():
    """{name: (bytes, expected RGB uint8 (H, W, 3))} for every PNG kind that carries tRNS."""
    rng = np.random.default_rng(2024)
    files = {}
    for depth in (1, 2, 4, 8):
        n = 1 << depth if depth < 8 else 200
        palette = rng.integers(0, 256, (n, 3), dtype=np.uint8)
        index = rng.integers(0, n, (H, W))
        index[0, 0], index[-1, -1] = 0, n - 1  # a fully transparent and an opaque entry in use
        alpha = np.linspace(0, 255, max(n // 2, 1)).astype(np.uint8)  # shorter than PLTE: the rest opaque
        alpha[0] = 0
        for trns in (True, False):
            files[f"palette{depth}{'_trns' if trns else ''}"] = (
                png_file(3, depth, index, plte=palette.tobytes(), trns=alpha.tobytes() if trns else b""),
                palette[index])
    for depth in (1, 2, 4, 8, 16):
        top = (1 << depth) - 1
        gray = rng.integers(0, top + 1, (H, W))
        gray[0, 0] = top // 3
        data = png_file(0, depth, gray, trns=struct.pack(">H", top // 3))
        g8 = gray >> 8 if depth == 16 else gray * (255 // top)
        files[f"gray{depth}_trns"] = (data, np.repeat(g8.astype(np.uint8)[..., None], 3, -1))
    for depth in (8, 16):
        rgb = rng.integers(0, 1 << depth, (H, W, 3))
        rgb[2, 3] = rgb[0, 0]
        key = struct.pack(">HHH", *(int(v) for v in rgb[0, 0]))
        data = png_file(2, depth, rgb.reshape(H, W * 3), trns=key)
        files[f"rgb{depth}_trns"] = (data, (rgb >> 8 if depth == 16 else rgb).astype(np.uint8))
    return files


def decode(paths, tmp_path, name="out"):
    """Runs infer at the files' own size with no pre-processing: input.npy holds the
    decoded RGB values. Returns (proc, {stem: HxWx3 float32})."""
    out = tmp_path / name
    proc = run_cli(["infer", *SMALL_NET, "--size", f"{H},{W}", "--preprocess", "none", "--save-input",
                    "--return-idx", "3", "-q", "--out", out, *paths])
    got = {}
    for p in paths:
        f = out / Path(p).stem / "input.npy"
        if f.is_file():
            got[Path(p).stem] = np.transpose(np.load(f)[0], (1, 2, 0))
    return proc, got


def test_png_with_trns_decodes_like_cv2_imread(tmp_path):
    """Palette (1/2/4/8-bit), gray (1/2/4/8/16-bit) and RGB (8/16-bit) PNGs with a tRNS
    chunk decode to exactly what cv2.imread(IMREAD_COLOR) gives: the colours, with the
    transparency dropped (transparent pixels keep their palette colour)."""
    files = transparency_pngs()
    paths = []
    for name, (data, _) in files.items():
        p = tmp_path / f"{name}.png"
        p.write_bytes(data)
        paths.append(p)
    proc, got = decode(paths, tmp_path)
    assert proc.returncode == 0, describe_proc(proc)
    assert proc.stderr == "", describe_proc(proc)
    for p in paths:
        expected = files[p.stem][1]
        ref = cv2.imread(str(p), cv2.IMREAD_COLOR)
        assert ref is not None and ref.shape == (H, W, 3), p.name
        np.testing.assert_array_equal(ref[..., ::-1], expected, err_msg=f"{p.name}: cv2 vs the written pixels")
        assert p.stem in got, f"{p.name} was not decoded\n{describe_proc(proc)}"
        np.testing.assert_array_equal(got[p.stem], ref[..., ::-1].astype(np.float32), err_msg=f"{p.name} vs cv2")


def test_pil_palette_saved_with_transparency_decodes_like_cv2(tmp_path):
    """What users have on disk: PIL's P images saved with transparency= (one index, or
    one alpha per entry; PIL picks 1/2/4/8 bits from the palette size), and L/RGB
    images with a transparent colour."""
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    saved = {}
    for colors in (2, 4, 16, 60):
        pal = Image.fromarray(rgb).quantize(colors=colors)
        pal.save(tmp_path / f"pil_p{colors}_index.png", transparency=0)
        pal.save(tmp_path / f"pil_p{colors}_alphas.png", transparency=bytes(range(0, 256, 256 // colors))[:colors])
        saved[f"pil_p{colors}_index"] = saved[f"pil_p{colors}_alphas"] = np.asarray(pal.convert("RGB"))
    Image.fromarray(rgb).convert("L").save(tmp_path / "pil_l.png", transparency=int(rgb[0, 0, 0]))
    saved["pil_l"] = np.repeat(np.asarray(Image.fromarray(rgb).convert("L"))[..., None], 3, -1)
    Image.fromarray(rgb).save(tmp_path / "pil_rgb.png", transparency=tuple(int(v) for v in rgb[0, 0]))
    saved["pil_rgb"] = rgb
    paths = [tmp_path / f"{k}.png" for k in saved]
    with Image.open(paths[0]) as im:
        assert "transparency" in im.info  # PIL did write a tRNS chunk
    proc, got = decode(paths, tmp_path)
    assert proc.returncode == 0, describe_proc(proc)
    for p in paths:
        ref = cv2.imread(str(p), cv2.IMREAD_COLOR)[..., ::-1]
        np.testing.assert_array_equal(ref, saved[p.stem], err_msg=f"{p.name}: cv2 vs PIL")
        assert p.stem in got, f"{p.name} was not decoded\n{describe_proc(proc)}"
        np.testing.assert_array_equal(got[p.stem], ref.astype(np.float32), err_msg=f"{p.name} vs cv2")


def test_scikit_image_indexed_png_with_trns(tmp_path):
    """scikit-image's own foo3x5x4indexed.png (8-bit palette, 4 tRNS entries), when the
    package is installed; the hand-made files above cover the same kind everywhere."""
    src = SKIMAGE_DATA / "foo3x5x4indexed.png"
    if not src.is_file():
        pytest.skip("python3-skimage is not installed")
    ref = cv2.imread(str(src), cv2.IMREAD_COLOR)[..., ::-1]
    out = tmp_path / "out"
    proc = run_cli(["infer", *SMALL_NET, "--size", f"{ref.shape[0]},{ref.shape[1]}", "--preprocess", "none",
                    "--save-input", "--return-idx", "3", "-q", "--out", out, src])
    assert proc.returncode == 0, describe_proc(proc)
    ours = np.transpose(np.load(out / src.stem / "input.npy")[0], (1, 2, 0))
    np.testing.assert_array_equal(ours, ref.astype(np.float32))


def iccp(profile: bytes) -> bytes:
    # stored (level 0): libpng only checks the profile of a stream at least that long
    return chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(profile, 0))


def test_libpng_warnings_about_harmless_chunks_are_silent_errors_kept(tmp_path):
    """An iCCP profile libpng dislikes (it warns "iCCP: ..." and ignores the profile,
    the pixels are unchanged) decodes silently and like cv2; a real error (a broken
    IDAT checksum) still fails with a message naming the file."""
    rng = np.random.default_rng(9)
    rgb = rng.integers(0, 256, (H, W, 3))
    bad_profile = png_file(2, 8, rgb.reshape(H, W * 3), extra=iccp(b"\0" * 132))
    intent = bytearray(132)  # a profile header with a rendering intent out of 0..3
    intent[0:4] = struct.pack(">I", 132)
    intent[8:12] = bytes([2, 0x10, 0, 0])  # version 2.1
    intent[12:24], intent[36:40] = b"mntrRGB XYZ ", b"acsp"  # class, colour space, PCS; magic
    intent[64:68] = struct.pack(">I", 0x1000000)
    bad_intent = png_file(2, 8, rgb.reshape(H, W * 3), extra=iccp(bytes(intent)))
    paths = []
    for name, data in {"iccp_garbage": bad_profile, "iccp_intent": bad_intent}.items():
        p = tmp_path / f"{name}.png"
        p.write_bytes(data)
        paths.append(p)
        # cv2's libpng (default handler) does print the warning: the file exercises it
        warn = subprocess.run(
            ["/usr/bin/python3", "-c", "import cv2, sys; cv2.imread(sys.argv[1], cv2.IMREAD_COLOR)", str(p)],
            capture_output=True, text=True)
        assert "iCCP" in warn.stderr, f"{name}: libpng did not warn, the test file is not what it claims"
    for folder in (SKIMAGE_DATA, REPO_ROOT / "out" / "photos"):  # the README's photo, when there
        if (folder / "chelsea.png").is_file():
            paths.append(folder / "chelsea.png")
            break
    proc = run_cli(["infer", *SMALL_NET, "--size", "32,32", "--return-idx", "3", "--out", tmp_path / "o", *paths])
    assert proc.returncode == 0, describe_proc(proc)
    assert "libpng" not in proc.stderr and "iCCP" not in proc.stderr, describe_proc(proc)
    proc, got = decode(paths[:2], tmp_path, "exact")
    assert proc.returncode == 0 and proc.stderr == "", describe_proc(proc)
    for p in paths[:2]:
        np.testing.assert_array_equal(got[p.stem], rgb.astype(np.float32), err_msg=p.name)
        np.testing.assert_array_equal(cv2.imread(str(p), cv2.IMREAD_COLOR)[..., ::-1], rgb, err_msg=p.name)

    broken = bytearray(png_file(2, 8, rgb.reshape(H, W * 3)))
    i = broken.index(b"IDAT")
    n = struct.unpack(">I", broken[i - 4:i])[0]
    broken[i + 4 + n] ^= 0xFF  # the IDAT CRC
    p = tmp_path / "bad_idat_crc.png"
    p.write_bytes(bytes(broken))
    proc = run_cli(["infer", *SMALL_NET, "--size", "32,32", "--return-idx", "3", "--out", tmp_path / "b", p])
    assert proc.returncode == 1 and "bad_idat_crc.png" in proc.stderr and "corrupt PNG" in proc.stderr, \
        describe_proc(proc)
    assert not (tmp_path / "b" / "bad_idat_crc").exists(), "a failed decode left an output folder"


def broken_image_set(folder: Path):
    """Good and unreadable images side by side; returns the stems that must be listed."""
    rng = np.random.default_rng(3)
    good = rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)
    Image.fromarray(good).save(folder / "a.png")
    Image.fromarray(good).save(folder / "a.jpg", quality=90)  # same stem: its folder is a-2
    Image.fromarray(good[::-1]).save(folder / "d.jpg", quality=90)
    data = (folder / "a.png").read_bytes()
    (folder / "b_truncated.png").write_bytes(data[: len(data) // 2])
    jpg = (folder / "d.jpg").read_bytes()
    (folder / "c_truncated.jpg").write_bytes(jpg[: len(jpg) * 2 // 3])
    (folder / "e_notanimage.png").write_bytes(b"not a PNG, whatever the name says")
    return {"a", "a-2", "d"}, {"b_truncated", "c_truncated", "e_notanimage"}


def listed_feature_folders(stdout: str, out: Path):
    files = stdout.split("== files ==", 1)
    assert len(files) == 2, stdout
    names = re.findall(re.escape(f"{out}/features/") + r"([^/\s]+)/", files[1])
    return names, files[1]


def test_demo_lists_only_the_images_it_wrote(tmp_path):
    """Unreadable images among good ones: the demo reports them (exit 1) and its file
    listing names only folders that exist and hold what the line says."""
    photos = tmp_path / "photos"
    photos.mkdir()
    good, bad = broken_image_set(photos)
    out = tmp_path / "demo"
    proc = run_cli(["demo", "--quick", "--no-finetune", "--out", out, "--images", photos])
    assert proc.returncode == 1, describe_proc(proc)
    for stem in bad:
        assert stem in proc.stderr, describe_proc(proc)
    names, listing = listed_feature_folders(proc.stdout, out)
    assert sorted(names) == sorted(good), f"listed {names}, written {sorted(good)}\n{listing}"
    for name in names:
        folder = out / "features" / name
        for f in ("stage1.npy", "stage2.npy", "stage3.npy", "heatmap.png"):
            assert (folder / f).is_file(), f"listed but missing: {folder / f}\n{listing}"
    on_disk = {p.name for p in (out / "features").iterdir()}
    assert on_disk == good, f"partial outputs for unreadable images: {on_disk - good}"
    assert f"{out}/summary.txt" in listing and (out / "summary.txt").is_file()


def test_decoding_errors_leave_no_outputs(tmp_path):
    """infer on the same mix, in batches: each unreadable image gets no folder and no
    file (decoding finishes before anything is written), the good ones all their files."""
    photos = tmp_path / "photos"
    photos.mkdir()
    good, bad = broken_image_set(photos)
    out = tmp_path / "out"
    proc = run_cli(["infer", *SMALL_NET, "--size", "32,32", "--batch", "2", "--save-input",
                    "--visualize", "vis.png", "--out", out, photos])
    assert proc.returncode == 1, describe_proc(proc)
    assert {p.name for p in out.iterdir()} == good, describe_proc(proc)
    for name in good:
        assert {p.name for p in (out / name).iterdir()} == {"stage1.npy", "stage2.npy", "stage3.npy",
                                                            "input.npy", "vis.png"}
