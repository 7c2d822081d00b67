"""The demo corpus built end to end: a small, real-media sample with known duplicates, made on the
user's own machine.

A first-time user has no benchmark, so the demo makes one: it cuts clips from real media that
Debian ships in ordinary packages (an animated Creative Commons film, photographs, recorded speech,
a piano recording), renders them as source videos, then makes the kinds of copies a
de-duplication system must catch (re-encode, mirror, crop, colour change, caption, swapped
soundtrack, an excerpt inside unrelated footage) plus unrelated distractors. File names are
shuffled so nothing but the content tells which is a copy of which; ``truth.json`` says what
the demo should find.

Nothing is shipped in the repository: ``apt-get download`` + ``dpkg -x`` fetch the packages into
a cache (no root needed once the package lists exist), so a second build downloads nothing.

Run ``python -m astradup.demo_corpus OUT_DIR``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from astradup.demo_corpus.packages import PACKAGES, DemoCorpusError, default_cache_dir, fetch_package
from astradup.demo_corpus.plan import CORPUS_VERSION, Plan, plan_corpus, truth_of
from astradup.demo_corpus.render import make_copy, render, render_audio


def finished_truth(out_dir: Path, n_sources: int, seed: int) -> dict[str, Any] | None:
    """The stored truth when ``out_dir`` already holds this exact corpus, else None."""
    try:
        truth = json.loads((out_dir / "truth.json").read_text())
    except (OSError, ValueError):
        return None
    if truth.get("params") != {"version": CORPUS_VERSION, "n_sources": n_sources, "seed": seed}:
        return None
    for name, info in truth.get("videos", {}).items():
        p = out_dir / "videos" / name
        if not p.is_file() or p.stat().st_size != info.get("size"):
            return None
    return truth


def _run_all(jobs: list[Callable[[], None]]) -> None:
    # Two ffmpegs at once keep both cores busy: zoompan and the muxers are single-threaded.
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as ex:
        for f in [ex.submit(j) for j in jobs]:
            f.result()


def render_corpus(plan: Plan, videos_dir: Path, work: Path) -> None:
    """Stage 1 cuts everything from real media; stage 2 derives each copy from its source file."""
    extra = {"filler": work / plan.filler.name, "audio": work / "swap_audio.m4a"}
    jobs: list[Callable[[], None]] = [
        (lambda r=r: render(r, videos_dir / r.name, work)) for r in plan.sources + plan.distractors]
    jobs.append(lambda: render(plan.filler, extra["filler"], work))
    for c in plan.copies:
        if c.transform == "audio_swap":
            jobs.append(lambda c=c: render_audio(c.params["audio"], c.source.duration,
                                                  extra["audio"], work))
    _run_all(jobs)
    _run_all([(lambda c=c: make_copy(c.transform, videos_dir / c.source.name, c.source.duration,
                                     c.source.audio, videos_dir / c.name, c.params, extra))
              for c in plan.copies])


def build_demo_corpus(out_dir: str | Path, cache_dir: str | Path | None = None,
                      n_sources: int = 6, seed: int = 0) -> dict:
    """Build (or find already built) the demo corpus in ``out_dir``; return its truth record.

    Files go to ``out_dir/videos/clip_NN.mp4``; ``out_dir/truth.json`` (written last, so its
    presence means the build finished) lists every file with its role, provenance, duration
    and size, and for each copy its source and transform. A rebuild first removes old
    ``clip_*.mp4`` so a smaller corpus never leaves stray files behind.
    """
    if n_sources < 2:
        raise ValueError("n_sources must be >= 2 (one source is silent, audio copies need another)")
    out = Path(out_dir).expanduser()
    done = finished_truth(out, n_sources, seed)
    if done is not None:
        return done
    t0 = time.monotonic()
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    trees = {pkg: fetch_package(pkg, cache) for pkg in PACKAGES}
    plan = plan_corpus(trees, n_sources, seed)

    videos_dir = out / "videos"
    videos_dir.mkdir(parents=True, exist_ok=True)
    (out / "truth.json").unlink(missing_ok=True)
    for old in videos_dir.glob("clip_*.mp4"):
        old.unlink()
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=out))
    try:
        render_corpus(plan, videos_dir, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    truth = truth_of(plan, videos_dir)
    truth["build_seconds"] = round(time.monotonic() - t0, 1)
    tmp = out / "truth.json.tmp"
    tmp.write_text(json.dumps(truth, indent=2) + "\n")
    os.replace(tmp, out / "truth.json")
    return truth


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m astradup.demo_corpus",
                                 description="Build the AstraDup demo corpus from Debian media.")
    ap.add_argument("out_dir")
    ap.add_argument("--cache-dir", default=None, help=f"default {default_cache_dir()}")
    ap.add_argument("--n-sources", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    try:
        truth = build_demo_corpus(args.out_dir, args.cache_dir, args.n_sources, args.seed)
    except DemoCorpusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    n = len(truth["videos"])
    print(f"{n} videos in {Path(args.out_dir) / 'videos'} ({len(truth['copies'])} copies, "
          f"{len(truth['distractors'])} distractors) in {time.monotonic() - t0:.1f}s; "
          f"expected groups:")
    for g in truth["groups"]:
        print("  " + " ".join(g))
    return 0


if __name__ == "__main__":
    sys.exit(main())
