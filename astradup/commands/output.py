"""How the commands show results and progress on a terminal: the progress output, and the lines
for a pair of copies that several commands print alike."""
from __future__ import annotations

import argparse

from astradup.progress import Progress
from astradup.records import AudioCopy


def progress_of(args: argparse.Namespace) -> Progress:
    """The command's progress output (``main`` makes it from --quiet and the terminal)."""
    pr = getattr(args, "progress", None)
    return pr if pr is not None else Progress.for_cli(bool(getattr(args, "quiet", False)))


def verdict_mark(m) -> str:
    """How a text line marks a pair a reviewer confirmed."""
    return f"  [{m.decision}]" if getattr(m, "decision", None) else ""


def fmt_pair(a: str, b: str, m) -> str:
    """One line for a pair of indexed videos judged copies (dedup and demo print the same)."""
    aud = m.scores.get("audio")
    return (f"{a} ~ {b}  fused {m.fused:.3f}  {m.label:<14} conf {m.confidence:.2f}"
            f"  visual {m.scores['visual']:.3f} audio {'-' if aud is None else f'{aud:.3f}'}"
            f" meta {m.scores['metadata']:.3f}{'  [review]' if m.review else ''}{verdict_mark(m)}")


def kind(sg) -> str:
    """How a copied stretch is shown: "audio copy" for a copied soundtrack, else its modalities."""
    return AudioCopy.FLAG if isinstance(sg, AudioCopy) else "+".join(sg.modalities)
