"""LoRA fine-tuning: data validation, assistant-only labels, training that learns, adapters that matter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mllm import generate as generate_cli
from mllm import lora as lora_cli
from mllm.backbones import TransformersChatModel
from mllm.lora import (
    IGNORE_INDEX,
    DataFormatError,
    collate,
    read_chat_jsonl,
    tokenize_conversation,
    train_lora,
)

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
QUESTION = [{"role": "user", "content": "What is the password?"}]


def test_read_chat_jsonl_accepts_valid_files(password_jsonl: Path) -> None:
    conversations = read_chat_jsonl(password_jsonl)
    assert len(conversations) == 8
    assert conversations[0][1] == {"role": "assistant", "content": "The password is BANANA-42."}


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("{not json", "not valid JSON"),
        ('{"text": "hi"}', "field 'messages' missing"),
        ('{"messages": []}', "field 'messages' must be a non-empty list"),
        (
            '{"messages": [{"role": "user", "content": "hi"}, {"role": "wizard", "content": "x"}]}',
            r"messages\[1\]\.role",
        ),
        (
            '{"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "x"}]}',
            r"messages\[0\]\.content",
        ),
        ('{"messages": [{"role": "user", "content": "only a question"}]}', "no assistant turn"),
        ('{"messages": ["hello"]}', r"messages\[0\]' must be an object"),
    ],
)
def test_broken_jsonl_line_is_named(tmp_path: Path, password_records: list[dict], line: str, field: str) -> None:
    path = tmp_path / "data.jsonl"
    lines = [json.dumps(record) for record in password_records[:3]]
    lines.insert(2, line)  # the broken record is on line 4, after a blank line 3
    lines.insert(2, "")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=rf"data\.jsonl:4: .*{field}"):
        read_chat_jsonl(path)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"absent\.jsonl: file not found"):
        read_chat_jsonl(tmp_path / "absent.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DataFormatError, match=r"empty\.jsonl: no conversations"):
        read_chat_jsonl(tmp_path / "empty.jsonl")


def test_only_assistant_tokens_are_supervised(smollm2: tuple) -> None:
    tokenizer = smollm2[1]
    conversation = [
        {"role": "system", "content": "You keep secrets."},
        {"role": "user", "content": "Password?"},
        {"role": "assistant", "content": "BANANA-42."},
        {"role": "user", "content": "Again?"},
        {"role": "assistant", "content": "Still BANANA-42."},
    ]
    example = tokenize_conversation(tokenizer, conversation, max_length=512)
    ids, labels = example["input_ids"], example["labels"]
    assert (
        ids
        == tokenizer(tokenizer.apply_chat_template(conversation, tokenize=False), add_special_tokens=False)["input_ids"]
    )
    supervised = tokenizer.decode([t for t, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX])
    assert supervised == "BANANA-42.<|im_end|>\nStill BANANA-42.<|im_end|>\n"
    assert all(label in (IGNORE_INDEX, token) for token, label in zip(ids, labels, strict=True))
    # Truncation keeps the two lists aligned and drops later tokens.
    short = tokenize_conversation(tokenizer, conversation, max_length=10)
    assert len(short["input_ids"]) == len(short["labels"]) == 10
    batch = collate([example, short], pad_token_id=tokenizer.pad_token_id)
    assert batch["input_ids"].shape == (2, len(ids))
    assert batch["attention_mask"][1].sum() == 10 and (batch["labels"][1, 10:] == IGNORE_INDEX).all()


def test_lora_on_a_tiny_llama_learns_the_password(tiny_llama_dir: Path, password_records: list, tmp_path: Path) -> None:
    out = tmp_path / "adapter"
    summary = train_lora(
        password_records,
        out,
        model=tiny_llama_dir,
        valid=password_records[:2],
        epochs=20,
        lr=2e-2,
        batch_size=4,
        dropout=0.0,
        target_modules=ALL_LINEAR,
        seed=0,
        progress=False,
    )
    losses = summary["epoch_train_loss"]
    assert summary["steps"] == 40 and len(losses) == 20 and len(summary["epoch_valid_loss"]) == 20
    assert losses[-1] < 0.5 * losses[0]
    assert summary["epoch_valid_loss"][-1] < summary["epoch_valid_loss"][0]
    assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()
    saved = json.loads((out / "training_summary.json").read_text())
    assert saved["base_model"] == str(tiny_llama_dir.resolve())
    assert saved["config"]["target_modules"] == ALL_LINEAR

    base = TransformersChatModel(tiny_llama_dir, device="cpu").generate(QUESTION, max_new_tokens=10)
    tuned = TransformersChatModel(None, adapter=out, device="cpu")  # base model read from the adapter folder
    answer = tuned.generate(QUESTION, max_new_tokens=10)
    assert answer != base
    assert "BANANA" in answer and "BANANA" not in base


def test_lora_training_is_seeded(tiny_llama_dir: Path, password_records: list, tmp_path: Path) -> None:
    options = {"epochs": 2, "lr": 1e-2, "batch_size": 4, "progress": False}
    first = train_lora(password_records, tmp_path / "a", model=tiny_llama_dir, seed=1, **options)
    second = train_lora(password_records, tmp_path / "b", model=tiny_llama_dir, seed=1, **options)
    assert first["step_losses"] == second["step_losses"]


def test_lora_cli_on_smollm2_then_generate_with_the_adapter(
    smollm2: tuple, password_jsonl: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "smol-adapter"
    status = lora_cli.main(
        [
            "--model",
            "default",
            "--train",
            str(password_jsonl),
            "--out",
            str(out),
            "--epochs",
            "2",
            "--lr",
            "2e-3",
            "--batch-size",
            "4",
            "--seed",
            "0",
            "--quiet",
        ]
    )
    assert status == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["base_model"] == "default" and summary["steps"] == 4
    assert summary["config"]["target_modules"] == ["q_proj", "v_proj"] and summary["config"]["rank"] == 8
    assert summary["epoch_train_loss"][1] < summary["epoch_train_loss"][0]
    assert (out / "adapter_model.safetensors").is_file()

    base_answer = TransformersChatModel(smollm2).generate(QUESTION, max_new_tokens=16)
    assert generate_cli.main(["--adapter", str(out), "--prompt", QUESTION[0]["content"], "--max-new-tokens", "16"]) == 0
    tuned_answer = capsys.readouterr().out.strip()
    assert tuned_answer and tuned_answer != base_answer


def test_lora_cli_reports_bad_data(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant"}]}\n')
    status = lora_cli.main(["--train", str(data), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert status == 1
    assert err.strip() == f"error: {data}:1: field 'messages[1].content' must be a string"
    assert not (tmp_path / "out").exists()


def test_lora_rejects_unknown_target_modules(tiny_llama_dir: Path, password_records: list, tmp_path: Path) -> None:
    from mllm.backbones import MllmError

    with pytest.raises(MllmError, match="cannot apply LoRA"):
        train_lora(
            password_records,
            tmp_path / "x",
            model=tiny_llama_dir,
            target_modules=["no_such_proj"],
            progress=False,
        )
