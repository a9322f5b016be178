"""Images in, pictures out: decoding, resize, pre-processing, folders with a corrupt
file, batches, the --visualize picture, the progress bar and CLI conventions.

References (Debian packages): OpenCV's cv2 (python3-opencv) is what upstream itself
uses (cv2.imread IMREAD_COLOR, cv2.resize INTER_CUBIC); PIL (python3-pil) writes the
test files and is a second decoder. Tolerances, stated per test:
  - decoding: exactly equal to cv2.imread (all PNG kinds, JPEG, EXIF orientations) and to PIL's
    convert('RGB') (8-bit kinds);
  - resize: exactly equal to cv2.resize INTER_CUBIC (our resize reproduces OpenCV's
    fixed-point and SIMD arithmetic);
  - presets: max|diff| <= 1e-6 against numpy doing NormalizeImage's float32/float64 steps;
  - visualization: every heat-map pixel within 1 level of the stated formula.
"""
from __future__ import annotations

import os
import pty
import subprocess

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import describe_proc, get_cli_path, run_cli, compare

VIS_LABEL_H = 20


def scene(h, w, seed=0):
    """A photo-like test picture: smooth colour fields, edges, texture and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(x / 17.0) * np.cos(y / 23.0)
    g = 255 * (x / max(w - 1, 1)) * ((y // 9) % 2 * 0.5 + 0.5)
    b = np.where((x - w / 3) ** 2 + (y - h / 2) ** 2 < (min(h, w) / 4) ** 2, 230, 40 + 150 * y / h)
    img = np.stack([r, g, b], -1) + rng.normal(0, 12, (h, w, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def write_kinds(folder):
    """One file per colour type; returns {name: (path, expected RGB uint8 HxWx3)}."""
    rgb = scene(37, 53)
    files = {}
    p = folder / "rgb.png"
    Image.fromarray(rgb).save(p)
    files["rgb"] = (p, rgb)
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    p = folder / "gray.png"
    Image.fromarray(gray).save(p)
    files["gray"] = (p, np.repeat(gray[..., None], 3, -1))
    rgba = np.concatenate([rgb, np.linspace(0, 255, 37 * 53).reshape(37, 53, 1).astype(np.uint8)], -1)
    p = folder / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(p)
    files["rgba"] = (p, rgb)  # alpha dropped, not composited (cv2 IMREAD_COLOR)
    pal = Image.fromarray(rgb).quantize(colors=50)
    p = folder / "palette.png"
    pal.save(p)
    files["palette"] = (p, np.asarray(pal.convert("RGB")))
    g16 = (gray.astype(np.uint16) * 257 + np.arange(37 * 53).reshape(37, 53) % 200).astype(np.uint16)
    p = folder / "gray16.png"
    Image.fromarray(g16, "I;16").save(p)
    files["gray16"] = (p, np.repeat((g16 >> 8).astype(np.uint8)[..., None], 3, -1))
    rgb16 = rgb.astype(np.uint16) * 256 + 255
    p = folder / "rgb16.png"
    cv2.imwrite(str(p), rgb16[..., ::-1])  # cv2 writes BGR
    files["rgb16"] = (p, rgb)
    p = folder / "jpeg_rgb.jpg"
    Image.fromarray(rgb).save(p, quality=90)
    files["jpeg"] = (p, np.asarray(Image.open(p).convert("RGB")))
    p = folder / "jpeg_gray.jpg"
    Image.fromarray(gray).save(p, quality=85)
    files["jpeg_gray"] = (p, np.asarray(Image.open(p).convert("RGB")))
    return files


def infer(args, tmp_path, name="out"):
    out = tmp_path / name
    proc = run_cli(["infer", "--arch", "s", "--out", out] + list(args))
    return proc, out


def chw_to_hwc(a):
    return np.transpose(a[0], (1, 2, 0))


@pytest.fixture(scope="module")
def kinds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kinds")
    return folder, write_kinds(folder)


def test_decode_every_colour_type_matches_cv2_and_pil(kinds, tmp_path):
    folder, files = kinds
    # --size = the file's own size: no resize; --preprocess none: the RGB values as floats
    proc, out = infer([folder, "--size", "37,53", "--preprocess", "none", "--save-input",
                       "--return-idx", "3", "-q"], tmp_path)
    assert proc.returncode == 0, describe_proc(proc)
    for name, (path, expected) in files.items():
        ours = chw_to_hwc(np.load(out / path.stem / "input.npy"))
        assert ours.dtype == np.float32 and ours.shape == (37, 53, 3), name
        ref_cv2 = cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1]
        np.testing.assert_array_equal(ours, ref_cv2.astype(np.float32), err_msg=f"{name} vs cv2.imread")
        # expected: PIL's convert('RGB') for 8-bit kinds; numpy's >> 8 for the 16-bit ones
        np.testing.assert_array_equal(ours, expected.astype(np.float32), err_msg=f"{name} vs PIL/numpy")


@pytest.mark.parametrize("fmt", ["jpg", "png"])
def test_exif_orientation_is_applied_like_cv2_imread(tmp_path, fmt):
    """Phone pictures carry their rotation in EXIF; cv2.imread (upstream's decoder) turns
    them upright, so the features must be computed on the upright picture too. Every
    orientation 1-8 (mirrors, rotations, transposes: h and w swap for 5-8), in a JPEG APP1
    and a PNG eXIf chunk, decoded without resizing, equals cv2.imread exactly."""
    rgb = scene(23, 37, seed=11)
    for orientation in range(1, 9):
        path = tmp_path / f"o{orientation}.{fmt}"
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(rgb).save(path, exif=exif.tobytes(), **({"quality": 95} if fmt == "jpg" else {}))
        ref = cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1]
        assert ref.shape[:2] == ((37, 23) if orientation >= 5 else (23, 37)), "cv2 did not apply the orientation"
        proc, out = infer([path, "--size", f"{ref.shape[0]},{ref.shape[1]}", "--preprocess", "none",
                           "--save-input", "--return-idx", "3", "-q"], tmp_path, name=f"out{orientation}")
        assert proc.returncode == 0, describe_proc(proc)
        ours = chw_to_hwc(np.load(out / path.stem / "input.npy"))
        np.testing.assert_array_equal(ours, ref.astype(np.float32), err_msg=f"{fmt} orientation {orientation}")


@pytest.mark.parametrize("size", [(64, 64), (31, 97), (128, 75), (20, 20), (7, 300)])
def test_resize_is_cv2_inter_cubic(kinds, tmp_path, size):
    _, files = kinds
    path, rgb = files["rgb"]
    h, w = size
    proc, out = infer([path, "--size", f"{h},{w}", "--preprocess", "none", "--save-input",
                       "--return-idx", "3", "-q"], tmp_path)
    assert proc.returncode == 0, describe_proc(proc)
    ours = chw_to_hwc(np.load(out / "rgb" / "input.npy"))
    ref = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_CUBIC)
    # upstream's Resize(interp=2) calls cv2.resize with fx/fy; the mapping is the same
    ref_fx = cv2.resize(rgb, None, None, fx=w / rgb.shape[1], fy=h / rgb.shape[0], interpolation=cv2.INTER_CUBIC)
    if ref_fx.shape == ref.shape:
        np.testing.assert_array_equal(ref, ref_fx)
    np.testing.assert_array_equal(ours, ref.astype(np.float32), err_msg=f"resize to {size}")


def test_resize_real_photo_to_640(tmp_path):
    """A larger photo-like JPEG down and up to the PP-YOLOE eval size, exact."""
    big = scene(427, 640, seed=3)
    p = tmp_path / "photo.jpg"
    Image.fromarray(big).save(p, quality=92)
    proc, out = infer([p, "--size", "640,640", "--preprocess", "none", "--save-input",
                       "--return-idx", "3", "-q"], tmp_path)
    assert proc.returncode == 0, describe_proc(proc)
    ours = chw_to_hwc(np.load(out / "photo" / "input.npy"))
    decoded = cv2.imread(str(p), cv2.IMREAD_COLOR)[..., ::-1]
    ref = cv2.resize(decoded, (640, 640), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_array_equal(ours, ref.astype(np.float32))


@pytest.mark.parametrize("preset", ["ppyoloe+", "ppyoloe", "imagenet"])
def test_preprocess_presets_match_normalize_image(kinds, tmp_path, preset):
    _, files = kinds
    path, rgb = files["rgb"]
    proc, out = infer([path, "--size", "48,40", "--preprocess", preset, "--save-input",
                       "--return-idx", "3", "-q"], tmp_path)
    assert proc.returncode == 0, describe_proc(proc)
    ours = chw_to_hwc(np.load(out / "rgb" / "input.npy"))
    im = cv2.resize(rgb, (40, 48), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    im *= 1.0 / 255.0  # PaddleDetection NormalizeImage, is_scale=True
    if preset != "ppyoloe+":
        im -= np.array([0.485, 0.456, 0.406])[np.newaxis, np.newaxis, :]
        im /= np.array([0.229, 0.224, 0.225])[np.newaxis, np.newaxis, :]
    assert np.max(np.abs(ours - im)) <= 1e-6, f"{preset}: max diff {np.max(np.abs(ours - im))}"


def test_letterbox_geometry(kinds, tmp_path):
    _, files = kinds
    path, rgb = files["rgb"]  # 37 x 53
    H, W = 64, 64
    proc, out = infer([path, "--size", f"{H},{W}", "--letterbox", "--preprocess", "none", "--save-input",
                       "--return-idx", "3", "-q"], tmp_path)
    assert proc.returncode == 0, describe_proc(proc)
    ours = chw_to_hwc(np.load(out / "rgb" / "input.npy"))
    r = min(H / 37, W / 53)
    nw, nh = round(53 * r), round(37 * r)
    top, left = round((H - nh) / 2 - 0.1), round((W - nw) / 2 - 0.1)
    ref = np.full((H, W, 3), 128, np.uint8)
    ref[top:top + nh, left:left + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_array_equal(ours, ref.astype(np.float32))


def test_folder_with_corrupt_image_reports_and_goes_on(kinds, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    good = scene(50, 60, seed=5)
    Image.fromarray(good).save(folder / "a.png")
    Image.fromarray(scene(40, 40, seed=6)).save(folder / "c.jpg")
    data = (folder / "a.png").read_bytes()
    (folder / "b_truncated.png").write_bytes(data[: len(data) // 2])
    (folder / "d_notanimage.jpg").write_bytes(b"this is not a JPEG at all")
    (folder / "notes.md").write_text("ignored: not an image suffix")
    proc, out = infer([folder, "--size", "64,64", "--batch", "2"], tmp_path)
    assert proc.returncode == 1, describe_proc(proc)
    assert "b_truncated.png" in proc.stderr and "d_notanimage.jpg" in proc.stderr, describe_proc(proc)
    assert "2 of 4 images failed" in proc.stderr, describe_proc(proc)
    for name in ("a", "c"):
        for stage, (c, s) in {1: (128, 8), 2: (256, 4), 3: (512, 2)}.items():
            arr = np.load(out / name / f"stage{stage}.npy")
            assert arr.shape == (1, c, s, s) and np.all(np.isfinite(arr)), (name, stage)
    assert not (out / "b_truncated").exists() and not (out / "d_notanimage").exists()
    assert not (out / "notes").exists()


def test_batches_and_list_file_give_the_same_features(tmp_path):
    imgs = []
    for k in range(3):
        p = tmp_path / f"img{k}.png"
        Image.fromarray(scene(45 + 7 * k, 60, seed=10 + k)).save(p)
        imgs.append(p)
    lst = tmp_path / "list.txt"
    lst.write_text("# three images\n" + "\n".join(str(p) for p in imgs) + "\n\n")
    p1, out1 = infer([*imgs, "--size", "64,96", "--batch", "1", "-q"], tmp_path, "b1")
    p3, out3 = infer([lst, "--size", "64,96", "--batch", "3", "-q"], tmp_path, "b3")
    assert p1.returncode == 0, describe_proc(p1)
    assert p3.returncode == 0, describe_proc(p3)
    assert p1.stdout == "" and p3.stdout == "", "-q must print nothing on success"
    for k in range(3):
        for stage in (1, 2, 3):
            compare(np.load(out1 / f"img{k}" / f"stage{stage}.npy"), np.load(out3 / f"img{k}" / f"stage{stage}.npy"),
                    config=f"img{k} stage{stage}: batch 1 vs batch 3")


def heat(t):
    return np.stack([np.clip(3 * t - k, 0, 1) for k in range(3)], -1) * 255.0


def test_visualization_layout_and_pixels(tmp_path):
    src = tmp_path / "pic.jpg"
    Image.fromarray(scene(90, 120, seed=7)).save(src, quality=90)
    H, W = 64, 96
    vis = tmp_path / "vis.png"
    proc, out = infer([src, "--size", f"{H},{W}", "--preprocess", "none", "--save-input",
                       "--return-idx", "0,2,3", "--visualize", vis], tmp_path)
    assert proc.returncode == 0, describe_proc(proc)
    assert str(vis) in proc.stdout, "the picture's path is printed"
    with Image.open(vis) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        pic = np.asarray(im).astype(np.int32)
    assert pic.shape == (VIS_LABEL_H + H, 4 * W, 3), pic.shape
    base = chw_to_hwc(np.load(out / "pic" / "input.npy")).astype(np.int32)
    np.testing.assert_array_equal(pic[VIS_LABEL_H:, :W], base, err_msg="panel 0 is the network input")
    for r, (stage, stride) in enumerate([(0, 4), (2, 16), (3, 32)]):
        f = np.load(out / "pic" / f"stage{stage}.npy")[0].astype(np.float64)
        norm = np.sqrt((f ** 2).sum(0))
        t = (norm - norm.min()) / (norm.max() - norm.min())
        ys = np.minimum(np.arange(H) // stride, norm.shape[0] - 1)
        xs = np.minimum(np.arange(W) // stride, norm.shape[1] - 1)
        expected = np.floor(0.5 * base + 0.5 * heat(t[ys][:, xs]) + 0.5)
        panel = pic[VIS_LABEL_H:, (1 + r) * W:(2 + r) * W]
        assert np.max(np.abs(panel - expected)) <= 1, f"stage {stage} heat map off by {np.max(np.abs(panel - expected))}"
    for p in range(4):  # every label strip: white background with dark text in it
        strip = pic[:VIS_LABEL_H, p * W:(p + 1) * W]
        dark = (strip.sum(-1) == 0).sum()
        white = (strip.sum(-1) == 3 * 255).sum()
        assert dark >= 40 and white >= strip.shape[0] * strip.shape[1] // 2, (p, dark, white)
    # heat maps of different stages differ (they are not the same picture)
    assert np.any(pic[VIS_LABEL_H:, W:2 * W] != pic[VIS_LABEL_H:, 3 * W:])


def test_progress_bar_only_on_a_terminal_and_no_color(tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for k in range(2):
        Image.fromarray(scene(40, 40, seed=k)).save(imgs / f"{k}.png")
    args = [str(get_cli_path()), "infer", "--arch", "s", "--size", "32,32", "--out", str(tmp_path / "o"), str(imgs)]

    def on_pty(env):
        master, slave = pty.openpty()
        proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=slave, env=env, timeout=120)
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        os.close(master)
        return proc.returncode, b"".join(chunks).decode(errors="replace")

    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    rc, tty = on_pty(env)
    assert rc == 0 and "2/2 images" in tty and "ETA" in tty and "\033[32m" in tty, repr(tty)
    rc, tty = on_pty(dict(env, NO_COLOR="1"))
    assert rc == 0 and "2/2 images" in tty and "\033[32m" not in tty, repr(tty)
    plain = run_cli(args[1:])
    assert plain.returncode == 0 and "\r" not in plain.stderr and "\033" not in plain.stderr, describe_proc(plain)
    assert plain.stdout.count(" -> ") == 2, "one plain line per image when not on a terminal"


@pytest.mark.parametrize("cmd", ["summary", "infer", "demo"])
def test_cli_conventions(cmd):
    v = run_cli([cmd, "--version"])
    assert v.returncode == 0 and v.stdout.startswith("cspresnet "), describe_proc(v)
    h = run_cli([cmd, "--help"])
    assert h.returncode == 0 and "usage" in h.stdout, describe_proc(h)
    bad = run_cli([cmd, "--no-such-flag"])
    assert bad.returncode == 2 and bad.stderr and not bad.stdout, describe_proc(bad)


def test_bad_flag_values_are_usage_errors(tmp_path):
    for args in (["--size", "0,5"], ["--preprocess", "yolo"], ["--batch", "0"], ["--threads", "0"]):
        proc, _ = infer(["x.png"] + args, tmp_path)
        assert proc.returncode == 2 and proc.stderr, describe_proc(proc)
    proc, _ = infer([tmp_path / "missing.png"], tmp_path)
    assert proc.returncode == 1 and "missing.png" in proc.stderr, describe_proc(proc)
