"""The layers of a config before validation: YAML files, ``ASTRADUP_*`` variables, overrides.

Each layer is a plain nested dict; they are merged key by key, remembering where each value came
from, so that the one validation of the merged dict (astradup/config/__init__.py) can say which
file or variable holds a wrong value.

Environment variables: ``ASTRADUP_<SECTION>__<KEY>`` (``ASTRADUP_FUSION__VISUAL=0.7``) or
``ASTRADUP_<KEY>`` for a top-level key (``ASTRADUP_MILVUS_URI=...``). A value is read as the type
of its key: text as it is (a token "12345" or a phash "off" stays text), numbers with Python's
int()/float() (so "1e3" is a number, "abc" stays text and is refused), booleans by the strict
words of astradup/config/types.py, lists and mappings as YAML (``[s3://a, s3://b]``). A name with
``__`` always means a config key, so an unknown section or key there is an error. A name without
one is a config key only if it names a top-level key: the environment is shared, and
ASTRADUP_API_KEY, ASTRADUP_MAX_UPLOAD_MB... belong to the service (serve/settings.py); one that
differs from a top-level key by a typo (ASTRADUP_MILVUS_URL) is refused rather than ignored.
"""
from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any, Literal, Mapping, get_args, get_origin

import yaml

from astradup.errors import ConfigError

ENV_PREFIX = "ASTRADUP_"
ENV_CONFIG = "ASTRADUP_CONFIG"  # the YAML file, not a key


def read_yaml(path: str | Path, label: str) -> dict[str, Any]:
    """The mapping in a YAML file; ConfigError (one line) when it is missing, broken or no mapping."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config: {label}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config: {label}: cannot be read: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config: {label}: not valid YAML{at}: {getattr(e, 'problem', None) or e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config: {label}: must be a mapping of config keys, got {type(data).__name__}")
    return data


def merge(into: dict[str, Any], layer: Mapping[str, Any], label: str, origins: dict[str, str],
          sections: set[str], path: str = "") -> None:
    """Merge ``layer`` into ``into`` (mappings key by key, anything else replaced), recording
    ``label`` as the origin of every key it sets. A section given as empty (``pipeline:`` with
    every key commented out) is an empty mapping, not an error."""
    for raw_key, value in layer.items():
        key = str(raw_key)
        dotted = f"{path}{key}"
        if value is None and not path and key in sections:
            value = {}
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            merge(into[key], value, label, origins, sections, dotted + ".")
            continue
        into[key] = copy.deepcopy(dict(value) if isinstance(value, Mapping) else value)
        origins[dotted] = label
        if isinstance(value, Mapping):
            for sub in value:
                origins[f"{dotted}.{sub}"] = label


def env_layer(environ: Mapping[str, str], fields: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The ``ASTRADUP_*`` variables that name config keys, as a layer, and each key's variable name.

    ``fields`` maps each top-level key to its type (a section class, or a value type)."""
    layer: dict[str, Any] = {}
    names: dict[str, str] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name == ENV_CONFIG:
            continue
        parts = name[len(ENV_PREFIX):].lower().split("__")
        if len(parts) == 1:
            key = parts[0]
            if key not in fields:
                close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.85)
                if close:
                    raise ConfigError(f"config: {name}: unknown key, did you mean {ENV_PREFIX}{close[0].upper()}?")
                continue  # another part of the project's variable
            layer[key] = _parse(raw, fields[key])
            names[key] = name
            continue
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"config: {name}: a config variable is {ENV_PREFIX}<SECTION>__<KEY> "
                              f"(e.g. {ENV_PREFIX}FUSION__VISUAL)")
        sec, key = parts
        section_fields = getattr(fields.get(sec), "__pydantic_fields__", None)
        info = section_fields.get(key) if section_fields else None
        # an unknown section or key is kept: validation refuses it, naming this variable
        layer.setdefault(sec, {})[key] = _parse(raw, info.annotation if info is not None else None)
        names[f"{sec}.{key}"] = name
    return layer, names


def _parse(raw: str, ann: Any) -> Any:
    """The value of an environment variable for a key of type ``ann`` (None: unknown key)."""
    text = raw.strip()
    if ann is str or ann is bool or (get_origin(ann) is Literal and all(isinstance(a, str) for a in get_args(ann))):
        return raw if ann is str else text  # booleans: the strict words, checked by the model
    if ann in (int, float):
        for number in (int, float) if ann is float else (int,):  # "-3" stays -3 in an error message
            try:
                return number(text)
            except ValueError:
                pass
        return raw
    if text == "":
        return ""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return raw
