"""Config dataclasses from defaults, YAML files and ``--key value`` overrides."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from core.errors import UserError


class ConfigError(UserError, ValueError):
    """A configuration file or override is malformed or names an unknown field."""


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML (or JSON) mapping from ``path``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}: line {line}: not valid UTF-8 (byte 0x{raw[exc.start]:02x})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        what = " ".join(str(getattr(exc, "problem", None) or exc).split())  # one line, not PyYAML's several
        raise ConfigError(f"{path}: {where}not valid YAML: {what}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of key: value, got {type(data).__name__}")
    return data


def parse_overrides(tokens: list[str]) -> dict[str, str]:
    """Turn ``["--lr", "0.01", "--layers=3"]`` into ``{"lr": "0.01", "layers": "3"}``."""
    out: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--"):
            raise ConfigError(f"unexpected argument {tok!r}: overrides are written --key value")
        key = tok[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(tokens):
                raise ConfigError(f"--{key} needs a value")
            value = tokens[i + 1]
            i += 2
        out[key.replace("-", "_")] = value
    return out


def _coerce(value: Any, annotation: Any, field: str) -> Any:
    """Convert a string (from the command line) or YAML value to the field's annotated type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        is_none = value is None or (isinstance(value, str) and value.lower() in {"none", "null"})
        if is_none and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _coerce(value, non_none[0], field)
    if not isinstance(value, str):
        if origin in (list, tuple) and isinstance(value, (list, tuple)):
            inner = args[0] if args else Any
            seq = [_coerce(v, inner, field) for v in value]
            return tuple(seq) if origin is tuple else seq
        if annotation is float and isinstance(value, int):
            return float(value)
        return value
    text = value.strip()
    try:
        if annotation is bool:
            if text.lower() in {"1", "true", "yes", "on"}:
                return True
            if text.lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError(text)
        if annotation is int:
            return int(text)
        if annotation is float:
            return float(text)
        if annotation is str or annotation is Any:
            return text
        if origin in (list, tuple):
            parsed = json.loads(text) if text.startswith("[") else [t for t in text.split(",") if t]
            inner = args[0] if args else Any
            seq = [_coerce(v, inner, field) for v in parsed]
            return tuple(seq) if origin is tuple else seq
    except (ValueError, json.JSONDecodeError):
        raise ConfigError(f"field {field!r}: cannot read {value!r} as {annotation}") from None
    return text


def build_config(cls: type, overrides: dict[str, Any] | None = None, *, strict: bool = True) -> Any:
    """Instantiate dataclass ``cls`` from its defaults updated by ``overrides`` (typed by the annotations)."""
    overrides = dict(overrides or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(overrides) - fields
    if unknown and strict:
        raise ConfigError(f"unknown field(s) {sorted(unknown)} for {cls.__qualname__}; valid fields: {sorted(fields)}")
    kwargs = {k: _coerce(v, hints[k], k) for k, v in overrides.items() if k in fields}
    return cls(**kwargs)


def split_overrides(overrides: dict[str, Any], *classes: type) -> list[dict[str, Any]]:
    """Distribute one flat override dict over several dataclasses; unknown keys are an error."""
    parts: list[dict[str, Any]] = [{} for _ in classes]
    for key, value in overrides.items():
        for i, cls in enumerate(classes):
            if key in {f.name for f in dataclasses.fields(cls)}:
                parts[i][key] = value
                break
        else:
            valid = sorted({f.name for cls in classes for f in dataclasses.fields(cls)})
            raise ConfigError(f"unknown option {key!r}; valid options: {valid}")
    return parts


# ---------------------------------------------------------------------------------------- field validation


@dataclasses.dataclass(frozen=True)
class Range:
    """The allowed values of a numeric field: bounds inclusive unless ``*_open`` (None: unbounded)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def describe(self) -> str:
        """``"> 0"``, ``">= 1"``, ``"in [0, 1)"``."""
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"{'<' if self.high_open else '<='} {self.high:g}"


POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
AT_LEAST_ONE = Range(1)
FRACTION = Range(0, 1)
# Ranges by field name, for the model configs (a config may name its own in ``validate_fields(ranges=...)``).
NAME_RANGES: tuple[tuple[str, Range], ...] = (
    (r"dropout$", Range(0, 1, high_open=True)),
    (r"(^|_)(lr|temperature|std|time_unit)$", POSITIVE),
    (r"(regularizer|reg_weight|weight_decay|_weight|grad_clip|threshold)$", NON_NEGATIVE),
    (r"(^|_)(alpha|decay)$", FRACTION),
    (r"layers$", NON_NEGATIVE),
    (r"(dim|size|heads|blocks|len|loops|codebooks|mult|window|pairs|units|items|epochs)$", AT_LEAST_ONE),
    (r"^(n|num)_", NON_NEGATIVE),
)
_hints: dict[type, dict[str, Any]] = {}


def _range_for(name: str) -> Range | None:
    return next((rule for pattern, rule in NAME_RANGES if re.search(pattern, name)), None)


def _check_value(value: Any, annotation: Any, where: str) -> None:
    """Raise ConfigError unless ``value`` has the annotated type (bool is no int; floats are finite)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None and type(None) in args:
            return
        annotation = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is bool:
        ok = isinstance(value, bool)
    elif annotation is int:
        ok = isinstance(value, int | np.integer) and not isinstance(value, bool)
    elif annotation is float:
        ok = isinstance(value, int | float | np.number) and not isinstance(value, bool)
        if ok and not math.isfinite(value):
            raise ConfigError(f"{where}: must be a finite number, got {value!r}")
    elif annotation is str:
        ok = isinstance(value, str)
    elif origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: must be a list, got {value!r}")
        for item in value:
            _check_value(item, args[0] if args else Any, where)
        return
    else:
        return  # Any, arrays and other types: the config's own code checks them
    if not ok:
        name = getattr(annotation, "__name__", str(annotation))
        raise ConfigError(f"{where}: must be {name}, got {value!r} ({type(value).__name__})")


def validate_fields(config: Any, ranges: Mapping[str, Range | Sequence[str]] | None = None) -> None:
    """Check every field of a config dataclass: its type, finite numbers, and its range or choices.

    ``ranges`` (or the config class's own ``field_ranges`` mapping) names a Range (numbers, and each number of a
    list) or the allowed strings per field; other numeric fields fall back to :data:`NAME_RANGES`. Raises one
    ConfigError naming the field and what is allowed.
    """
    cls = type(config)
    if cls not in _hints:
        _hints[cls] = typing.get_type_hints(cls)
    rules = {**getattr(cls, "field_ranges", {}), **(ranges or {})}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        where = f"field {field.name!r} of {cls.__name__}"
        _check_value(value, _hints[cls].get(field.name, Any), where)
        rule = rules.get(field.name) or _range_for(field.name)
        if rule is None or value is None:
            continue
        if isinstance(rule, Range):
            numbers = value if isinstance(value, list | tuple) else [value]
            for number in numbers:
                if isinstance(number, int | float) and not isinstance(number, bool) and number not in rule:
                    raise ConfigError(f"{where}: must be {rule.describe()}, got {value!r}")
        elif value not in rule:
            raise ConfigError(f"{where}: must be one of {', '.join(map(str, rule))}; got {value!r}")
