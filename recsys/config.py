"""Config dataclasses from defaults, YAML files and ``--key value`` overrides."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any

import yaml

from core.errors import UserError


class ConfigError(UserError, ValueError):
    """A configuration file or override is malformed or names an unknown field."""


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML (or JSON) mapping from ``path``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
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
