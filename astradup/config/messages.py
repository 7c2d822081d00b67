"""A pydantic ValidationError as the one line a user reads: key, value, where it came from, what is allowed.

``config: fusion.visual = -3 (ASTRADUP_FUSION__VISUAL): must be between 0 and 1``

pydantic's own text ("Input should be greater than or equal to 0", several lines with URLs) names
neither the whole range nor the setting as the config spells it; the CLI, the jobs and the app all
print this line instead, with no traceback.
"""
from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Literal, get_args, get_origin

from pydantic import ValidationError
from pydantic.fields import FieldInfo

BOOL_ALLOWED = "must be true or false (also yes/no, on/off, 1/0)"

MAX_SHOWN = 3  # errors spelt out; more are counted ("and 2 more")
_UNKNOWN = ("unexpected_keyword_argument", "extra_forbidden")


def one_line(err: ValidationError, model: type, prefix: str = "", origins: dict[str, str] | None = None) -> str:
    """``err`` (raised validating ``model``) as ``config: <key> = <value> (<origin>): <allowed>; ...``.

    ``prefix`` is the model's own key when it is one section built alone ("decode"); ``origins``
    maps a dotted key to where its value was set (a file, an environment variable).
    """
    parts = [_describe(e, model, prefix, origins or {}) for e in err.errors()]
    more = f"; and {len(parts) - MAX_SHOWN} more" if len(parts) > MAX_SHOWN else ""
    return "config: " + "; ".join(parts[:MAX_SHOWN]) + more


def _describe(e: dict[str, Any], model: type, prefix: str, origins: dict[str, str]) -> str:
    loc = [str(p) for p in e["loc"]]
    ctx = e.get("ctx") or {}
    value = e.get("input")
    if e["type"] == "config_rule" and "key" in ctx:  # a rule spanning fields names its own key
        loc, value = loc + str(ctx["key"]).split("."), ctx["value"]
    key = ".".join(([prefix] if prefix else []) + loc)
    origin = _origin(key, origins)
    shown = "" if isinstance(value, dict) else f" = {_show(value)}"
    where = f" ({origin})" if origin else ""
    return f"{key}{shown}{where}: {_allowed(e, model, loc, ctx, prefix)}"


def _allowed(e: dict[str, Any], model: type, loc: list[str], ctx: dict[str, Any], prefix: str) -> str:
    kind = e["type"]
    owner, info = _field(model, loc)
    if kind in _UNKNOWN:
        return _unknown(owner, loc[-1], parent=".".join(([prefix] if prefix else []) + loc[:-1]))
    if kind == "config_rule":
        return str(ctx["why"])
    if kind == "dataclass_type":
        return "must be a mapping of its keys"
    if kind in ("list_type", "tuple_type", "iterable_type"):
        return "must be a list"
    if kind == "string_type":
        return "must be text"
    if kind in ("too_short", "string_too_short"):
        return "must not be empty"
    if info is not None:
        ann = info.annotation
        if get_origin(ann) is Literal:
            return "must be one of " + ", ".join(str(a) for a in get_args(ann))
        if ann is bool:
            return BOOL_ALLOWED
        if ann in (int, float):
            what = "a whole number" if ann is int else "a number"
            bounds = _bounds(info)
            if kind.startswith(("greater", "less")):
                return f"must be {bounds}"
            return f"must be {what}{' ' + bounds if bounds else ''}"
    if kind == "finite_number":
        return "must be a finite number"
    if kind.startswith(("int_", "float_")):
        return "must be a whole number" if kind.startswith("int_") else "must be a number"
    for op, word in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if op in ctx:
            return f"must be {word} {_num(ctx[op])}"
    return str(e.get("msg", "is not allowed"))


def _field(model: type, loc: list[str]) -> tuple[type | None, FieldInfo | None]:
    """The model class holding the last key of ``loc`` and that key's FieldInfo (None if unknown)."""
    owner: Any = model
    info = None
    for i, part in enumerate(loc):
        fields = getattr(owner, "__pydantic_fields__", None)
        if fields is None:
            return None, None
        info = fields.get(part)
        if i == len(loc) - 1 or info is None:
            return owner, info
        if dataclasses.is_dataclass(info.annotation):
            owner = info.annotation
        else:  # an item of a list or tuple field (segments.slopes.0)
            return owner, None
    return owner, info


def _unknown(owner: type | None, name: str, parent: str) -> str:
    known = list(getattr(owner, "__pydantic_fields__", {}) or [])
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key, did you mean {parent + '.' if parent else ''}{close[0]}?"
    return f"unknown key; {parent or 'the top level'} has " + ", ".join(known)


def _bounds(info: FieldInfo) -> str:
    b = {op: getattr(m, op) for m in info.metadata for op in ("ge", "gt", "le", "lt") if hasattr(m, op)}
    if "ge" in b and "le" in b:
        return f"between {_num(b['ge'])} and {_num(b['le'])}"
    words = [f"{w} {_num(b[op])}" for op, w in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")) if op in b]
    return " and ".join(words)


def _num(x: Any) -> str:
    return f"{x:g}" if isinstance(x, (int, float)) else str(x)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _origin(key: str, origins: dict[str, str]) -> str:
    """Where ``key`` (or, for an unknown section, a key under it) was set; "" when unrecorded."""
    if origins.get(key):
        return origins[key]
    under = [v for k, v in origins.items() if k.startswith(key + ".") and v]
    if under:  # an unknown section: the variable or file that set a key under it
        return under[-1]
    if key in origins:  # set by a layer without a name (overrides)
        return ""
    parts = key.split(".")
    for n in range(len(parts) - 1, 0, -1):
        if ".".join(parts[:n]) in origins:
            return origins[".".join(parts[:n])]
    return ""
