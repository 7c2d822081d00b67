"""A decode's time budget applied to an ffmpeg child process: killed when the deadline passes.

Killing the process is what ends a blocked pipe read, so the frame pipe (io/frames.py) and the
audio pipe (io/pcm.py) can both be stopped at the deadline without polling.
"""
from __future__ import annotations

import contextlib
import subprocess
import threading
from typing import Iterator

from astradup.io.gate import Deadline


def kill_timer(proc: subprocess.Popen, deadline: Deadline) -> threading.Timer | None:
    """A started timer that kills ``proc`` when ``deadline`` passes (None without a deadline)."""
    left = deadline.remaining()
    if left is None:
        return None
    timer = threading.Timer(left, proc.kill)
    timer.daemon = True
    timer.start()
    return timer


@contextlib.contextmanager
def killed_at(proc: subprocess.Popen, deadline: Deadline) -> Iterator[None]:
    """Kill ``proc`` when ``deadline`` passes (a blocked pipe read then ends); on leaving, raise the
    deadline's MediaError if that is what ended it."""
    timer = kill_timer(proc, deadline)
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()
    deadline.check()
