"""Errors that name the file and the reason, so a user can fix the input."""
from __future__ import annotations


class AstraDupError(Exception):
    pass


class MediaError(AstraDupError):
    """A file that cannot be indexed (empty, truncated, not a video, no video stream...)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class ConfigError(AstraDupError, ValueError):
    """A setting that cannot work (unknown key, wrong dims for an existing collection...)."""
