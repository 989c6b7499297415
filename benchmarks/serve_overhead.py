"""What ``mllm.serve`` costs per request: a scripted (zero-compute) chat model called directly vs through HTTP.

``python benchmarks/serve_overhead.py [--requests 200] [--prompt-chars 3000] [--out FILE]`` times the same
``generate`` call four ways: direct (no server); through ``OpenAIChatModel`` (what the camroll ``endpoint``
answerer uses: urllib, a new TCP connection per request) against a server in this process (a background thread,
as in the tests) and against one in a separate process (as ``python -m mllm.serve`` runs); and over one
keep-alive ``http.client`` connection to the separate process. The model does no work, so the difference from
``direct`` is the server's and client's cost: JSON, HTTP parsing, TCP on 127.0.0.1, validation and the lock.
Writes ``benchmarks/results/mllm_serve_overhead.json``. Not run by CI.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from core.cli import add_verbosity_args, configure_from_args

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import print_table, write_results
from mllm.backbones import ChatModel, OpenAIChatModel, truncate_at_stop
from mllm.serve import ChatServer

SERVED = "constant"
REPLY = '{"action": "count", "args": {"what": "photos"}}'


class ConstantChat(ChatModel):
    """A chat model that does no work: a fixed reply and fixed token counts."""

    name = SERVED

    def generate(self, messages, max_new_tokens=256, temperature=0.0, stop=None, seed=None) -> str:
        self.usage.record(700, 14)
        return truncate_at_stop(REPLY, stop)


def conversation(prompt_chars: int) -> list[dict[str, str]]:
    """A system prompt of about ``prompt_chars`` characters and one question (a camroll step is ~3,000)."""
    system = ("You answer questions about the user's camera roll with tools. " * (prompt_chars // 60 + 1))[
        :prompt_chars
    ]
    return [{"role": "system", "content": system}, {"role": "user", "content": "How many photos did I take?"}]


def _serve_in_child(port_queue: Any, stop_event: Any) -> None:
    with ChatServer(ConstantChat(), port=0, name=SERVED) as server:
        port_queue.put(server.port)
        stop_event.wait()


def time_calls(call: Callable[[], Any], requests: int, warmup: int, label: str) -> dict[str, Any]:
    """Per-call wall times of ``call`` (after ``warmup`` untimed calls), in milliseconds."""
    for _ in range(warmup):
        call()
    seconds = []
    for _ in tqdm(range(requests), desc=label, unit="req", leave=False):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    ms = np.array(seconds) * 1000
    return {
        "mode": label,
        "requests": requests,
        "mean_ms": round(float(ms.mean()), 4),
        "p50_ms": round(float(np.percentile(ms, 50)), 4),
        "p95_ms": round(float(np.percentile(ms, 95)), 4),
        "max_ms": round(float(ms.max()), 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/serve_overhead.py", description=__doc__.split("\n\n")[0])
    add_verbosity_args(parser)
    parser.add_argument("--requests", type=int, default=200, help="timed requests per mode (default 200)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed requests first (default 10)")
    parser.add_argument(
        "--prompt-chars", type=int, default=3000, help="characters of the system prompt sent (default 3000)"
    )
    parser.add_argument("--out", default=None, help="JSON file (default benchmarks/results/mllm_serve_overhead.json)")
    args = parser.parse_args(argv)
    configure_from_args(args)
    if args.requests < 1 or args.warmup < 0 or args.prompt_chars < 0:
        parser.error("--requests must be >= 1, --warmup and --prompt-chars >= 0")

    messages = conversation(args.prompt_chars)
    body = json.dumps({"model": SERVED, "messages": messages, "max_tokens": 96, "temperature": 0.0}).encode()
    rows = []
    direct = ConstantChat()
    rows.append(time_calls(lambda: direct.generate(messages, 96), args.requests, args.warmup, "direct (no server)"))

    with ChatServer(ConstantChat(), port=0, name=SERVED) as server:
        client = OpenAIChatModel(server.url, model=SERVED)
        rows.append(
            time_calls(lambda: client.generate(messages, 96), args.requests, args.warmup, "OpenAIChatModel, in-process")
        )

    context = multiprocessing.get_context("spawn")
    port_queue, stop_event = context.Queue(), context.Event()
    child = context.Process(target=_serve_in_child, args=(port_queue, stop_event), daemon=True)
    child.start()
    try:
        port = port_queue.get(timeout=60)
        client = OpenAIChatModel(f"http://127.0.0.1:{port}/v1", model=SERVED)
        rows.append(
            time_calls(lambda: client.generate(messages, 96), args.requests, args.warmup, "OpenAIChatModel, subprocess")
        )
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

        def keep_alive() -> None:
            connection.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            reply = json.loads(response.read())
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {reply}")

        rows.append(time_calls(keep_alive, args.requests, args.warmup, "keep-alive http.client, subprocess"))
        connection.close()
    finally:
        stop_event.set()
        child.join(timeout=10)
        if child.is_alive():
            child.terminate()

    base = rows[0]["mean_ms"]
    for row in rows:
        row["overhead_ms"] = round(row["mean_ms"] - base, 4)
    print_table(
        rows,
        ["mode", "requests", "mean_ms", "p50_ms", "p95_ms", "max_ms", "overhead_ms"],
        title=f"mllm.serve overhead per request ({args.prompt_chars}-char system prompt, scripted model)",
    )
    path = write_results(
        "mllm_serve_overhead",
        {
            "settings": {**vars(args), "request_bytes": len(body), "reply": REPLY},
            "what": "per-request wall time of one chat completion of a zero-compute model; overhead_ms is the "
            "mean minus the direct call's mean (JSON, HTTP, TCP on 127.0.0.1, validation, the lock)",
            "results": rows,
        },
        args.out,
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
