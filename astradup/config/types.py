"""The value types of the config sections and the decorator that makes a section a validated model.

Numbers are strict: a float field takes an int or a float, an int field only an int (3.5 or
``true`` is not a batch size), and neither takes text; the environment layer turns ``"0.7"`` into
a number before validation (astradup/config/layers.py), so only text that is no number is left
for these to refuse. NaN and infinities are refused everywhere: no threshold means anything there.

Booleans are strict too: ``true``/``false``, ``yes``/``no``, ``on``/``off`` (any case) and
``1``/``0`` (what people write in environment variables); anything else, ``maybe`` say, is an
error rather than truthy text.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Annotated, Any, Callable, TypeVar

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, Strict, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydantic_core import PydanticCustomError

from astradup.config.messages import BOOL_ALLOWED, one_line
from astradup.errors import ConfigError

# extra="forbid": a misspelt key is an error, not a silently ignored line. revalidate_instances:
# a section handed in as an object (dataclasses.replace, check_decode) is checked again, so a value
# set by assignment after loading cannot slip through a later construction.
MODEL_CONFIG = ConfigDict(extra="forbid", revalidate_instances="always", allow_inf_nan=False)

TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")


def rule(why: str, key: str | None = None, value: Any = None) -> PydanticCustomError:
    """The error a validator raises: ``why`` says what is allowed; ``key`` (dotted, relative to the
    model being validated) and ``value`` name the setting when the check spans several fields."""
    ctx: dict[str, Any] = {"why": why}
    if key is not None:
        ctx.update(key=key, value=value)
    return PydanticCustomError("config_rule", "{why}", ctx)


def _strict_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise rule(BOOL_ALLOWED)


def _text(value: Any) -> Any:
    """Numbers become their text (YAML reads ``milvus_token: 12345`` as an int); a YAML boolean in
    a text field is refused: ``yes`` was probably meant as the word, and must then be quoted."""
    if isinstance(value, bool):
        raise rule("must be text (quote it: YAML reads a bare yes/no/on/off/true/false as a boolean)")
    if isinstance(value, (int, float)):
        return str(value)
    return value


Bool = Annotated[bool, BeforeValidator(_strict_bool)]
Text = Annotated[str, BeforeValidator(_text)]
NonEmpty = Annotated[str, BeforeValidator(_text), Field(min_length=1)]  # names and paths "" has no meaning for
Number = Annotated[float, Strict()]  # finite (MODEL_CONFIG), any sign: raw similarities
Share = Annotated[float, Strict(), Field(ge=0, le=1)]  # a share, a calibrated score or a weight
NonNegative = Annotated[float, Strict(), Field(ge=0)]  # seconds, sizes: 0 often means "no limit"
Positive = Annotated[float, Strict(), Field(gt=0)]
Count = Annotated[int, Strict(), Field(ge=1)]
CountOrZero = Annotated[int, Strict(), Field(ge=0)]  # 0 = off, or "the system's choice"
Port = Annotated[int, Strict(), Field(ge=0, le=65535)]


def _distinct_nonzero(shifts: tuple[float, ...]) -> tuple[float, ...]:
    if 0 in shifts or len(set(shifts)) != len(shifts):
        raise rule("non-zero shifts, each once (a shift of 0 semitones is the query itself)")
    return shifts


# Semitone shifts (audio.query_pitch, search.pitch_knn): at most 24, each within an octave up or down
PitchShifts = Annotated[tuple[Annotated[float, Strict(), Field(ge=-12, le=12)], ...], Field(max_length=24),
                        AfterValidator(_distinct_nonzero)]

T = TypeVar("T")

# section class -> its key in Config ("decode"...), filled by astradup/config/models.py; errors
# from a section built on its own (DecodeConfig(decoder="x")) name the key as the config spells it.
SECTION_NAMES: dict[type, str] = {}


def section(cls: type[T]) -> type[T]:
    """``cls`` as a pydantic dataclass with MODEL_CONFIG whose constructor raises ConfigError.

    A dataclass rather than a BaseModel: ``dataclasses.replace``, ``fields`` and ``asdict`` keep
    working where the code base uses them, and assignment stays plain (no validate_assignment:
    scripts and tests set fields one by one, and a pair such as common.min_videos/search_k would
    be refused half-way). ``check_decode``/``check_pipeline`` re-check a config changed that way.
    """
    model = pydantic_dataclass(cls, config=MODEL_CONFIG)
    init: Callable[..., None] = model.__init__

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except ValidationError as e:
            raise ConfigError(one_line(e, model, prefix=SECTION_NAMES.get(model, ""))) from None

    model.__init__ = __init__  # type: ignore[method-assign]
    return model


def revalidate(obj: T) -> T:
    """A checked copy of a config (or section) object, whatever was assigned to it since loading;
    ConfigError naming the setting otherwise."""
    return type(obj)(**{f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})  # type: ignore[arg-type]
