"""Loading causal LMs (default GGUF through its safetensors cache, folders, hub ids) and local generation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mllm import generate as generate_cli
from mllm.backbones import (
    CHATML_TEMPLATE,
    ChatModelError,
    ModelLoadError,
    TransformersChatModel,
    convert_gguf,
    default_device,
    default_dtype,
    default_gguf_path,
    gguf_cache_dir,
    load_causal_lm,
    load_chat_model,
    resolve_model_source,
    truncate_at_stop,
)

CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]


def test_default_model_loads_from_the_safetensors_cache(default_model_folder: Path) -> None:
    assert (default_model_folder / "model.safetensors").is_file()
    assert (default_model_folder / "config.json").is_file()
    assert not list(default_model_folder.parent.glob(f".{default_model_folder.name}.tmp-*"))
    # A second resolution reuses the folder (no conversion) and the model is read from it, not from the GGUF.
    assert resolve_model_source("default") == ("folder", default_model_folder)
    model, tokenizer = load_causal_lm("default")
    assert Path(model.name_or_path) == default_model_folder
    assert model.device.type == default_device().type and model.dtype == default_dtype(default_device())
    assert "<|im_start|>" in tokenizer.chat_template  # SmolLM2's ChatML template survived the conversion


def test_greedy_generation_is_deterministic_and_sensible(smollm2: tuple) -> None:
    chat = TransformersChatModel(smollm2)
    first = chat.generate(CAPITAL, max_new_tokens=24)
    second = chat.generate(CAPITAL, max_new_tokens=24)
    assert first and first == second
    assert "Paris" in first
    assert "<|im_end|>" not in first  # special tokens are stripped
    assert chat.usage.calls == 2
    assert chat.usage.prompt_tokens > 10 and 0 < chat.usage.completion_tokens <= 24
    assert chat.usage.total_prompt_tokens == 2 * chat.usage.prompt_tokens


def test_batch_generation_matches_single_generation(smollm2: tuple) -> None:
    chat = TransformersChatModel(smollm2)
    counting = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Count from 1 to 5."},
    ]
    singles = [chat.generate(c, max_new_tokens=20) for c in (CAPITAL, counting)]
    # The two prompts differ in length, so the batch is left-padded; padding must not change greedy replies.
    assert chat.generate_batch([CAPITAL, counting], max_new_tokens=20) == singles
    assert chat.usage.prompt_tokens == sum(
        len(chat.tokenizer(chat.render(c))["input_ids"]) for c in (CAPITAL, counting)
    )


def test_stop_strings_and_max_new_tokens(smollm2: tuple) -> None:
    chat = TransformersChatModel(smollm2)
    full = chat.generate(CAPITAL, max_new_tokens=24)
    stopped = chat.generate(CAPITAL, max_new_tokens=24, stop=["Paris"])
    assert full.startswith(stopped) and "Paris" not in stopped and len(stopped) < len(full)
    chat.generate([{"role": "user", "content": "Write a long story about a dragon."}], max_new_tokens=5)
    assert chat.usage.completion_tokens == 5
    assert truncate_at_stop("a.b,c", [",", "."]) == "a"


def test_sampling_is_reproducible_with_a_seed(smollm2: tuple) -> None:
    chat = TransformersChatModel(smollm2)
    story = [{"role": "user", "content": "Invent a name for a cat."}]
    a = chat.generate(story, max_new_tokens=12, temperature=1.5, seed=3)
    b = chat.generate(story, max_new_tokens=12, temperature=1.5, seed=3)
    assert a == b
    with pytest.raises(ChatModelError, match="temperature"):
        chat.generate(story, temperature=-1.0)


def test_bad_messages_name_the_field(smollm2: tuple) -> None:
    chat = TransformersChatModel(smollm2)
    with pytest.raises(ChatModelError, match=r"messages\[0\]\.role"):
        chat.generate([{"role": "robot", "content": "hi"}])
    with pytest.raises(ChatModelError, match=r"messages\[1\]\.content"):
        chat.generate([{"role": "user", "content": "hi"}, {"role": "assistant", "content": None}])
    with pytest.raises(ChatModelError, match="non-empty list"):
        chat.generate([])


def test_local_folder_without_chat_template_gets_chatml(tiny_llama_dir: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "no-template"
    shutil.copytree(tiny_llama_dir, folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    model, tokenizer = load_causal_lm(folder, device="cpu")
    assert tokenizer.chat_template == CHATML_TEMPLATE
    assert model.config.num_hidden_layers == 2


def test_missing_paths_and_folders_without_config(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"model path not found: .*nowhere"):
        load_causal_lm(tmp_path / "nowhere")
    with pytest.raises(ModelLoadError, match=r"not found: .*missing\.gguf"):
        load_causal_lm(str(tmp_path / "missing.gguf"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"has no config\.json"):
        load_causal_lm(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ModelLoadError, match=r"not a \.gguf file"):
        load_causal_lm(tmp_path / "notes.txt")


def test_missing_adapter_folder(smollm2: tuple, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"adapter folder .*no-adapter not found"):
        TransformersChatModel(smollm2, adapter=tmp_path / "no-adapter")
    with pytest.raises(ModelLoadError, match="does not name its base model"):
        TransformersChatModel(None, adapter=tmp_path)


def test_hub_id_needs_download_permission(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECAGENTS_ALLOW_DOWNLOAD", raising=False)
    assert resolve_model_source("someone/not-a-real-model-xyz") == ("hub", "someone/not-a-real-model-xyz")
    with pytest.raises(ModelLoadError, match="RECAGENTS_ALLOW_DOWNLOAD=1") as info:
        load_causal_lm("someone/not-a-real-model-xyz")
    assert "allow_download=True" in str(info.value)


def test_corrupt_gguf_fails_cleanly_and_leaves_no_cache(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(256))
    cache = tmp_path / "cache"
    with pytest.raises(ModelLoadError, match=r"broken\.gguf"):
        convert_gguf(bad, cache_dir=cache)
    target = gguf_cache_dir(bad, cache)
    assert not target.exists()
    assert not list(cache.glob(".*tmp-*"))  # the temporary folder was removed


def test_unwritable_cache_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(ModelLoadError, match=r"cannot create the model cache .*RECAGENTS_CACHE"):
        convert_gguf(default_gguf_path(), cache_dir=tmp_path / "a-file" / "models")


def test_package_exports_are_lazy_but_real() -> None:
    import mllm

    assert mllm.load_chat_model is load_chat_model and mllm.ModelLoadError is ModelLoadError
    assert set(mllm.__all__) >= {"ChatModel", "OpenAIChatModel", "train_lora", "load_causal_lm"}
    with pytest.raises(AttributeError):
        _ = mllm.no_such_name


def test_load_chat_model_picks_the_back_end(smollm2: tuple) -> None:
    remote = load_chat_model("http://127.0.0.1:9/v1#served-name")
    assert type(remote).__name__ == "OpenAIChatModel" and remote.model == "served-name"
    local = load_chat_model(smollm2)
    assert isinstance(local, TransformersChatModel)
    with pytest.raises(ChatModelError, match="adapter"):
        load_chat_model("http://127.0.0.1:9", adapter="x")


def test_generate_cli_reports_a_missing_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    status = generate_cli.main(["--model", str(tmp_path / "absent"), "--prompt", "hi"])
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("error: model path not found") and str(tmp_path / "absent") in err
    assert "Traceback" not in err
