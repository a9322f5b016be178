"""The image path under hostile input (issue 7): truncated, bit-flipped and hand-made
broken JPEG/PNG files, decompression bombs. Each truncation and hand-made file must make
`cspresnet infer` exit 1 with one stderr line naming the file; bit flips that still decode
may succeed, but nothing may crash, hang or trip a sanitizer."""
from __future__ import annotations

import io
import struct
import subprocess
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import get_cli_path

TIMEOUT_S = 60
SANITIZER_WORDS = ("AddressSanitizer", "LeakSanitizer", "runtime error", "UndefinedBehavior")


def png_bytes(mode="RGB", size=(40, 30)):
    rng = np.random.default_rng(7)
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes():
    rng = np.random.default_rng(8)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def jpeg_resized_header(h, w):
    """A valid JPEG whose SOF0 frame header claims h x w pixels (a decompression bomb)."""
    data = bytearray(jpeg_bytes())
    i = data.index(b"\xff\xc0")
    data[i + 5:i + 7] = h.to_bytes(2, "big")
    data[i + 7:i + 9] = w.to_bytes(2, "big")
    return bytes(data)


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_ihdr(w, h, depth=8, color=2, idat=b""):
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat or zlib.compress(b"\0" * 16)) + \
        chunk(b"IEND", b"")


def hand_made():
    good = png_bytes()
    bad_crc = bytearray(good)
    bad_crc[29] ^= 0xFF  # inside the IHDR CRC
    return {
        "bomb_100000x100000.png": png_with_ihdr(100000, 100000),
        "bomb_70000x1.png": png_with_ihdr(70000, 1),
        "zero_width.png": png_with_ihdr(0, 10),
        "bad_depth.png": png_with_ihdr(8, 8, depth=7),
        "bad_color_type.png": png_with_ihdr(8, 8, color=5),
        "palette_without_plte.png": png_with_ihdr(8, 8, color=3),
        "ihdr_crc.png": bytes(bad_crc),
        "signature_only.png": b"\x89PNG\r\n\x1a\n",
        "idat_garbage.png": png_with_ihdr(8, 8, idat=b"\x78\x9c" + b"\xff" * 30),
        "jpeg_soi_only.jpg": b"\xff\xd8",
        "jpeg_no_frame.jpg": b"\xff\xd8\xff\xd9",
        "jpeg_two_sof.jpg": jpeg_bytes()[:2] + b"\xff\xc0\x00\x11\x08\xff\xff\xff\xff\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"
        + jpeg_bytes()[2:],
        "jpeg_bomb_65000x65000.jpg": jpeg_resized_header(65000, 65000),
        "text.png": b"this is not an image\n",
        "empty.jpg": b"",
    }


def truncations():
    out = {}
    for name, data in (("png", png_bytes()), ("png_rgba", png_bytes("RGBA")), ("jpg", jpeg_bytes())):
        ext = "jpg" if name == "jpg" else "png"
        for frac in (0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.98):
            cut = max(1, int(len(data) * frac))
            out[f"trunc_{name}_{cut}.{ext}"] = data[:cut]
    return out


def bit_flips():
    rng = np.random.default_rng(99)
    out = {}
    for name, data in (("png", png_bytes("P")), ("jpg", jpeg_bytes())):
        ext = "jpg" if name == "jpg" else "png"
        for i in range(12):
            b = bytearray(data)
            pos = int(rng.integers(0, min(len(b), 200)))  # headers and early data
            b[pos] ^= 1 << int(rng.integers(0, 8))
            out[f"flip_{name}_{i}_{pos}.{ext}"] = bytes(b)
    return out


def run(path, tmp_path):
    cmd = [str(get_cli_path()), "infer", "--width-mult", "0.25", "--depth-mult", "0.33", "--size", "32,32",
           "--out", str(tmp_path / (path.name + ".out")), "-q", str(path)]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"hang: {' '.join(cmd)}")


def write_all(tmp_path, files):
    paths = []
    for name, data in files.items():
        p = tmp_path / name
        p.write_bytes(data)
        paths.append(p)
    return paths


def test_the_unbroken_images_work(tmp_path):
    for p in write_all(tmp_path, {"good.png": png_bytes(), "good.jpg": jpeg_bytes()}):
        proc = run(p, tmp_path)
        assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("group", ["hand", "trunc"])
def test_broken_images_fail_with_one_line(tmp_path, group):
    files = hand_made() if group == "hand" else truncations()
    assert len(files) >= 14
    bad = []
    for p in write_all(tmp_path, files):
        proc = run(p, tmp_path)
        lines = proc.stderr.strip().splitlines()
        if proc.returncode != 1 or len(lines) != 1 or p.name not in lines[0] or \
                any(w in proc.stderr for w in SANITIZER_WORDS):
            bad.append(f"{p.name}: exit {proc.returncode}, stderr {proc.stderr!r}")
    assert not bad, "\n".join(bad)


def test_bit_flipped_images_never_crash(tmp_path):
    bad = []
    for p in write_all(tmp_path, bit_flips()):
        proc = run(p, tmp_path)
        if proc.returncode not in (0, 1) or any(w in proc.stderr for w in SANITIZER_WORDS):
            bad.append(f"{p.name}: exit {proc.returncode}, stderr {proc.stderr[-500:]!r}")
    assert not bad, "\n".join(bad)
