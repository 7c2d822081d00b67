"""The command line explains itself: every argument of every subcommand has help text, ``--help``
shows examples, and progress bars (astradup/progress.py) are drawn only for a person at a terminal."""
from __future__ import annotations

import argparse
import io

import pytest

from astradup import progress
from astradup.cli import build_parser, main
from astradup.progress import Progress, bars_wanted


def _parsers(p: argparse.ArgumentParser, name: str = "astradup"):
    """The parser and every subparser under it, each with the command line that reaches it."""
    yield name, p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            helped = {a.dest for a in action._choices_actions if a.help}
            for cmd, sub in action.choices.items():
                assert cmd in helped, f"{name} {cmd}: the subcommand has no help in the command list"
                yield from _parsers(sub, f"{name} {cmd}")


def test_every_argument_of_every_command_has_help():
    missing = []
    n = 0
    for name, p in _parsers(build_parser()):
        for action in p._actions:
            n += 1
            if action.help == argparse.SUPPRESS:
                continue  # hidden on purpose
            if not (action.help or "").strip():
                missing.append(f"{name}: {'/'.join(action.option_strings) or action.dest}")
    assert n > 30  # the walk reached the subcommands
    assert not missing, "arguments without help text: " + ", ".join(missing)


def test_help_shows_examples(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out
    examples = out.split("examples:", 1)[1]
    for cmd in ("index", "search", "dedup", "report", "reindex"):
        assert f"astradup {cmd} " in examples or f"astradup --quiet {cmd}" in examples, cmd
    assert "--quiet" in out and "rejected" in examples  # verdicts and progress are explained
    # the examples keep their line breaks (RawDescriptionHelpFormatter), one command per line
    assert "\n  astradup search clip.mp4 --top 5 " in examples


def test_quiet_is_a_global_flag():
    p = build_parser()
    assert p.parse_args(["--quiet", "dedup"]).quiet is True
    assert p.parse_args(["-q", "reindex"]).quiet is True
    assert p.parse_args(["dedup"]).quiet is False


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_bars_only_when_stdout_and_stderr_are_terminals_and_not_quiet(monkeypatch):
    tty, pipe = _Stream(True), _Stream(False)
    assert bars_wanted(False, tty, tty) is True
    assert bars_wanted(True, tty, tty) is False  # --quiet
    assert bars_wanted(False, pipe, tty) is False  # stdout redirected: a script reads the results
    assert bars_wanted(False, tty, pipe) is False  # stderr to a log file
    closed = io.StringIO()
    closed.close()  # isatty on a closed stream raises ValueError: no bar, no crash
    assert bars_wanted(False, closed, tty) is False
    assert bars_wanted(False, object(), tty) is False  # a stream without isatty
    # what the CLI decides: the real sys.stdout / sys.stderr, forced to look like a terminal or not
    monkeypatch.setattr(progress.sys, "stdout", _Stream(True))
    monkeypatch.setattr(progress.sys, "stderr", _Stream(True))
    assert Progress.for_cli(quiet=False).bars is True
    assert Progress.for_cli(quiet=True).bars is False
    monkeypatch.setattr(progress.sys, "stdout", _Stream(False))
    assert Progress.for_cli(quiet=False).bars is False


def test_a_bar_moves_on_ticks_and_lines_go_above_it():
    err = _Stream(True)
    with Progress(bars=True, stream=err) as pr:
        tick = pr.tick("dedup join", "video")
        tick(0, 4)
        tick(3, 4)
        pr.say("[dedup] batch 1/2")
        tick(4, 4)
    text = err.getvalue()
    assert "dedup join" in text and "4/4" in text and "[dedup] batch 1/2" in text


def test_without_bars_ticks_draw_nothing_and_quiet_says_nothing():
    err = _Stream(False)
    pr = Progress(bars=False, stream=err)
    pr.tick("reindex", "video")(5, 10)
    assert err.getvalue() == ""
    pr.teller("index")("wrote 5 records")
    assert err.getvalue() == "[index] wrote 5 records\n"
    quiet = _Stream(False)
    pq = Progress(bars=False, quiet=True, stream=quiet)
    pq.teller("index")("wrote 5 records")
    pq.tick("index", "file")(1, 2)
    assert quiet.getvalue() == ""


def test_a_finished_bar_closes_and_an_empty_one_is_never_drawn():
    err = _Stream(True)
    with Progress(bars=True, stream=err) as pr:
        pr.tick("thumbnails", "video")(0, 0)
        assert err.getvalue() == ""
        tick = pr.tick("reindex", "video")
        tick(2, 2)
        assert tick._bar is None and "2/2" in err.getvalue()
