"""The model registry: ``@register("name")`` on a Recommender subclass makes it trainable by name."""

from __future__ import annotations

import importlib
from typing import Any

from core.errors import UserError
from recsys.models.base import CheckpointError, Recommender

_REGISTRY: dict[str, type[Recommender]] = {}

# Modules imported on first lookup so that every built-in model has registered itself.
_BUILTIN_MODULES = (
    "recsys.models.pop",
    "recsys.models.ease",
    "recsys.models.mf",
    "recsys.models.neumf",
    "recsys.models.lightgcn",
    "recsys.models.ials",
    "recsys.models.sasrec",
    "recsys.models.gru4rec",
    "recsys.models.gdn",
    "recsys.models.sinkrec",
    # click-through-rate models (task = "ctr")
    "recsys.models.lr",
    "recsys.models.fm",
    "recsys.models.deepfm",
    "recsys.models.dcnv2",
    "recsys.models.mlp",
    "recsys.models.dsmlp",
)


class UnknownModelError(UserError, KeyError):
    """No model is registered under that name."""

    def __str__(self) -> str:
        return str(self.args[0])


def register(name: str):
    """Class decorator: register a Recommender subclass under ``name``."""

    def wrap(cls: type[Recommender]) -> type[Recommender]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"model name {name!r} is already registered by {_REGISTRY[name].__qualname__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def available_models() -> list[str]:
    """Names of all registered models."""
    _load_builtins()
    return sorted(_REGISTRY)


def get_model_class(name: str) -> type[Recommender]:
    """The class registered under ``name``."""
    _load_builtins()
    if name not in _REGISTRY:
        raise UnknownModelError(f"unknown model {name!r}; registered models: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def build_model(name: str, n_users: int, n_items: int, overrides: dict[str, Any] | None = None) -> Recommender:
    """Instantiate model ``name`` with its default config updated by ``overrides``.

    A value the model rejects (a ValueError from its constructor) comes back as a ConfigError naming the model,
    which the CLIs print as one line."""
    from recsys.config import ConfigError, build_config

    cls = get_model_class(name)
    config = build_config(cls.Config, overrides)
    try:
        return cls(config, n_users, n_items)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from exc


__all__ = [
    "CheckpointError",
    "Recommender",
    "UnknownModelError",
    "available_models",
    "build_model",
    "get_model_class",
    "register",
]
