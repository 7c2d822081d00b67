"""pHash: stable under the edits a copy goes through, far apart for different pictures."""
from __future__ import annotations

import io
import subprocess

import numpy as np
import pytest
from PIL import Image

from astradup.features.phash import bits, hamming_matrix, phash_frames


def _lavfi_frame(source: str, size: int = 224, at: float = 1.0) -> np.ndarray:
    cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi",
           "-i", f"{source}=size={size}x{size}:rate=10", "-ss", f"{at}", "-frames:v", "1",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(size, size, 3).copy()


def _smooth_field(seed: int, size: int = 224) -> np.ndarray:
    """A natural-looking picture: low-pass random noise, different per seed."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    img = Image.fromarray(coarse).resize((size, size), Image.BICUBIC)
    detail = rng.normal(0, 6, (size, size, 3))
    return np.clip(np.asarray(img, np.float64) + detail, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def pictures() -> dict[str, np.ndarray]:
    return {
        "testsrc2": _lavfi_frame("testsrc2"),
        "mandelbrot": _lavfi_frame("mandelbrot"),
        "field1": _smooth_field(1),
        "field2": _smooth_field(2),
        "field3": _smooth_field(3),
    }


def _jpeg(x: np.ndarray, quality: int = 50) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def _resize(x: np.ndarray) -> np.ndarray:
    h, w = x.shape[:2]
    return np.asarray(Image.fromarray(x).resize((w * 3 // 4, h * 3 // 4), Image.BILINEAR))


def _brighter(x: np.ndarray) -> np.ndarray:
    return np.clip(x.astype(np.int32) + 12, 0, 255).astype(np.uint8)


def _dist(x: np.ndarray, y: np.ndarray) -> int:
    return int(hamming_matrix(phash_frames(x[None]), phash_frames(y[None]))[0, 0])


def test_shape_and_dtype(pictures):
    frames = np.stack(list(pictures.values()))
    h = phash_frames(frames)
    assert h.shape == (len(frames), 32) and h.dtype == np.uint8
    assert phash_frames(np.zeros((0, 64, 64, 3), np.uint8)).shape == (0, 32)
    # Roughly half the bits are set: median thresholding.
    assert 100 <= bits(h).sum(1).min() and bits(h).sum(1).max() <= 156


def test_identical_frame_distance_zero(pictures):
    for x in pictures.values():
        assert _dist(x, x.copy()) == 0


@pytest.mark.parametrize("edit", [_jpeg, _resize, _brighter])
def test_small_edits_keep_hash_close(pictures, edit):
    for name, x in pictures.items():
        d = _dist(x, edit(x))
        assert d < 30, (name, edit.__name__, d)


def test_unrelated_pictures_are_far(pictures):
    names = list(pictures)
    h = phash_frames(np.stack([pictures[n] for n in names]))
    d = hamming_matrix(h, h)
    off = d[~np.eye(len(names), dtype=bool)]
    assert off.min() > 80, d


def test_flat_frames_hash_deterministically():
    black = np.zeros((2, 100, 120, 3), np.uint8)
    h = phash_frames(black)
    assert hamming_matrix(h, h).max() == 0


def test_hamming_matrix_matches_naive_loop():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (7, 32), dtype=np.uint8)
    b = rng.integers(0, 256, (5, 32), dtype=np.uint8)
    b[0] = a[3]
    naive = np.array([[sum(bin(int(x) ^ int(y)).count("1") for x, y in zip(ra, rb, strict=True)) for rb in b]
                      for ra in a])
    got = hamming_matrix(a, b)
    assert got.dtype.kind == "i" and got.shape == (7, 5)
    np.testing.assert_array_equal(got, naive)
    assert got[3, 0] == 0
    assert hamming_matrix(a[:0], b).shape == (0, 5)


def test_bits_squared_l2_equals_hamming():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (4, 32), dtype=np.uint8)
    b = rng.integers(0, 256, (3, 32), dtype=np.uint8)
    fa, fb = bits(a), bits(b)
    assert fa.shape == (4, 256) and fa.dtype == np.float32 and set(np.unique(fa)) <= {0.0, 1.0}
    l2 = ((fa[:, None, :] - fb[None, :, :]) ** 2).sum(-1)
    np.testing.assert_array_equal(l2.astype(int), hamming_matrix(a, b))


def test_non_square_input_is_accepted(pictures):
    x = pictures["mandelbrot"]
    wide = np.asarray(Image.fromarray(x).resize((300, 170)))
    assert _dist(x, np.asarray(Image.fromarray(wide).resize((224, 224)))) < 30
    assert phash_frames(wide[None]).shape == (1, 32)
