"""Frame-embedder throughput in images per second, on CUDA when available, else on the CPU.

    .venv/bin/python benchmarks/gpu_embedder.py [--model sscd_distilled|sscd] [--sides 288,224]
        [--batches 32,128] [--frames FILE.mp4] [--seconds 20] [--json OUT]

It builds the SSCD ONNX embedder with device="auto" (ONNX Runtime's CUDA provider when the
onnxruntime-gpu build is installed and sees a GPU) and prints which device actually ran, so a
figure from a machine without a GPU can never pass for a GPU figure. Frames are real decoded
frames of ``--frames`` (1 fps, 224 px, as the pipeline feeds them) or, without it, random 224 px
frames (the network's cost does not depend on the pixels). Each (input side, batch size) pair is
warmed up, then run for ``--seconds``; the last line is the best images/s.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from astradup.features.embedder import SSCDOnnxEmbedder


def load_frames(path: str, n: int) -> np.ndarray:
    from astradup.config import DecodeConfig
    from astradup.io.decode import decode_path

    fr = decode_path(path, DecodeConfig()).frames
    reps = int(np.ceil(n / max(len(fr), 1)))
    return np.concatenate([fr] * reps)[:n]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="sscd_distilled")
    ap.add_argument("--sides", default="288,224")
    ap.add_argument("--batches", default="32,128")
    ap.add_argument("--frames", default="", help="a video whose 1 fps frames are embedded (default: random)")
    ap.add_argument("--seconds", type=float, default=20.0, help="timed run per setting")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    import onnxruntime as ort

    sides = [int(s) for s in args.sides.split(",") if s]
    batches = [int(b) for b in args.batches.split(",") if b]
    n = max(batches) * 4
    frames = load_frames(args.frames, n) if args.frames else \
        np.random.default_rng(0).integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)
    print(f"onnxruntime {ort.__version__}, providers available: {', '.join(ort.get_available_providers())}")
    rows = []
    device = "?"
    for side in sides:
        for bs in batches:
            emb = SSCDOnnxEmbedder(args.model, batch_size=bs, device=args.device, short_side=side)
            device = emb.device
            emb.embed(frames[:bs])  # warm-up: CUDA context, cuDNN autotune, thread pools
            done, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < args.seconds:
                emb.embed(frames)
                done += len(frames)
            ips = done / (time.perf_counter() - t0)
            rows.append({"model": args.model, "side": side, "batch": bs, "device": device,
                         "providers": emb.providers, "images_per_s": ips})
            print(f"  {args.model} {side} px, batch {bs:4d} on {device.upper()} ({emb.providers[0]}): "
                  f"{ips:8.1f} images/s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    best = max(rows, key=lambda r: r["images_per_s"])
    note = "" if device == "cuda" else " - NO GPU was used: this is a CPU figure"
    print(f"embedder throughput: {best['images_per_s']:.1f} images/s on {device.upper()} "
          f"({best['model']}, {best['side']} px, batch {best['batch']}){note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
