"""What a report shows, gathered: the groups and pairs exactly as ``astradup dedup`` computes them
(verdicts applied), with each grouped video's uri and duration."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from astradup.config import Config
from astradup.dedup.results import dedup_groups
from astradup.progress import Tick
from astradup.records import Label, SegmentMatch, VideoMatch
from astradup.reviews import Verdicts
from astradup.timeline import Span

LABELS = tuple(Label.reportable())


def normalise_label(label: str) -> str:
    """``near_duplicate`` (shell-friendly) and ``near-duplicate`` (the fusion's label) are one label."""
    lab = label.strip().lower().replace("_", "-")
    if lab not in LABELS:
        raise ValueError(f"min label must be one of {', '.join(LABELS)}, got {label!r}")
    return lab


@dataclass
class VideoEntry:
    """A grouped video as the report shows it; ``missing`` says why no frame could be taken."""

    video_id: str
    uri: str
    duration: float | None
    thumbs: list[str] = field(default_factory=list)  # img src values (relative paths or data URIs)
    missing: str = ""
    moment_times: set[float] = field(default_factory=set)  # seconds (MOMENT_STEP grid) pairs want a frame at
    moments: dict[float, str] = field(default_factory=dict)  # those times -> img src (when one was taken)

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1] or self.video_id


@dataclass
class PairEntry:
    """One duplicate pair; ``a < b`` (ids), and ``match`` is the better of the two directions."""

    group_id: int
    a: str
    b: str
    match: VideoMatch
    moments: list[int] = field(default_factory=list)  # indices into spans() that get frames

    @property
    def query_id(self) -> str:
        """The side whose search produced ``match`` (its segments' query axis)."""
        return self.a if self.match.source_id == self.b else self.b

    def spans(self) -> list[Span]:
        """The copied intervals as the timeline draws them: A is the query axis, B the source."""
        return [Span(sg.q_start, sg.q_end, sg.s_start, sg.s_end, sg.score) for sg in self.match.copied()]


@dataclass
class ReportData:
    min_label: str
    groups: list[list[str]]
    pairs: list[PairEntry]
    videos: dict[str, VideoEntry]
    partial: list[tuple[str, SegmentMatch]]  # partial copies below the whole-video label
    uris: dict[str, str]  # every indexed video (for names of partial-copy videos)
    indexed: int
    created: str
    verdicts: Verdicts = field(default_factory=Verdicts)  # for the partial copies' marks

    def decision(self, query_id: str, source_id: str) -> str:
        """A partial copy's pair verdict ("confirmed"), or ""; rejected pairs never got this far."""
        return self.verdicts.decision(query_id, source_id) or ""


def collect(cfg: Config, min_label: str = "near-duplicate", searcher=None, tick: Tick | None = None) -> ReportData:
    """The groups and pairs exactly as ``astradup dedup`` computes them (verdicts applied), plus
    durations for thumbnails."""
    from astradup.catalog import Catalog

    min_label = normalise_label(min_label)
    verdicts = Verdicts.load(cfg.data_dir)
    groups, best, uris, partial = dedup_groups(cfg, min_label, searcher=searcher, verdicts=verdicts, tick=tick)
    status = (searcher.catalog if searcher is not None else Catalog(cfg)).shards.latest_status()
    group_of = {v: i for i, g in enumerate(groups, 1) for v in g}
    pairs = sorted((PairEntry(group_of[a], a, b, m) for (a, b), m in best.items()),
                   key=lambda p: (p.group_id, -p.match.fused, p.a, p.b))
    videos = {}
    for g in groups:
        for v in g:
            d = (status.get(v) or {}).get("duration")
            videos[v] = VideoEntry(v, uris.get(v, ""), float(d) if d else None)
    return ReportData(min_label, groups, pairs, videos, partial, uris, len(uris),
                      datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"), verdicts)
