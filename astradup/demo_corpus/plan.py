"""What a seed decides about a demo corpus before any ffmpeg runs: which media become sources and
distractors, which transform each copy gets, the shuffled file names, and the truth record."""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from astradup.demo_corpus.media import (HEIGHT, WIDTH, Render, SoundPool, Visual, film_windows, photo_visuals,
                                        snap_to_frames)
from astradup.demo_corpus.packages import DemoCorpusError, package_info
from astradup.demo_corpus.render import PARTIAL_POST_S, PARTIAL_PRE_S

CORPUS_VERSION = 1  # in truth.json's params: a corpus built under another version is rebuilt

TRANSFORMS = ("reencode", "hflip", "crop", "color", "text", "audio_swap", "partial")
NEEDS_AUDIO = {"audio_swap", "partial"}


def _interleave(a: list, b: list) -> list:
    out = []
    for i in range(max(len(a), len(b))):
        out.extend(x[i] for x in (a, b) if i < len(x))
    return out


@dataclass
class CopyPlan:
    name: str
    transform: str
    source: Render
    params: dict[str, Any]

    @property
    def duration(self) -> float:
        if self.transform == "partial":
            seg = self.params["s_end"] - self.params["s_start"]
            return round(PARTIAL_PRE_S + seg + PARTIAL_POST_S, 3)
        return self.source.duration

    @property
    def segments(self) -> list[dict[str, float]]:
        """Where the copied material sits in the copy (q_*) and in its source (s_*)."""
        if self.transform != "partial":
            return []
        a, b = self.params["s_start"], self.params["s_end"]
        return [{"q_start": PARTIAL_PRE_S, "q_end": round(PARTIAL_PRE_S + b - a, 3),
                 "s_start": a, "s_end": b}]


@dataclass
class Plan:
    """Everything the seed decides, fixed before any ffmpeg runs (so it can be checked cheaply)."""

    n_sources: int
    seed: int
    sources: list[Render]
    distractors: list[Render]
    filler: Render
    copies: list[CopyPlan]
    packages: dict[str, dict[str, Any]]


def _copy_params(transform: str, rng: random.Random, src: Render,
                 sounds: SoundPool) -> dict[str, Any]:
    if transform == "reencode":
        w, h = rng.choice([(480, 270), (426, 240), (854, 480)])
        return {"width": w, "height": h, "video_kbps": rng.choice([300, 400, 600])}
    if transform == "hflip":
        return {}
    if transform == "crop":
        cw, ch = int(WIDTH * 0.9), int(HEIGHT * 0.9)
        return {"crop_w": cw, "crop_h": ch, "x": rng.randint(0, WIDTH - cw),
                "y": rng.randint(0, HEIGHT - ch), "fraction": 0.1}
    if transform == "color":
        return {"brightness": rng.choice([-0.1, 0.1]), "contrast": 1.25,
                "saturation": rng.choice([0.5, 1.6]), "hue": rng.choice([-20, 20])}
    if transform == "text":
        return {"text": rng.choice(["REUPLOAD - demo channel", "WATCH TILL THE END",
                                    "funny clips 2024", "subscribe for more"])}
    if transform == "audio_swap":
        return {"audio": sounds.take(src.duration)}
    if transform == "partial":
        seg = snap_to_frames(rng.uniform(8.0, 10.0))
        start = snap_to_frames(rng.uniform(0.0, src.duration - seg))
        return {"s_start": start, "s_end": round(start + seg, 3)}
    raise ValueError(f"unknown transform {transform!r}")


def plan_corpus(trees: dict[str, Path], n_sources: int, seed: int) -> Plan:
    """Pick media, transforms and file names for ``seed`` from the extracted packages."""
    if n_sources < 2:
        raise ValueError("n_sources must be >= 2 (one source is silent, audio copies need another)")
    rng = random.Random(seed)
    films = film_windows(trees)
    photos = photo_visuals(trees)
    n_distractors = 2 if n_sources >= 4 else 1
    needed = n_sources + n_distractors + 1  # + the partial copy's filler
    if len(films) + len(photos) < needed:
        raise DemoCorpusError(f"only {len(films) + len(photos)} distinct media for {needed} "
                              f"videos; use n_sources <= {len(films) + len(photos) - 3}")
    rng.shuffle(films)
    rng.shuffle(photos)
    # Alternate film and photo so even a 2-source corpus has both kinds of material.
    visuals = _interleave(films, photos) if rng.random() < 0.5 else _interleave(photos, films)
    sounds = SoundPool(trees, rng)

    def render_plan(role: str, vis: Visual) -> Render:
        dur = snap_to_frames(vis.length) if vis.kind == "film" else snap_to_frames(rng.uniform(12.0, 18.0))
        r = Render(role, vis, dur)
        if vis.kind == "photo":
            r.motion = tuple(round(rng.random(), 2) for _ in range(4))  # type: ignore[assignment]
            r.sound = sounds.take(dur)
        return r

    sources = [render_plan("source", v) for v in visuals[:n_sources]]
    mute = rng.choice([s for s in sources if s.visual.kind == "photo"] or sources)
    mute.audio, mute.sound = False, None
    distractors = [render_plan("distractor", v)
                   for v in visuals[n_sources:n_sources + n_distractors]]
    filler = render_plan("filler", visuals[n_sources + n_distractors])
    filler.duration = snap_to_frames(max(filler.duration, PARTIAL_PRE_S + PARTIAL_POST_S + 0.5))

    # Spread the transforms over the sources; audio transforms only go to sources with audio
    # and are placed first, so the silent source is still free to take a visual one.
    order = sources[:]
    rng.shuffle(order)
    taken = {id(s): 0 for s in sources}
    chosen: list[tuple[str, Render, dict[str, Any]]] = []
    for t in sorted(TRANSFORMS, key=lambda t: t not in NEEDS_AUDIO):
        src = min((s for s in order if s.audio or t not in NEEDS_AUDIO), key=lambda s: taken[id(s)])
        taken[id(src)] += 1
        chosen.append((t, src, _copy_params(t, rng, src, sounds)))

    # Names carry no hint of role: one shuffled clip_NN sequence over every file.
    names = [f"clip_{i + 1:02d}.mp4" for i in range(len(sources) + len(distractors) + len(chosen))]
    rng.shuffle(names)
    for r in sources + distractors:
        r.name = names.pop()
    filler.name = "filler.mp4"
    copies = [CopyPlan(names.pop(), t, src, params) for t, src, params in chosen]
    return Plan(n_sources, seed, sources, distractors, filler, copies,
                {pkg: package_info(root) for pkg, root in sorted(trees.items())})


def truth_of(plan: Plan, videos_dir: Path) -> dict[str, Any]:
    videos: dict[str, dict[str, Any]] = {}
    for r in plan.sources + plan.distractors:
        videos[r.name] = {"role": r.role, "duration": r.duration, "has_audio": r.audio,
                          "visual": r.visual.describe(),
                          "audio": (r.sound.describe() if r.sound else
                                    ({"kind": "film"} if r.audio else None))}
    copies = []
    for c in plan.copies:
        params = dict(c.params)
        if c.transform == "audio_swap":
            params["audio"] = params["audio"].describe()
        if c.transform == "partial":
            f = plan.filler
            params["filler"] = {"visual": f.visual.describe(),
                                "audio": f.sound.describe() if f.sound else {"kind": "film"}}
        row: dict[str, Any] = {"file": c.name, "source": c.source.name, "transform": c.transform,
                               "params": params}
        if c.segments:
            row["segments"] = c.segments
        copies.append(row)
        videos[c.name] = {"role": "copy", "duration": c.duration, "has_audio": c.source.audio,
                          "source": c.source.name, "transform": c.transform}
    for name, info in videos.items():
        info["size"] = (videos_dir / name).stat().st_size
    groups = [sorted([s.name] + [c.name for c in plan.copies if c.source is s])
              for s in plan.sources]
    return {
        "params": {"version": CORPUS_VERSION, "n_sources": plan.n_sources, "seed": plan.seed},
        "videos_dir": videos_dir.name,
        "videos": dict(sorted(videos.items())),
        "copies": sorted(copies, key=lambda c: c["file"]),
        "distractors": sorted(r.name for r in plan.distractors),
        "groups": sorted(groups),
        "packages": plan.packages,
    }
