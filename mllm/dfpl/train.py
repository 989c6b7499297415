"""Training and evaluation of the DFPL models: a plain accelerate loop, and robustness evaluation.

``recsys.train.Trainer`` is built around recommenders (``score`` / full ranking, CTR metrics, datasets of
interactions), so DFPL has its own small loop here with the same conventions: ``Accelerator`` for the device
(CPU here, CUDA when present), ``set_seed``, AdamW, gradient clipping, tqdm progress, seeded batches.
Missing-modality masks for training are drawn once per run (seeded); ``modality_dropout`` additionally drops
one modality of a complete sample at random in each batch (for the fusion models).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from sklearn.metrics import accuracy_score, f1_score
from tqdm.auto import tqdm

from mllm.dfpl.data import MultimodalData, missing_masks
from mllm.dfpl.errors import DfplError
from mllm.dfpl.features import FEATURE_DIM
from mllm.dfpl.models import MissingModalityClassifier, ModelConfig, build_model

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Optimisation settings of one run."""

    epochs: int = 40
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    max_grad_norm: float = 1.0
    seed: int = 0
    modality_dropout: float = 0.2
    train_missing_rate: float = 0.0
    train_missing_pattern: str = "none"
    backbone_lr_scale: float = 0.1  # a fine-tuned image trunk learns at lr * this (pretrained weights move less)


def _accelerator() -> Accelerator:
    # cpu=True on a machine without CUDA keeps accelerate from reading a torchrun environment (as recsys.train)
    return Accelerator(cpu=not torch.cuda.is_available())


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: value.to(device) for key, value in batch.items()}


def parameter_groups(model: torch.nn.Module, config: TrainConfig) -> list[dict]:
    """AdamW groups: a fine-tuned image trunk at ``lr * backbone_lr_scale``, everything else at ``lr``."""
    trunk, rest = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (trunk if ".trunk." in f".{name}" else rest).append(parameter)
    groups = [{"params": rest, "lr": config.lr}]
    if trunk:
        groups.append({"params": trunk, "lr": config.lr * config.backbone_lr_scale})
    return groups


def fit(
    model: MissingModalityClassifier,
    data: MultimodalData,
    config: TrainConfig,
    progress: bool = False,
) -> list[float]:
    """Train ``model`` on ``data`` under the config's training-time missingness; return the mean loss per epoch."""
    accelerator = _accelerator()
    set_seed(config.seed)
    n = len(data)
    image_mask, table_mask = missing_masks(n, config.train_missing_rate, config.train_missing_pattern, config.seed)
    model.set_prior(torch.from_numpy(data.labels.astype(np.int64)))
    optimizer = torch.optim.AdamW(parameter_groups(model, config), weight_decay=config.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    rng = np.random.default_rng(config.seed + 1)
    steps_per_epoch = max(1, int(np.ceil(n / config.batch_size)))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=[group["lr"] for group in optimizer.param_groups],
        total_steps=config.epochs * steps_per_epoch,
        pct_start=0.1,
    )
    history = []
    model.train()
    for _ in tqdm(range(config.epochs), desc=f"train {getattr(model, 'name', 'model')}", disable=not progress):
        order = rng.permutation(n)
        losses = []
        for start in range(0, n, config.batch_size):
            index = order[start : start + config.batch_size]
            mv, mt = image_mask[index].copy(), table_mask[index].copy()
            if config.modality_dropout > 0 and getattr(model, "multimodal", True):
                complete = mv & mt
                drop = complete & (rng.random(len(index)) < config.modality_dropout)
                drop_image = rng.random(len(index)) < 0.5
                mv[drop & drop_image] = False
                mt[drop & ~drop_image] = False
            batch = _to(data.batch(index, mv, mt), accelerator.device)
            loss, _ = model.loss(batch)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            if config.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
        history.append(float(np.mean(losses)))
    model.eval()
    return history


@torch.no_grad()
def predict(
    model: MissingModalityClassifier,
    data: MultimodalData,
    image_mask: np.ndarray,
    table_mask: np.ndarray,
    batch_size: int = 512,
    output: str = "logits",
) -> np.ndarray:
    """Class logits (n, C) of ``data`` under the given masks, in eval mode (``output``: another head's key, e.g.
    DFPL's ``global_logits`` / ``prototype_logits``)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(data), batch_size):
        index = np.arange(start, min(start + batch_size, len(data)))
        batch = _to(data.batch(index, image_mask[index], table_mask[index]), device)
        out.append(model(batch)[output].float().cpu())
    return torch.cat(out).numpy()


def scores(labels: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 (scikit-learn) of the arg-max predictions."""
    predictions = logits.argmax(1)
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "macro_f1": float(f1_score(labels, predictions, average="macro", zero_division=0)),
    }


def evaluate(
    model: MissingModalityClassifier, data: MultimodalData, rate: float, pattern: str, seed: int
) -> dict[str, float]:
    """Accuracy and macro-F1 with a seeded ``rate`` share of ``pattern`` inputs missing at test time."""
    image_mask, table_mask = missing_masks(len(data), rate, pattern, seed)
    return scores(data.labels, predict(model, data, image_mask, table_mask))


def image_shape(data: MultimodalData, model_config: ModelConfig) -> tuple[int, int]:
    """(tokens, width) of the image encoder's input: cached features (n, L, D), or pixels (n, P, 3, H, W) when
    fine-tuning (P photos x grid^2 regions of 1280-d)."""
    if not model_config.finetune_image:
        if data.image.ndim != 3:
            raise DfplError(f"image inputs of shape {data.image.shape}: cached features must be (n, tokens, dim)")
        return data.image.shape[1], data.image.shape[2]
    if data.image.ndim != 5:
        raise DfplError(
            f"fine-tuning needs pixel inputs (n, photos, 3, H, W), got {data.image.shape}: the data sets here "
            "hold cached features; build MultimodalData with pixels (mllm.dfpl.features.to_pixels) to fine-tune"
        )
    return data.image.shape[1] * model_config.image_grid**2, FEATURE_DIM


def train_model(
    name: str, data: MultimodalData, model_config: ModelConfig, train_config: TrainConfig, progress: bool = False
) -> MissingModalityClassifier:
    """Build model ``name`` for ``data``'s shapes, seeded by ``train_config.seed``, and fit it."""
    torch.manual_seed(train_config.seed)
    model = build_model(name, model_config, data.schema, image_shape(data, model_config), data.num_classes)
    fit(model, data, train_config, progress=progress)
    return model


def save_run(directory: str | Path, model: MissingModalityClassifier, record: dict) -> Path:
    """Write ``config.json`` (model name, configs, data spec, metrics) and ``model.safetensors`` atomically."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    tmp = directory / "model.safetensors.tmp"
    save_file(state, str(tmp))
    os.replace(tmp, directory / "model.safetensors")
    tmp = directory / "config.json.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, directory / "config.json")
    return directory


def load_run(directory: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The record and the state dict of a saved run; errors name the folder and the missing file."""
    from safetensors.torch import load_file

    directory = Path(directory)
    for name in ("config.json", "model.safetensors"):
        if not (directory / name).is_file():
            raise DfplError(
                f"{directory}: no {name} (not a DFPL run folder; train one with `python -m mllm.dfpl train`)"
            )
    try:
        record = json.loads((directory / "config.json").read_text())
    except json.JSONDecodeError as exc:
        raise DfplError(f"{directory / 'config.json'}: invalid JSON ({exc.msg} at line {exc.lineno})") from exc
    return record, load_file(str(directory / "model.safetensors"))
