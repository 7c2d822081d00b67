"""`astradup export-descriptors` and `astradup eval`: the VSC22 benchmark's side of the command
line (descriptor files for its matchers, and scores of predicted segments against truth)."""
from __future__ import annotations

import json
import sys

import numpy as np

from astradup.config import Config
from astradup.errors import AstraDupError


def cmd_export_descriptors(args, cfg: Config) -> int:
    """Per-second descriptors as a VSC22 descriptor file: the indexed videos', or with --query the
    given files' (embedded as a search embeds a query). Each row is the frame embedding joined by
    the audio at that second (match/joint_descriptor.py; ``--audio-share 0``: frames alone), the
    frames cut by the descriptor basis where the row would pass VSC22's 512 dimensions."""
    from astradup.eval.vsc_format import export_descriptors, vsc_id

    from astradup.catalog import Catalog
    from astradup.match import joint_descriptor as jd
    from astradup.match import score_norm

    step = 1.0 / cfg.decode.fps if cfg.decode.fps > 0 else 1.0
    beta, share = args.normalise, args.audio_share
    if not (0.0 <= beta <= 4.0):
        raise AstraDupError(f"--normalise must be between 0 and 4, got {beta}")
    if not (0.0 <= share < 1.0):
        raise AstraDupError(f"--audio-share must be at least 0 and below 1, got {share}")
    fit = _Fit(cfg, share, beta)
    shards = Catalog(cfg).shards
    if args.query:
        from astradup.search import Searcher

        searcher = Searcher(cfg)
        feats = [(vsc_id(path), searcher.query_from_file(path).features) for path in args.query]
        rows = [fit.rows(f) for _, f in feats]
        folded = {}
        if beta > 0:
            # one scan of the library: each query row's 2nd-best indexed video per modality
            bgs = [jd.JointBackground(fr, au, k=2) for fr, au in rows]
            for batch in shards.iter_features():
                for lib in batch:
                    lib_rows = fit.rows(lib)
                    for bg in bgs:
                        bg.add(*lib_rows)
            folded = {i: score_norm.fold(jd.join(*rows[i], share), bg.value(share), beta)
                      for i, bg in enumerate(bgs)}

        def videos():
            for i, (name, f) in enumerate(feats):
                yield name, f.timestamps, folded[i] if i in folded else jd.join(*rows[i], share)
    else:
        def videos():
            for batch in shards.iter_features():
                for f in batch:
                    emb = jd.join(*fit.rows(f), share)
                    yield ((vsc_id(f.uri) if f.uri else f.video_id), f.timestamps,
                           score_norm.pad_refs(emb) if beta > 0 else emb)
    res = export_descriptors(args.out, videos(), default_step=step)
    print(f"{res['videos']} video(s), {res['rows']} rows of {res['dim']}-d descriptors -> {res['path']}")
    if res["dim"] > fit.max_dim:
        print(f"note: {res['dim']}-d rows pass the VSC22 descriptor track's {fit.max_dim} (no descriptor basis "
              f"was fitted for {cfg.embedder.kind}/{cfg.embedder.model}: scripts/fit_projection.py; or lower "
              "--audio-share)", file=sys.stderr)
    return 0


class _Fit:
    """A video's (frames, audio) rows for the file: frames cut by the descriptor basis when the
    joined row (+ the normalisation column) would pass VSC22's width; one basis per frame width."""

    def __init__(self, cfg: Config, share: float, beta: float) -> None:
        from astradup.eval.vsc_format import MAX_DIM
        from astradup.features.audio import vector_dim

        self.cfg, self.max_dim = cfg, MAX_DIM
        self.audio_dim = vector_dim(cfg.audio.n_mfcc) if share > 0 else 0
        self.budget = MAX_DIM - self.audio_dim - (1 if beta > 0 else 0)
        self._bases: dict[int, object] = {}

    def rows(self, f):
        """Blank pictures keep only their sound (joint_descriptor.rows_of)."""
        from astradup.features.descriptor import basis_within
        from astradup.match.joint_descriptor import rows_of

        width = int(np.shape(f.embeddings)[1]) if np.ndim(f.embeddings) == 2 else 0
        if width not in self._bases:
            e = self.cfg.embedder
            self._bases[width] = basis_within(e.pca_file, self.budget, kind=e.kind, model=e.model, full_dim=width)
        try:
            return rows_of(f, self.audio_dim, basis=self._bases[width], blank=f.blank_rows())
        except ValueError as e:  # audio vectors of other settings than this config's (audio.n_mfcc)
            raise AstraDupError(f"{f.uri or f.video_id}: {e}; export with the settings it was indexed with, "
                                "or --audio-share 0") from None


def cmd_eval(args, cfg: Config) -> int:
    from astradup.eval.metrics import evaluate
    from astradup.eval.segments_csv import read_rows

    res = evaluate(read_rows(args.truth), read_rows(args.pred))
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"LCT-2024: f1 {res['f1']:.4f}  iou {res['iou']:.4f}  score {res['score']:.4f}")
    print(f"VSC22 segment micro-AP: {res['segment_uap']:.4f}")
    for t, r in sorted(res.get("per_transform", {}).items()):
        print(f"  {t:<14} f1 {r['f1']:.3f} iou {r['iou']:.3f} score {r['score']:.3f} segAP {r['segment_uap']:.3f}")
    return 0
