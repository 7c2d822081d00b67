"""Frame embedders: the shared contract, SSCD's copy-detection behaviour, and that the CLIP
loaders really load weights (tiny random models, since hub weights cannot be downloaded here)."""
from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from astradup.config import EmbedderConfig
from astradup.errors import ConfigError
from astradup.features import embedder as emb
from astradup.features.embedder import (KINDS, FrameEmbedder, clear_embedder_cache, get_embedder,
                                        make_embedder, sscd_resize_shape)

SIZE = 224


def _lavfi_frame(tmp: Path, source: str) -> np.ndarray:
    """One RGB frame from an ffmpeg test source: deterministic, textured, nothing stored in the repo."""
    out = tmp / (source.split("=")[0] + ".png")
    spec = f"{source}{':' if '=' in source else '='}size={SIZE}x{SIZE}:rate=1"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", spec,
                    "-frames:v", "1", str(out)], check=True, capture_output=True)
    return np.asarray(Image.open(out).convert("RGB"))


def _light_copy(frame: np.ndarray) -> np.ndarray:
    """A re-upload: slight blur then a JPEG re-encode."""
    buf = io.BytesIO()
    Image.fromarray(frame).filter(ImageFilter.GaussianBlur(0.5)).save(buf, "JPEG", quality=75)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def _random_frames(n: int, h: int = 48, w: int = 80, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def _check_contract(e: FrameEmbedder, frames: np.ndarray) -> np.ndarray:
    v = e.embed(frames)
    assert v.shape == (len(frames), e.dim) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    empty = e.embed(frames[:0])
    assert empty.shape == (0, e.dim) and empty.dtype == np.float32
    return v


# ---------------------------------------------------------------------------------------------
# SSCD


@pytest.fixture(scope="module")
def sscd() -> dict[str, FrameEmbedder]:
    return {m: make_embedder(EmbedderConfig(kind="sscd_onnx", model=m, device="cpu", batch_size=4, pca_dims=0))
            for m in ("sscd_distilled", "sscd")}


@pytest.fixture(scope="module")
def lavfi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    tmp = tmp_path_factory.mktemp("lavfi")
    return {name: _lavfi_frame(tmp, src) for name, src in [
        ("mandelbrot", "mandelbrot"), ("testsrc2", "testsrc2"),
        ("life", "life=mold=10:ratio=0.3:seed=3")]}


@pytest.mark.parametrize("model", ["sscd_distilled", "sscd"])
def test_sscd_contract_and_chunking(sscd, model):
    e = sscd[model]
    assert isinstance(e, FrameEmbedder) and e.dim == 512 and model in e.name
    frames = _random_frames(6)  # non-square: exercises the short-side resize
    v = _check_contract(e, frames)  # batch_size 4 -> chunks of 4 + 2
    whole = make_embedder(EmbedderConfig(kind="sscd_onnx", model=model, device="cpu", pca_dims=0,
                                         batch_size=64)).embed(frames)
    np.testing.assert_allclose(v, whole, atol=1e-4)


def test_sscd_identical_frames_identical_vectors(sscd, lavfi):
    f = lavfi["mandelbrot"]
    v = sscd["sscd_distilled"].embed(np.stack([f, f, f]))
    np.testing.assert_allclose(v[0], v[1], atol=1e-6)
    np.testing.assert_allclose(v[0], v[2], atol=1e-6)


@pytest.mark.parametrize("model", ["sscd_distilled", "sscd"])
def test_sscd_copy_scores_above_unrelated(sscd, lavfi, model):
    e = sscd[model]
    names = list(lavfi)
    v = e.embed(np.stack([lavfi[n] for n in names]))
    copy = e.embed(_light_copy(lavfi["mandelbrot"])[None])[0]
    copy_sim = float(v[names.index("mandelbrot")] @ copy)
    unrelated = v @ v.T
    worst_unrelated = float(unrelated[np.triu_indices(len(names), 1)].max())
    assert copy_sim > 0.8, copy_sim
    assert worst_unrelated < 0.5, worst_unrelated
    assert copy_sim - worst_unrelated > 0.4


def test_sscd_resize_follows_short_side():
    assert sscd_resize_shape(224, 224) == (288, 288)
    assert sscd_resize_shape(90, 160) == (288, 512)
    assert sscd_resize_shape(160, 90) == (512, 288)


def test_sscd_rejects_bad_frames(sscd):
    e = sscd["sscd_distilled"]
    with pytest.raises(ValueError, match="uint8"):
        e.embed(np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        e.embed(np.zeros((8, 8, 3), np.uint8))


def test_sscd_unknown_model():
    with pytest.raises(ConfigError, match="sscd_distilled"):
        make_embedder(EmbedderConfig(kind="sscd_onnx", model="resnet"))


# ---------------------------------------------------------------------------------------------
# factory and cache


def test_unknown_kind_names_valid_kinds():
    with pytest.raises(ConfigError) as err:
        make_embedder(EmbedderConfig(kind="dinov2"))
    for kind in KINDS:
        assert kind in str(err.value)


def test_unknown_device():
    with pytest.raises(ConfigError, match="tpu"):
        make_embedder(EmbedderConfig(kind="sscd_onnx", device="tpu"))


def test_get_embedder_caches_by_config_values():
    clear_embedder_cache()
    a = get_embedder(EmbedderConfig(device="cpu"))
    assert get_embedder(EmbedderConfig(device="cpu")) is a  # equal values, new object: cached
    assert get_embedder(EmbedderConfig(device="cpu", query_flip=False)) is a
    b = get_embedder(EmbedderConfig(device="cpu", batch_size=8))
    assert b is not a and b.batch_size == 8
    clear_embedder_cache()
    assert get_embedder(EmbedderConfig(device="cpu")) is not a


def test_get_embedder_evicts_least_recently_used(monkeypatch):
    clear_embedder_cache()
    monkeypatch.setattr(emb, "_CACHE_SIZE", 2)
    cfgs = [EmbedderConfig(device="cpu", batch_size=b) for b in (1, 2, 3)]
    first = get_embedder(cfgs[0])
    get_embedder(cfgs[1])
    assert get_embedder(cfgs[0]) is first  # touch: now most recent
    get_embedder(cfgs[2])  # evicts batch_size=2, not the touched one
    assert get_embedder(cfgs[0]) is first
    assert len(emb._cache) == 2 and emb._cache_key(cfgs[1]) not in emb._cache
    clear_embedder_cache()


# ---------------------------------------------------------------------------------------------
# open_clip (tiny random ViT registered at test time)

TINY_OPEN_CLIP = "astradup-test-tiny-vit"


@pytest.fixture(scope="module")
def tiny_open_clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    import open_clip

    cfg = {"embed_dim": 32,
           "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16,
                          "head_width": 32},
           "text_cfg": {"context_length": 16, "vocab_size": 512, "width": 32, "heads": 2,
                        "layers": 1}}
    path = tmp_path_factory.mktemp("open_clip") / f"{TINY_OPEN_CLIP}.json"
    path.write_text(json.dumps(cfg))
    open_clip.add_model_config(path)
    return TINY_OPEN_CLIP


def test_open_clip_random_init_contract(tiny_open_clip):
    e = make_embedder(EmbedderConfig(kind="open_clip", model=tiny_open_clip, device="cpu",
                                     batch_size=3))
    assert e.dim == 32 and isinstance(e, FrameEmbedder)
    _check_contract(e, _random_frames(5))


def test_open_clip_checkpoint_path_loads_the_weights(tiny_open_clip, tmp_path):
    import open_clip
    import torch

    torch.manual_seed(0)
    ref, _, preprocess = open_clip.create_model_and_transforms(tiny_open_clip, pretrained=None)
    ref.eval()
    ckpt = tmp_path / "tiny.pt"
    torch.save(ref.state_dict(), ckpt)

    frames = _random_frames(4, 90, 160, seed=1)
    e = make_embedder(EmbedderConfig(kind="open_clip", model=tiny_open_clip, pretrained=str(ckpt),
                                     device="cpu"))
    got = _check_contract(e, frames)
    with torch.no_grad():  # open_clip's own path: its transform on PIL images
        x = torch.stack([preprocess(Image.fromarray(f)) for f in frames])
        want = ref.encode_image(x, normalize=True).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)

    torch.manual_seed(1)  # a random init must differ, or the comparison above proves nothing
    other = make_embedder(EmbedderConfig(kind="open_clip", model=tiny_open_clip, device="cpu"))
    assert np.abs(other.embed(frames) - want).max() > 1e-2


def test_open_clip_config_errors(tiny_open_clip, tmp_path):
    missing = tmp_path / "nope" / "weights.pt"
    with pytest.raises(ConfigError, match=str(missing)):
        make_embedder(EmbedderConfig(kind="open_clip", model=tiny_open_clip, pretrained=str(missing)))
    with pytest.raises(ConfigError, match="not-a-tag"):
        make_embedder(EmbedderConfig(kind="open_clip", model=tiny_open_clip, pretrained="not-a-tag"))
    with pytest.raises(ConfigError, match="no-such-model"):
        make_embedder(EmbedderConfig(kind="open_clip", model="no-such-model"))


# ---------------------------------------------------------------------------------------------
# transformers CLIP (tiny random vision tower saved with save_pretrained)


def test_hf_clip_loads_saved_model(tmp_path):
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, image_size=32, patch_size=8, projection_dim=16)
    ref = CLIPVisionModelWithProjection(config).eval()
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    ref.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)

    e = make_embedder(EmbedderConfig(kind="hf_clip", model=str(tmp_path), device="cpu",
                                     batch_size=2))
    assert e.dim == 16 and isinstance(e, FrameEmbedder)
    frames = _random_frames(3, 90, 160, seed=2)
    got = _check_contract(e, frames)
    with torch.no_grad():  # the processor's canonical input: PIL images
        pixels = processor(images=[Image.fromarray(f) for f in frames],
                           return_tensors="pt")["pixel_values"]
        want = ref(pixel_values=pixels).image_embeds.numpy()
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_hf_clip_missing_directory(tmp_path):
    missing = tmp_path / "no_model_here"
    with pytest.raises(ConfigError, match=str(missing)):
        make_embedder(EmbedderConfig(kind="hf_clip", model=str(missing)))
