"""Resumable training state as safetensors + JSON (no pickles)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from core.io import atomic_write, atomic_write_text


def save_optimizer_state(optimizer: torch.optim.Optimizer, directory: Path) -> None:
    """Write an optimizer's state dict as ``optimizer.safetensors`` (tensors) + ``optimizer.json`` (the rest)."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for param_id, entries in state["state"].items():
        meta["state"][str(param_id)] = {}
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"{param_id}.{key}"] = value.detach().cpu().contiguous()
                meta["state"][str(param_id)][key] = {"tensor": f"{param_id}.{key}"}
            else:
                meta["state"][str(param_id)][key] = {"value": value}
    atomic_write(directory / "optimizer.safetensors", lambda p: save_file(tensors, str(p)))
    atomic_write_text(directory / "optimizer.json", json.dumps(meta))


def load_optimizer_state(optimizer: torch.optim.Optimizer, directory: Path) -> None:
    """Restore what ``save_optimizer_state`` wrote into ``optimizer``."""
    tensors = load_file(str(directory / "optimizer.safetensors"))
    meta = json.loads((directory / "optimizer.json").read_text())
    state: dict[int, dict[str, Any]] = {}
    for param_id, entries in meta["state"].items():
        state[int(param_id)] = {
            key: tensors[spec["tensor"]] if "tensor" in spec else spec["value"] for key, spec in entries.items()
        }
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
