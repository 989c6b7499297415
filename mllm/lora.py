"""LoRA fine-tuning of a causal LM on chat-format JSONL, with peft and accelerate.

Each JSONL line is ``{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}``. Only
the tokens of assistant turns are supervised: the conversation is rendered with the model's chat template,
and every token outside an assistant reply gets the label -100.

    python -m mllm.lora --model default --train train.jsonl --out runs/lora-demo
    python -m mllm.generate --adapter runs/lora-demo --prompt "..."
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from core.cli import add_verbosity_args, configure_from_args
from core.io import iter_jsonl
from mllm.backbones import (
    ADAPTER_SUMMARY_FILE,
    DEFAULT_MODEL,
    VALID_ROLES,
    MllmError,
    load_causal_lm,
    quiet_peft_warnings,
)

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


class DataFormatError(MllmError, ValueError):
    """A chat JSONL file is malformed; the message names the file, line and field."""


@dataclass
class LoraTrainingConfig:
    """Hyper-parameters of a LoRA run (the defaults suit a small instruct model on a small data set)."""

    epochs: int = 3
    lr: float = 2e-4
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    batch_size: int = 4
    max_length: int = 512
    seed: int = 0
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0


# ----------------------------------------------------------------------------------------------------------
# Data: read, validate, tokenize with assistant-only labels
# ----------------------------------------------------------------------------------------------------------


def read_chat_jsonl(path: str | Path) -> list[list[dict[str, str]]]:
    """Read and validate a chat JSONL file; every conversation needs at least one assistant turn."""
    path = Path(path)
    conversations = [
        validate_conversation(record, f"{path}:{number}") for number, record in iter_jsonl(path, error=DataFormatError)
    ]
    if not conversations:
        raise DataFormatError(f"{path}: no conversations (the file is empty)")
    return conversations


def validate_conversation(record: Any, where: str) -> list[dict[str, str]]:
    """Check one ``{"messages": [...]}`` record; errors name ``where`` and the field."""
    if not isinstance(record, dict) or "messages" not in record:
        raise DataFormatError(f"{where}: field 'messages' missing (expected an object with a 'messages' list)")
    messages = record["messages"]
    if not isinstance(messages, list) or not messages:
        raise DataFormatError(f"{where}: field 'messages' must be a non-empty list")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise DataFormatError(f"{where}: field 'messages[{i}]' must be an object with 'role' and 'content'")
        if message.get("role") not in VALID_ROLES:
            raise DataFormatError(
                f"{where}: field 'messages[{i}].role' must be one of {', '.join(VALID_ROLES)}, "
                f"got {message.get('role')!r}"
            )
        if not isinstance(message.get("content"), str):
            raise DataFormatError(f"{where}: field 'messages[{i}].content' must be a string")
    if messages[0]["role"] == "assistant":
        raise DataFormatError(f"{where}: field 'messages[0].role' is 'assistant'; a conversation opens with a prompt")
    if not any(message["role"] == "assistant" for message in messages):
        raise DataFormatError(f"{where}: field 'messages' has no assistant turn, so nothing to learn from")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def assistant_char_spans(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """Render a conversation with its chat template; return the text and the character spans of the replies.

    A reply's span runs from the end of the prompt that opens its turn to the end of the conversation through
    it, so it covers the reply and the template's end-of-turn marker (the model learns to stop).
    """
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        through = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not through.startswith(before) or not text.startswith(through):
            raise DataFormatError(
                "the chat template does not render conversations prefix by prefix; cannot find assistant turns"
            )
        spans.append((len(before), len(through)))
    return text, spans


def tokenize_conversation(tokenizer: Any, messages: list[dict[str, str]], max_length: int) -> dict[str, list[int]]:
    """Token ids and labels for one conversation: labels are -100 except on assistant-reply tokens."""
    text, spans = assistant_char_spans(tokenizer, messages)
    encoded = tokenizer(
        text, add_special_tokens=False, return_offsets_mapping=True, truncation=True, max_length=max_length
    )
    labels = []
    for token_id, (start, end) in zip(encoded["input_ids"], encoded["offset_mapping"], strict=True):
        inside = end > start and any(start >= lo and end <= hi for lo, hi in spans)
        labels.append(token_id if inside else IGNORE_INDEX)
    return {"input_ids": list(encoded["input_ids"]), "labels": labels}


def build_examples(
    tokenizer: Any, conversations: list[list[dict[str, str]]], max_length: int, source: str
) -> list[dict[str, list[int]]]:
    """Tokenize conversations, dropping (with a warning) those whose replies fall beyond ``max_length``."""
    examples = []
    for number, messages in enumerate(conversations, start=1):
        example = tokenize_conversation(tokenizer, messages, max_length)
        if all(label == IGNORE_INDEX for label in example["labels"]):
            logger.warning(
                "%s: conversation %d has no assistant token within max_length=%d; skipped",
                source,
                number,
                max_length,
            )
            continue
        examples.append(example)
    if not examples:
        raise DataFormatError(f"{source}: no conversation has an assistant token within max_length={max_length}")
    return examples


def collate(examples: list[dict[str, list[int]]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch: padding has attention 0 and label -100."""
    width = max(len(example["input_ids"]) for example in examples)
    input_ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example["input_ids"])
        input_ids[row, :n] = torch.tensor(example["input_ids"])
        labels[row, :n] = torch.tensor(example["labels"])
        attention_mask[row, :n] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


# ----------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------


def _as_conversations(data: str | Path | list, name: str) -> tuple[list[list[dict[str, str]]], str]:
    if isinstance(data, (str, Path)):
        return read_chat_jsonl(data), str(Path(data).resolve())
    conversations = [validate_conversation(record, f"{name}[{i}]") for i, record in enumerate(data)]
    if not conversations:
        raise DataFormatError(f"{name}: no conversations")
    return conversations, f"<{len(conversations)} in-memory conversations>"


def _base_model_spec(model: str | Path) -> str:
    """The spec to record in the summary: "default", a hub id, or an absolute path."""
    spec = str(model)
    path = Path(spec).expanduser()
    return str(path.resolve()) if spec != DEFAULT_MODEL and path.exists() else spec


def train_lora(
    train: str | Path | list,
    out: str | Path,
    model: str | Path = DEFAULT_MODEL,
    valid: str | Path | list | None = None,
    config: LoraTrainingConfig | None = None,
    *,
    progress: bool = True,
    allow_download: bool = False,
    **overrides: Any,
) -> dict[str, Any]:
    """Fine-tune a LoRA adapter, save it (safetensors) and ``training_summary.json`` in ``out``; return the summary.

    ``train``/``valid`` are JSONL paths or lists of ``{"messages": [...]}`` records; ``overrides`` replace
    fields of ``config`` (``epochs=``, ``lr=``, ...).
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from peft import LoraConfig, get_peft_model

    config = config or LoraTrainingConfig()
    unknown = set(overrides) - {f.name for f in fields(LoraTrainingConfig)}
    if unknown:
        raise TypeError(f"unknown LoRA training options: {sorted(unknown)}")
    config = LoraTrainingConfig(**{**asdict(config), **overrides})
    if config.epochs < 1 or config.batch_size < 1 or config.rank < 1 or config.max_length < 2:
        raise ValueError(f"epochs, batch_size, rank must be >= 1 and max_length >= 2, got {config}")
    train_conversations, train_source = _as_conversations(train, "train")
    valid_conversations, valid_source = _as_conversations(valid, "valid") if valid is not None else ([], None)

    accelerator = Accelerator(mixed_precision="bf16" if torch.cuda.is_available() else "no")
    set_seed(config.seed)
    base, tokenizer = load_causal_lm(
        model, dtype=torch.float32, device=accelerator.device, allow_download=allow_download
    )
    train_examples = build_examples(tokenizer, train_conversations, config.max_length, train_source)
    valid_examples = build_examples(tokenizer, valid_conversations, config.max_length, valid_source) if valid else []

    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.target_modules),
        task_type="CAUSAL_LM",
    )
    try:
        with quiet_peft_warnings():
            peft_model = get_peft_model(base, lora)
    except ValueError as err:  # e.g. target modules the model does not have
        raise MllmError(f"cannot apply LoRA to {model}: {err}") from err
    n_trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    logger.info(
        "LoRA: %d trainable parameters, %d train / %d valid conversations",
        n_trainable,
        len(train_examples),
        len(valid_examples),
    )

    def make_loader(examples: list[dict[str, list[int]]], shuffle: bool) -> DataLoader:
        return DataLoader(
            examples,
            batch_size=config.batch_size,
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(config.seed),
            collate_fn=lambda batch: collate(batch, tokenizer.pad_token_id),
        )

    optimizer = torch.optim.AdamW(
        [p for p in peft_model.parameters() if p.requires_grad],
        lr=config.lr,
        weight_decay=config.weight_decay,
    )
    train_loader = make_loader(train_examples, shuffle=True)
    total_steps = config.epochs * len(train_loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / (total_steps + 1))
    peft_model, optimizer, train_loader, scheduler = accelerator.prepare(peft_model, optimizer, train_loader, scheduler)
    valid_loader = accelerator.prepare(make_loader(valid_examples, shuffle=False)) if valid_examples else None

    started = time.time()
    step_losses: list[float] = []
    epoch_train_loss: list[float] = []
    epoch_valid_loss: list[float] = []
    bar = tqdm(total=total_steps, desc="lora", disable=not progress or not accelerator.is_local_main_process)
    for epoch in range(1, config.epochs + 1):
        peft_model.train()
        losses = []
        for batch in train_loader:
            loss = peft_model(**batch).loss
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(peft_model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            value = accelerator.gather(loss.detach()).float().mean().item()
            losses.append(value)
            step_losses.append(value)
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{value:.4f}")
            logger.info("epoch %d step %d/%d loss %.4f", epoch, len(step_losses), total_steps, value)
        epoch_train_loss.append(sum(losses) / len(losses))
        message = f"epoch {epoch}: train loss {epoch_train_loss[-1]:.4f}"
        if valid_loader is not None:
            epoch_valid_loss.append(_mean_loss(peft_model, valid_loader, accelerator))
            message += f", valid loss {epoch_valid_loss[-1]:.4f}"
        logger.info(message)
    bar.close()

    out = Path(out)
    summary = {
        "base_model": _base_model_spec(model),
        "train_file": train_source,
        "valid_file": valid_source,
        "n_train": len(train_examples),
        "n_valid": len(valid_examples),
        "config": asdict(config),
        "n_trainable_parameters": n_trainable,
        "steps": len(step_losses),
        "epoch_train_loss": epoch_train_loss,
        "epoch_valid_loss": epoch_valid_loss,
        "step_losses": step_losses,
        "seconds": round(time.time() - started, 2),
        "device": str(accelerator.device),
        "mixed_precision": accelerator.mixed_precision,
        "adapter_dir": str(out.resolve()),
    }
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        accelerator.unwrap_model(peft_model).save_pretrained(out, safe_serialization=True)
        (out / ADAPTER_SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        logger.info("saved adapter to %s", out)
    return summary


@torch.no_grad()
def _mean_loss(model: Any, loader: DataLoader, accelerator: Any) -> float:
    """Mean per-batch loss over a loader, in eval mode."""
    model.eval()
    losses = [accelerator.gather(model(**batch).loss.detach()).float().mean().item() for batch in loader]
    return sum(losses) / len(losses) if losses else math.nan


# ----------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m mllm.lora`` argument parser."""
    defaults = LoraTrainingConfig()
    parser = argparse.ArgumentParser(
        prog="python -m mllm.lora",
        description="Fine-tune a LoRA adapter on chat-format JSONL; prints the training summary as JSON.",
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="'default', a model folder, a .gguf file or a hub id")
    parser.add_argument("--train", required=True, help='JSONL, one {"messages": [...]} per line')
    parser.add_argument("--valid", help="optional validation JSONL in the same format")
    parser.add_argument("--out", required=True, help="folder for the adapter and training_summary.json")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--rank", type=int, default=defaults.rank)
    parser.add_argument("--alpha", type=int, default=defaults.alpha)
    parser.add_argument("--dropout", type=float, default=defaults.dropout)
    parser.add_argument(
        "--target-modules", default=",".join(defaults.target_modules), help="comma-separated module names"
    )
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--max-length", type=int, default=defaults.max_length, help="tokens per conversation")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--allow-download", action="store_true", help="allow fetching a hub model")
    add_verbosity_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.quiet:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    configure_from_args(args)
    config = LoraTrainingConfig(
        epochs=args.epochs,
        lr=args.lr,
        rank=args.rank,
        alpha=args.alpha,
        dropout=args.dropout,
        target_modules=[name.strip() for name in args.target_modules.split(",") if name.strip()],
        batch_size=args.batch_size,
        max_length=args.max_length,
        seed=args.seed,
    )
    try:
        summary = train_lora(
            args.train,
            args.out,
            model=args.model,
            valid=args.valid,
            config=config,
            progress=not args.quiet,
            allow_download=args.allow_download,
        )
    except (MllmError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    summary = {key: value for key, value in summary.items() if key != "step_losses"}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
