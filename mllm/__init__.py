"""Language and multimodal models: backbones behind one ChatModel interface, image captioning, LoRA, LLM systems.

The names below are imported lazily, so ``import mllm`` stays cheap until a model is actually needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "ChatModel": "mllm.backbones",
    "ChatModelError": "mllm.backbones",
    "MllmError": "mllm.backbones",
    "ModelLoadError": "mllm.backbones",
    "OpenAIChatModel": "mllm.backbones",
    "TokenUsage": "mllm.backbones",
    "TransformersChatModel": "mllm.backbones",
    "load_causal_lm": "mllm.backbones",
    "load_chat_model": "mllm.backbones",
    "CaptionError": "mllm.vision",
    "ImageCaptioner": "mllm.vision",
    "DataFormatError": "mllm.lora",
    "LoraTrainingConfig": "mllm.lora",
    "read_chat_jsonl": "mllm.lora",
    "train_lora": "mllm.lora",
}

__all__ = [
    "CaptionError",
    "ChatModel",
    "ChatModelError",
    "DataFormatError",
    "ImageCaptioner",
    "LoraTrainingConfig",
    "MllmError",
    "ModelLoadError",
    "OpenAIChatModel",
    "TokenUsage",
    "TransformersChatModel",
    "load_causal_lm",
    "load_chat_model",
    "read_chat_jsonl",
    "train_lora",
]

if TYPE_CHECKING:
    from mllm.backbones import (
        ChatModel,
        ChatModelError,
        MllmError,
        ModelLoadError,
        OpenAIChatModel,
        TokenUsage,
        TransformersChatModel,
        load_causal_lm,
        load_chat_model,
    )
    from mllm.lora import DataFormatError, LoraTrainingConfig, read_chat_jsonl, train_lora
    from mllm.vision import CaptionError, ImageCaptioner


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mllm' has no attribute {name!r}")
