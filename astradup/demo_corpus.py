"""A small, real-media sample corpus with known duplicates, built on the user's own machine.

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
import random
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from astradup.errors import AstraDupError

CORPUS_VERSION = 1
FPS = 25
WIDTH, HEIGHT = 640, 360
FFMPEG_TIMEOUT_S = 300.0
FFMPEG = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y"]
# Same look for every rendered file, so only the transforms tell copies apart from sources.
H264 = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
        "-g", str(2 * FPS)]
AAC = ["-c:a", "aac", "-b:a", "96k", "-ar", "44100", "-ac", "2"]
MP4 = ["-movflags", "+faststart", "-map_metadata", "-1"]

# Debian packages (about 76 MB of downloads in all): an animated film with narration and a
# piano piece (openboard-common, 11 MB), recorded speech (asterisk-core-sounds-en-wav, 18 MB) and
# nature photographs (mate-backgrounds, 46 MB). The smaller lomiri-wallpapers sets are no
# substitute: their pictures are near-identical purple gradients, which would make unrelated
# videos look like copies of each other.
PACKAGES = ("openboard-common", "asterisk-core-sounds-en-wav", "mate-backgrounds")

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

TRANSFORMS = ("reencode", "hflip", "crop", "color", "text", "audio_swap", "partial")
NEEDS_AUDIO = {"audio_swap", "partial"}
PARTIAL_PRE_S = 5.0
PARTIAL_POST_S = 6.0


class DemoCorpusError(AstraDupError):
    """The corpus could not be built (ffmpeg failed, a package lacks the expected media...)."""


class MediaFetchError(DemoCorpusError):
    """The Debian packages could not be fetched (no network, no apt, unknown package)."""


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "astradup" / "media"


# ----------------------------------------------------------------------------- fetching


def _run(cmd: list[str], cwd: str | Path | None = None,
         timeout: float = FFMPEG_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _apt_update() -> None:
    try:
        res = _run(["apt-get", "update"], timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MediaFetchError(f"apt-get update failed: {exc}") from exc
    if res.returncode != 0:
        raise MediaFetchError(f"apt-get update failed: {res.stderr.strip()[-500:]}")


def fetch_package(pkg: str, cache_dir: str | Path) -> Path:
    """Return the extracted tree of Debian package ``pkg``, downloading it only once.

    The tree is renamed into place only when complete, so an interrupted fetch never leaves a
    half-extracted package that a later run would trust.
    """
    cache = Path(cache_dir).expanduser()
    root = cache / pkg
    marker = root / ".astradup-complete"
    if marker.exists():
        return root
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise MediaFetchError(f"cannot fetch {pkg}: apt-get/dpkg not found (a Debian or Ubuntu "
                              "system is needed to build the demo corpus)")
    cache.mkdir(parents=True, exist_ok=True)
    updated = False
    with tempfile.TemporaryDirectory(prefix=f".{pkg}-", dir=cache) as tmp:
        # apt drops privileges to _apt for the download; let it write here when run as root.
        os.chmod(tmp, 0o777)
        while True:
            try:
                res = _run(["apt-get", "download", "-o", "Acquire::Retries=1",
                            "-o", "Acquire::http::Timeout=30", pkg], cwd=tmp, timeout=600)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise MediaFetchError(f"apt-get download {pkg} failed: {exc}") from exc
            debs = sorted(Path(tmp).glob(f"{pkg}_*.deb"))
            if res.returncode == 0 and debs:
                break
            # apt's "W: Download is performed unsandboxed" noise hides the real "E:" reason.
            lines = res.stderr.strip().splitlines()
            err = "\n".join([ln for ln in lines if ln.startswith("E:")] or lines)
            stale = ("Unable to locate package" in err or "404" in err
                     or "Can't select" in err or "has no installation candidate" in err)
            if stale and not updated and os.geteuid() == 0:
                _apt_update()  # package lists missing or stale: refresh once, then retry
                updated = True
                continue
            hint = ""
            if stale:
                hint = (" (not found even after apt-get update)" if updated else
                        " (the package lists look missing or stale: run 'sudo apt-get update' "
                        "once, then build again)")
            raise MediaFetchError(f"apt-get download {pkg} failed{hint}: {err[-500:]}")
        deb = debs[-1]
        size = deb.stat().st_size
        tree = Path(tmp) / "tree"
        res = _run(["dpkg", "-x", str(deb), str(tree)], timeout=600)
        if res.returncode != 0:
            raise MediaFetchError(f"dpkg -x {deb.name} failed: {res.stderr.strip()[-500:]}")
        (tree / ".astradup-complete").write_text(json.dumps({"deb": deb.name, "size": size}))
        try:
            os.rename(tree, root)
        except OSError:
            if not marker.exists():  # another process won the race only if its tree is whole
                shutil.rmtree(root, ignore_errors=True)
                os.rename(tree, root)
    return root


def package_info(root: Path) -> dict[str, Any]:
    return json.loads((root / ".astradup-complete").read_text())


# ----------------------------------------------------------------------------- media plan


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


def _frames(seconds: float) -> int:
    return int(round(seconds * FPS))


def _dur(seconds: float) -> float:
    """Snap to whole frames so listed durations are exact."""
    return _frames(seconds) / FPS


def _wav_seconds(path: Path) -> float:
    try:
        with wave.open(str(path)) as w:
            return w.getnframes() / float(w.getframerate())
    except (wave.Error, EOFError, OSError):
        return 0.0


def _probe_duration(path: Path) -> float:
    res = _run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of",
                "default=nw=1:nk=1", str(path)], timeout=60)
    try:
        return float(res.stdout.strip())
    except ValueError:
        return 0.0


def _photos(trees: dict[str, Path]) -> list[Visual]:
    root = trees[PHOTO_PACKAGE]
    out = [Visual("photo", p, PHOTO_PACKAGE, str(p.relative_to(root)))
           for pattern in PHOTO_GLOBS for p in sorted(root.glob(pattern))]
    if not out:
        raise DemoCorpusError(f"{PHOTO_PACKAGE} has no photos under {PHOTO_GLOBS}: the package "
                              "changed")
    return out


def _film_windows(trees: dict[str, Path]) -> list[Visual]:
    film = trees["openboard-common"] / OPENBOARD_FILM
    if not film.exists():
        raise DemoCorpusError(f"openboard-common has no {OPENBOARD_FILM}: the package changed")
    length = _probe_duration(film)
    return [Visual("film", film, "openboard-common", OPENBOARD_FILM, a, b - a)
            for a, b in FILM_WINDOWS if b <= length]


def _interleave(a: list, b: list) -> list:
    out = []
    for i in range(max(len(a), len(b))):
        out.extend(x[i] for x in (a, b) if i < len(x))
    return out


class _SoundPool:
    """Hands out soundtracks that are never reused, so no two unrelated videos share audio."""

    def __init__(self, trees: dict[str, Path], rng: random.Random) -> None:
        self.rng = rng
        ob = trees["openboard-common"]
        pianos = sorted(ob.glob(OPENBOARD_PIANO_GLOB))
        self.piano: list[Sound] = []
        for p in pianos:
            total = _probe_duration(p)
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


# ----------------------------------------------------------------------------- ffmpeg


def _ffmpeg(args: list[str], what: str) -> None:
    try:
        res = _run(FFMPEG + args)
    except subprocess.TimeoutExpired as exc:
        raise DemoCorpusError(f"ffmpeg timed out making {what}") from exc
    if res.returncode != 0:
        raise DemoCorpusError(f"ffmpeg failed making {what}: {res.stderr.strip()[-800:]}")


def _font_option() -> str:
    """drawtext needs a font; name a file when one is found so fontconfig is not required."""
    for cand in ("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
                 "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                 "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf"):
        if Path(cand).exists():
            return f"fontfile={cand}:"
    if shutil.which("fc-match"):
        res = _run(["fc-match", "-f", "%{file}", "sans:bold"], timeout=30)
        if res.returncode == 0 and Path(res.stdout.strip()).exists():
            return f"fontfile={res.stdout.strip()}:"
    return "font=Sans:"


def _sound_input(sound: Sound, seconds: float, work: Path, tag: str) -> list[str]:
    if sound.kind == "piano":
        return ["-ss", f"{sound.start:.3f}", "-t", f"{seconds + 1:.3f}", "-i", str(sound.paths[0])]
    lst = work / f"{tag}.speech.txt"
    lst.write_text("".join("file '{}'\n".format(str(p).replace("'", "'\\''"))
                           for p in sound.paths))
    return ["-f", "concat", "-safe", "0", "-i", str(lst)]


def render(r: Render, out: Path, work: Path) -> None:
    """Render film window or Ken-Burns photo (+ soundtrack) as 640x360 25 fps H.264/AAC."""
    n = _frames(r.duration)
    v = r.visual
    if v.kind == "film":
        args = ["-ss", f"{v.start:.3f}", "-t", f"{r.duration + 1:.3f}", "-i", str(v.path)]
        vf = (f"scale={WIDTH}:{HEIGHT}:force_original_aspect_ratio=increase,"
              f"crop={WIDTH}:{HEIGHT},setsar=1,fps={FPS}")
        amap = "0:a:0"
    else:
        args = ["-i", str(v.path)]
        x0, y0, x1, y1 = r.motion
        # Downscale the (often 20+ Mpx) photo once, then pan/zoom over a 2x canvas.
        vf = (f"scale={2 * WIDTH}:{2 * HEIGHT}:force_original_aspect_ratio=increase,"
              f"crop={2 * WIDTH}:{2 * HEIGHT},setsar=1,"
              f"zoompan=z='1.05+0.3*on/{n}':"
              f"x='(iw-iw/zoom)*({x0}+({x1 - x0})*on/{n})':"
              f"y='(ih-ih/zoom)*({y0}+({y1 - y0})*on/{n})':"
              f"d={n}:s={WIDTH}x{HEIGHT}:fps={FPS}")
        amap = "1:a:0"
        if r.audio:
            assert r.sound is not None
            args += _sound_input(r.sound, r.duration, work, out.stem)
    # Output -t (not -frames:v) bounds both streams: with -frames:v ffmpeg may end the file
    # before apad has filled the soundtrack up to the video's length.
    cmd = args + ["-map", "0:v:0", "-vf", vf, "-t", f"{r.duration:.3f}"] + H264
    if r.audio:
        cmd += ["-map", amap, "-af", "aresample=44100,apad"] + AAC
    else:
        cmd += ["-an"]
    _ffmpeg(cmd + MP4 + [str(out)], f"{out.name} from {v.rel}")


def make_copy(transform: str, src: Path, dur: float, has_audio: bool, out: Path,
              params: dict[str, Any], extra: dict[str, Path]) -> None:
    """Derive a copy from the rendered source file, as a re-uploader would."""
    a_out = AAC if has_audio else ["-an"]
    amap = ["-map", "0:a:0"] if has_audio else []
    base = ["-i", str(src), "-map", "0:v:0"] + amap
    if transform == "reencode":
        w, h = params["width"], params["height"]
        cmd = base + ["-vf", f"scale={w}:{h}", "-c:v", "libx264", "-preset", "veryfast",
                      "-b:v", f"{params['video_kbps']}k", "-pix_fmt", "yuv420p"]
        cmd += (["-c:a", "aac", "-b:a", "64k", "-ar", "32000", "-ac", "1"] if has_audio
                else ["-an"])
    elif transform in ("hflip", "crop", "color", "text"):
        if transform == "hflip":
            vf = "hflip"
        elif transform == "crop":
            cw, ch = params["crop_w"], params["crop_h"]
            vf = f"crop={cw}:{ch}:{params['x']}:{params['y']},scale={WIDTH}:{HEIGHT},setsar=1"
        elif transform == "color":
            vf = (f"eq=brightness={params['brightness']}:contrast={params['contrast']}:"
                  f"saturation={params['saturation']},hue=h={params['hue']}")
        else:
            vf = (f"drawtext={_font_option()}text='{params['text']}':fontsize=30:"
                  "fontcolor=white:box=1:boxcolor=black@0.55:boxborderw=10:"
                  "x=(w-tw)/2:y=h-th-28")
        cmd = base + ["-vf", vf] + H264 + a_out
    elif transform == "audio_swap":
        cmd = ["-i", str(src), "-i", str(extra["audio"]), "-map", "0:v:0", "-map", "1:a:0",
               "-c:v", "copy", "-af", "apad", "-t", f"{dur:.3f}"] + AAC
    elif transform == "partial":
        a, b = params["s_start"], params["s_end"]
        pre, post = PARTIAL_PRE_S, PARTIAL_POST_S
        fc = (f"[1:v]trim=0:{pre},setpts=PTS-STARTPTS[v0];"
              f"[0:v]trim={a}:{b},setpts=PTS-STARTPTS[v1];"
              f"[1:v]trim={pre}:{pre + post},setpts=PTS-STARTPTS[v2];"
              f"[1:a]atrim=0:{pre},asetpts=PTS-STARTPTS[a0];"
              f"[0:a]atrim={a}:{b},asetpts=PTS-STARTPTS[a1];"
              f"[1:a]atrim={pre}:{pre + post},asetpts=PTS-STARTPTS[a2];"
              "[v0][a0][v1][a1][v2][a2]concat=n=3:v=1:a=1[v][a]")
        cmd = ["-i", str(src), "-i", str(extra["filler"]), "-filter_complex", fc,
               "-map", "[v]", "-map", "[a]"] + H264 + AAC
    else:
        raise ValueError(f"unknown transform {transform!r}")
    _ffmpeg(cmd + MP4 + [str(out)], f"{out.name} ({transform} of {src.name})")


# ----------------------------------------------------------------------------- plan


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
                 sounds: _SoundPool) -> dict[str, Any]:
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
        seg = _dur(rng.uniform(8.0, 10.0))
        start = _dur(rng.uniform(0.0, src.duration - seg))
        return {"s_start": start, "s_end": round(start + seg, 3)}
    raise ValueError(f"unknown transform {transform!r}")


def plan_corpus(trees: dict[str, Path], n_sources: int, seed: int) -> Plan:
    """Pick media, transforms and file names for ``seed`` from the extracted packages."""
    if n_sources < 2:
        raise ValueError("n_sources must be >= 2 (one source is silent, audio copies need another)")
    rng = random.Random(seed)
    films = _film_windows(trees)
    photos = _photos(trees)
    n_distractors = 2 if n_sources >= 4 else 1
    needed = n_sources + n_distractors + 1  # + the partial copy's filler
    if len(films) + len(photos) < needed:
        raise DemoCorpusError(f"only {len(films) + len(photos)} distinct media for {needed} "
                              f"videos; use n_sources <= {len(films) + len(photos) - 3}")
    rng.shuffle(films)
    rng.shuffle(photos)
    # Alternate film and photo so even a 2-source corpus has both kinds of material.
    visuals = _interleave(films, photos) if rng.random() < 0.5 else _interleave(photos, films)
    sounds = _SoundPool(trees, rng)

    def render_plan(role: str, vis: Visual) -> Render:
        dur = _dur(vis.length) if vis.kind == "film" else _dur(rng.uniform(12.0, 18.0))
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
    filler.duration = _dur(max(filler.duration, PARTIAL_PRE_S + PARTIAL_POST_S + 0.5))

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


# ----------------------------------------------------------------------------- build


def _complete(out_dir: Path, n_sources: int, seed: int) -> dict[str, Any] | None:
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


def _render_audio(sound: Sound, seconds: float, out: Path, work: Path) -> None:
    args = _sound_input(sound, seconds, work, out.stem)
    _ffmpeg(args + ["-map", "0:a:0", "-af", "aresample=44100,apad", "-t", f"{seconds:.3f}",
                    "-vn"] + AAC + [str(out)], f"replacement audio {out.name}")


def render_corpus(plan: Plan, videos_dir: Path, work: Path) -> None:
    """Stage 1 cuts everything from real media; stage 2 derives each copy from its source file."""
    extra = {"filler": work / plan.filler.name, "audio": work / "swap_audio.m4a"}
    jobs: list[Callable[[], None]] = [
        (lambda r=r: render(r, videos_dir / r.name, work)) for r in plan.sources + plan.distractors]
    jobs.append(lambda: render(plan.filler, extra["filler"], work))
    for c in plan.copies:
        if c.transform == "audio_swap":
            jobs.append(lambda c=c: _render_audio(c.params["audio"], c.source.duration,
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
    done = _complete(out, n_sources, seed)
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
