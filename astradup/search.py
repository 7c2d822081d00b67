"""Query video -> same features -> KNN per frame/window -> candidates -> per-modality evidence -> fused, ranked matches.

The CLI and the HTTP service both call ``Searcher``, so a search gives the same answer wherever it is asked.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np

from astradup import telemetry
from astradup.catalog import Catalog
from astradup.config import Config, DecodeConfig
from astradup.features.extract import add_embeddings, cpu_features, mirrored_embeddings
from astradup.features.pitch_variants import pitch_variants
from astradup.io.decode import decode_video
from astradup.io.ids import content_id
from astradup.io.sources import local_copy
from astradup.match.align import suppress_overlaps
from astradup.match.candidates import top_candidates, vote
from astradup.match.common import CommonSegment, Support, find_common, mask_pair, match_floor, may_be_common
from astradup.match.products import all_products, frame_products
from astradup.match.query_rows import (check_dims, could_match_rows, heard, knn_variants, outside, pitch_outside,
                                      pitch_rows, spread_rows, step, window_centres)
from astradup.match.selfjoin import Rows, best_per_video, exact_floors, exact_knn, floors, merge_hits, prune
from astradup.match.fusion import fuse
from astradup.match.scoring import backgrounds, informative, pair_audio_copy, pair_evidence, pair_segments
from astradup.records import CodeReading, VideoFeatures, VideoMatch, VideoRef

AUDIO_VOTE_WEIGHT = 0.5  # an audio window counts half a frame: audio alone is weaker evidence
# A neighbour votes by how far it beats the similarity that this share of unrelated row pairs reach
# (match/candidates.vote): 0.05 found 3 more of the 75 copies among the candidates on the hard
# benchmark's four seeds (KNN emulated on their features), the same on dev8/dev40.
VOTE_TAIL = 0.05
# The pitch variants ask for every 2nd query window: the hard benchmark's figures of every window
# (every 4th lost a copy), KNN p50 142 instead of 253 ms at 10,000 videos (docs/scaling.md, fifth round).
PITCH_KNN_STRIDE = 2
STAGE = telemetry.QUERY_STAGE_LATENCY  # no-op without Ray (the CLI), a Ray histogram in the Serve replica


@dataclass
class Knn:
    """What the KNN step found for one query: the candidates to score and its common segments."""

    candidates: list[str]
    common: list[CommonSegment] = dataclasses.field(default_factory=list)


@dataclass
class Query:
    features: VideoFeatures
    mirror: np.ndarray | None  # embeddings of mirrored frames (finds hflip copies), None if unavailable
    # [V, W, Da] the audio windows' vectors with the pitch moved (features/pitch_variants.py), row w
    # of each the same stretch as the features' window w; None: not made (indexed videos)
    pitch: np.ndarray | None = None
    # the Chromaprint codes of each pitch reading (match/audio_confirm.py): () where none were made
    pitch_codes: tuple[CodeReading, ...] = ()


class Searcher:
    def __init__(self, cfg: Config, catalog: Catalog | None = None) -> None:
        self.cfg = cfg
        self.catalog = catalog or Catalog(cfg)

    @property
    def embedder(self):
        return self.catalog.embedder

    def query_from_file(self, uri: str) -> Query:
        with local_copy(uri, self.cfg.s3_endpoint) as path:
            return self.embed_query(*self.read_query(path, uri))

    def read_query(self, path: str, uri: str, decode: DecodeConfig | None = None
                   ) -> tuple[VideoFeatures, np.ndarray, np.ndarray, tuple[CodeReading, ...]]:
        """``query_from_file``'s first half on a local file, (CPU features, frames, audio pitch
        variants, their codes): what fails here is the file's fault. ``decode``: tighter limits than
        ``cfg.decode``."""
        with telemetry.timed(STAGE, stage="decode"):
            dec = decode_video(path, VideoRef(content_id(path), uri, os.path.getsize(path)), decode or self.cfg.decode)
        with telemetry.timed(STAGE, stage="features"):
            feats = cpu_features(dec, self.cfg, audio_step=self.cfg.audio.query_step)
            pitch, codes = pitch_variants(dec.audio if len(feats.audio_vectors) else None, dec.sample_rate,
                                          self.cfg.audio, feats.audio_windows)
            return feats, dec.frames, pitch, codes

    def embed_query(self, feats: VideoFeatures, frames: np.ndarray, pitch: np.ndarray | None = None,
                    pitch_codes: tuple[CodeReading, ...] = ()) -> Query:
        with telemetry.timed(STAGE, stage="embed"):
            feats = add_embeddings(feats, frames, self.embedder)
            mirror = mirrored_embeddings(frames, self.embedder) if self.cfg.embedder.query_flip else None
        return Query(feats, mirror, pitch if pitch is not None and len(pitch) else None, tuple(pitch_codes))

    def query_from_fingerprint(self, src: str | bytes, max_bytes: int | None = None, name: str = "") -> Query:
        """The query a fingerprint file (astradup/fingerprint.py) holds: the features
        ``query_from_file`` built where the video is, so the search answers as it would with the
        video. FingerprintError for a file that is not one, or was made with other embedder or
        audio settings than this index's; mirrored frames are used only when ``embedder.query_flip``
        is on here, as for a video."""
        from astradup.features.audio import vector_dim
        from astradup.fingerprint import MAX_FILE_BYTES, check_compatible, read_fingerprint

        fp = read_fingerprint(src, MAX_FILE_BYTES if max_bytes is None else max_bytes, name)
        check_compatible(fp, self.embedder.name, self.embedder.dim, vector_dim(self.cfg.audio.n_mfcc),
                         name or (src if isinstance(src, str) else "fingerprint"))
        return Query(fp.features, fp.mirror if self.cfg.embedder.query_flip else None, fp.pitch, fp.pitch_codes)

    @property
    def _floors(self) -> tuple[float, float]:
        """(visual, audio) similarity at which a row pair is match evidence (SegmentConfig)."""
        g = self.cfg.segments
        return (match_floor(g.visual_lo, g.visual_hi, g.cell_threshold),
                match_floor(g.audio_lo, g.audio_hi, g.cell_threshold))

    def _knn_k(self) -> int:
        """Neighbours asked per row in the first pass: search.top_k for the votes, and at least
        common.min_videos (a row with fewer hits at the common floor cannot be common)."""
        k = self.cfg.search.top_k
        return max(k, self.cfg.common.min_videos) if self.cfg.common.min_videos > 0 else k

    @property
    def _knn_floors(self) -> tuple[float, float]:
        """``_floors`` as the KNN's similarities read (store/projection.py ``knn_floor``)."""
        vis, aud = self._floors
        proj = self.catalog.vectors.projection
        return proj.knn_floor(vis, "frames"), proj.knn_floor(aud, "audio")

    def _hits(self, n_rows: int, floor: float, search, videos: list = ()) -> list:
        """Per row, its hits from ``search(row_indices, k)``: ``_knn_k`` of them, more if common (``_deepened``)."""
        return self._deepened(search(np.arange(n_rows), self._knn_k()), floor, search, videos)

    def _deepened(self, hits: list, floor: float, search, videos: list = ()) -> list:
        """``hits``, the rows that ``may_be_common`` with ``videos`` asked again for ``common.search_k``: a
        distinct-video count needs more neighbours (an intro holds alike frames); most rows are not common."""
        c = self.cfg.common
        deep = may_be_common(hits, floor, c.min_videos, c.max_cover, videos) if c.search_k > self._knn_k() else []
        for i, h in zip(deep, search(np.asarray(deep), c.search_k) if deep else []):
            hits[i] = h
        return hits

    def _support(self, centres: np.ndarray) -> Support | None:
        """Audio windows' Support: two hits of one stretch are off by up to the indexed spacing."""
        c = self.cfg.common
        return Support(centres, c.audio_support, self.cfg.audio.step * self.cfg.vectors.audio_stride) \
            if c.audio_support else None

    def _common(self, f: VideoFeatures, frame_times: np.ndarray, frame_hits: list, audio_hits: list
                ) -> list[CommonSegment]:
        c = self.cfg.common
        vis, aud = self._knn_floors  # the hits' similarities are in the projection's space
        centres = window_centres(f)
        return find_common(frame_times, frame_hits, centres, audio_hits, vis, aud, c.min_videos, c.max_cover,
                           c.max_gap, frame_cell=step(f.timestamps), window_step=step(centres),
                           audio_support=self._support(centres))

    def _pick(self, f: VideoFeatures, frame_times: np.ndarray, frame_hits: list, extra_frame_hits: list,
              audio_hits: list, pruned: bool, extra_audio_hits: list = ()) -> Knn:
        """Votes (top_k neighbours per row), common segments (all the neighbours asked), and with
        ``pruned`` only the candidates some row *outside* the common segments came close to among
        its top_k (the rows asked more for the common count are judged as the others): one that
        matched the intro alone cannot reach a label or a copied segment. ``extra_frame_hits``:
        the mirrored frames' (rows at the same ``frame_times``), which vote but are not counted;
        ``extra_audio_hits`` the pitch variants' (each variant's windows in turn, row w the same
        window as ``audio_hits``' row w), each window's best reading voting once."""
        k = self.cfg.search.top_k
        common = self._common(f, frame_times, frame_hits, audio_hits)
        top_f = [h[:k] for h in frame_hits]
        top_m = [h[:k] for h in extra_frame_hits]
        top_a = [h[:k] for h in audio_hits]
        proj = self.catalog.vectors.projection
        a_floor = proj.unrelated_level(VOTE_TAIL, "audio")
        n_var = len(extra_audio_hits) // max(len(top_a), 1)
        # A variant's hit counts by how far it beats the level the best of a window's 1 + n_var readings
        # of unrelated music reaches as often as one reading reaches a_floor (a union bound): no votes for sound-alikes.
        lift = proj.unrelated_level(VOTE_TAIL / (1 + n_var), "audio") - a_floor if n_var else 0.0
        for v in range(n_var):
            # a window votes once, with its best reading (as is or a pitch variant)
            shifted = [[h[:-1] + (h[-1] - lift,) for h in row[:k]]
                       for row in extra_audio_hits[v * len(top_a):(v + 1) * len(top_a)]]
            top_a = merge_hits(top_a, shifted, k)
        f_votes = vote(top_f + top_m, floor=proj.unrelated_level(VOTE_TAIL, "frames"))
        a_votes = vote(top_a, weight=AUDIO_VOTE_WEIGHT, floor=a_floor)
        votes = {v: f_votes.get(v, 0.0) + a_votes.get(v, 0.0) for v in {**f_votes, **a_votes}}
        cands = top_candidates(votes, self.cfg.search.max_candidates, leaders=(f_votes, a_votes))
        if pruned:
            fh = outside(top_f, frame_times, common) + outside(top_m, frame_times, common)
            ah = outside(top_a, window_centres(f), common)
            cands = prune(cands, best_per_video(fh), best_per_video(ah),
                          *floors(self.cfg.score, self.cfg.segments, self.cfg.decode.fps))
        return Knn(cands, common)

    def knn(self, q: Query, exclude: str | None = None, pruned: bool = False) -> Knn:
        """The ``search.max_candidates`` videos most voted for by the KNN neighbours of the query's
        frames and audio windows, and the query's common segments (match/common.py). ``pruned``:
        without those that no frame or window outside the common segments came close to
        (match/selfjoin.py ``floors``): they cannot reach a label or a copied segment, so a search
        that lists only those need not score them."""
        k = self._knn_k()
        vs = self.catalog.vectors
        vis, aud = self._knn_floors
        keep = informative(q.features) if len(q.features.embeddings) else slice(None)
        emb = np.asarray(q.features.embeddings)[keep]
        av = np.asarray(q.features.audio_vectors)
        frame_hits, mirror_hits, (audio_hits, pitch_hits) = vs.at_once(
            lambda: self._hits(len(emb), vis, lambda i, kk: vs.search_frames(emb[i], kk, exclude=exclude)),
            lambda: vs.search_frames(q.mirror[keep], k, exclude=exclude) if q.mirror is not None and len(q.mirror)
            else [],
            lambda: self._audio_hits(q, av, aud, k, exclude) if len(av) else ([], []))
        times = np.asarray(q.features.timestamps, np.float64).reshape(-1)[keep] \
            if len(q.features.timestamps) else np.zeros(0)
        return self._pick(q.features, times, frame_hits, mirror_hits, audio_hits, pruned, pitch_hits)

    def _audio_hits(self, q: Query, av: np.ndarray, floor: float, k: int, exclude: str | None) -> tuple[list, list]:
        """The windows' hits, and beside their second request the pitch variants' of windows whose best is
        under ``search.pitch_gate`` (one heard clearly was not shifted; variants are most KNN rows: docs/scaling.md)."""
        search = lambda i, kk: self.catalog.vectors.search_audio(av[i], kk, exclude=exclude)  # noqa: E731
        support, hits = [(np.arange(len(av)), self._support(window_centres(q.features)))], search(np.arange(len(av)), k)
        if q.pitch is None or not len(q.pitch):
            return self._deepened(hits, floor, search, support), []
        ask = ~heard(hits, self.cfg.search.pitch_gate)
        return self.catalog.vectors.beside(lambda: self._deepened(hits, floor, search, support),
                                           lambda: self._pitch_hits(q, k, exclude, ask))  # ask: before deepening

    def _pitch_hits(self, q: Query, k: int, exclude: str | None, ask: np.ndarray | None = None) -> list:
        """The hits of the variants ``search.pitch_knn`` names, each variant's windows in turn
        (``pitch_rows``: which are asked)."""
        variants = knn_variants(np.asarray(q.pitch, np.float32), self.cfg.audio.query_pitch, self.cfg.search.pitch_knn)
        n_var, n_win, dim = variants.shape
        rows = pitch_rows(n_win, PITCH_KNN_STRIDE, ask)
        hits = self.catalog.vectors.search_audio(variants[:, rows].reshape(-1, dim), k,
                                                 exclude=exclude) if len(rows) and n_var else []
        return spread_rows(hits, rows, n_var, n_win)

    def candidates(self, q: Query, exclude: str | None = None, pruned: bool = False) -> list[str]:
        return self.knn(q, exclude, pruned).candidates  # knn's candidates alone

    def candidates_many(self, queries: dict[str, VideoFeatures], pruned: bool = False) -> dict[str, list[str]]:
        """``knn_many``'s candidates alone."""
        return {v: r.candidates for v, r in self.knn_many(queries, pruned).items()}

    def knn_many(self, queries: dict[str, VideoFeatures], pruned: bool = False, knn=None) -> dict[str, Knn]:
        """Candidates and common segments of several *indexed* videos at once, each as
        ``knn(Query(f), exclude=id)`` would find them: one KNN request per modality for all their
        rows (their own rows left out), the neighbours among themselves found exactly in memory
        (match/selfjoin.py). ``pruned``: leave out candidates no row came close to (the dedup job,
        which keeps only labelled matches and copied segments). ``knn``: what answers the requests
        instead of Milvus (the dedup job's dedup/local_knn.LocalKnn)."""
        proj = self.catalog.vectors.projection
        vs = knn or self.catalog.vectors
        vis, aud = self._knn_floors
        ids = sorted(queries)
        reduced = {v: proj.reduce(queries[v]) for v in ids}

        def rows_hits(full: list[np.ndarray], search, project, index: list[tuple[str, np.ndarray, np.ndarray]],
                      floor: float, audio: bool = False):
            owners = np.asarray([v for v, x in zip(ids, full) for _ in range(len(x))], dtype=object)
            if not len(owners):
                return owners, []
            q = np.concatenate([x for x in full if len(x)]).astype(np.float32)
            qp = project(q)
            rows = Rows.stack(index, qp.shape[1])
            # audio: each video's rows judged with its own Support, as its own search judges them
            # (frames have none, and without it may_be_common judges each row alone)
            per = [(np.flatnonzero(owners == v), self._support(window_centres(queries[v]))) for v in ids] \
                if audio else ()
            hits = self._hits(len(q), floor, lambda i, k: merge_hits(
                search(q[i], k, exclude=ids), exact_knn(qp[i], owners[i], rows, k), k), per)
            return owners, hits

        keeps = {v: informative(queries[v]) if len(queries[v].embeddings) else np.zeros(0, bool) for v in ids}
        frames = [np.asarray(queries[v].embeddings, np.float32)[keeps[v]]
                  if len(queries[v].embeddings) else np.zeros((0, 1), np.float32) for v in ids]
        f_own, f_hits = rows_hits(frames, vs.search_frames, proj.query_frames,
                                  [(v, reduced[v].embeddings, reduced[v].timestamps) for v in ids], vis)
        audio = [np.asarray(queries[v].audio_vectors, np.float32) if len(queries[v].audio_vectors)
                 else np.zeros((0, 1), np.float32) for v in ids]
        a_own, a_hits = rows_hits(audio, vs.search_audio, proj.query_audio,
                                  [(v, reduced[v].audio_vectors,
                                    np.asarray(reduced[v].audio_windows, np.float32).reshape(-1, 2)[:, 0])
                                   for v in ids], aud, audio=True)
        by_video: dict[str, tuple[list, list]] = {v: ([], []) for v in ids}
        for owners, hits, slot in ((f_own, f_hits, 0), (a_own, a_hits, 1)):
            for o, h in zip(owners, hits):
                by_video[o][slot].append(h)
        out: dict[str, Knn] = {}
        for v in ids:
            fh, ah = by_video[v]
            f = queries[v]
            times = np.asarray(f.timestamps, np.float64).reshape(-1)[keeps[v]] if len(keeps[v]) else np.zeros(0)
            out[v] = self._pick(f, times, fh, [], ah, pruned)
        return out

    def score(self, q: Query, candidates: list[str], segments: bool = True, pruned: bool = False,
              common: list[CommonSegment] | tuple = (), features: dict[str, VideoFeatures] | None = None
              ) -> list[VideoMatch]:
        """Each candidate's evidence, fused score, label and copied segments, best first; the
        ``common`` segments' rows (the query's, and the candidate's that are the same content) left
        out of it (match/common.py). ``pruned``: a candidate none of whose frame or window pairs
        outside them reaches ``exact_floors`` is left out unscored (it could be listed only with
        label none and nothing copied). ``features``: the candidates' records when the caller has
        read them already (the dedup join reads a whole batch's at once)."""
        feats = features if features is not None else self.catalog.shards.load_features(candidates)
        vis_floor, aud_floor = self._floors
        out: list[VideoMatch] = []
        bar = exact_floors(self.cfg.score, self.cfg.segments, self.cfg.decode.fps)
        present = {v: feats[v] for v in candidates if v in feats}
        kept = all_products(q.features, present, q.mirror)  # each pair's frame products, made once
        bgs = backgrounds(q.features, present, self.cfg.segments, q.mirror, kept) if segments else {}
        pitch = pitch_outside(q.features, q.pitch, common)  # the rows mask_pair keeps
        for vid in candidates:
            s0 = feats.get(vid)
            if s0 is None:
                continue
            check_dims(q.features, s0)
            prod = kept.pop(vid, None) or frame_products(q.features, s0, q.mirror)
            qf, s = mask_pair(q.features, s0, list(common), vis_floor, aud_floor,
                              prod.plain if prod is not None else None)
            shared = s is not s0  # the candidate holds common content too
            if pruned and not could_match_rows(qf, s, q.mirror, pitch, bar, prod):
                continue
            ev = pair_evidence(qf, s, self.cfg.score, q.mirror, prod)
            fused = fuse(ev.modality_scores(), self.cfg.fusion)
            notes = list(fused.notes)
            lacks = "query" if not q.features.has_audio else "source" if not s0.has_audio else ""
            notes = [n.replace("no audio evidence", f"{lacks} has no audio track") for n in notes] if lacks else notes
            if ev.mirrored:
                notes.append("mirrored copy")
            if shared:
                notes.append("common content left out: " + ", ".join(
                    f"q {c.q_start:.1f}-{c.q_end:.1f} s (in {c.videos} videos)" for c in common))
            acopy = pair_audio_copy(qf, s, ev, self.cfg.segments, self.cfg.audio_copy)
            if acopy is not None:
                notes.append(acopy.note())
            scores = {m: v for m, v in ev.modality_scores().items() if v is not None}
            segs = tuple(pair_segments(qf, s, self.cfg.segments, q.mirror, bgs.get(vid), pitch, prod, q.pitch_codes)) \
                if segments else ()
            out.append(VideoMatch(source_id=vid, source_uri=s.uri, scores=scores, fused=fused.score,
                                  confidence=fused.confidence, label=fused.label, review=fused.review,
                                  notes=tuple(notes), segments=segs, audio_copy=acopy))
        if segments:
            keep = set(suppress_overlaps([sg for m in out for sg in m.segments]))
            out = [dataclasses.replace(m, segments=tuple(sg for sg in m.segments if sg in keep)) for m in out]
        # what a user must see first: a label, a copied segment or a copied soundtrack, then the rest,
        # each by fused score. A 10 s excerpt inside a 2 min query fuses near 0.1, under look-alike
        # videos that share nothing with it, and ``top`` would cut it off (hard seed 7 ``q_010``: its
        # copy of src_001, segment 0.999, ranked 11th of 20)
        out.sort(key=lambda m: (not m.reportable, -m.fused, m.source_id))
        return out

    def search(self, q: Query, top: int | None = None, exclude: str | None = None,
               include_none: bool = True, segments: bool = True) -> list[VideoMatch]:
        """Ranked matches; a source with a copied segment or a copied soundtrack is kept even when
        the whole-video label is none (a short excerpt inside other content is still a copy, and
        music reuse is what a user deduplicating soundtracks looks for)."""
        return self.search_common(q, top, exclude, include_none, segments)[0]

    def search_common(self, q: Query, top: int | None = None, exclude: str | None = None,
                      include_none: bool = True, segments: bool = True
                      ) -> tuple[list[VideoMatch], list[CommonSegment]]:
        """``search``'s matches and the query's common segments: stretches that recur in many
        library videos (an intro), reported once here rather than as a copy of each of them, and
        left out of every match's evidence."""
        with telemetry.timed(STAGE, stage="search"):
            with telemetry.timed(STAGE, stage="knn"):
                found = self.knn(q, exclude=exclude, pruned=not include_none)
            with telemetry.timed(STAGE, stage="score"):
                matches = self.score(q, found.candidates, segments=segments, pruned=not include_none,
                                     common=found.common)
            if not include_none:
                matches = [m for m in matches if m.reportable]
            return matches[: top or self.cfg.search.top], found.common

    def join_indexed(self, queries: dict[str, VideoFeatures], knn=None) -> dict[str, list[VideoMatch]]:
        """Indexed videos against the rest of the library, batched (the dedup job): per video the
        matches ``search(Query(f), exclude=id, include_none=False)`` keeps, candidates that no row
        came close to left unscored, common segments left out of the evidence as there."""
        with telemetry.timed(STAGE, stage="knn"):
            found = self.knn_many(queries, pruned=True, knn=knn)
        out: dict[str, list[VideoMatch]] = {}
        with telemetry.timed(STAGE, stage="score"):
            # One read for the whole batch's candidates: grouped by shard, a video wanted by several
            # queries read once.
            feats = self.catalog.shards.load_features({c for k in found.values() for c in k.candidates})
            for vid, f in queries.items():
                k = found[vid]
                matches = self.score(Query(f, None), k.candidates, pruned=True, common=k.common,
                                     features=feats) if k.candidates else []
                out[vid] = [m for m in matches if m.reportable][: self.cfg.search.top]
        return out

    def search_file(self, uri: str, top: int | None = None, segments: bool = True
                    ) -> tuple[Query, list[VideoMatch]]:
        q = self.query_from_file(uri)
        return q, self.search(q, top, segments=segments)

    def indexed_query(self, video_id: str) -> Query:
        f = self.catalog.shards.load_features([video_id]).get(video_id)
        if f is None:
            raise KeyError(f"{video_id}: not in the index")
        return Query(f, None)

    def search_indexed(self, video_id: str, top: int | None = None) -> list[VideoMatch]:
        """An indexed video against the rest of the index (its own vectors excluded)."""
        return self.search_indexed_common(video_id, top)[0]

    def search_indexed_common(self, video_id: str, top: int | None = None, q: Query | None = None
                              ) -> tuple[list[VideoMatch], list[CommonSegment]]:
        """``search_indexed``'s matches and common segments; ``q``: its ``indexed_query`` if read already."""
        return self.search_common(q or self.indexed_query(video_id), top, exclude=video_id, include_none=False)
