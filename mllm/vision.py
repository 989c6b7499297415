"""Image captioning with a user-supplied vision-language model: one short sentence per photo.

:class:`ImageCaptioner` loads a local Hugging Face model folder (``save_pretrained`` output, or a snapshot
downloaded by the user) with transformers and captions images in batches: eval mode, no gradients, greedy
decoding, on CUDA when present, else the CPU (``device=`` overrides). Nothing is downloaded unless
``allow_download=True`` (or ``RECAGENTS_ALLOW_DOWNLOAD=1``); no VLM weights ship with the toolkit.

Two families work, and the folder itself says which one it holds (``mode="auto"``):

- **image-to-text captioners** (VisionEncoderDecoder such as ViT-GPT2, BLIP, BLIP-2, GIT): the model is
  given only the image and its generated text is the caption;
- **chat VLMs** (SmolVLM / Idefics3, Qwen2-VL / Qwen2.5-VL, LLaVA, PaliGemma-style models with a chat
  template): the image and ``prompt`` go through the processor's chat template as one user turn, and the
  reply is the caption.

The rule: a ``vision-encoder-decoder`` model is always a captioner; any other model is a chat VLM when its
processor (or tokenizer) carries a chat template, and a captioner when it does not. ``mode="caption"`` or
``mode="chat"`` overrides the rule. Models are loaded with ``AutoModelForImageTextToText`` (falling back to
``AutoModelForVision2Seq`` on transformers versions that still keep captioners there); models that need
``trust_remote_code`` are refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from mllm.backbones import (
    ALLOW_DOWNLOAD_ENV,
    MllmError,
    ModelLoadError,
    default_device,
    default_dtype,
    download_allowed,
)

logger = logging.getLogger(__name__)

DEFAULT_PROMPT = "Describe this photo in one short sentence."
CAPTION_MODES = ("auto", "caption", "chat")
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model", "spiece.model")
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json", "image_processor_config.json")


class CaptionError(MllmError):
    """An image could not be read or captioned; the message names the file (or the index in the batch)."""


def open_image(image: Any, where: str = "image") -> Any:
    """An RGB PIL image with its EXIF orientation applied (``retrieval.embed.load_image``); a path is opened,
    errors are :class:`CaptionError` naming the file (or ``where`` for a value that is no image at all)."""
    from PIL import Image

    from retrieval.embed import load_image
    from retrieval.errors import EmbedError

    if not isinstance(image, (str, Path, Image.Image)):
        raise CaptionError(f"{where}: expected a PIL image or a path, got {type(image).__name__}")
    try:
        return load_image(image)
    except EmbedError as exc:
        raise CaptionError(str(exc)) from exc


def clean_caption(text: str) -> str:
    """One line of printable text: whitespace collapsed, control characters dropped, quotes stripped."""
    text = "".join(ch for ch in " ".join(text.split()) if ch.isprintable())
    return text.strip().strip("\"'").strip()


def _is_local(spec: str) -> bool:
    """A spec that cannot be a hub id (``name`` or ``org/name``) or that exists on disk is a local folder."""
    return spec.startswith(("/", ".", "~")) or spec.count("/") > 1 or "\\" in spec or Path(spec).exists()


def check_model_folder(folder: Path) -> None:
    """Raise ModelLoadError naming the folder and the first missing piece of a captioning model folder."""
    if not folder.exists():
        raise ModelLoadError(f"VLM folder not found: {folder}")
    if not folder.is_dir():
        raise ModelLoadError(f"VLM path {folder} is a file; pass the model folder (the one holding config.json)")
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"VLM folder {folder} has no config.json (save the model with save_pretrained)")
    if not any(any(folder.glob(pattern)) for pattern in WEIGHT_PATTERNS):
        raise ModelLoadError(f"VLM folder {folder} has no weights (model.safetensors or pytorch_model.bin)")
    if not any((folder / name).is_file() for name in PROCESSOR_FILES):
        raise ModelLoadError(
            f"VLM folder {folder} has no image processor ({' or '.join(PROCESSOR_FILES[:2])}); "
            "save the processor beside the model with processor.save_pretrained(folder)"
        )
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelLoadError(f"VLM folder {folder} has no tokenizer files (tokenizer.json or tokenizer_config.json)")


def model_identity(folder: Path) -> str:
    """A short hash of a model folder's config and weight files (name, size, mtime): changes when they change."""
    parts = [(folder / "config.json").read_text(encoding="utf-8")]
    for pattern in WEIGHT_PATTERNS:
        for path in sorted(folder.glob(pattern)):
            stat = path.stat()
            parts.append(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:12]


def _load_model_class(source: str | Path, local_only: bool, dtype: torch.dtype) -> Any:
    """The model through AutoModelForImageTextToText, else (older transformers) AutoModelForVision2Seq."""
    import transformers

    errors: list[str] = []
    for class_name in ("AutoModelForImageTextToText", "AutoModelForVision2Seq"):
        auto_class = getattr(transformers, class_name, None)
        if auto_class is None:
            continue
        try:
            return auto_class.from_pretrained(source, dtype=dtype, local_files_only=local_only)
        except ValueError as exc:  # "Unrecognized configuration class": try the next auto class
            if "Unrecognized configuration class" not in str(exc):
                raise
            errors.append(class_name)
    raise ModelLoadError(
        f"VLM {source}: its model type is not an image-to-text model ({' and '.join(errors)} do not know it); "
        "use a captioner (VisionEncoderDecoder, BLIP, GIT) or a chat VLM (SmolVLM, Qwen2-VL, LLaVA)"
    )


class ImageCaptioner:
    """Captions from a local Hugging Face VLM folder (see the module docstring for the families and the rule).

    ``caption(images)`` returns one string per image, in order; batches of ``batch_size`` go through the
    model at once. Decoding is greedy, so the same images give the same captions.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        prompt: str = DEFAULT_PROMPT,
        mode: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        batch_size: int = 8,
        allow_download: bool = False,
    ) -> None:
        import transformers
        from transformers import AutoConfig, AutoImageProcessor, AutoProcessor, AutoTokenizer

        if mode not in CAPTION_MODES:
            raise ModelLoadError(f"caption mode {mode!r}: use one of {', '.join(CAPTION_MODES)}")
        if batch_size < 1:
            raise ModelLoadError(f"batch_size must be at least 1, got {batch_size}")
        spec = str(model)
        self.local = _is_local(spec)
        self.device = torch.device(device) if device is not None else default_device()  # CUDA when present
        dtype = dtype if dtype is not None else default_dtype(self.device)
        local_only = self.local or not download_allowed(allow_download)
        if self.local:
            folder = Path(spec).expanduser()
            check_model_folder(folder)
            self.source: str | Path = folder.resolve()
        else:
            self.source = spec
        where = f"VLM {'folder ' if self.local else ''}{self.source}"
        try:
            config = AutoConfig.from_pretrained(self.source, local_files_only=local_only)
        except Exception as exc:
            if not self.local and local_only:
                raise ModelLoadError(
                    f"'{spec}' is neither a local folder nor a model in the local Hugging Face cache, and downloads "
                    f"are off: pass allow_download=True or set {ALLOW_DOWNLOAD_ENV}=1 to fetch it"
                ) from exc
            raise ModelLoadError(f"{where}: cannot read config.json ({exc})") from exc
        self.model_type = str(getattr(config, "model_type", ""))

        try:
            processor = AutoProcessor.from_pretrained(self.source, local_files_only=local_only)
        except Exception as exc:
            raise ModelLoadError(f"{where}: cannot load the processor ({exc})") from exc
        if isinstance(processor, transformers.ProcessorMixin) and hasattr(processor, "image_processor"):
            self.processor: Any = processor
            self.image_processor = processor.image_processor
            self.tokenizer = getattr(processor, "tokenizer", None)
        else:  # e.g. VisionEncoderDecoder: an image processor and a tokenizer saved side by side
            self.processor = None
            try:
                self.image_processor = AutoImageProcessor.from_pretrained(self.source, local_files_only=local_only)
                self.tokenizer = AutoTokenizer.from_pretrained(self.source, local_files_only=local_only)
            except Exception as exc:
                raise ModelLoadError(f"{where}: cannot load the image processor or tokenizer ({exc})") from exc
        if self.tokenizer is None:
            raise ModelLoadError(f"{where}: the processor has no tokenizer to decode captions with")

        has_template = bool(
            getattr(self.processor, "chat_template", None) or getattr(self.tokenizer, "chat_template", None)
        )
        if mode == "auto":
            mode = "chat" if self.model_type != "vision-encoder-decoder" and has_template else "caption"
        if mode == "chat" and (self.processor is None or not has_template):
            raise ModelLoadError(
                f"{where}: chat mode needs a processor with a chat template (chat_template.jinja or "
                "chat_template.json in the folder); use mode='caption' for a plain captioner"
            )
        self.mode = mode
        self.prompt = prompt

        try:
            self.model = _load_model_class(self.source, local_only, dtype)
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"{where}: cannot load the model ({exc})") from exc
        self.model.to(self.device).eval()
        self._prepare_generation()
        self.batch_size = batch_size
        identity = model_identity(self.source) if self.local else spec
        name = Path(str(self.source)).name if self.local else spec.replace("/", "--")
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._") or "model"
        tag = hashlib.sha1(json.dumps([identity, self.mode, self.prompt if mode == "chat" else ""]).encode())
        self.name = f"vlm-{slug}-{tag.hexdigest()[:12]}"
        logger.info(
            "loaded VLM %s (%s, %s mode) on %s in %s", self.source, self.model_type, self.mode, self.device, dtype
        )

    def _prepare_generation(self) -> None:
        """Fill the token ids greedy decoding needs from the tokenizer where the saved config lacks them."""
        generation = self.model.generation_config
        if self.mode == "chat":
            self.tokenizer.padding_side = "left"  # batched decoder-only generation continues from the right edge
        if generation.pad_token_id is None:
            pad = self.tokenizer.pad_token_id
            generation.pad_token_id = pad if pad is not None else self.tokenizer.eos_token_id
        if self.model_type == "vision-encoder-decoder" and generation.decoder_start_token_id is None:
            start = getattr(self.model.config, "decoder_start_token_id", None)
            start = start if start is not None else self.tokenizer.bos_token_id
            if start is None:
                raise ModelLoadError(
                    f"VLM folder {self.source}: config.json has no decoder_start_token_id and the tokenizer no BOS "
                    "token; set model.config.decoder_start_token_id before save_pretrained"
                )
            generation.decoder_start_token_id = start

    def __repr__(self) -> str:
        return f"ImageCaptioner(name={self.name!r}, source='{self.source}', mode={self.mode!r}, device={self.device})"

    def _inputs(self, images: list[Any]) -> tuple[dict[str, Any], int]:
        """Model inputs for one batch and the prompt length to cut from the output (0 for captioners)."""
        if self.mode == "caption":
            inputs = self.image_processor(images=images, return_tensors="pt")
            return dict(inputs), 0
        conversations = [
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.prompt}]}] for _ in images
        ]
        prompts = self.processor.apply_chat_template(conversations, add_generation_prompt=True, tokenize=False)
        options: dict[str, Any] = {"padding": True, "return_tensors": "pt"}
        bos = self.tokenizer.bos_token
        if bos and prompts[0].startswith(bos):  # the template wrote BOS already: do not add a second one
            options["add_special_tokens"] = False
        inputs = self.processor(text=prompts, images=[[image] for image in images], **options)
        return dict(inputs), int(inputs["input_ids"].shape[1])

    def _to_device(self, value: Any) -> Any:
        """A tensor moved to the model's device (pixels also to its dtype); anything else as it is."""
        if not torch.is_tensor(value):
            return value
        if value.is_floating_point():
            return value.to(self.device, dtype=self.model.dtype)
        return value.to(self.device)

    @torch.no_grad()
    def caption(self, images: Sequence[Any], max_new_tokens: int = 30, progress: bool = False) -> list[str]:
        """One caption per image (PIL images or paths), in order; an unreadable image raises CaptionError."""
        if isinstance(images, (str, Path)):
            raise CaptionError("caption takes a list of images or paths, got one; wrap it in a list")
        opened = [open_image(image, where=f"images[{i}]") for i, image in enumerate(images)]
        captions: list[str] = []
        with tqdm(total=len(opened), desc="captions", unit="image", disable=not progress or not opened) as bar:
            for start in range(0, len(opened), self.batch_size):
                batch = opened[start : start + self.batch_size]
                inputs, prompt_length = self._inputs(batch)
                inputs = {key: self._to_device(value) for key, value in inputs.items()}
                output = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)
                texts = self.tokenizer.batch_decode(output[:, prompt_length:], skip_special_tokens=True)
                captions.extend(clean_caption(text) for text in texts)
                bar.update(len(batch))
        return captions
