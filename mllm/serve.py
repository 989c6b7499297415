"""Serve any local chat model behind an OpenAI-compatible HTTP API (standard library only).

python -m mllm.serve --model default                        # SmolLM2-135M-Instruct on 127.0.0.1:8000
python -m mllm.serve --model runs/my-model --port 8001 --name my-model --api-key secret
python -m mllm.serve --adapter runs/lora-demo               # the adapter on its base model

Then ``--agent endpoint --model http://127.0.0.1:8000/v1#NAME`` (camroll), ``load_chat_model(URL)`` or any
OpenAI client talks to it. Endpoints: ``GET /v1/models``, ``GET /v1/models/NAME``, ``POST /v1/chat/completions``
(``model``, ``messages``, ``max_tokens`` or ``max_completion_tokens``, ``temperature``, ``stop``, ``seed``; no
streaming, ``n`` = 1) and ``GET /health``. Bad requests get HTTP 400 with an OpenAI-style error naming the
field; with ``--api-key`` every ``/v1`` request needs ``Authorization: Bearer KEY`` (401 otherwise).

One model serves one request at a time (a lock around generation); requests queue on it. Limits: a prompt
longer than the model's context (8,192 tokens for SmolLM2) gets 400 naming the limit (a character bound refuses
huge prompts before any tokenisation; the exact count follows); at most ``--max-queue`` requests wait for the
model (503 beyond); a request may take ``--request-timeout`` seconds, waiting and generating (503 when the wait
alone runs out; generation stops at the deadline with ``finish_reason`` "length"); at most ``--max-connections``
connections are open at once (each holds a thread; beyond, 503 and close). In Python::

    with ChatServer(chat_model, port=0) as server:   # port 0: an ephemeral port
        client = OpenAIChatModel(server.url, model=server.name)
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import itertools
import json
import logging
import signal
import sys
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from core.cli import add_verbosity_args, configure_from_args
from mllm.backbones import DEFAULT_MODEL, VALID_ROLES, ChatModel, ChatModelError, MllmError, TokenUsage

logger = logging.getLogger("mllm.serve" if __name__ == "__main__" else __name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_TOKENS = 256
DEFAULT_MAX_NEW_TOKENS_LIMIT = 2048
MAX_BODY_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_QUEUE = 8
DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_REQUEST_TIMEOUT = 300.0
DEFAULT_SERVED_NAME = "SmolLM2-135M-Instruct"


class RequestError(Exception):
    """A request the server refuses: HTTP status, message, and the offending field (OpenAI's ``param``)."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        error_type: str = "invalid_request_error",
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.error_type, self.code = status, message, param, error_type, code

    def payload(self) -> dict[str, Any]:
        """The OpenAI error body: ``{"error": {"message", "type", "param", "code"}}``."""
        return {"error": {"message": self.message, "type": self.error_type, "param": self.param, "code": self.code}}


def _bad(message: str, param: str | None) -> RequestError:
    return RequestError(HTTPStatus.BAD_REQUEST, message, param)


# ----------------------------------------------------------------------------------------------------------
# Request validation: one function per field, each error naming the field
# ----------------------------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_messages(messages: Any) -> list[dict[str, str]]:
    """Check ``messages`` and reduce each to ``{"role", "content"}`` (text content parts are joined)."""
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty list of {'role', 'content'} objects", "messages")
    cleaned = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _bad(f"'{where}' must be an object, got {type(message).__name__}", where)
        role = message.get("role")
        if role == "developer":  # OpenAI's newer name for the system role
            role = "system"
        if role not in VALID_ROLES:
            raise _bad(f"'{where}.role' must be one of {', '.join(VALID_ROLES)}; got {role!r}", f"{where}.role")
        content = message.get("content")
        if isinstance(content, list):  # [{"type": "text", "text": "..."}, ...]
            texts = []
            for j, part in enumerate(content):
                if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                    raise _bad(
                        f"'{where}.content[{j}]': only text parts {{'type': 'text', 'text': ...}} are supported",
                        f"{where}.content",
                    )
                texts.append(part["text"])
            content = "\n".join(texts)
        if not isinstance(content, str):
            raise _bad(f"'{where}.content' must be a string, got {type(content).__name__}", f"{where}.content")
        cleaned.append({"role": role, "content": content})
    return cleaned


def parse_chat_request(body: Any, served_name: str, max_new_tokens_limit: int) -> dict[str, Any]:
    """Validate a ``/v1/chat/completions`` body; return the ``ChatModel.generate`` keyword arguments."""
    if not isinstance(body, dict):
        raise _bad(f"the request body must be a JSON object, got {type(body).__name__}", None)
    if body.get("stream"):
        raise _bad("streaming is not supported by this server; send 'stream': false or leave it out", "stream")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise _bad(f"'model' must be a string, got {type(model).__name__}", "model")
    if model is not None and model != served_name:
        raise RequestError(
            HTTPStatus.BAD_REQUEST,
            f"model {model!r} is not served here; this server serves {served_name!r} (see GET /v1/models)",
            "model",
            code="model_not_found",
        )
    n = body.get("n")
    if n is not None and (not _is_int(n) or n != 1):
        raise _bad(f"'n' must be 1 (one choice per request), got {n!r}", "n")
    messages = parse_messages(body.get("messages"))

    field = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = body.get(field)
    if max_tokens is None:
        max_tokens = min(DEFAULT_MAX_TOKENS, max_new_tokens_limit)
    elif not _is_int(max_tokens) or max_tokens < 1:
        raise _bad(f"'{field}' must be a positive integer, got {max_tokens!r}", field)
    elif max_tokens > max_new_tokens_limit:  # capped, as llama.cpp's server does; finish_reason tells
        logger.debug("%s %d capped at --max-new-tokens-limit %d", field, max_tokens, max_new_tokens_limit)
        max_tokens = max_new_tokens_limit

    temperature = body.get("temperature")
    if temperature is None:
        temperature = 0.0  # deterministic by default, unlike OpenAI's 1.0: this is an evaluation server
    elif not _is_number(temperature) or not 0 <= temperature <= 2:
        raise _bad(f"'temperature' must be a number from 0 to 2, got {temperature!r}", "temperature")

    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and (not isinstance(stop, list) or not all(isinstance(s, str) for s in stop)):
        raise _bad("'stop' must be a string or a list of strings", "stop")

    seed = body.get("seed")
    if seed is not None and not _is_int(seed):
        raise _bad(f"'seed' must be an integer, got {seed!r}", "seed")
    return {
        "messages": messages,
        "max_new_tokens": max_tokens,
        "temperature": float(temperature),
        "stop": [s for s in stop if s] or None if stop is not None else None,
        "seed": seed,
    }


# ----------------------------------------------------------------------------------------------------------
# The server
# ----------------------------------------------------------------------------------------------------------


class _BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` at once; a connection beyond gets 503 and is closed."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], max_connections: int):
        self._connections = threading.BoundedSemaphore(max_connections)
        self.max_connections = max_connections
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._connections.acquire(blocking=False):
            message = f"server busy: {self.max_connections} connections are open (--max-connections); retry later"
            body = json.dumps(RequestError(503, message, error_type="server_error", code="server_busy").payload())
            head = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
            head += f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n"
            with contextlib.suppress(OSError):
                request.sendall(head.encode() + body.encode())
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connections.release()


class ChatServer:
    """An OpenAI-compatible HTTP server around one :class:`ChatModel`; generation runs one request at a time.

    ``start()`` serves from a daemon thread (``port=0`` picks a free port; ``url`` is then the bound one);
    ``serve_forever()`` serves from the calling thread; ``close()`` stops it. Usable as a context manager.
    """

    def __init__(
        self,
        chat_model: ChatModel,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        name: str | None = None,
        api_key: str | None = None,
        max_new_tokens_limit: int = DEFAULT_MAX_NEW_TOKENS_LIMIT,
        max_queue: int = DEFAULT_MAX_QUEUE,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        context_length: int | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        if max_new_tokens_limit < 1:
            raise ValueError(f"max_new_tokens_limit must be >= 1, got {max_new_tokens_limit}")
        if max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {max_queue}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections}")
        if not request_timeout > 0:
            raise ValueError(f"request_timeout must be > 0 seconds, got {request_timeout}")
        self.max_queue, self.request_timeout = max_queue, float(request_timeout)
        self.context_length = context_length or chat_model.context_length
        if self.context_length is not None and self.context_length < 2:
            raise ValueError(f"context_length must be >= 2 tokens, got {self.context_length}")
        self._slots = threading.BoundedSemaphore(max_queue + 1)  # the request generating plus those waiting
        self.chat_model = chat_model
        self.name = name or str(getattr(chat_model, "name", "chat-model"))
        self.api_key = api_key or None
        self.max_new_tokens_limit = max_new_tokens_limit
        self.created = int(time.time())
        self.generate_lock = threading.Lock()
        self.requests_served = 0
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        try:
            self.httpd = _BoundedHTTPServer((host, port), _make_handler(self), max_connections)
        except OSError as err:
            raise MllmError(f"cannot listen on {host}:{port}: {err}") from err
        self.httpd.daemon_threads = True
        self.host = host
        self.port = int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        """The OpenAI base URL, ``http://host:port/v1`` (the bound port, also when created with port 0)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def start(self) -> ChatServer:
        """Serve from a background daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="mllm-serve", daemon=True
            )
            self._thread.start()
            logger.info("serving %s at %s", self.name, self.url)
        return self

    def serve_forever(self) -> None:
        """Serve from the calling thread until :meth:`close` (from another thread) or KeyboardInterrupt."""
        logger.info("serving %s at %s", self.name, self.url)
        self.httpd.serve_forever(poll_interval=0.5)

    def close(self) -> None:
        """Stop serving and free the port."""
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.httpd.server_close()

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --------------------------------------------------------------------------------------- the endpoints

    def models(self) -> dict[str, Any]:
        """``GET /v1/models``."""
        return {"object": "list", "data": [self.model_card()]}

    def model_card(self) -> dict[str, Any]:
        """One entry of the model list."""
        return {"id": self.name, "object": "model", "created": self.created, "owned_by": "recagents"}

    def health(self) -> dict[str, Any]:
        """``GET /health``."""
        return {"status": "ok", "model": self.name, "requests_served": self.requests_served}

    def chat_completion(self, body: Any) -> dict[str, Any]:
        """``POST /v1/chat/completions``: validate, generate (under the lock), and answer in OpenAI's shape."""
        request = parse_chat_request(body, self.name, self.max_new_tokens_limit)
        self.check_prompt_characters(request["messages"])  # before queueing and before any tokenisation
        usage = getattr(self.chat_model, "usage", None) or TokenUsage()  # a model that counts nothing reports 0
        if not self._slots.acquire(blocking=False):
            raise RequestError(
                HTTPStatus.SERVICE_UNAVAILABLE,
                f"server busy: {self.max_queue} requests already wait for the model (--max-queue); retry later",
                None,
                error_type="server_error",
                code="server_busy",
            )
        try:
            deadline = time.monotonic() + self.request_timeout
            if not self.generate_lock.acquire(timeout=self.request_timeout):
                raise RequestError(
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    f"timed out after {self.request_timeout:g} s waiting for the model (--request-timeout)",
                    None,
                    error_type="server_error",
                    code="timeout",
                )
            try:
                request["max_new_tokens"] = self.fit_context(request["messages"], request["max_new_tokens"])
                prompt_before, completion_before = usage.total_prompt_tokens, usage.total_completion_tokens
                max_time_before = self.chat_model.max_time
                self.chat_model.max_time = max(deadline - time.monotonic(), 0.01)  # the rest of the request's time
                try:
                    content = self.chat_model.generate(**request)
                except ChatModelError as err:  # the model refused the input (e.g. a bad conversation)
                    raise _bad(str(err), None) from err
                finally:
                    self.chat_model.max_time = max_time_before
                prompt_tokens = usage.total_prompt_tokens - prompt_before
                completion_tokens = usage.total_completion_tokens - completion_before
                self.requests_served += 1
            finally:
                self.generate_lock.release()
        finally:
            self._slots.release()
        # A reply that used its whole token budget was cut by the limit (OpenAI's "length").
        finish_reason = "length" if completion_tokens >= request["max_new_tokens"] else "stop"
        return {
            "id": f"chatcmpl-{next(self._ids)}-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def _too_long(self, what: str) -> RequestError:
        return RequestError(
            HTTPStatus.BAD_REQUEST,
            f"the prompt is too long: {what}; this model's context is {self.context_length} tokens "
            "(prompt plus reply); shorten the messages",
            "messages",
            code="context_length_exceeded",
        )

    def check_prompt_characters(self, messages: list[dict[str, str]]) -> None:
        """Refuse (400) a prompt that cannot fit the context by its character count alone: no tokenising."""
        per_token = self.chat_model.max_chars_per_token() if self.context_length else None
        if not per_token:
            return
        characters = sum(len(message["content"]) for message in messages)
        if characters > self.context_length * per_token:  # no token covers more than per_token characters
            raise self._too_long(f"{characters} characters cannot fit in {self.context_length} tokens")

    def fit_context(self, messages: list[dict[str, str]], max_new_tokens: int) -> int:
        """Refuse (400) a prompt of ``context_length`` tokens or more; lower ``max_new_tokens`` to what is left."""
        if not self.context_length:
            return max_new_tokens
        prompt_tokens = self.chat_model.count_prompt_tokens(messages)
        if prompt_tokens is None:
            return max_new_tokens
        if prompt_tokens >= self.context_length:
            raise self._too_long(f"{prompt_tokens} tokens")
        return min(max_new_tokens, self.context_length - prompt_tokens)

    def check_key(self, authorization: str | None) -> None:
        """Raise 401 unless an API key is unset or ``Authorization: Bearer KEY`` matches it."""
        if self.api_key is None:
            return
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
            message = "missing API key" if not authorization else "incorrect API key"
            raise RequestError(
                HTTPStatus.UNAUTHORIZED,
                f"{message}: send the header 'Authorization: Bearer KEY' with this server's --api-key",
                None,
                code="invalid_api_key",
            )


def _make_handler(server: ChatServer) -> type[BaseHTTPRequestHandler]:
    """The request handler class bound to one :class:`ChatServer`."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive for clients that reuse connections
        # Headers and body go out in two writes; with Nagle's algorithm on, the second waits for the client's
        # delayed ACK, which costs ~40 ms per request on a reused connection (measured by serve_overhead.py).
        disable_nagle_algorithm = True
        timeout = 600  # seconds an idle keep-alive connection is kept open
        server_version = "mllm-serve/1"

        def log_message(self, format: str, *args: Any) -> None:  # http.server's own stderr lines
            logger.debug("%s " + format, self.address_string(), *args)

        def _path(self) -> str:
            return self.path.split("?", 1)[0].rstrip("/") or "/"

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if status == HTTPStatus.UNAUTHORIZED:
                self.send_header("WWW-Authenticate", "Bearer")
            if status == HTTPStatus.SERVICE_UNAVAILABLE:
                self.send_header("Retry-After", "1")
            self.end_headers()
            self.wfile.write(body)

        def _read_body(self) -> bytes:
            length = self.headers.get("Content-Length")
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked" or length is None:
                self.close_connection = True
                raise RequestError(HTTPStatus.LENGTH_REQUIRED, "send the JSON body with a Content-Length header")
            try:
                size = int(length)
            except ValueError:
                self.close_connection = True
                raise _bad(f"Content-Length is not a number: {length!r}", None) from None
            if size > MAX_BODY_BYTES:
                self.close_connection = True
                raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY_BYTES} bytes")
            return self.rfile.read(size)

        def _handle(self, method: str) -> None:
            started = time.perf_counter()
            path = self._path()
            status, usage = HTTPStatus.OK, None
            try:
                body = self._read_body() if method == "POST" else b""
                if path == "/health":
                    payload = server.health()
                elif path == "/v1/models" or path == "/v1/chat/completions" or path.startswith("/v1/models/"):
                    server.check_key(self.headers.get("Authorization"))
                    payload = self._route_v1(method, path, body)
                    usage = payload.get("usage")
                else:
                    raise RequestError(HTTPStatus.NOT_FOUND, f"unknown path {path!r}", None, code="not_found")
            except RequestError as err:
                status, payload = err.status, err.payload()
            except Exception as err:  # a bug or a model crash: answer 500, keep serving
                logger.exception("error while serving %s %s", method, path)
                status = HTTPStatus.INTERNAL_SERVER_ERROR
                payload = RequestError(status, f"internal error: {err}", error_type="server_error").payload()
            try:
                self._send(status, payload)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (e.g. its timeout) meanwhile
                logger.warning("%s %s: the client closed the connection before the reply", method, path)
                self.close_connection = True
                return
            seconds = time.perf_counter() - started
            if usage:
                logger.info(
                    "%s %s %d %.3fs prompt=%d completion=%d",
                    method, path, status, seconds, usage["prompt_tokens"], usage["completion_tokens"],
                )  # fmt: skip
            else:
                logger.info("%s %s %d %.3fs", method, path, status, seconds)

        def _route_v1(self, method: str, path: str, body: bytes) -> dict[str, Any]:
            if path == "/v1/chat/completions":
                if method != "POST":
                    raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, f"use POST for {path}", None)
                try:
                    parsed = json.loads(body)
                except (json.JSONDecodeError, UnicodeDecodeError) as err:
                    raise _bad(f"the request body is not valid JSON: {err}", None) from err
                return server.chat_completion(parsed)
            if method != "GET":
                raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, f"use GET for {path}", None)
            if path == "/v1/models":
                return server.models()
            wanted = path[len("/v1/models/") :]
            if wanted != server.name:
                raise RequestError(
                    HTTPStatus.NOT_FOUND, f"model {wanted!r} is not served here", "model", code="model_not_found"
                )
            return server.model_card()

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

    return Handler


def serve(chat_model: ChatModel, **options: Any) -> ChatServer:
    """Start a :class:`ChatServer` (same keyword options) in a background thread and return it
    (``server.url``, ``server.close()``)."""
    return ChatServer(chat_model, **options).start()


# ----------------------------------------------------------------------------------------------------------
# The command line
# ----------------------------------------------------------------------------------------------------------


def default_served_name(model: str | None, adapter: str | None) -> str:
    """A short model id for ``/v1/models``: the model's folder or file name (plus the adapter's)."""
    if model is None:
        base = None
    elif model == DEFAULT_MODEL:
        base = DEFAULT_SERVED_NAME
    else:
        path = Path(str(model)).expanduser()
        base = path.stem if path.suffix == ".gguf" else path.name if path.exists() else str(model)
    if adapter is None:
        return base or DEFAULT_SERVED_NAME
    adapter_name = Path(adapter).expanduser().resolve().name
    return f"{base}+{adapter_name}" if base else adapter_name


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m mllm.serve`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m mllm.serve",
        description="Serve a local chat model behind an OpenAI-compatible API (/v1/models, /v1/chat/completions, "
        "/health). One request generates at a time.",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="'default' (SmolLM2-135M-Instruct), a model folder, a .gguf file or a hub id in the local cache; "
        "without it: the adapter's base model, else 'default'",
    )
    parser.add_argument("--adapter", help="a LoRA adapter folder saved by python -m mllm.lora")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any free)")
    parser.add_argument("--name", help="the model id clients send (default: the model's folder or file name)")
    parser.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1 requests")
    parser.add_argument(
        "--max-new-tokens-limit",
        type=int,
        default=DEFAULT_MAX_NEW_TOKENS_LIMIT,
        help="cap on the new tokens of one reply; larger max_tokens are lowered to it "
        f"(default {DEFAULT_MAX_NEW_TOKENS_LIMIT})",
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        default=DEFAULT_MAX_QUEUE,
        help=f"requests that may wait for the model; more get 503 (default {DEFAULT_MAX_QUEUE})",
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=DEFAULT_REQUEST_TIMEOUT,
        help="seconds one request may take, waiting and generating; generation stops there "
        f"(default {DEFAULT_REQUEST_TIMEOUT:g})",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS,
        help=f"connections open at once (one thread each); more get 503 (default {DEFAULT_MAX_CONNECTIONS})",
    )
    parser.add_argument("--device", help="cpu or cuda (default: CUDA when available)")
    parser.add_argument("--allow-download", action="store_true", help="allow fetching a hub model")
    add_verbosity_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = build_parser().parse_args(argv)
    configure_from_args(args)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    if args.max_new_tokens_limit < 1:
        print(f"error: --max-new-tokens-limit must be >= 1, got {args.max_new_tokens_limit}", file=sys.stderr)
        return 2
    if args.max_queue < 0 or not args.request_timeout > 0 or args.max_connections < 1:
        print("error: --max-queue must be >= 0, --request-timeout > 0 seconds, --max-connections >= 1", file=sys.stderr)
        return 2
    spec = args.model if args.model is not None else (None if args.adapter else DEFAULT_MODEL)
    if spec is not None and str(spec).startswith(("http://", "https://")):
        print(f"error: --model {spec} is already a server; pass a local model (folder, .gguf, 'default')",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        from mllm.backbones import TransformersChatModel

        chat = TransformersChatModel(spec, adapter=args.adapter, device=args.device, allow_download=args.allow_download)
        server = ChatServer(
            chat,
            host=args.host,
            port=args.port,
            name=args.name or default_served_name(spec, args.adapter),
            api_key=args.api_key,
            max_new_tokens_limit=args.max_new_tokens_limit,
            max_queue=args.max_queue,
            request_timeout=args.request_timeout,
            max_connections=args.max_connections,
        )
    except (MllmError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1

    def stop(signum: int, frame: Any) -> None:  # SIGTERM: stop like Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(f"serving {server.name} at {server.url} (use {server.url}#{server.name})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        logger.info("stopping")
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
