"""Errors that name the file and the reason, so a user can fix the input."""
from __future__ import annotations

import re


class AstraDupError(Exception):
    pass


# An absolute path inside a decoder's message: a slash not preceded by a word character or a dot
# (so "30000/1001" and "a/b" ratios stay), up to whitespace or quoting.
_PATH = re.compile(r"""(?<![\w.])(?:file:)?/[^\s'"]+""")


def path_free(text: str) -> str:
    """``text`` with every absolute path replaced by ``<file>``.

    A reason travels to whoever sent the file (an HTTP client); a path in it would tell them where
    the server keeps its files, or, for a file that named another, whether that one exists.
    """
    return _PATH.sub("<file>", text)


class MediaError(AstraDupError):
    """A file that cannot be indexed (empty, truncated, not a video, no video stream...).

    ``reason`` never contains a path (it may be shown to a stranger); ``str()`` starts with the
    path for the operator's logs and the CLI."""

    def __init__(self, path: str, reason: str) -> None:
        reason = path_free(reason)
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class ConfigError(AstraDupError, ValueError):
    """A setting that cannot work (unknown key, wrong dims for an existing collection...)."""
