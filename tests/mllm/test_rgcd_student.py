"""RGCD-Rep student: K summary tokens give a [B, hidden] content embedding, trained through LoRA by distillation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mllm.backbones import resolve_model_source
from mllm.rgcd.student import StudentConfig, SummaryTokenStudent, embed_items, train_student


@pytest.fixture(scope="module")
def tiny_lm() -> tuple:
    """A 2-layer random Llama (hidden 32) with SmolLM2's tokenizer (only the tokenizer is read from disk)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    _, folder = resolve_model_source("default")
    tokenizer = AutoTokenizer.from_pretrained(Path(folder), local_files_only=True)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(config), tokenizer


def _student(tiny_lm: tuple, **overrides) -> SummaryTokenStudent:
    import copy

    model, tokenizer = tiny_lm
    return SummaryTokenStudent(copy.deepcopy(model), tokenizer, StudentConfig(summary_tokens=3, **overrides))


def test_summary_embedding_has_one_hidden_vector_per_item_and_depends_on_the_text(tiny_lm: tuple) -> None:
    student = _student(tiny_lm)
    states = student.encode(["Heat (1995). Genres: Action.", "Toy Story"])
    assert states.shape == (2, 3, 32)
    embedding = embed_items(student, ["Heat (1995). Genres: Action.", "Toy Story", "Heat (1995). Genres: Action."],
                            batch_size=2, progress=False)  # fmt: skip
    assert embedding.shape == (3, 32)
    assert torch.allclose(torch.as_tensor(embedding[0]), torch.as_tensor(embedding[2]), atol=1e-5)  # padding-free
    assert not torch.allclose(torch.as_tensor(embedding[0]), torch.as_tensor(embedding[1]), atol=1e-3)


def test_distillation_gradient_reaches_summary_tokens_and_lora_but_not_the_frozen_base(tiny_lm: tuple) -> None:
    student = _student(tiny_lm)
    loss = student.distillation_loss(["Heat (1995)"], ["vertical domain: film; key subject: a crew"])
    loss.backward()
    assert student.summary.grad is not None and student.summary.grad.abs().sum() > 0
    lora = [p for n, p in student.named_parameters() if "lora_" in n]
    assert lora and any(p.grad is not None and p.grad.abs().sum() > 0 for p in lora)
    frozen = [p for n, p in student.named_parameters() if "lora_" not in n and n.startswith("lm.")]
    assert all(not p.requires_grad for p in frozen)


def test_training_lowers_the_next_token_loss_and_saves(tiny_lm: tuple, tmp_path: Path) -> None:
    student = _student(tiny_lm, epochs=6, lr=5e-3, batch_size=2)
    texts = ["Heat (1995)", "Toy Story (1995)"]
    targets = ["theme: crime", "theme: toys"]
    losses = train_student(student, texts, targets, progress=False)
    assert losses[-1] < losses[0]
    student.save(tmp_path / "student")
    again = _student(tiny_lm)
    again.load_summary(tmp_path / "student")
    assert torch.equal(again.summary, student.summary)
    assert (tmp_path / "student" / "adapter" / "adapter_config.json").is_file()
