"""Progress of the CLI's long commands (index, dedup, report, reindex) for a person at a terminal.

A bar is drawn (tqdm, on stderr) only when someone is watching: never with ``--quiet``, never when
stdout is not a terminal (a script or a pipe reads the results, and a log file would fill with
carriage returns), never when stderr, where the bar is drawn, is not one either. Without a bar the
commands' progress lines still go to stderr, unless ``--quiet``. The long-running code knows nothing
of bars: it calls a ``tick(done, total)`` and a ``say(message)`` it is given, which this module makes.
"""
from __future__ import annotations

import shutil
import sys
import threading
from typing import Callable, TextIO

Tick = Callable[[int, int | None], None]  # (units done so far, units in all; None when not known yet)


def _is_terminal(stream: TextIO | None) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def bars_wanted(quiet: bool = False, stdout: TextIO | None = None, stderr: TextIO | None = None) -> bool:
    """Whether to draw progress bars: not quiet, and both stdout and stderr are terminals."""
    if quiet:
        return False
    return _is_terminal(sys.stdout if stdout is None else stdout) and \
        _is_terminal(sys.stderr if stderr is None else stderr)


def _no_tick(done: int, total: int | None) -> None:
    return None


class _Bar:
    """One tqdm bar, opened at its first tick (when the total is known), moved to ``done``.

    Ticks may come from several threads (report thumbnails), hence the lock."""

    def __init__(self, desc: str, unit: str, stream: TextIO) -> None:
        self.desc, self.unit, self.stream = desc, unit, stream
        self._bar = None
        self._lock = threading.Lock()

    def __call__(self, done: int, total: int | None) -> None:
        from tqdm import tqdm

        with self._lock:
            if self._bar is None and total == 0:
                return  # nothing to do: no bar
            if self._bar is None:
                # The terminal's size when it tells one; a terminal that reports 0 x 0 (a pty nobody
                # sized) would make tqdm draw nothing at all, so it gets a plain 100 x 24.
                size = shutil.get_terminal_size((100, 24))
                self._bar = tqdm(total=total, desc=self.desc, unit=self.unit, file=self.stream, leave=True,
                                 ncols=size.columns or 100, nrows=size.lines or 24)
            if total is not None and self._bar.total != total:
                self._bar.total = total
            self._bar.update(max(0, int(done) - self._bar.n))
            if self._bar.total is not None and self._bar.n >= self._bar.total:
                self._bar.close()  # finished: it stays on screen, and frees its line for the next bar
                self._bar = None

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None


class Progress:
    """One command's progress output: bars when ``bars`` is on, plain lines when not, nothing but
    bars and errors when ``quiet``."""

    def __init__(self, bars: bool, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.bars, self.quiet = bars, quiet
        self.stream = stream
        self._open: list[_Bar] = []

    @classmethod
    def for_cli(cls, quiet: bool) -> "Progress":
        return cls(bars_wanted(quiet), quiet)

    @property
    def _out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stderr

    def say(self, message: str) -> None:
        """A progress line on stderr (above the bars while one is drawn); nothing when quiet."""
        if self.quiet:
            return
        if self.bars and self._open:
            from tqdm import tqdm

            tqdm.write(message, file=self._out)
        else:
            print(message, file=self._out, flush=True)

    def teller(self, tag: str) -> Callable[[str], None]:
        """``say`` with a ``[tag]`` prefix, the form the commands' lines have always had."""
        return lambda message: self.say(f"[{tag}] {message}")

    def tick(self, desc: str, unit: str) -> Tick:
        """A ``tick(done, total)`` that moves a bar named ``desc``; a no-op when bars are off."""
        if not self.bars:
            return _no_tick
        bar = _Bar(desc, unit, self._out)
        self._open.append(bar)
        return bar

    def close(self) -> None:
        for bar in self._open:
            bar.close()
        self._open.clear()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
