"""What the dedup job's pairs answer: the duplicate groups and partial copies (``astradup dedup``,
``astradup report``, the demo) and the review queue (the service), verdicts applied."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from astradup.config import Config
from astradup.dedup.job import ensure_joined, live_ids
from astradup.dedup.store import read_pairs
from astradup.match.groups import components
from astradup.progress import Tick
from astradup.records import Label, SegmentMatch, VideoMatch
from astradup.reviews import Verdicts


def partial_copies(query_id: str, m: VideoMatch) -> list[tuple[str, SegmentMatch]]:
    """What a pair below the label contributes to the partial copies: its audio copy first (an
    AudioCopy, a SegmentMatch readers can tell apart), then its segments except the sound-only ones
    the audio copy already covers (the same stretch of soundtrack, listed once)."""
    return [(query_id, sg) for sg in m.copied()]


def dedup_groups(cfg: Config, min_label: str = "near-duplicate", searcher=None, run: bool = True,
                 progress: Callable[[str], None] | None = None, verdicts: Verdicts | None = None,
                 tick: Tick | None = None):
    """(groups, best, uris, partial) from the job's pairs, as ``astradup dedup`` always answered:
    pairs at or above ``min_label`` grouped; ``best`` maps (a, b) to the better direction's match;
    ``partial`` lists copied segments of the pairs below the label whose videos are not both
    grouped, a copied soundtrack as an ``AudioCopy`` segment. ``run``: run the job first when its
    output is missing or stale. ``verdicts`` (default: the data dir's) are applied to every pair:
    a rejected one is in neither list, a confirmed one's match carries ``decision`` (a caller that
    marks partial copies passes the same ``Verdicts`` and asks it about each)."""
    from astradup.catalog import Catalog

    if run:
        ensure_joined(cfg, searcher, progress, tick)
    shards = searcher.catalog.shards if searcher is not None else Catalog(cfg).shards
    uris = live_ids(shards)
    verdicts = verdicts if verdicts is not None else Verdicts.load(cfg.data_dir)
    best: dict[tuple[str, str], VideoMatch] = {}
    partial: list[tuple[str, SegmentMatch]] = []
    for k, (q, found) in sorted(read_pairs(cfg, set(uris)).items()):
        m = verdicts.apply(q, found)
        if m is None:
            continue
        if Label(m.label).rank >= Label(min_label).rank:
            best[k] = m
        else:
            partial += partial_copies(q, m)
    groups = components([a for a, _ in best], [b for _, b in best])
    grouped = {v for g in groups for v in g}
    partial = [(q, sg) for q, sg in partial if not (q in grouped and sg.source_id in grouped)]
    return groups, best, uris, partial


def review_items(cfg: Config, live: dict[str, dict], verdicts: Verdicts) -> list[dict[str, Any]]:
    """The review queue from the job's pairs: flagged for review (low confidence), both videos live,
    no verdict yet (confirmed or rejected); least confident first. ``live``: id -> status row."""
    items = []
    for (a, b), (q, m) in read_pairs(cfg, set(live)).items():
        if not m.review or verdicts.decision(a, b) is not None:
            continue
        d = m.to_dict()
        qrow, srow = live.get(q) or {}, live.get(m.source_id) or {}
        d.update(query_id=q, query_name=Path(qrow.get("uri") or "").name, name=Path(m.source_uri).name,
                 duration=srow.get("duration"), query_duration=qrow.get("duration"))
        items.append(d)
    return sorted(items, key=lambda d: (d["confidence"], -d["fused"], d["query_id"]))
