"""mllm.vision.ImageCaptioner on tiny random VLMs built offline, and the camroll ``--visual vlm:FOLDER`` back end.

No VLM weights ship offline, so each model here is randomly initialised (a ViT + GPT-2 VisionEncoderDecoder
captioner and a CLIP + Llama LLaVA chat VLM) with a word-level tokenizer made on the spot; its captions are
word salad, but deterministic word salad, which is what the tests check.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from mllm.backbones import ModelLoadError
from mllm.vision import CaptionError, ImageCaptioner

WORDS = ["a", "the", "dog", "cat", "beach", "sea", "sky", "tree", "cake", "pizza", "street", "city", "red", "green"]
WORDS += ["blue", "on", "of", "in", "with", "people", "photo", ".", ","]
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
)


def _tokenizer():
    """A word-level tokenizer over WORDS (EOS = BOS = PAD, an UNK and an <image> token), built without files."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<unk>", "<image>"]
    vocab = {token: i for i, token in enumerate(specials + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>"},
    )


def _never_say(embedding: torch.Tensor, tokenizer) -> None:
    """Zero the output rows of the special tokens, so the random model says words rather than stopping at once."""
    with torch.no_grad():
        for token in ("<|endoftext|>", "<unk>", "<image>"):
            embedding[tokenizer.convert_tokens_to_ids(token)] = 0.0


@pytest.fixture(scope="module")
def captioner_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer ViT encoder + 1-layer GPT-2 decoder with cross-attention, saved with a ViT image processor."""
    from transformers import (
        GPT2Config,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    tokenizer = _tokenizer()
    torch.manual_seed(0)
    encoder = ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    decoder = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=32,
        n_layer=1,
        n_head=2,
        n_positions=64,
        add_cross_attention=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        initializer_range=0.5,  # a spread of logits, so different images give different words
        tie_word_embeddings=False,  # tied, a random decoder just repeats its last token whatever the image
    )
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.tie_word_embeddings = False
    config.decoder_start_token_id = tokenizer.bos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    model = VisionEncoderDecoderModel(config)
    _never_say(model.decoder.lm_head.weight, tokenizer)
    folder = tmp_path_factory.mktemp("tiny-vit-gpt2")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def chat_vlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LLaVA (CLIP vision tower + 1-layer Llama) with a chat template: the chat-VLM path."""
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = _tokenizer()
    torch.manual_seed(0)
    vision = CLIPVisionConfig(
        image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.5,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,
    )
    model = LlavaForConditionalGeneration(config)
    _never_say(model.get_output_embeddings().weight, tokenizer)
    folder = tmp_path_factory.mktemp("tiny-llava")
    model.save_pretrained(folder)
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token="<image>",
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    """Five small images that differ in colour, size and texture."""
    colours = [(220, 30, 30), (30, 200, 40), (20, 40, 220), (240, 240, 240)]
    made = [Image.new("RGB", (40 + 8 * i, 30 + 4 * i), colour) for i, colour in enumerate(colours)]
    made.append(Image.effect_noise((48, 36), 60).convert("RGB"))
    return made


def test_captioner_is_deterministic_and_batching_does_not_change_captions(
    captioner_dir: Path, images: list[Image.Image], tmp_path: Path
) -> None:
    captioner = ImageCaptioner(captioner_dir, batch_size=2)  # 5 images: batches of 2, 2 and 1
    assert captioner.mode == "caption" and captioner.device.type == "cpu" and not captioner.model.training
    captions = captioner.caption(images, max_new_tokens=6)
    assert len(captions) == len(images) and all(isinstance(c, str) and c for c in captions)
    assert set(" ".join(captions).split()) <= set(WORDS)
    assert len(set(captions)) > 1  # the image matters
    assert captioner.caption(images, max_new_tokens=6) == captions
    assert [captioner.caption([image], max_new_tokens=6)[0] for image in images] == captions
    # Paths work as well as PIL images; a second load of the same folder has the same name (the cache key).
    path = tmp_path / "red.png"
    images[0].save(path)
    assert captioner.caption([path], max_new_tokens=6) == captions[:1]
    again = ImageCaptioner(str(captioner_dir), batch_size=5)
    assert again.name == captioner.name and again.name.startswith("vlm-tiny-vit-gpt2")
    assert again.caption(images, max_new_tokens=6) == captions
    assert len(captioner.caption(images[:1], max_new_tokens=2)[0].split()) <= 2


def test_chat_vlm_uses_the_prompt_and_left_padding(chat_vlm_dir: Path, images: list[Image.Image]) -> None:
    captioner = ImageCaptioner(chat_vlm_dir, batch_size=3)
    assert captioner.mode == "chat" and captioner.tokenizer.padding_side == "left"
    captions = captioner.caption(images, max_new_tokens=5)
    assert len(captions) == len(images) and all(captions)
    assert captioner.caption(images, max_new_tokens=5) == captions
    assert [captioner.caption([image], max_new_tokens=5)[0] for image in images] == captions
    other = ImageCaptioner(chat_vlm_dir, prompt="What is in the picture?")
    assert other.name != captioner.name  # another prompt, another cache


def test_bad_folders_and_images_give_clear_errors(
    captioner_dir: Path, tmp_path: Path, images: list[Image.Image]
) -> None:
    with pytest.raises(ModelLoadError, match=r"VLM folder not found: .*missing"):
        ImageCaptioner(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match=rf"{empty}.* no config\.json"):
        ImageCaptioner(empty)
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(captioner_dir / "config.json", partial)
    with pytest.raises(ModelLoadError, match=rf"{partial}.* no weights"):
        ImageCaptioner(partial)
    shutil.copy(captioner_dir / "model.safetensors", partial)
    with pytest.raises(ModelLoadError, match=rf"{partial}.* no image processor"):
        ImageCaptioner(partial)
    shutil.copy(captioner_dir / "preprocessor_config.json", partial)
    with pytest.raises(ModelLoadError, match=rf"{partial}.* no tokenizer"):
        ImageCaptioner(partial)
    with pytest.raises(ModelLoadError, match="downloads are off"):
        ImageCaptioner("nobody/no-such-captioner")
    with pytest.raises(ModelLoadError, match="chat template"):
        ImageCaptioner(captioner_dir, mode="chat")

    # A text-only model saved with an image processor is refused by name, not with a stack trace.
    from transformers import GPT2Config, GPT2LMHeadModel, ViTImageProcessor

    text_only = tmp_path / "text-only"
    text_config = GPT2Config(vocab_size=40, n_embd=16, n_layer=1, n_head=2, n_positions=32)
    GPT2LMHeadModel(text_config).save_pretrained(text_only)
    _tokenizer().save_pretrained(text_only)
    ViTImageProcessor().save_pretrained(text_only)
    with pytest.raises(ModelLoadError, match="not an image-to-text model"):
        ImageCaptioner(text_only)

    captioner = ImageCaptioner(captioner_dir)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(CaptionError, match=r"broken\.jpg"):
        captioner.caption([images[0], broken])
    with pytest.raises(CaptionError, match="wrap it in a list"):
        captioner.caption(broken)


def test_camroll_ingest_with_vlm_captions_caches_them(
    captioner_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from agents.camroll.data import read_photos
    from agents.camroll.demo_data import make_demo_roll
    from agents.camroll.errors import CamrollDataError
    from agents.camroll.memory import CamrollMemory, VLMCaptions, make_visual
    from retrieval import VectorStore
    from retrieval.embed import HashingEmbedder

    roll = tmp_path / "roll"
    make_demo_roll(roll, users=["1"], photos_per_user=12, questions_per_user=2, seed=0, progress=False)
    photos = read_photos(roll / "user1")
    broken = photos[3]
    (roll / "user1" / broken.file).write_bytes(b"\xff\xd8 not really a jpeg")
    calls: list[int] = []

    def counted() -> VLMCaptions:
        visual = make_visual(f"vlm:{captioner_dir}")
        assert isinstance(visual, VLMCaptions)
        caption = visual.captioner.caption

        def counting(images, *args, **kwargs):
            calls.append(len(images))
            return caption(images, *args, **kwargs)

        monkeypatch.setattr(visual.captioner, "caption", counting)
        return visual

    with VectorStore(tmp_path / "store") as store:
        visual = counted()
        memory = CamrollMemory(store, roll, embedder=HashingEmbedder(), visual=visual, cache_dir=tmp_path / "cache")
        with caplog.at_level(logging.WARNING, logger="agents.camroll.memory"):
            first = memory.ingest("1", progress=False)
        assert first["visual_labelled"] == len(photos) - 1 and first["visual_backend"] == visual.name
        assert first["visual_unlabelled"] == 1  # the broken photo: tried, not labelled (issue 27, point 7)
        assert sum(calls) == len(photos) - 1  # the broken photo is skipped, not sent to the model
        assert broken.file in caplog.text
        expected = visual.describe([roll / "user1" / p.file for p in photos])
        assert expected[3] == [] and all(len(labels) == 1 for i, labels in enumerate(expected) if i != 3)

        nodes = {item["id"]: item["document"] for item in store.get(memory.collection, where={"user": "1"})}
        for photo, labels in zip(photos, expected, strict=True):
            document = nodes[f"user1/photo/{photo.photo_id}"]
            assert (f"Seen: {labels[0]}." in document) if labels else ("Seen:" not in document)
        events = [doc for node, doc in nodes.items() if "/event/" in node]
        assert any(f"Seen: {expected[0][0]}" in doc for doc in events)

        # A fresh back end on the same folder (a new run) reads every caption from the cache.
        calls.clear()
        memory.visual = counted()
        second = memory.ingest("1", progress=False)
        assert calls == [] and second["visual_cached"] == len(photos) and second["visual_labelled"] == 0
        assert second["upserted"] == {}

    with pytest.raises(CamrollDataError, match="vlm:FOLDER"):
        make_visual("vlm:")
    with pytest.raises(CamrollDataError, match="vlm:FOLDER"):
        make_visual("llava")
    with pytest.raises(ModelLoadError, match="VLM folder not found"):
        make_visual(f"vlm:{tmp_path / 'no-model'}")
