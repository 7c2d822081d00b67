"""The demo's ffmpeg work: source videos rendered from real media (640x360, 25 fps, H.264/AAC), and
copies derived from them as a re-uploader would make them."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from astradup.demo_corpus.media import FPS, HEIGHT, WIDTH, Render, Sound, frame_count
from astradup.demo_corpus.packages import DemoCorpusError, run_tool

FFMPEG = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y"]
# Same look for every rendered file, so only the transforms tell copies apart from sources.
H264 = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
        "-g", str(2 * FPS)]
AAC = ["-c:a", "aac", "-b:a", "96k", "-ar", "44100", "-ac", "2"]
MP4 = ["-movflags", "+faststart", "-map_metadata", "-1"]

PARTIAL_PRE_S = 5.0  # the partial copy: seconds of filler before the copied excerpt
PARTIAL_POST_S = 6.0  # ... and after it


def _ffmpeg(args: list[str], what: str) -> None:
    try:
        res = run_tool(FFMPEG + args)
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
        res = run_tool(["fc-match", "-f", "%{file}", "sans:bold"], timeout=30)
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
    n = frame_count(r.duration)
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


def render_audio(sound: Sound, seconds: float, out: Path, work: Path) -> None:
    """A soundtrack on its own (the audio_swap copy's replacement), padded to ``seconds``."""
    args = _sound_input(sound, seconds, work, out.stem)
    _ffmpeg(args + ["-map", "0:a:0", "-af", "aresample=44100,apad", "-t", f"{seconds:.3f}",
                    "-vn"] + AAC + [str(out)], f"replacement audio {out.name}")
