"""The real media a demo video is cut from: film windows, photos and soundtracks found in the
extracted packages, each handed out once so no two unrelated videos share pictures or sound."""
from __future__ import annotations

import random
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from astradup.demo_corpus.packages import DemoCorpusError, run_tool

FPS = 25  # every rendered video's frame rate and size (render.py), durations snapped to its frames
WIDTH, HEIGHT = 640, 360

OPENBOARD_FILM = "usr/share/openboard/library/videos/wannaworktogether.mp4"
OPENBOARD_PIANO_GLOB = "usr/share/openboard/library/audios/*.mp3"
# Scene-coherent windows (seconds) of the 3-minute film, picked by eye so no two windows show
# the same shot: different windows are different "videos", not copies of each other.
FILM_WINDOWS = ((1.0, 15.0), (38.0, 52.0), (54.0, 70.0), (76.0, 92.0), (96.0, 110.0),
                (110.0, 124.0))
PIANO_WINDOW_S = 16.0
PHOTO_PACKAGE = "mate-backgrounds"
# Elephants.jpg also comes at two larger sizes; one of them is enough.
PHOTO_GLOBS = ("usr/share/backgrounds/mate/nature/*.jpg",
               "usr/share/backgrounds/mate/abstract/Elephants.jpg")
SPEECH_GLOB = "usr/share/asterisk/sounds/*/*.wav"


@dataclass
class Visual:
    """Pictures of one rendered video: a window of the film, or a Ken-Burns move over a photo."""

    kind: str  # "film" | "photo"
    path: Path
    package: str
    rel: str
    start: float = 0.0  # film only
    length: float = 0.0  # film: window length; photo: any length

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "package": self.package, "path": self.rel}
        if self.kind == "film":
            d.update(start=self.start, end=round(self.start + self.length, 3))
        return d


@dataclass
class Sound:
    """A soundtrack for a photo video: a window of the piano piece or a run of speech prompts."""

    kind: str  # "piano" | "speech"
    package: str
    paths: list[Path]
    rels: list[str]
    start: float = 0.0  # piano only

    def describe(self) -> dict[str, Any]:
        if self.kind == "piano":
            return {"kind": "piano", "package": self.package, "path": self.rels[0],
                    "start": self.start}
        return {"kind": "speech", "package": self.package, "paths": self.rels}


@dataclass
class Render:
    """One video to render from real media (a source, a distractor or the partial's filler)."""

    role: str
    visual: Visual
    duration: float
    sound: Sound | None = None  # photos: separate soundtrack; film: None = its own track
    audio: bool = True
    name: str = ""
    motion: tuple[float, float, float, float] = (0.5, 0.5, 0.5, 0.5)  # Ken-Burns x0,y0,x1,y1


def frame_count(seconds: float) -> int:
    return int(round(seconds * FPS))


def snap_to_frames(seconds: float) -> float:
    """Snap to whole frames so listed durations are exact."""
    return frame_count(seconds) / FPS


def _wav_seconds(path: Path) -> float:
    try:
        with wave.open(str(path)) as w:
            return w.getnframes() / float(w.getframerate())
    except (wave.Error, EOFError, OSError):
        return 0.0


def probe_duration(path: Path) -> float:
    res = run_tool(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of",
                "default=nw=1:nk=1", str(path)], timeout=60)
    try:
        return float(res.stdout.strip())
    except ValueError:
        return 0.0


def photo_visuals(trees: dict[str, Path]) -> list[Visual]:
    root = trees[PHOTO_PACKAGE]
    out = [Visual("photo", p, PHOTO_PACKAGE, str(p.relative_to(root)))
           for pattern in PHOTO_GLOBS for p in sorted(root.glob(pattern))]
    if not out:
        raise DemoCorpusError(f"{PHOTO_PACKAGE} has no photos under {PHOTO_GLOBS}: the package "
                              "changed")
    return out


def film_windows(trees: dict[str, Path]) -> list[Visual]:
    film = trees["openboard-common"] / OPENBOARD_FILM
    if not film.exists():
        raise DemoCorpusError(f"openboard-common has no {OPENBOARD_FILM}: the package changed")
    length = probe_duration(film)
    return [Visual("film", film, "openboard-common", OPENBOARD_FILM, a, b - a)
            for a, b in FILM_WINDOWS if b <= length]


class SoundPool:
    """Hands out soundtracks that are never reused, so no two unrelated videos share audio."""

    def __init__(self, trees: dict[str, Path], rng: random.Random) -> None:
        self.rng = rng
        ob = trees["openboard-common"]
        pianos = sorted(ob.glob(OPENBOARD_PIANO_GLOB))
        self.piano: list[Sound] = []
        for p in pianos:
            total = probe_duration(p)
            t = 2.0
            while t + PIANO_WINDOW_S <= total:
                self.piano.append(Sound("piano", "openboard-common", [p],
                                        [str(p.relative_to(ob))], t))
                t += PIANO_WINDOW_S + 2.0
        rng.shuffle(self.piano)
        ast = trees["asterisk-core-sounds-en-wav"]
        prompts = [(p, _wav_seconds(p)) for p in sorted(ast.glob(SPEECH_GLOB))]
        self.prompts = [(p, s) for p, s in prompts if s >= 1.0]
        if not self.prompts or not self.piano:
            raise DemoCorpusError("expected speech prompts and a piano recording in the packages")
        rng.shuffle(self.prompts)
        self.ast_root = ast
        self.turn = 0

    def speech(self, seconds: float) -> Sound:
        paths, total = [], 0.0
        while total < seconds + 0.5:
            if not self.prompts:
                raise DemoCorpusError("ran out of speech prompts; use a smaller n_sources")
            p, s = self.prompts.pop()
            paths.append(p)
            total += s
        return Sound("speech", "asterisk-core-sounds-en-wav", paths,
                     [str(p.relative_to(self.ast_root)) for p in paths])

    def take(self, seconds: float) -> Sound:
        """Alternate piano and speech; speech is unlimited, piano windows are not."""
        self.turn += 1
        if self.turn % 2 == 1 and self.piano and seconds <= PIANO_WINDOW_S:
            return self.piano.pop()
        return self.speech(seconds)
