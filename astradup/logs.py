"""Structured logs: one JSON object per line (``log.json: true``, the default) or plain text.

``setup_logging(cfg.log)`` is called by every entry point that runs AstraDup code: the CLI, the
backfill job, and inside Ray's worker processes (the decode task and the embedder actor), which
never run those entry points and start with no handler of ours. It is idempotent and cheap, so a
task may call it for every batch.

Only the ``astradup`` logger tree gets our handler, not the root logger: Ray, Serve and other
libraries log through loggers of their own, and a root handler of ours would reformat their lines
too. Records still propagate to the root logger (which has no handler in the CLI or in Ray's
workers), so pytest's ``caplog`` and an embedding application's own handlers keep seeing them.

A record's fields: ``ts`` (UTC, ISO 8601, milliseconds), ``level``, ``logger``, ``msg``, then any
``extra=`` the caller gave (``video_id``, ``stage``, ``duration_s``, ``status``, ``uri``,
``error``...), and ``exc`` with the traceback when there is one. ``log.level`` filters.
"""
from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import datetime, timezone
from typing import Any

from astradup.config import LEVELS, LogConfig  # LEVELS: log.level's choices, listed once by the config model
from astradup.errors import ConfigError

ROOT = "astradup"
# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_lock = threading.Lock()


def extras(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a caller passed with ``extra=``, in the order given."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _ts(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line; values JSON cannot hold are written as strings."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": _ts(record), "level": record.levelname, "logger": record.name,
                               "msg": record.getMessage()}
        for k, v in extras(record).items():
            out.setdefault(k, v)
        if isinstance(out.get("duration_s"), float):
            out["duration_s"] = round(out["duration_s"], 4)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``ts LEVEL logger: msg key=value ...``: the same fields, for a person at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        kv = " ".join(f"{k}={round(v, 4) if isinstance(v, float) else v}" for k, v in extras(record).items())
        line = f"{_ts(record)} {record.levelname} {record.name}: {record.getMessage()}" + (f" {kv}" if kv else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record, not at setup: pytest, Ray's
    worker log redirection and ``contextlib.redirect_stderr`` all swap it after start-up."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; the property wins
        pass


def _level(name: str) -> int:
    name = str(name).upper()
    if name not in LEVELS:
        raise ConfigError(f"log.level must be one of {', '.join(LEVELS)}, got {name!r}")
    return getattr(logging, name)


def setup_logging(cfg: LogConfig | None = None) -> logging.Logger:
    """Install (or re-configure) the one handler of the ``astradup`` logger; returns that logger.

    Calling it again with the same config changes nothing; with another config it switches the
    format and level in place, never adding a second handler (which would print every line twice).
    """
    cfg = cfg or LogConfig()
    level = _level(cfg.level)
    logger = logging.getLogger(ROOT)
    with _lock:
        handler = next((h for h in logger.handlers if isinstance(h, _StderrHandler)), None)
        if handler is None:
            handler = _StderrHandler()
            logger.addHandler(handler)
        fmt_cls = JsonFormatter if cfg.json else TextFormatter
        if not isinstance(handler.formatter, fmt_cls):
            handler.setFormatter(fmt_cls())
        logger.setLevel(level)
    return logger


def get_logger(name: str) -> logging.Logger:
    """A logger under ``astradup`` (module names already are: ``astradup.pipeline``...)."""
    return logging.getLogger(name if name == ROOT or name.startswith(ROOT + ".") else f"{ROOT}.{name}")
