"""The student stage: a small causal LM with LoRA and K learnable summary tokens, distilled on teacher outputs.

Encoding pass: ``[item prompt tokens][s_1 .. s_K]`` runs through the LoRA-adapted model; the final hidden states
at the K summary positions are the item's summary (their mean is the content embedding). Decoding pass: the K
summary states, mapped by a linear bridge into input-embedding space, are the only context for the teacher's
reasoning text, which is scored by next-token cross-entropy. The prompt can therefore reach the reasoning only
through the summary tokens: a bottleneck in the spirit of gist tokens / ICAE, which is how we read "learnable
summary tokens trained by next-token prediction" (the paper's code is not public).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from core.io import atomic_write_json
from mllm.lora import IGNORE_INDEX
from mllm.rgcd.errors import RGCDError
from recsys.config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, Range, validate_fields

logger = logging.getLogger(__name__)

SUMMARY_FILE = "summary_tokens.safetensors"
CONFIG_FILE = "student_config.json"
ITEM_PROMPT = "Item: {text}\nSummary:"


@dataclass
class StudentConfig:
    """Summary-token student hyper-parameters (LoRA on the attention projections)."""

    summary_tokens: int = 4
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    max_prompt_tokens: int = 64
    max_target_tokens: int = 48
    lr: float = 5e-4
    epochs: int = 2
    batch_size: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        validate_fields(
            self,
            {
                "summary_tokens": AT_LEAST_ONE,
                "lora_rank": AT_LEAST_ONE,
                "lora_alpha": POSITIVE,
                "lora_dropout": Range(0, 1),
                "max_prompt_tokens": Range(4),
                "max_target_tokens": Range(2),
                "lr": POSITIVE,
                "epochs": NON_NEGATIVE,
                "batch_size": AT_LEAST_ONE,
                "seed": NON_NEGATIVE,
            },
        )


class SummaryTokenStudent(nn.Module):
    """A causal LM with LoRA adapters, K summary-token embeddings and a bridge from summary states to inputs."""

    def __init__(self, model: Any, tokenizer: Any, config: StudentConfig) -> None:
        from peft import LoraConfig, get_peft_model

        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        torch.manual_seed(config.seed)
        lora = LoraConfig(
            r=config.lora_rank,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=list(config.target_modules),
            task_type="CAUSAL_LM",
        )
        self.lm = get_peft_model(model, lora)
        hidden = model.config.hidden_size
        scale = float(model.get_input_embeddings().weight.detach().std())
        self.summary = nn.Parameter(torch.randn(config.summary_tokens, hidden) * scale)
        self.bridge = nn.Linear(hidden, hidden)
        nn.init.eye_(self.bridge.weight)
        nn.init.zeros_(self.bridge.bias)

    @property
    def hidden_size(self) -> int:
        """The width of the content embedding."""
        return int(self.summary.shape[1])

    def _embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm.get_input_embeddings()(ids)

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Final hidden states at the K summary positions, ``[B, K, hidden]`` (left-padded prompts)."""
        cfg = self.config
        device = self.summary.device
        rows = [
            self.tokenizer(ITEM_PROMPT.format(text=t), add_special_tokens=False)["input_ids"][: cfg.max_prompt_tokens]
            for t in texts
        ]
        length = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.tensor([[pad] * (length - len(r)) + r for r in rows], device=device)
        mask = torch.tensor([[0] * (length - len(r)) + [1] * len(r) for r in rows], device=device)
        k = cfg.summary_tokens
        embeds = torch.cat([self._embed_tokens(ids), self.summary.unsqueeze(0).expand(len(rows), -1, -1)], dim=1)
        mask = torch.cat([mask, torch.ones(len(rows), k, dtype=mask.dtype, device=device)], dim=1)
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        out = self.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, output_hidden_states=True)
        return out.hidden_states[-1][:, -k:, :]

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """The content embedding: the mean of the K summary states, ``[B, hidden]``."""
        return self.encode(texts).mean(dim=1)

    def distillation_loss(self, texts: Sequence[str], targets: Sequence[str]) -> torch.Tensor:
        """Next-token cross-entropy of ``targets`` given only the bridged summary states of ``texts``."""
        cfg = self.config
        device = self.summary.device
        summary = self.bridge(self.encode(texts))  # [B, K, hidden]
        eos = self.tokenizer.eos_token_id
        rows = [
            [*self.tokenizer(" " + t, add_special_tokens=False)["input_ids"][: cfg.max_target_tokens - 1], eos]
            for t in targets
        ]
        length = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.tensor([r + [pad] * (length - len(r)) for r in rows], device=device)
        labels = torch.tensor([r + [IGNORE_INDEX] * (length - len(r)) for r in rows], device=device)
        token_mask = (labels != IGNORE_INDEX).long()
        k = summary.shape[1]
        embeds = torch.cat([summary, self._embed_tokens(ids)], dim=1)
        mask = torch.cat([torch.ones(len(rows), k, dtype=token_mask.dtype, device=device), token_mask], dim=1)
        full_labels = torch.cat(
            [torch.full((len(rows), k), IGNORE_INDEX, dtype=labels.dtype, device=device), labels], dim=1
        )
        return self.lm(inputs_embeds=embeds, attention_mask=mask, labels=full_labels).loss

    def trainable_parameters(self) -> list[nn.Parameter]:
        """LoRA weights, the summary tokens and the bridge."""
        return [p for p in self.parameters() if p.requires_grad]

    def save(self, directory: str | Path) -> Path:
        """Write the LoRA adapter, the summary tokens + bridge (safetensors) and the config."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.lm.save_pretrained(directory / "adapter")
        tensors = {"summary": self.summary.detach().cpu().contiguous()}
        tensors.update({f"bridge.{k}": v.detach().cpu().contiguous() for k, v in self.bridge.state_dict().items()})
        save_file(tensors, str(directory / SUMMARY_FILE))
        atomic_write_json(directory / CONFIG_FILE, self.config.__dict__)
        return directory

    def load_summary(self, directory: str | Path) -> None:
        """Read back the summary tokens and bridge written by :meth:`save`."""
        path = Path(directory) / SUMMARY_FILE
        if not path.is_file():
            raise RGCDError(f"{path}: file not found (a student folder written by distill expected)")
        tensors = load_file(str(path))
        with torch.no_grad():
            self.summary.copy_(tensors["summary"])
        self.bridge.load_state_dict({k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("bridge.")})


def train_student(
    student: SummaryTokenStudent, texts: Sequence[str], targets: Sequence[str], progress: bool = True
) -> list[float]:
    """Distil: minimise the next-token loss of the targets over ``epochs``; returns the mean loss per epoch."""
    if len(texts) != len(targets) or not texts:
        raise RGCDError(f"need as many targets as texts (>= 1); got {len(texts)} texts, {len(targets)} targets")
    cfg = student.config
    generator = torch.Generator().manual_seed(cfg.seed)
    optimizer = torch.optim.AdamW(student.trainable_parameters(), lr=cfg.lr)
    student.train()
    losses = []
    for epoch in range(cfg.epochs):
        order = torch.randperm(len(texts), generator=generator).tolist()
        total, batches = 0.0, 0
        for start in tqdm(range(0, len(order), cfg.batch_size), desc=f"distil {epoch}", disable=not progress):
            batch = order[start : start + cfg.batch_size]
            loss = student.distillation_loss([texts[i] for i in batch], [targets[i] for i in batch])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.trainable_parameters(), 1.0)
            optimizer.step()
            total += float(loss.detach())
            batches += 1
        losses.append(total / max(batches, 1))
        logger.info("distil epoch %d: loss %.4f", epoch, losses[-1])
    student.eval()
    return losses


@torch.no_grad()
def embed_items(
    student: SummaryTokenStudent, texts: Sequence[str], batch_size: int = 16, progress: bool = True
) -> np.ndarray:
    """Content embeddings ``[len(texts), hidden]`` (float32) for every text."""
    student.eval()
    chunks = []
    for start in tqdm(range(0, len(texts), batch_size), desc="embed items", disable=not progress):
        chunks.append(student.embed(list(texts[start : start + batch_size])).float().cpu().numpy())
    return np.concatenate(chunks) if chunks else np.zeros((0, student.hidden_size), dtype=np.float32)
