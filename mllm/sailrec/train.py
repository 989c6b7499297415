"""The SailRec stages and the one harness for every variant: train, save, load, score, diagnose.

Stages (SAILRec): (1) a frozen MF (:mod:`mllm.sailrec.mf`); (2) warm-up of the user mapper and item projector
on the alignment losses alone (the LLM frozen; its text representations are computed once); (3) LoRA (peft)
together with the mappers on the yes/no loss plus the weighted alignment losses, through accelerate.
Variants (``SailRecConfig.variant``): ``tallrec`` (text-only LoRA), ``collm`` (soft tokens, no alignment, no
steering: stage 3 only), ``sailrec`` and its ablations; the MF baseline is scored from stage 1 alone.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from core.io import atomic_write, atomic_write_json
from evals.metrics import MetricError, roc_auc, user_auc
from mllm.backbones import DEFAULT_MODEL, load_causal_lm, quiet_peft_warnings
from mllm.sailrec.data import SailRecDataError, YesNoData, YesNoRows, load_yes_no, profile_text, user_profiles
from mllm.sailrec.mf import labelled_mf, mf_scores, mf_tables, train_mf
from mllm.sailrec.model import VARIANTS, SailRecConfig, SailRecModel

logger = logging.getLogger(__name__)

RUN_FILE = "sailrec_run.json"
MAPPERS_FILE = "mappers.safetensors"
MF_DIR = "mf"
ADAPTER_DIR = "adapter"


@dataclasses.dataclass
class DataSpec:
    """Where a run's data comes from (recorded in the run folder so ``eval`` reloads the same rows)."""

    dataset: str = "collm_ml1m"
    data_dir: str = ""
    genres_file: str | None = None
    train_rows: int = 0  # 0: every training row
    sample_seed: int = 0  # the training subsample is the same for every variant and seed
    allow_pickle: bool = False  # CoLLM's Amazon-Book pickles (unpickling runs code: trusted files only)

    def load(self) -> YesNoData:
        """Read the data set."""
        return load_yes_no(self.dataset, self.data_dir, self.genres_file, allow_pickle=self.allow_pickle)


@dataclasses.dataclass
class MFSpec:
    """Stage-1 MF settings (chosen on valid AUC of CoLLM's ML-1M: test AUC 0.65 vs CoLLM's 0.6482)."""

    embedding_dim: int = 64
    epochs: int = 20
    lr: float = 1e-2
    reg_weight: float = 0.1


# ----------------------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------------------


def _safe(metric: Any, *args: Any) -> float | None:
    try:
        return float(metric(*args))
    except MetricError:
        return None


def yes_no_metrics(rows: YesNoRows, scores: np.ndarray) -> dict[str, Any]:
    """AUC and UAUC on all rows, and on the warm (``not_cold``) and cold subsets."""
    out: dict[str, Any] = {"n_rows": len(rows)}
    for name, mask in (("", np.ones(len(rows), bool)), ("warm_", rows.warm), ("cold_", ~rows.warm)):
        out[f"{name}n"] = int(mask.sum())
        out[f"{name}auc"] = _safe(roc_auc, rows.labels[mask], scores[mask]) if mask.any() else None
        out[f"{name}uauc"] = _safe(user_auc, rows.users[mask], rows.labels[mask], scores[mask]) if mask.any() else None
    return out


# ----------------------------------------------------------------------------------------------------------
# Building and training
# ----------------------------------------------------------------------------------------------------------


def build_model(
    data: YesNoData,
    mf: Any,
    config: SailRecConfig,
    model_spec: str = DEFAULT_MODEL,
    seed: int = 0,
    adapter_dir: str | Path | None = None,
    device: str | torch.device | None = None,
) -> SailRecModel:
    """The LLM (with new LoRA weights, or those in ``adapter_dir``) + mappers over the frozen MF's tables."""
    from peft import LoraConfig, PeftModel, get_peft_model

    llm, tokenizer = load_causal_lm(model_spec, device=device)
    torch.manual_seed(seed)
    with quiet_peft_warnings():
        if adapter_dir is not None:
            llm = PeftModel.from_pretrained(llm, str(adapter_dir), is_trainable=False)
        else:
            lora = LoraConfig(
                r=config.lora_rank,
                lora_alpha=config.lora_alpha,
                lora_dropout=config.lora_dropout,
                target_modules=list(config.lora_targets),
                bias="none",
            )
            llm = get_peft_model(llm, lora)
    users, items = mf_tables(mf)
    model = SailRecModel(llm, tokenizer, data.titles, users, items, config)
    return model.to(llm.device if hasattr(llm, "device") else "cpu")


def _alignment_items(rows: YesNoRows, max_history: int) -> np.ndarray:
    items = [rows.items] + [h[-max_history:] for h in rows.histories] if max_history else [rows.items]
    return np.unique(np.concatenate(items)) if len(rows) else np.zeros(0, dtype=np.int64)


def prepare_alignment(
    model: SailRecModel, data: YesNoData, rows: YesNoRows, cache: dict[str, Any] | None = None
) -> None:
    """Encode (frozen LLM) the titles of the items the training rows show and their users' profile texts.

    ``cache`` (a dict kept by the caller) carries the encodings to the next model built on the same LLM, so
    variants and seeds of one benchmark encode each text once.
    """
    config = model.config
    if not (config.item_align or config.user_align):
        return
    cache = {} if cache is None else cache
    if config.item_align:
        if "item_text_rep" in cache:
            model.item_text_rep.copy_(cache["item_text_rep"])
            model.item_text_known.copy_(cache["item_text_known"])
        model.precompute_alignment_targets(_alignment_items(rows, config.max_history), None, profile_text)
        cache["item_text_rep"], cache["item_text_known"] = model.item_text_rep.clone(), model.item_text_known.clone()
    if config.user_align:
        key = ("profiles", config.profile_top_k, tuple(np.unique(rows.users).tolist()))
        if cache.get("profile_key") == key:
            model.profile_rep = cache["profile_rep"].clone()
            model.user_profile_index.copy_(cache["user_profile_index"])
        else:
            shown = set(np.unique(rows.users).tolist())
            profiles = {u: f for u, f in user_profiles(data, config.profile_top_k).items() if u in shown}
            model.precompute_alignment_targets(np.zeros(0, dtype=np.int64), profiles, profile_text)
            cache.update(
                profile_key=key,
                profile_rep=model.profile_rep.clone(),
                user_profile_index=model.user_profile_index.clone(),
            )


def warm_up_mappers(model: SailRecModel, rows: YesNoRows, seed: int) -> list[float]:
    """Stage 2: mapper/projector steps on the alignment losses alone (no LLM forward: targets are cached)."""
    config = model.config
    if not (config.item_align or config.user_align) or config.warmup_steps == 0:
        return []
    params = list(model.user_mapper.parameters()) + list(model.item_projector.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.mapper_lr)
    device = model.user_table.device
    generator = torch.Generator().manual_seed(seed)
    known_items = torch.nonzero(model.item_text_known).flatten()
    profiled_users = torch.nonzero(model.user_profile_index >= 0).flatten()
    train_users = torch.as_tensor(np.unique(rows.users))
    train_users = train_users[model.user_profile_index.cpu()[train_users] >= 0]
    users_pool = train_users if len(train_users) >= 2 else profiled_users.cpu()
    losses = []
    for _ in tqdm(range(config.warmup_steps), desc="alignment warm-up", leave=False):
        loss = model.item_text_rep.new_zeros(())
        if config.item_align and len(known_items) >= 2:
            pick = torch.randint(len(known_items), (config.warmup_batch,), generator=generator)
            loss = loss + model.item_alignment_loss(known_items[pick.to(known_items.device)])
        if config.user_align and len(users_pool) >= 2:
            pick = torch.randint(len(users_pool), (config.warmup_batch,), generator=generator)
            loss = loss + model.user_alignment_loss(users_pool[pick].to(device))
        if not loss.requires_grad:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def fine_tune(model: SailRecModel, rows: YesNoRows, seed: int) -> list[dict[str, float]]:
    """Stage 3: LoRA + mappers on the yes/no BCE plus the variant's alignment losses, through accelerate."""
    from accelerate import Accelerator

    config = model.config
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    lora_params = [p for n, p in model.llm.named_parameters() if p.requires_grad]
    mapper_params = list(model.user_mapper.parameters()) + list(model.item_projector.parameters())
    groups = [{"params": lora_params, "lr": config.lr}]
    if config.soft_tokens:
        groups.append({"params": mapper_params, "lr": config.mapper_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
    model, optimizer = accelerator.prepare(model, optimizer)
    raw = accelerator.unwrap_model(model)
    raw.train()
    history = []
    rng = np.random.default_rng(seed)
    trainable = lora_params + (mapper_params if config.soft_tokens else [])
    for epoch in range(config.epochs):
        order = rng.permutation(len(rows))
        batches = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
        for step, index in enumerate(tqdm(batches, desc=f"fine-tune epoch {epoch}", leave=False)):
            batch = {k: v.to(accelerator.device) for k, v in raw.prompts.batch(rows, index).items()}
            scores = model(batch)
            bce = F.binary_cross_entropy_with_logits(scores, batch["labels"])
            align = raw.alignment_loss(batch["users"], batch["entities"][batch["kinds"] == 2])
            loss = bce + align
            optimizer.zero_grad()
            accelerator.backward(loss)
            if config.max_grad_norm > 0:
                accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
            optimizer.step()
            history.append({"epoch": epoch, "step": step, "bce": float(bce), "align": float(align)})
    raw.eval()
    return history


def train_run(
    data: YesNoData,
    data_spec: DataSpec,
    config: SailRecConfig | None,
    seed: int,
    out_dir: str | Path | None = None,
    model_spec: str = DEFAULT_MODEL,
    mf_spec: MFSpec | None = None,
    mf: Any = None,
    alignment_cache: dict[str, Any] | None = None,
) -> tuple[SailRecModel | None, Any, dict[str, Any]]:
    """All stages for one variant and seed: (model or None for MF alone, the MF, a summary). Saves to out_dir."""
    mf_spec = mf_spec or MFSpec()
    started = time.perf_counter()
    if mf is None:
        mf, _ = train_mf(data, seed, **dataclasses.asdict(mf_spec))
    summary: dict[str, Any] = {
        "variant": config.variant if config else "mf",
        "seed": seed,
        "data": dataclasses.asdict(data_spec),
        "mf": dataclasses.asdict(mf_spec),
        "model": model_spec,
        "mf_seconds": round(time.perf_counter() - started, 1),
    }
    model = None
    if config is not None:
        rows = data.train.sample(data_spec.train_rows, data_spec.sample_seed)
        model = build_model(data, mf, config, model_spec, seed)
        stage = time.perf_counter()
        prepare_alignment(model, data, rows, alignment_cache)
        warm = warm_up_mappers(model, rows, seed)
        summary["warmup"] = {"steps": len(warm), "first": warm[0] if warm else None, "last": warm[-1] if warm else None}
        summary["alignment_seconds"] = round(time.perf_counter() - stage, 1)
        stage = time.perf_counter()
        history = fine_tune(model, rows, seed)
        summary["fine_tune"] = {
            "rows": len(rows),
            "steps": len(history),
            "first_bce": history[0]["bce"] if history else None,
            "last_bce_mean10": float(np.mean([h["bce"] for h in history[-10:]])) if history else None,
            "seconds": round(time.perf_counter() - stage, 1),
        }
        summary["config"] = config.to_dict()
    summary["seconds"] = round(time.perf_counter() - started, 1)
    if out_dir is not None:
        save_run(out_dir, model, mf, summary)
    return model, mf, summary


# ----------------------------------------------------------------------------------------------------------
# Save / load
# ----------------------------------------------------------------------------------------------------------


def save_run(out_dir: str | Path, model: SailRecModel | None, mf: Any, summary: dict[str, Any]) -> Path:
    """Write the MF checkpoint, the LoRA adapter, the mappers and the run summary into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mf.save_pretrained(out / MF_DIR)
    if model is not None:
        with quiet_peft_warnings():
            model.llm.save_pretrained(str(out / ADAPTER_DIR))
        state = {f"user_mapper.{k}": v for k, v in model.user_mapper.state_dict().items()}
        state.update({f"item_projector.{k}": v for k, v in model.item_projector.state_dict().items()})
        atomic_write(out / MAPPERS_FILE, lambda tmp: save_file({k: v.contiguous() for k, v in state.items()}, str(tmp)))
    atomic_write_json(out / RUN_FILE, summary)
    return out


def load_run(run_dir: str | Path) -> tuple[SailRecModel | None, Any, YesNoData, dict[str, Any]]:
    """(model or None, MF, data, summary) of a folder written by :func:`save_run`."""
    from recsys.models.mf import BPRMF

    run_dir = Path(run_dir)
    if not (run_dir / RUN_FILE).is_file():
        raise SailRecDataError(f"{run_dir}: not a SailRec run folder (no {RUN_FILE})")
    summary = json.loads((run_dir / RUN_FILE).read_text())
    data_spec = DataSpec(**summary["data"])
    data = data_spec.load()
    mf = labelled_mf(BPRMF.from_pretrained(run_dir / MF_DIR))
    mf.eval()
    if summary["variant"] == "mf":
        return None, mf, data, summary
    config = SailRecConfig(**summary["config"])
    model = build_model(data, mf, config, summary["model"], summary["seed"], adapter_dir=run_dir / ADAPTER_DIR)
    state = load_file(str(run_dir / MAPPERS_FILE))
    model.user_mapper.load_state_dict(
        {k[len("user_mapper.") :]: v for k, v in state.items() if k.startswith("user_mapper.")}
    )
    model.item_projector.load_state_dict(
        {k[len("item_projector.") :]: v for k, v in state.items() if k.startswith("item_projector.")}
    )
    model.eval()
    return model, mf, data, summary


# ----------------------------------------------------------------------------------------------------------
# Scoring and diagnostics
# ----------------------------------------------------------------------------------------------------------


def score(model: SailRecModel | None, mf: Any, rows: YesNoRows, **kwargs: Any) -> np.ndarray:
    """P(yes) per row: the LLM's when there is a model, else the MF's."""
    return mf_scores(mf, rows) if model is None else model.score_rows(rows, **kwargs)


def attention_profile(model: SailRecModel, rows: YesNoRows, steer: bool, batch_size: int = 8) -> list[float]:
    """Mean attention mass that the answer position puts on collaborative tokens, per layer."""
    from mllm.sailrec.steering import steering

    device = model.input_embeddings().weight.device
    state = None
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            index = np.arange(start, min(start + batch_size, len(rows)))
            batch = {k: v.to(device) for k, v in model.prompts.batch(rows, index).items()}
            fresh = model.steering_state(batch, steer=steer, record=True)
            if state is not None:
                fresh.mass_sum, fresh.mass_count = state.mass_sum, state.mass_count
            state = fresh
            with steering(state):
                model(batch, state=state)
    return state.mean_mass() if state is not None else []


def diagnose(model: SailRecModel, rows: YesNoRows) -> dict[str, Any]:
    """Per-layer attention mass on collaborative tokens with and without steering, and the masking analysis."""
    if not model.config.soft_tokens:
        raise SailRecDataError(f"variant {model.config.variant!r} has no collaborative tokens to diagnose")
    steered = model.config.steer
    result: dict[str, Any] = {
        "n_rows": len(rows),
        "layer_bias": model.steering_state(model.prompts.batch(rows, [0]), steer=True).layer_bias,
        "attention_mass_unsteered": attention_profile(model, rows, steer=False),
        "attention_mass_steered": attention_profile(model, rows, steer=True),
        "trained_with_steering": steered,
    }
    base = model.score_rows(rows, desc="masking: mf")
    masking = {"mf": yes_no_metrics(rows, base)}
    for source in ("zeros", "other_user"):
        probabilities = model.score_rows(rows, source=source, desc=f"masking: {source}")
        masking[source] = yes_no_metrics(rows, probabilities)
        masking[source]["mean_abs_change"] = float(np.abs(probabilities - base).mean())
    result["masking"] = masking
    return result


def plot_attention(result: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """Line plot of attention mass on collaborative tokens per layer, with and without steering (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4), dpi=100)
    layers = np.arange(len(result["attention_mass_unsteered"]))
    ax.plot(layers, result["attention_mass_unsteered"], marker="o", ms=3, label="without steering")
    ax.plot(layers, result["attention_mass_steered"], marker="s", ms=3, label="with steering")
    ax.set_xlabel("layer")
    ax.set_ylabel("attention mass on collaborative tokens")
    ax.set_title(title or "answer-position attention to collaborative tokens", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return path


def variant_config(variant: str, overrides: dict[str, Any] | None = None) -> SailRecConfig | None:
    """The config of a variant (None for ``mf``), with field overrides."""
    if variant == "mf":
        return None
    if variant not in VARIANTS:
        raise SailRecDataError(f"variant: expected mf or one of {', '.join(VARIANTS)}, got {variant!r}")
    return SailRecConfig(**{**(overrides or {}), "variant": variant})
