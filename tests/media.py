"""Tiny test media made with ffmpeg lavfi sources, for every test module.

Everything is generated at test time into a tmp dir (a few hundred KB, well under a second each),
so the suite ships no binary fixtures. Distinct ``source``/``seed`` pairs give content that really
differs to the eye and to the ear, so a test asserting "unrelated -> low score" means something.
"""
from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import numpy as np

FFMPEG = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y"]
SOURCES = ("testsrc2", "mandelbrot", "life", "cellauto", "gradients", "boxes", "smptebars", "rgbtest")
AUDIO_KINDS = ("sine", "noise", "music", None)


def run_ffmpeg(*args: str) -> None:
    proc = subprocess.run([*FFMPEG, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(args)} failed: {proc.stderr.strip()}")


def _video_source(source: str, size: tuple[int, int], fps: float, seed: int) -> str:
    w, h = size
    s, r = f"{w}x{h}", f"{fps:g}"
    rng = np.random.default_rng(seed)
    if source == "testsrc2":
        return f"testsrc2=size={s}:rate={r}"
    if source == "smptebars":
        return f"smptebars=size={s}:rate={r}"
    if source == "rgbtest":
        return f"rgbtestsrc=size={s}:rate={r}"
    if source == "mandelbrot":
        # The zoom point moves with the seed so two seeds show different parts of the set.
        return (f"mandelbrot=size={s}:rate={r}:start_x={-0.743643887 + 0.05 * (seed % 7):.9f}:"
                f"start_y={-0.131825904 + 0.04 * (seed % 5):.9f}:start_scale={3.0 - 0.2 * (seed % 4):.2f}")
    if source == "life":
        return (f"life=size={s}:rate={r}:seed={seed}:ratio=0.35:mold=8:"
                f"life_color=#{rng.integers(0, 1 << 24):06x}:death_color=#{rng.integers(0, 1 << 24):06x}")
    if source == "cellauto":
        rule = [18, 22, 30, 45, 60, 73, 90, 105, 110, 150][seed % 10]
        return f"cellauto=size={s}:rate={r}:seed={seed}:rule={rule}:scroll=1:full=1"
    if source == "gradients":
        cols = ":".join(f"c{i}=#{rng.integers(0, 1 << 24):06x}" for i in range(4))
        return f"gradients=size={s}:rate={r}:seed={seed}:n=4:{cols}:speed=0.02"
    if source == "boxes":
        # A coloured background with seeded boxes that drift: a "scene" made only of drawbox.
        bg = f"#{rng.integers(0, 1 << 24):06x}"
        boxes = []
        for _ in range(6):
            bw, bh = int(rng.integers(w // 8, w // 2)), int(rng.integers(h // 8, h // 2))
            x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            vx = int(rng.integers(-8, 9))
            col = f"#{rng.integers(0, 1 << 24):06x}"
            boxes.append(f"drawbox=x='mod({x0}+{vx}*t+{w},{w})':y={y0}:w={bw}:h={bh}:color={col}:t=fill")
        return f"color=c={bg}:size={s}:rate={r}," + ",".join(boxes)
    raise ValueError(f"unknown source {source!r}; one of {SOURCES}")


def synth_music(seconds: float, sr: int = 22050, seed: int = 0, noise: float = 0.01) -> np.ndarray:
    """Seeded "music": random notes with harmonics, an envelope per note, and a little noise.

    Pitch changes every 0.25-0.5 s like a melody, so a fingerprint has structure to lock onto
    (a steady sine would match any other steady sine).
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    out = np.zeros(n, np.float64)
    t0 = 0
    while t0 < n:
        dur = int(sr * rng.uniform(0.25, 0.5))
        t = np.arange(min(dur, n - t0)) / sr
        for _voice in range(2):
            f0 = 110.0 * 2 ** (rng.integers(0, 36) / 12.0)
            note = sum((0.6 ** h) * np.sin(2 * np.pi * f0 * (h + 1) * t + rng.uniform(0, 2 * np.pi))
                       for h in range(4))
            env = np.minimum(1.0, t / 0.02) * np.exp(-t * rng.uniform(1.0, 4.0))
            out[t0:t0 + len(t)] += 0.25 * note * env
        t0 += dur
    out += noise * rng.standard_normal(n)
    return (0.9 * out / max(1e-9, float(np.abs(out).max()))).astype(np.float32)


def write_wav(path: str | Path, pcm: np.ndarray, sr: int) -> Path:
    """16-bit mono WAV with the stdlib, so tests need no audio library to make input."""
    path = Path(path)
    data = (np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(data)
    return path


def make_video(path: str | Path, seconds: float = 6, size: tuple[int, int] = (160, 120),
               fps: float = 10, source: str = "testsrc2", audio: str | None = "sine",
               seed: int = 0, extra_vf: str | None = None, faststart: bool = False) -> Path:
    """An H.264 (+AAC) MP4 of a lavfi source; ``audio`` is 'sine', 'noise', 'music' or None."""
    path = Path(path)
    args = ["-f", "lavfi", "-i", _video_source(source, size, fps, seed)]
    if audio == "sine":
        args += ["-f", "lavfi", "-i", f"sine=frequency={220 + 55 * (seed % 16)}:sample_rate=44100"]
    elif audio == "noise":
        args += ["-f", "lavfi", "-i", f"anoisesrc=color=pink:seed={seed}:sample_rate=44100:amplitude=0.3"]
    elif audio == "music":
        wav = write_wav(path.with_suffix(".src.wav"), synth_music(seconds + 0.5, 22050, seed), 22050)
        args += ["-i", str(wav)]
    elif audio is not None:
        raise ValueError(f"unknown audio {audio!r}; one of {AUDIO_KINDS}")
    args += ["-t", f"{seconds:g}", "-map", "0:v"]
    if extra_vf:
        args += ["-vf", extra_vf]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    if audio is not None:
        args += ["-map", "1:a", "-c:a", "aac", "-b:a", "96k", "-ac", "1"]
    if faststart:
        args += ["-movflags", "+faststart"]
    run_ffmpeg(*args, str(path))
    if audio == "music":
        path.with_suffix(".src.wav").unlink(missing_ok=True)
    return path


def make_copy(src: str | Path, dst: str | Path, vf: str | None = None, af: str | None = None,
              codec: str = "libx264", crf: int = 28, seconds: float | None = None,
              start: float = 0.0) -> Path:
    """A transformed copy (re-encode, hflip, crop..., optional trim) as a real pipeline would see it."""
    dst = Path(dst)
    args = []
    if start:
        args += ["-ss", f"{start:g}"]
    args += ["-i", str(src)]
    if seconds is not None:
        args += ["-t", f"{seconds:g}"]
    if vf:
        args += ["-vf", vf]
    if af:
        args += ["-af", af]
    args += ["-c:v", codec]
    if codec == "libx264":
        args += ["-preset", "ultrafast", "-crf", str(crf), "-pix_fmt", "yuv420p"]
    elif codec == "mpeg4":
        args += ["-q:v", "8"]
    args += ["-c:a", "aac", "-b:a", "64k"]
    run_ffmpeg(*args, str(dst))
    return dst


BROKEN_KINDS = ("zero_byte", "truncated", "not_video", "no_video_stream", "image")


def make_broken(kind: str, path: str | Path) -> Path:
    """A file that must be refused with a clear reason; the name always ends as given (.mp4)."""
    path = Path(path)
    tmp = path.with_name(path.stem + "_src.tmp")
    if kind == "zero_byte":
        path.write_bytes(b"")
    elif kind == "truncated":
        # Without faststart the index (moov) is at the end, so the first 40% has none: the
        # classic half-downloaded MP4.
        good = make_video(tmp.with_suffix(".mp4"), seconds=4, audio="sine")
        data = good.read_bytes()
        path.write_bytes(data[: int(len(data) * 0.4)])
        good.unlink()
    elif kind == "not_video":
        path.write_text("this is a text file, not a video\n" * 20)
    elif kind == "no_video_stream":
        m4a = tmp.with_suffix(".m4a")
        run_ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:a", "aac", str(m4a))
        m4a.replace(path)
    elif kind == "image":
        png = tmp.with_suffix(".png")
        run_ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120", "-frames:v", "1", str(png))
        png.replace(path)
    else:
        raise ValueError(f"unknown broken kind {kind!r}; one of {BROKEN_KINDS}")
    return path


def synth_speech(seconds: float, sr: int = 22050, seed: int = 0) -> np.ndarray:
    """Seeded speech-like audio: a glottal pulse train with a wandering pitch, shaped by two moving
    formant resonances and chopped into 'syllables' with short pauses."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    f0 = 120 + 40 * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t + rng.uniform(0, 6.3)) \
        + 15 * rng.standard_normal(n).cumsum() / np.sqrt(n)
    phase = np.cumsum(f0 / sr)
    source = (np.diff(np.floor(phase), prepend=0) > 0).astype(np.float64)
    source += 0.05 * rng.standard_normal(n)
    out = np.zeros(n)
    pos = 0
    while pos < n:  # syllables of 0.15-0.35 s, each with its own vowel (formant pair)
        length = int(sr * rng.uniform(0.15, 0.35))
        seg = slice(pos, min(n, pos + length))
        x = source[seg]
        y = np.zeros_like(x)
        for fc, bw in ((rng.uniform(300, 900), 80.0), (rng.uniform(900, 2500), 120.0)):
            r = np.exp(-np.pi * bw / sr)
            y += lfilter([1.0], [1.0, -2 * r * np.cos(2 * np.pi * fc / sr), r * r], x)  # resonator
        env = np.sin(np.pi * np.arange(len(x)) / max(len(x), 1)) ** 2
        out[seg] = y * env
        pos += length + int(sr * rng.uniform(0.03, 0.12))
    return (0.8 * out / max(1e-9, float(np.abs(out).max()))).astype(np.float32)


def make_slideshow(path: str | Path, scenes: list[tuple[str, int]], seconds_each: float = 2.0,
                   size: tuple[int, int] = (320, 240), fps: float = 25) -> Path:
    """A video of still scenes (one frame of each ``(source, seed)`` held ``seconds_each``), no audio.

    Stills are what tools that sample at different instants can agree on: vPDQ hashes the frame at
    the start of each second, AstraDup the one at its middle, which on fast motion are different
    pictures; a held scene (like most shots of real footage at this scale) is the same picture."""
    path = Path(path)
    n = int(round(seconds_each * fps))
    inputs, chains = [], []
    for i, (source, seed) in enumerate(scenes):
        inputs += ["-f", "lavfi", "-i", _video_source(source, size, fps, seed)]
        chains.append(f"[{i}:v]trim=start_frame=2:end_frame=3,setpts=PTS-STARTPTS,"
                      f"loop=loop={n - 1}:size=1:start=0,setpts=N/{fps:g}/TB,setsar=1[v{i}]")
    graph = ";".join(chains) + ";" + "".join(f"[v{i}]" for i in range(len(scenes))) + \
        f"concat=n={len(scenes)}:v=1:a=0[v]"
    run_ffmpeg(*inputs, "-filter_complex", graph, "-map", "[v]", "-r", f"{fps:g}", "-c:v", "libx264",
               "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path))
    return path
