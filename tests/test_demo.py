"""`cspresnet demo` end to end, in its short setting (--quick: 160 x 160, one photo,
one timing). The photos are scikit-image's samples when present (python3-skimage, or
out/photos from scripts/fetch-photos.sh), otherwise generated; --images pins them here
so the test does not depend on the machine."""
from __future__ import annotations

import re

import numpy as np
from PIL import Image

from conftest import describe_proc, run_cli


def test_demo_quick(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (120, 90, 3), dtype=np.uint8)).save(photos / "one.jpg")
    out = tmp_path / "demo"
    proc = run_cli(["demo", "--quick", "--no-finetune", "--out", out, "--images", photos], timeout=300)
    assert proc.returncode == 0, describe_proc(proc)
    text = proc.stdout
    # 1: the summary totals of preset s (SPEC section 2) and the full table on disk
    assert "Total params: 3,000,928" in text, text
    assert "Total params: 3,000,928" in (out / "summary.txt").read_text()
    assert "stage 3 (stride 32)" in text
    # 2: the fine-tune step is announced and, here, skipped
    assert "== 2/4 fine-tune" in text and "skipped (--no-finetune)" in text
    # 3: features and the picture of the photo, and where they went
    folder = out / "features" / "one"
    for stage, c, s in ((1, 128, 20), (2, 256, 10), (3, 512, 5)):
        assert np.load(folder / f"stage{stage}.npy").shape == (1, c, s, s)
    with Image.open(folder / "heatmap.png") as im:
        assert im.size == (4 * 160, 20 + 160)
    assert f"{folder}/" in text and "heatmap.png" in text
    # 4: a measured speed
    m = re.search(r"median ([0-9.]+) ms", text)
    assert m and float(m.group(1)) > 0, text
    assert f"{out}/summary.txt" in text and "done in" in text


def test_demo_empty_image_folder_fails(tmp_path):
    out = tmp_path / "demo"
    empty = tmp_path / "empty"
    empty.mkdir()
    # a folder with no images is an error the demo reports (exit 1), not a silent success
    proc = run_cli(["demo", "--quick", "--no-finetune", "--out", out, "--images", empty], timeout=300)
    assert proc.returncode == 1 and "no .jpg, .jpeg or .png" in proc.stderr, describe_proc(proc)


def test_demo_quick_with_finetune(tmp_path):
    """The whole short demo, fine-tune included (cspresnet train on Fashion-MNIST)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(photos / "flat.png")
    out = tmp_path / "demo"
    proc = run_cli(["demo", "--quick", "--out", out, "--images", photos], timeout=300)
    assert proc.returncode == 0, describe_proc(proc)
    m = re.search(r"test accuracy\s+([0-9.]+)", proc.stdout + proc.stderr)
    assert m and 0.0 <= float(m.group(1)) <= 1.0, describe_proc(proc)
    assert (out / "finetune").is_dir() and f"{out}/finetune/" in proc.stdout
    assert (out / "features" / "flat" / "heatmap.png").is_file()
