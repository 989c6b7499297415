"""The one accelerate-based Trainer for every recommender, and ``python -m recsys.train``.

Usage::

    python -m recsys.train --model bpr --dataset ml-100k --out runs/bpr [--config exp.yaml] [--lr 0.01 ...]

Any field of ``TrainConfig``, ``DataConfig`` or the model's ``Config`` can be set in the YAML file or as
``--key value``. Runs unchanged under ``accelerate launch`` with several processes.

CTR models (``task = "ctr"``: lr, fm, deepfm, dcnv2, mlp, dsmlp) take a CTR dataset (``ml-1m-ctr``, a Criteo/
Avazu/libFM/BARS file or folder, see docs/ctr.md), are evaluated by AUC and log-loss (``valid_metric auc``)
and go through the same fit loop; a model whose ``selectable()`` is False (DS-MLP's teacher and distillation
phases) is evaluated but never selected as best nor counted for early stopping.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.optimizer import AcceleratedOptimizer
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from core.cli import add_verbosity_args, configure_from_args
from core.errors import UserError
from core.io import atomic_write_text
from core.provenance import environment
from evals.ranking import evaluate_full_ranking
from recsys.checkpoint import load_optimizer_state, save_optimizer_state
from recsys.config import (
    AT_LEAST_ONE,
    NON_NEGATIVE,
    POSITIVE,
    ConfigError,
    build_config,
    load_yaml,
    parse_overrides,
    split_overrides,
    validate_fields,
)
from recsys.models import Recommender, build_model, get_model_class
from recsys.sampling import (
    EpochSeededBatchSampler,
    EpochSeededSampler,
    LengthBucketBatchSampler,
    TrainingData,
    collate_batch,
)

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"
LOWER_IS_BETTER = ("logloss",)  # validation metrics minimised rather than maximised
LAST_DIR = "last"


@dataclasses.dataclass
class TrainConfig:
    """Optimisation and evaluation settings shared by every model."""

    epochs: int = 100
    batch_size: int = 2048
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    grad_clip: float = 0.0  # max global grad norm; 0 disables clipping
    patience: int = 10  # evaluations without improvement before early stopping; 0 disables
    eval_every: int = 1
    valid_metric: str = "ndcg@10"
    ks: tuple[int, ...] = (10, 20)
    eval_batch_size: int = 1024
    seed: int = 2024
    mixed_precision: str = "auto"  # auto: bf16 on CUDA for models with prefers_bf16, else fp32; or no/fp16/bf16
    num_workers: int = 0
    max_steps_per_epoch: int = 0  # 0: a full pass over the training data
    save_every_epoch: bool = True  # keep a resumable checkpoint of the last epoch in OUT/last
    curve_every: int = 0  # every N epochs also record test metrics as a learning curve (never used to select)
    max_minutes: float = 0.0  # stop after this much training time (0: no limit); reported as stopped_by_budget
    check_every: int = 50  # steps between checks that the loss is finite (each check syncs a GPU)
    # "loader": a DataLoader builds each batch on the CPU (num_workers processes); "device": the dataset draws
    # a whole epoch on the training device and slices it (datasets with ``device_sampler``: bpr, neumf,
    # lightgcn), which removes the per-batch CPU work and copies that dominate small-model steps on a GPU
    sampling: str = "loader"
    # which of a user's items are left out of the ranking: "history" (everything before the target: train, and
    # valid for test; the default, as RecBole), "input" (only the items of the model's input window, as HSTU's
    # evaluation; sequential models) or "none" (nothing: repeat consumption counts)
    eval_mask: str = "history"
    # > 0: batches of similar-length examples, sorted by length within groups of this many batches (datasets
    # with ``example_lengths``: the sequence models), so short sequences are not padded to long ones. 0: off.
    # Faster, but a batch's loss is its targets' mean, so short-window batches gain weight: on Sports GDN it
    # was 2x faster per epoch and 17% lower in valid NDCG@10 at epoch 13 (docs/sequential.md)
    length_buckets: int = 0
    # how a batch's targets are weighted (datasets with ``set_target_weighting``: the sequence models):
    # "batch": the loss is the mean over the batch's targets (each batch weighs the same); "global": each target
    # weighs 1 / (batch size x mean targets per example) in every batch, so batches of short windows (as
    # length_buckets makes them) weigh less, in proportion to their targets. Equal in expectation over random
    # batches; the default is "batch"
    target_weighting: str = "batch"

    def __post_init__(self) -> None:
        validate_fields(self, TRAIN_CONFIG_RANGES)


@dataclasses.dataclass
class DataConfig:
    """Which data, which split."""

    dataset: str = "ml-100k"
    data_dir: str | None = None
    # auto: the split the dataset ships with (given) when it has one, else loo; or loo | temporal | random | given
    split: str = "auto"
    split_seed: int = 2024
    user_core: int = 0
    item_core: int = 0
    min_rating: float | None = None  # keep only ratings >= this before k-core (RecBole ML-1M benchmarks: 3)
    bad_rows: str = "error"  # CTR files: "error" stops at malformed rows (reported by line), "skip" drops them

    def __post_init__(self) -> None:
        validate_fields(self, DATA_CONFIG_RANGES)


TARGET_WEIGHTINGS = ("batch", "global")  # TrainConfig.target_weighting
EVAL_MASKS = {  # TrainConfig.eval_mask: what each leaves out of the ranking
    "history": "train and valid items masked",
    "input": "only the items of the model's input window masked",
    "none": "nothing masked",
}
TRAIN_CONFIG_RANGES: dict[str, Any] = {  # checked when a TrainConfig is made: one line naming the field
    "epochs": AT_LEAST_ONE,
    "batch_size": AT_LEAST_ONE,
    "lr": POSITIVE,
    "weight_decay": NON_NEGATIVE,
    "optimizer": ("adam", "adamw", "sgd", "adagrad"),
    "grad_clip": NON_NEGATIVE,
    "patience": NON_NEGATIVE,
    "eval_every": AT_LEAST_ONE,
    "ks": AT_LEAST_ONE,
    "eval_batch_size": AT_LEAST_ONE,
    "seed": NON_NEGATIVE,
    "mixed_precision": ("auto", "no", "fp16", "bf16"),
    "num_workers": NON_NEGATIVE,
    "max_steps_per_epoch": NON_NEGATIVE,
    "curve_every": NON_NEGATIVE,
    "max_minutes": NON_NEGATIVE,
    "check_every": AT_LEAST_ONE,
    "sampling": ("loader", "device"),
    "eval_mask": tuple(EVAL_MASKS),
    "length_buckets": NON_NEGATIVE,
    "target_weighting": TARGET_WEIGHTINGS,
}
DATA_CONFIG_RANGES: dict[str, Any] = {
    "split_seed": NON_NEGATIVE,
    "user_core": NON_NEGATIVE,
    "item_core": NON_NEGATIVE,
    "bad_rows": ("error", "skip"),
}


class TrainingError(UserError, RuntimeError):
    """Training cannot proceed (diverged loss, bad configuration, unusable checkpoint)."""


def prepare_split(data_config: DataConfig):
    """Load the dataset named in ``data_config``, filter by rating, apply k-core filtering and split it."""
    from recsys.data import kcore_filter, load_dataset, make_split

    dataset = load_dataset(data_config.dataset, data_dir=data_config.data_dir)
    if data_config.min_rating is not None:
        if dataset.ratings is None:
            raise ConfigError(f"min_rating: dataset {data_config.dataset!r} has no ratings to filter on")
        dataset = dataset.subset(dataset.ratings >= data_config.min_rating)
    if data_config.user_core or data_config.item_core:
        dataset = kcore_filter(dataset, data_config.user_core, data_config.item_core)
    protocol = data_config.split
    if protocol == "auto":
        protocol = "given" if dataset.fold is not None else "loo"
        if dataset.fold is not None:
            logger.info(
                "%s ships its own train/valid/test split: using it as given (--split loo re-splits)", dataset.name
            )
    elif dataset.fold is not None and protocol not in ("given", "given_train_test"):
        logger.info("%s ships its own split; re-splitting it with %r as asked", dataset.name, protocol)
    return make_split(dataset, protocol, seed=data_config.split_seed)


def _step_functions(acc: Accelerator, optimizer: Any) -> tuple[Any, Any, Any]:
    """(backward, optimizer step, zero_grad) for the training loop.

    accelerate's wrappers look up an optional package (an importlib search) on every ``step`` and inspect
    ``zero_grad``'s signature on every call: about 0.9 ms a step, a tenth of a BPR step on ML-1M. Where they
    would do nothing else (no loss scaler, no gradient accumulation, one process or plain DDP), autograd and
    the optimizer are called directly; otherwise (fp16 scaling, DeepSpeed, FSDP, XLA, ...) accelerate's own.
    """
    from accelerate.utils import DistributedType

    plain = (
        acc.scaler is None
        and acc.gradient_accumulation_steps == 1
        and acc.distributed_type in (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)
    )
    if not plain:
        return acc.backward, optimizer.step, optimizer.zero_grad
    inner = getattr(optimizer, "optimizer", optimizer)  # the AcceleratedOptimizer's torch optimizer
    return torch.Tensor.backward, inner.step, inner.zero_grad


def _csr_or_none(part):
    return part.to_csr() if part is not None and part.n_interactions > 0 else None


def _bare_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimizer inside accelerate's wrapper (its state dict is what a checkpoint holds)."""
    return optimizer.optimizer if isinstance(optimizer, AcceleratedOptimizer) else optimizer


@dataclasses.dataclass
class _Loop:
    """What one training run steps through: the model (bare and wrapped), optimizer, data and step functions."""

    raw_model: Recommender
    model: Any
    optimizer: Any
    dataset: Any
    loader: Any = None
    device_sampler: Any = None

    backward: Any = None
    optimizer_step: Any = None
    zero_grad: Any = None


@dataclasses.dataclass
class _RunState:
    """The counters of early stopping and resume: where the run is, its best epoch and value, its timings."""

    use_valid: bool
    start_epoch: int = 0
    best_epoch: int = -1
    best_value: float = -math.inf
    best_state: dict[str, torch.Tensor] | None = None
    bad_evals: int = 0
    epoch_seconds: list[float] = dataclasses.field(default_factory=list)
    stopped_early: bool = False
    stopped_by_budget: bool = False


class Trainer:
    """Seeded training with early stopping on a validation metric, safetensors checkpoints and resume."""

    def __init__(
        self,
        model: Recommender,
        split: Any,
        config: TrainConfig | None = None,
        out_dir: str | Path | None = None,
        accelerator: Accelerator | None = None,
        run_info: dict[str, Any] | None = None,
        progress: bool = True,
    ) -> None:
        self.config = config or TrainConfig()
        self.model = model
        self.split = split
        self.out_dir = Path(out_dir) if out_dir is not None else None
        if accelerator is None:
            precision = self.config.mixed_precision
            if precision == "auto":  # bf16 only for models that ask for it (embedding tables gain nothing)
                precision = "bf16" if torch.cuda.is_available() and getattr(model, "prefers_bf16", False) else "no"
            # cpu=True on a machine without CUDA makes accelerate read a torchrun environment (gloo group)
            accelerator = Accelerator(mixed_precision=precision, cpu=not torch.cuda.is_available())
        self.accelerator = accelerator
        self.run_info = dict(run_info or {})
        self.progress = progress and self.accelerator.is_local_main_process
        # CTR models (task "ctr") read labelled rows (a recsys.ctr.CTRSplit) and are judged by AUC and log-loss
        self.task = getattr(model, "task", "ranking")
        if self.task == "ctr":
            self.train_csr = self.valid_csr = self.test_csr = None
            self.has_valid = len(split.valid) > 0
        else:
            self.train_csr = split.train.to_csr()
            self.valid_csr = _csr_or_none(split.valid)
            self.test_csr = _csr_or_none(split.test)
            self.has_valid = self.valid_csr is not None
        self.history: list[dict[str, Any]] = []
        self._test_history = None
        if self.config.eval_mask not in EVAL_MASKS:
            raise ConfigError(f"eval_mask must be one of {', '.join(EVAL_MASKS)}; got {self.config.eval_mask!r}")
        if self.config.eval_mask == "input" and self.task != "ctr" and not model.has_input_window:
            raise ConfigError(
                f"eval_mask='input': model {getattr(model, 'name', type(model).__name__)!r} has no input window "
                "(only sequential models do); use 'history' or 'none'"
            )

    # -- evaluation -------------------------------------------------------------------------------
    def eval_history(self, which: str):
        """What users did before the ``which`` targets: train for "valid", train + valid for "test"."""
        if which == "valid" or self.split.valid is None or self.split.valid.n_interactions == 0:
            return self.split.train
        if self._test_history is None:
            self._test_history = self.split.train.concat(self.split.valid)
        return self._test_history

    def evaluate(self, which: str = "test", model: Recommender | None = None) -> dict[str, float]:
        """Full-ranking metrics on ``which`` ("valid" or "test"), masking the user's earlier positives."""
        model = model or self.accelerator.unwrap_model(self.model)
        if self.task == "ctr":
            return self.evaluate_ctr(which, model)
        if which == "valid":
            target, mask = self.valid_csr, self.train_csr
        elif which == "test":
            target = self.test_csr
            mask = self.train_csr if self.valid_csr is None else (self.train_csr + self.valid_csr)
        else:
            raise ValueError(f"which must be 'valid' or 'test', got {which!r}")
        if target is None:
            return {}
        model.set_eval_history(self.eval_history(which))
        if self.config.eval_mask == "none":
            mask = None
        elif self.config.eval_mask == "input":
            mask = model.eval_input_csr()
        was_training = model.training
        model.eval()
        device = self.accelerator.device

        @torch.no_grad()
        def score_fn(users: torch.Tensor) -> torch.Tensor:
            return model.score(users.to(device)).float()

        try:
            result = evaluate_full_ranking(
                score_fn,
                target,
                mask,
                ks=tuple(self.config.ks),
                batch_size=self.config.eval_batch_size,
                item_popularity=np.asarray(self.train_csr.sum(axis=0)).ravel(),
                progress=self.progress,
                accelerator=self.accelerator if self.accelerator.num_processes > 1 else None,
            )
        finally:
            model.train(was_training)
        return {k: float(v) for k, v in result.items() if isinstance(v, (int, float, np.floating, np.integer))}

    def evaluate_ctr(self, which: str, model: Recommender) -> dict[str, float]:
        """AUC and log-loss of a CTR model's click probabilities on the ``which`` rows."""
        from evals.metrics import log_loss, roc_auc
        from recsys.ctr.features import CTRBatchDataset

        if which not in ("valid", "test"):
            raise ValueError(f"which must be 'valid' or 'test', got {which!r}")
        part = getattr(self.split, which)
        if part is None or len(part) == 0:
            return {}
        acc = self.accelerator
        loader = torch.utils.data.DataLoader(
            CTRBatchDataset(part), batch_size=self.config.eval_batch_size, shuffle=False, collate_fn=collate_batch
        )
        if acc.num_processes > 1:
            loader = acc.prepare_data_loader(loader)  # sharded; gather_for_metrics drops the padded duplicates
        was_training = model.training
        model.eval()
        probabilities, labels = [], []
        try:
            with torch.no_grad():
                for batch in tqdm(loader, desc=f"{which} rows", disable=not self.progress, leave=False):
                    batch = {k: v.to(acc.device) for k, v in batch.items()}
                    prob, label = model.predict(batch).float(), batch["labels"]
                    if acc.num_processes > 1:
                        prob, label = acc.gather_for_metrics((prob, label))
                    probabilities.append(prob.cpu())
                    labels.append(label.cpu())
        finally:
            model.train(was_training)
        y, p = torch.cat(labels).numpy(), torch.cat(probabilities).numpy()
        return {"auc": roc_auc(y, p), "logloss": log_loss(y, p), "n_rows": int(y.size)}

    # -- training ---------------------------------------------------------------------------------
    def fit(self, resume_from: str | Path | None = None) -> dict[str, Any]:
        """Train (or fit in closed form), early-stop on validation, report test once at the best epoch.

        The parts, in the order a reader meets them: ``_prepare_loop`` (dataset, sampler, optimizer, the
        accelerate wrappers), ``_train_epoch`` (one pass, returns the epoch's record), ``_evaluate_and_select``
        (validation, best checkpoint, patience), ``_save_last`` / ``_resume`` (checkpointing) and ``_finish``
        (test at the best epoch, run.json).
        """
        cfg = self.config
        set_seed(cfg.seed)
        started = time.perf_counter()
        raw_model = self.model
        raw_model.prepare(self.split.train)
        if not raw_model.trainable:
            raw_model.fit_closed_form(self.split.train)
            raw_model.to(self.accelerator.device)
            valid = self.evaluate("valid", raw_model)
            return self._finish(raw_model, best_epoch=0, valid=valid, started=started, epoch_seconds=[])

        if cfg.valid_metric and self.has_valid and cfg.valid_metric not in self._metric_names():
            raise ConfigError(
                f"valid_metric {cfg.valid_metric!r} is not computed; choose one of {self._metric_names()}"
            )
        loop = self._prepare_loop(raw_model)
        run = _RunState(use_valid=self.has_valid and bool(cfg.valid_metric))
        if resume_from is not None:
            self._resume(resume_from, loop.optimizer, run)
            # with validation the run returns its best epoch's weights (saved at that epoch); without, its last
            # epoch's, and the folder's model.safetensors is only the final model of the run being continued
            run.best_state = self._load_best_state(resume_from) if run.use_valid else None

        for epoch in range(run.start_epoch, cfg.epochs):
            record = self._train_epoch(loop, epoch, run)
            self._evaluate_and_select(loop, epoch, record, run)
            self.history.append(record)
            self._log_epoch(record)
            if cfg.save_every_epoch and self.out_dir is not None:
                self._save_last(self.accelerator.unwrap_model(loop.model), loop.optimizer, epoch + 1, run)
            if self._should_stop(epoch, started, run):
                break

        final_model = self.accelerator.unwrap_model(loop.model)
        if run.best_state is not None:
            final_model.load_state_dict(run.best_state)
        valid = self.evaluate("valid", final_model) if run.use_valid else {}
        return self._finish(
            final_model,
            best_epoch=run.best_epoch,
            valid=valid,
            started=started,
            epoch_seconds=run.epoch_seconds,
            extra={"stopped_early": run.stopped_early, "stopped_by_budget": run.stopped_by_budget},
        )

    def _prepare_loop(self, raw_model: Recommender) -> _Loop:
        """The training dataset with the options the config asks of it, the optimizer, and either a DataLoader
        (batches built on the CPU) or a device sampler (whole epochs drawn on the training device)."""
        cfg, acc = self.config, self.accelerator
        dataset = raw_model.train_dataset(self.split.train)
        declared = isinstance(dataset, TrainingData)  # capabilities are declared by TrainingData subclasses
        if declared:
            dataset.set_seed(cfg.seed)
        if cfg.sampling not in ("loader", "device"):
            raise ConfigError(f"sampling must be 'loader' or 'device', got {cfg.sampling!r}")
        if cfg.sampling == "device" and not (declared and dataset.supports_device_sampling):
            raise ConfigError(
                f"sampling='device': {type(dataset).__name__} (model {raw_model.name!r}) builds its batches on "
                "the CPU only; use sampling='loader'"
            )
        optimizer = self._make_optimizer(raw_model)
        if cfg.target_weighting not in TARGET_WEIGHTINGS:
            raise ConfigError(
                f"target_weighting must be one of {', '.join(TARGET_WEIGHTINGS)}; got {cfg.target_weighting!r}"
            )
        if cfg.target_weighting != "batch":
            if not (declared and dataset.supports_target_weighting):
                raise ConfigError(
                    f"target_weighting={cfg.target_weighting!r}: {type(dataset).__name__} (model "
                    f"{raw_model.name!r}) has no per-target loss (only the sequence models do); use 'batch'"
                )
            dataset.set_target_weighting(cfg.target_weighting)
        if cfg.sampling == "device":
            model, optimizer = acc.prepare(raw_model, optimizer)
            loop = _Loop(raw_model, model, optimizer, dataset, device_sampler=dataset.device_sampler(acc.device))
        else:
            loop = self._loader_loop(raw_model, dataset, optimizer)
        loop.backward, loop.optimizer_step, loop.zero_grad = _step_functions(acc, loop.optimizer)
        return loop

    def _loader_loop(self, raw_model: Recommender, dataset: Any, optimizer: Any) -> _Loop:
        """A DataLoader over ``dataset`` in seeded epoch order (optionally length-bucketed), prepared."""
        cfg, acc = self.config, self.accelerator
        declared = isinstance(dataset, TrainingData)
        sampler = EpochSeededSampler(len(dataset), cfg.seed)
        if cfg.length_buckets < 0:
            raise ConfigError(f"length_buckets must be >= 0 (0: off), got {cfg.length_buckets}")
        if cfg.length_buckets:
            if not (declared and dataset.has_example_lengths):
                raise ConfigError(
                    f"length_buckets: {type(dataset).__name__} (model {raw_model.name!r}) has no example "
                    "lengths (only the sequence models' windows do); use length_buckets=0"
                )
            batch_sampler = LengthBucketBatchSampler(
                sampler, cfg.batch_size, dataset.example_lengths(), cfg.length_buckets
            )
        else:
            batch_sampler = EpochSeededBatchSampler(sampler, cfg.batch_size)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=batch_sampler,
            collate_fn=collate_batch,
            num_workers=cfg.num_workers,
            persistent_workers=False,  # workers must see each epoch's set_epoch
        )
        model, optimizer, loader = acc.prepare(raw_model, optimizer, loader)
        return _Loop(raw_model, model, optimizer, dataset, loader=loader)

    def _epoch_batches(self, loop: _Loop, epoch: int) -> tuple[Any, int]:
        """The batches of ``epoch`` and how many there are."""
        cfg, acc = self.config, self.accelerator
        if loop.device_sampler is not None:
            batches = loop.device_sampler.epoch(epoch, cfg.batch_size, acc.process_index, acc.num_processes)
            return batches, loop.device_sampler.n_batches(cfg.batch_size, acc.num_processes)
        # the prepared loader forwards the epoch to the sampler and the dataset (accelerate otherwise counts
        # its own iterations from 0, which would replay epoch 0's order and negatives after a resume)
        loop.loader.set_epoch(epoch)
        return loop.loader, len(loop.loader)

    def _train_epoch(self, loop: _Loop, epoch: int, run: _RunState) -> dict[str, Any]:
        """One pass over the training data; returns the epoch's record (loss, its parts, seconds)."""
        cfg, acc = self.config, self.accelerator
        tick = time.perf_counter()
        acc.unwrap_model(loop.model).on_epoch_start(epoch)
        batches, n_batches = self._epoch_batches(loop, epoch)
        model = loop.model
        model.train()
        total, steps = torch.zeros((), device=acc.device), 0
        parts: dict[str, torch.Tensor] = {}  # the model's named loss parts, summed over the epoch
        bar = tqdm(
            batches, total=n_batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not self.progress, leave=False
        )
        for batch in bar:
            loss = model(batch)
            if steps % max(cfg.check_every, 1) == 0 and not torch.isfinite(loss):
                raise TrainingError(
                    f"loss became {loss.item()} at epoch {epoch + 1}, step {steps + 1}; lower --lr or check the data"
                )
            loop.backward(loss)
            if cfg.grad_clip > 0:
                acc.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            loop.optimizer_step()
            loop.zero_grad(set_to_none=True)
            total += loss.detach()
            for name, value in loop.raw_model.loss_parts().items():
                parts[name] = parts[name] + value if name in parts else value.clone()
            steps += 1
            if cfg.max_steps_per_epoch and steps >= cfg.max_steps_per_epoch:
                break
        if not torch.isfinite(total):
            raise TrainingError(f"loss became non-finite during epoch {epoch + 1}; lower --lr or check the data")
        mean_loss = float(acc.reduce(total, reduction="mean").item()) / max(steps, 1)
        run.epoch_seconds.append(time.perf_counter() - tick)
        record: dict[str, Any] = {"epoch": epoch + 1, "loss": mean_loss, "seconds": run.epoch_seconds[-1]}
        if parts:
            record["loss_parts"] = {
                name: float(acc.reduce(value, reduction="mean").item()) / max(steps, 1) for name, value in parts.items()
            }
        diagnostics = loop.raw_model.epoch_diagnostics()
        if diagnostics:
            record["diagnostics"] = diagnostics
        return record

    def _evaluate_and_select(self, loop: _Loop, epoch: int, record: dict[str, Any], run: _RunState) -> None:
        """Validate on evaluation epochs, keep (and save) the best weights, count evaluations without
        improvement; record the test learning curve where asked (never used to select)."""
        cfg, acc = self.config, self.accelerator
        model = acc.unwrap_model(loop.model)
        is_eval_epoch = (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs
        if run.use_valid and is_eval_epoch:
            valid = self.evaluate("valid")
            record["valid"] = valid
            value = -valid[cfg.valid_metric] if cfg.valid_metric in LOWER_IS_BETTER else valid[cfg.valid_metric]
            if not model.selectable():
                record["selectable"] = False  # a pre-training phase (DS-MLP's teacher): no selection, no patience
            elif value > run.best_value:
                run.best_value, run.best_epoch, run.bad_evals = value, epoch + 1, 0
                run.best_state = copy.deepcopy(model.state_dict())
                self._save_model(model)
            else:
                run.bad_evals += 1
        elif not run.use_valid:
            run.best_epoch = epoch + 1
        if cfg.curve_every and ((epoch + 1) % cfg.curve_every == 0 or epoch + 1 == cfg.epochs):
            record["test_curve"] = self.evaluate("test")
            curve = record["test_curve"]
            logger.info(
                "epoch %d test curve: %s",
                epoch + 1,
                " ".join(f"{k} {curve[k]:.4f}" for k in ("recall@20", "ndcg@20") if k in curve),
            )

    def _log_epoch(self, record: dict[str, Any]) -> None:
        """One log line per epoch: loss, its parts, and the validation metric when evaluated."""
        metric = self.config.valid_metric
        logger.info(
            "epoch %d loss %.5f%s %s",
            record["epoch"],
            record["loss"],
            "".join(f" {name} {value:.5f}" for name, value in record.get("loss_parts", {}).items()),
            f"valid {metric} {record['valid'][metric]:.5f}" if "valid" in record else "",
        )

    def _should_stop(self, epoch: int, started: float, run: _RunState) -> bool:
        """Whether the time budget is spent or patience has run out (the same answer on every process)."""
        cfg = self.config
        if cfg.max_minutes and self._any_process((time.perf_counter() - started) / 60 >= cfg.max_minutes):
            logger.info("time budget of %.1f min reached after epoch %d", cfg.max_minutes, epoch + 1)
            run.stopped_by_budget = True
            return True
        if run.use_valid and cfg.patience and run.bad_evals >= cfg.patience:
            logger.info(
                "early stop at epoch %d; best %s %.5f at epoch %d", epoch + 1, cfg.valid_metric, run.best_value,
                run.best_epoch,
            )  # fmt: skip
            run.stopped_early = True
            return True
        return False

    def _any_process(self, flag: bool) -> bool:
        """True on every process when ``flag`` is true on any (so all stop at the same epoch)."""
        if self.accelerator.num_processes == 1:
            return flag
        value = torch.tensor(float(flag), device=self.accelerator.device)
        return bool(self.accelerator.reduce(value, reduction="sum").item() > 0)

    def _metric_names(self) -> list[str]:
        if self.task == "ctr":
            return ["auc", "logloss"]
        names = ["hr", "recall", "precision", "ndcg", "mrr", "coverage", "tail_share", "gini"]
        return [f"{n}@{k}" for k in self.config.ks for n in names]

    def _make_optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        cfg = self.config
        params = [p for p in model.parameters() if p.requires_grad]
        if cfg.optimizer in ("adam", "adamw"):
            cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
            try:  # the fused kernel (CPU and CUDA) makes small-model epochs ~30% faster than the per-tensor loop
                return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
            except (RuntimeError, TypeError, ValueError):  # a device or dtype without a fused kernel
                return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        if cfg.optimizer == "adagrad":
            return torch.optim.Adagrad(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        raise ConfigError(f"optimizer {cfg.optimizer!r} unknown; use adam, adamw, sgd or adagrad")

    def _finish(
        self,
        model: Recommender,
        best_epoch: int,
        valid: dict[str, float],
        started: float,
        epoch_seconds: list[float],
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        tick = time.perf_counter()
        test = self.evaluate("test", model)
        test_seconds = time.perf_counter() - tick
        result: dict[str, Any] = {
            "model": model.name,
            **{k: self.run_info[k] for k in ("dataset", "protocol") if k in self.run_info},
            **test,
            "valid": valid,
            "best_epoch": best_epoch,
            "epochs_run": len(self.history),
            "seconds": time.perf_counter() - started,
            "seconds_per_epoch": float(np.mean(epoch_seconds)) if epoch_seconds else 0.0,
            "test_seconds": test_seconds,  # the final full-ranking evaluation of every test user
            **(extra or {}),
        }
        if self.out_dir is not None and self.accelerator.is_main_process:
            self._save_model(model)
            run = {
                **self.run_info,
                "train_config": dataclasses.asdict(self.config),
                "result": result,
                "history": self.history,
                "environment": environment(),
                "num_processes": self.accelerator.num_processes,
            }
            atomic_write_text(self.out_dir / RUN_FILE, json.dumps(run, indent=2, default=str))
        self.accelerator.wait_for_everyone()
        return result

    def _save_model(self, model: Recommender) -> None:
        if self.out_dir is not None and self.accelerator.is_main_process:
            model.save_pretrained(self.out_dir)

    def _save_last(self, model: Recommender, optimizer: Any, epoch: int, run: _RunState) -> None:
        """Checkpoint the last epoch in OUT/last: weights, optimizer state and the loop's counters (resume)."""
        if not self.accelerator.is_main_process:
            return
        last = self.out_dir / LAST_DIR
        model.save_pretrained(last)
        save_optimizer_state(_bare_optimizer(optimizer), last)
        state = {
            "epoch": epoch,
            "best_epoch": run.best_epoch,
            "best_value": run.best_value if math.isfinite(run.best_value) else None,
            "bad_evals": run.bad_evals,
            "epoch_seconds": run.epoch_seconds,
            "history": self.history,
            "train_config": dataclasses.asdict(self.config),
        }
        atomic_write_text(last / "trainer_state.json", json.dumps(state, indent=2, default=str))
        atomic_write_text(
            self.out_dir / RUN_FILE,
            json.dumps(
                {**self.run_info, "train_config": state["train_config"], "history": self.history}, indent=2, default=str
            ),
        )

    def _resume(self, directory: str | Path, optimizer: Any, run: _RunState) -> None:
        """Load OUT/last (weights, optimizer, counters) into the model, the optimizer and ``run``."""
        last = Path(directory) / LAST_DIR
        state_path = last / "trainer_state.json"
        if not state_path.is_file():
            raise TrainingError(f"{state_path}: no resumable state (was the run saved with save_every_epoch?)")
        state = json.loads(state_path.read_text())
        resumed = Recommender.from_pretrained(last)
        self.accelerator.unwrap_model(self.model).load_state_dict(resumed.state_dict())
        load_optimizer_state(_bare_optimizer(optimizer), last)
        self.history = list(state.get("history", []))
        run.start_epoch, run.best_epoch, run.bad_evals = state["epoch"], state["best_epoch"], state["bad_evals"]
        run.best_value = state["best_value"] if state["best_value"] is not None else -math.inf
        run.epoch_seconds = list(state["epoch_seconds"])
        logger.info("resuming from %s after epoch %d", last, state["epoch"])

    def _load_best_state(self, directory: str | Path) -> dict[str, torch.Tensor] | None:
        try:
            best = Recommender.from_pretrained(directory)
        except Exception:  # no best checkpoint yet (e.g. no evaluation happened before the stop)
            return None
        return {k: v.to(self.accelerator.device) for k, v in best.state_dict().items()}


def prepare_ctr_run(model_name: str, data_config: DataConfig, model_values: dict[str, Any], seed: int):
    """(CTRSplit, model) for a CTR model: split 8:1:1 (or the data's own split), pipeline fitted on train."""
    from recsys.ctr.datasets import prepare_ctr_split
    from recsys.models.ctr_layers import build_ctr_model

    if data_config.user_core or data_config.item_core or data_config.min_rating is not None:
        raise ConfigError("user_core, item_core and min_rating apply to ranking data, not to CTR datasets")
    split = prepare_ctr_split(
        data_config.dataset,
        data_config.data_dir,
        split=data_config.split,
        seed=data_config.split_seed,
        bad_rows=data_config.bad_rows,
    )
    set_seed(seed)  # the initial weights depend on the seed alone
    return split, build_ctr_model(model_name, split.pipeline, model_values)


def override_help(*configs: type) -> str:
    """The ``--key value`` overrides a command accepts, one line per dataclass field with its default."""
    lines = []
    for config in configs:
        lines.append(f"{config.__name__} keys (--key value):")
        for field in dataclasses.fields(config):
            if field.default is not dataclasses.MISSING:
                default = field.default
            elif field.default_factory is not dataclasses.MISSING:
                default = field.default_factory()
            else:
                default = "(required)"
            lines.append(f"  --{field.name:<22} default {default!r}")
    return "\n".join(lines)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser of ``python -m recsys.train``; its --help lists the override keys (the model's too, with
    --model) from the config dataclasses."""
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--model")
    known, _ = probe.parse_known_args(argv)
    configs: list[type] = [TrainConfig, DataConfig]
    model_defaults = ""
    if known.model:
        with contextlib.suppress(UserError):  # an unknown model is reported when the command runs
            model_cls = get_model_class(known.model)
            configs.append(model_cls.Config)
            if model_cls.train_defaults:
                shown = ", ".join(f"{k}={v!r}" for k, v in model_cls.train_defaults.items())
                model_defaults = f"\n{known.model} replaces these TrainConfig defaults: {shown}"
    parser = argparse.ArgumentParser(
        prog="python -m recsys.train",
        description="Train any registered recommender with full-ranking evaluation. Extra --key value pairs "
        "override fields of TrainConfig, DataConfig or the model's Config (listed below; with --model NAME, "
        "the model's keys too).",
        epilog=override_help(*configs) + model_defaults,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", help="registered model name (see --list-models)")
    parser.add_argument("--dataset", help="dataset name (ml-100k, ml-1m, gowalla, ...) or path")
    parser.add_argument("--data-dir", help="folder to look for datasets in first")
    parser.add_argument("--config", help="YAML file with any of the fields (model and dataset too)")
    parser.add_argument("--out", help="output folder: config.json, model.safetensors, run.json, last/")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    parser.add_argument("--list-models", action="store_true", help="print the registered models and exit")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    add_verbosity_args(parser)
    return parser


def train_from_args(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse the command line, train, and return the result dict (used by ``main`` and by tests)."""
    parser = build_parser(argv)
    args, rest = parser.parse_known_args(argv)
    configure_from_args(args)
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    if args.list_models:
        from recsys.models import available_models

        return {"models": available_models()}
    values: dict[str, Any] = load_yaml(args.config) if args.config else {}
    values.update(parse_overrides(rest))
    model_name = args.model or values.pop("model", None)
    values.pop("model", None)
    if args.dataset:
        values["dataset"] = args.dataset
    if args.data_dir:
        values["data_dir"] = args.data_dir
    if not model_name:
        parser.error("--model is required")
    model_cls = get_model_class(model_name)
    train_values, data_values, model_values = split_overrides(values, TrainConfig, DataConfig, model_cls.Config)
    train_config = build_config(TrainConfig, {**model_cls.train_defaults, **train_values})
    data_config = build_config(DataConfig, data_values)
    build_config(model_cls.Config, model_values)  # checked now, before any data is read
    if args.resume and not args.out:
        parser.error("--resume needs --out (the folder of the run to continue)")

    if getattr(model_cls, "task", "ranking") == "ctr":
        split, model = prepare_ctr_run(model_name, data_config, model_values, train_config.seed)
    else:
        split = prepare_split(data_config)
        set_seed(train_config.seed)  # the initial weights depend on the seed alone
        model = build_model(model_name, split.train.n_users, split.train.n_items, model_values)
    run_info = {
        "model": model_name,
        "dataset": data_config.dataset,
        "protocol": split.protocol,
        "data_config": dataclasses.asdict(data_config),
        "split_seed": data_config.split_seed,
        "seed": train_config.seed,
        "evaluation": f"full_ranking ({EVAL_MASKS.get(train_config.eval_mask, '?')}, pessimistic ties)",
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
    }
    if getattr(model, "task", "ranking") == "ctr":
        run_info["evaluation"] = "ctr: AUC and log-loss of the click probabilities on every held-out row"
        run_info["ctr_data"] = {**split.info(), "rejects": split.rejects}
    trainer = Trainer(model, split, train_config, out_dir=args.out, run_info=run_info, progress=not args.quiet)
    return trainer.fit(resume_from=args.out if args.resume else None)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: print the final metrics as JSON; one clear line and exit 2 on bad input."""
    from core.cli import run_cli

    return run_cli(lambda: train_from_args(argv))


if __name__ == "__main__":
    sys.exit(main())
