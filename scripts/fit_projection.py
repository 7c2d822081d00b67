"""Fit the projection of the Milvus copy (store/projection.py) on a folder of videos.

    .venv/bin/python scripts/fit_projection.py VIDEOS_DIR [--out astradup/data/projection.npz] \
        [--frames-dim 32] [--audio-dim 32] [--descriptor-dim 256] [--config my.yaml]

Decodes every video with the configured decoder, embeds its frames with the configured embedder
(its full output) and computes its audio window vectors (indexing step), then keeps the top
singular vectors of each set (and, per set, the similarity quantiles of rows of different videos
in full and projected space, which map a full-space floor to the KNN's: ``knn_floor``): ``descriptor`` (the frame descriptor the embedder hands on, see
``embedder.pca_dims``) and ``frames`` (the Milvus copy) come from the same decomposition, so the
Milvus basis is the descriptor's first columns. The tail tables count every pair of rows from two
different files as unrelated: fit them (``--tails-only`` keeps the bases) on videos that are not
copies of each other. Fit it on media like what you index; the builtin
file was fitted on the sources and queries of the development benchmark made by
``../shared/bench/make_bench.py --sources 10 --seed 1`` (real photos, videos and music from Debian
packages), never on the seed-2 benchmark used to check it. After changing the projection of an existing index, run ``astradup reindex``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from astradup.config import load_config  # noqa: E402
from astradup.errors import MediaError  # noqa: E402
from astradup.features.embedder import get_embedder  # noqa: E402
from astradup.features.extract import cpu_features  # noqa: E402
from astradup.io.decode import decode_path  # noqa: E402
from astradup.io.sources import list_videos  # noqa: E402
from astradup.store.projection import BUILTIN, TAIL_PROBS, fit_basis, matching_floor, save, tail_table  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("videos", nargs="+", help="video files or folders")
    ap.add_argument("--out", default=str(BUILTIN))
    ap.add_argument("--frames-dim", type=int, default=32)
    ap.add_argument("--audio-dim", type=int, default=32)
    ap.add_argument("--descriptor-dim", type=int, default=256)
    ap.add_argument("--config", default=None)
    ap.add_argument("--label", default="", help="what the videos are, stored with the bases")
    ap.add_argument("--tails-only", action="store_true",
                    help="keep the bases already in --out and only (re)compute their tail tables from these videos")
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    cfg.embedder.pca_dims = 0  # fit on the model's own output, not on an earlier fit's
    emb = get_embedder(cfg.embedder)
    frames, audio, n_videos, t0 = [], [], 0, time.time()
    for uri, _ in list_videos(args.videos, cfg.s3_endpoint):
        try:
            dec = decode_path(uri, cfg.decode)
        except MediaError as e:
            print(f"skipped {uri}: {e}", file=sys.stderr)
            continue
        f = cpu_features(dec, cfg)
        if len(dec.frames):
            frames.append(emb.embed(dec.frames).astype(np.float32))
        if len(f.audio_vectors):
            audio.append(f.audio_vectors)
        n_videos += 1
    if not frames:
        raise SystemExit("no decodable video found")
    if args.tails_only:
        return write_tails(Path(args.out), frames, audio, args.label or ", ".join(args.videos))
    fr, au = np.concatenate(frames), (np.concatenate(audio) if audio else None)
    db = fit_basis(fr, max(args.descriptor_dim, args.frames_dim)) if args.descriptor_dim else None
    fb = db[:, :args.frames_dim] if db is not None else fit_basis(fr, args.frames_dim)
    ab = fit_basis(au, args.audio_dim) if au is not None and len(au) >= args.audio_dim else None
    info = {"kind": cfg.embedder.kind, "model": cfg.embedder.model, "short_side": cfg.embedder.short_side,
            "n_videos": n_videos, "n_frames": len(fr), "n_windows": 0 if au is None else len(au),
            "fitted_on": args.label or ", ".join(args.videos)}
    save(args.out, fb, ab, info, descriptor=db, frame_tails=tail_table(frames, fb),
         audio_tails=tail_table(audio, ab) if ab is not None else None)
    kept = float(np.linalg.norm(fr @ fb, axis=1).mean())
    if db is not None:
        print(f"mean norm kept by the {db.shape[1]}-d descriptor {float(np.linalg.norm(fr @ db, axis=1).mean()):.4f}")
    print(f"fitted on {n_videos} videos ({len(fr)} frames, {info['n_windows']} audio windows) in "
          f"{time.time() - t0:.0f} s; mean norm kept by the frame projection {kept:.3f}; wrote {args.out}")
    return 0


def write_tails(out: Path, frames: list[np.ndarray], audio: list[np.ndarray], label: str) -> int:
    """Add tail tables for the bases already in ``out`` (the rest of the file kept as it is)."""
    with np.load(out) as z:
        arrays = {k: z[k] for k in z.files}
    ft = tail_table(frames, arrays.get("frames"))
    at = tail_table(audio, arrays.get("audio"))
    info = {k[len("info_"):]: arrays[k].item() for k in arrays if k.startswith("info_")}
    info["tails_fitted_on"] = label
    save(out, arrays.get("frames"), arrays.get("audio"), info, descriptor=arrays.get("descriptor"),
         frame_tails=ft, audio_tails=at)
    for name, t in (("frames", ft), ("audio", at)):
        if t is not None:
            print(f"{name}: unrelated rows reach 0.55 at share {np.interp(0.55, t[0], TAIL_PROBS):.4f} in full "
                  f"space; the KNN floor for 0.55 is {matching_floor(0.55, t):.3f}")
    print(f"tails from {len(frames)} videos written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
