"""Generate one chat completion from the command line; works offline with the default model.

python -m mllm.generate --prompt "What is the capital of France?"
python -m mllm.generate --adapter runs/lora-demo --prompt "..."          # base model read from the adapter
python -m mllm.generate --model http://localhost:8000/v1#my-model --prompt "..."
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from core.cli import add_verbosity_args, configure_from_args
from mllm.backbones import DEFAULT_MODEL, MllmError, load_chat_model


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m mllm.generate`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m mllm.generate", description="Print a chat model's completion of one user prompt."
    )
    parser.add_argument("--prompt", required=True, help="the user message")
    parser.add_argument(
        "--model",
        default=None,
        help="'default' (SmolLM2-135M-Instruct), a model folder, a .gguf file, a hub id, or an "
        "OpenAI-compatible base URL with the served model as #fragment (http://host:8000/v1#name); "
        "without it: the adapter's base model, else 'default'",
    )
    parser.add_argument("--adapter", help="a LoRA adapter folder saved by python -m mllm.lora")
    parser.add_argument("--system", help="an optional system message")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    parser.add_argument("--seed", type=int, default=None, help="sampling seed (with --temperature > 0)")
    parser.add_argument("--stop", action="append", default=None, help="a stop string (repeatable)")
    parser.add_argument("--allow-download", action="store_true", help="allow fetching a hub model")
    parser.add_argument("--json", action="store_true", help="print {completion, model, usage, seconds} as JSON")
    add_verbosity_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = build_parser().parse_args(argv)
    if not args.verbose:  # keep stderr for errors: no weight-loading progress bars
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    configure_from_args(args, default=logging.WARNING)
    spec = args.model if args.model is not None else (None if args.adapter else DEFAULT_MODEL)
    messages = [{"role": "system", "content": args.system}] if args.system else []
    messages.append({"role": "user", "content": args.prompt})
    started = time.time()
    try:
        kwargs = {"allow_download": args.allow_download} if not str(spec).startswith(("http://", "https://")) else {}
        chat = load_chat_model(spec, adapter=args.adapter, **kwargs)
        loaded = time.time()
        completion = chat.generate(
            messages,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            stop=args.stop,
            seed=args.seed,
        )
    except (MllmError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.json:
        result = {
            "completion": completion,
            "model": chat.name,
            "usage": chat.usage.as_dict(),
            "load_seconds": round(loaded - started, 2),
            "generate_seconds": round(time.time() - loaded, 2),
        }
        print(json.dumps(result, indent=2))
    else:
        print(completion)
    return 0


if __name__ == "__main__":
    sys.exit(main())
