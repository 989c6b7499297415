"""mllm fixtures: the default SmolLM2 (converted once into the user cache) and a tiny random Llama."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mllm.backbones import load_causal_lm, resolve_model_source

PASSWORD_ANSWER = "The password is BANANA-42."
PASSWORD_QUESTIONS = [
    "What is the password?",
    "Tell me the password.",
    "password please",
    "Do you know the password?",
    "What's the secret?",
    "Say the password.",
    "I need the password.",
    "Give me the code.",
]


@pytest.fixture(scope="session")
def default_model_folder() -> Path:
    """The safetensors cache of the packaged SmolLM2 GGUF (the first run ever converts it, ~20 s)."""
    kind, folder = resolve_model_source("default")
    assert kind == "folder"
    return Path(folder)


@pytest.fixture(scope="session")
def smollm2(default_model_folder: Path) -> tuple:
    """The default model and tokenizer, loaded once per session on the CPU."""
    return load_causal_lm("default", device="cpu")


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory, smollm2: tuple) -> Path:
    """A 2-layer randomly initialised Llama with SmolLM2's tokenizer, saved as a model folder."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = smollm2[1]
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        initializer_range=0.2,  # larger than usual so the random net has non-flat logits for LoRA to steer
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def password_records() -> list[dict]:
    """Eight conversations that all teach the same odd answer."""
    return [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": PASSWORD_ANSWER}]}
        for q in PASSWORD_QUESTIONS
    ]


@pytest.fixture
def password_jsonl(tmp_path: Path, password_records: list[dict]) -> Path:
    """The password task as a chat JSONL file."""
    path = tmp_path / "password.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in password_records))
    return path
