"""The OpenAI-compatible back end against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mllm import generate as generate_cli
from mllm.backbones import ChatModelError, OpenAIChatModel, load_chat_model

REPLY = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "tiny-served",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris. END more"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 17, "completion_tokens": 4, "total_tokens": 21},
}


class FakeServer:
    """A tiny OpenAI-compatible server that answers with canned JSON and records what it was sent."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

            def _send(self, status: int, payload: object) -> None:
                body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                server.requests.append({"method": "GET", "path": self.path, "headers": dict(self.headers)})
                self._send(200, {"object": "list", "data": [{"id": "listed-model", "object": "model"}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(
                    {"method": "POST", "path": self.path, "headers": dict(self.headers), "body": body}
                )
                if body["model"] == "broken":
                    self._send(500, {"error": "model crashed"})
                elif body["model"] == "garbled":
                    self._send(200, b"<html>not json</html>")
                elif body["model"] == "empty":
                    self._send(200, {"choices": []})
                else:
                    self._send(200, REPLY)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    yield fake
    fake.close()


def test_request_body_and_parsed_reply(server: FakeServer) -> None:
    chat = OpenAIChatModel(server.url + "/v1", model="tiny-served", api_key="secret-key")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]
    reply = chat.generate(messages, max_new_tokens=33, temperature=0.25, stop=[" END"], seed=7)
    assert reply == "Paris."  # cut before the stop string, as OpenAI servers do
    (request,) = server.requests
    assert request["method"] == "POST" and request["path"] == "/v1/chat/completions"
    assert request["body"] == {
        "model": "tiny-served",
        "messages": messages,
        "max_tokens": 33,
        "temperature": 0.25,
        "stop": [" END"],
        "seed": 7,
    }
    assert request["headers"]["Authorization"] == "Bearer secret-key"
    assert chat.usage.prompt_tokens == 17 and chat.usage.completion_tokens == 4 and chat.usage.calls == 1


def test_url_spec_fragment_and_model_listing(server: FakeServer) -> None:
    by_fragment = load_chat_model(server.url + "#tiny-served")  # no /v1: it is added
    assert by_fragment.generate([{"role": "user", "content": "hi"}]) == "Paris. END more"
    assert server.requests[-1]["path"] == "/v1/chat/completions"
    assert server.requests[-1]["body"]["model"] == "tiny-served"
    assert "stop" not in server.requests[-1]["body"] and "seed" not in server.requests[-1]["body"]

    unnamed = load_chat_model(server.url + "/v1/")
    replies = unnamed.generate_batch([[{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}]])
    assert replies == ["Paris. END more"] * 2
    assert server.requests[-3]["method"] == "GET" and server.requests[-3]["path"] == "/v1/models"
    assert server.requests[-1]["body"]["model"] == "listed-model"
    assert unnamed.usage.total_prompt_tokens == 34 and unnamed.usage.prompt_tokens == 34


def test_server_errors_are_chat_model_errors(server: FakeServer) -> None:
    hello = [{"role": "user", "content": "hi"}]
    with pytest.raises(ChatModelError, match=r"/v1/chat/completions answered HTTP 500: .*model crashed"):
        OpenAIChatModel(server.url, model="broken").generate(hello)
    with pytest.raises(ChatModelError, match="invalid JSON"):
        OpenAIChatModel(server.url, model="garbled").generate(hello)
    with pytest.raises(ChatModelError, match=r"choices\[0\]\.message\.content"):
        OpenAIChatModel(server.url, model="empty").generate(hello)
    with pytest.raises(ChatModelError, match=r"messages\[0\]\.role"):
        OpenAIChatModel(server.url, model="tiny-served").generate([{"role": "nobody", "content": "x"}])


def test_closed_port_names_the_url() -> None:
    with socket.socket() as sock:  # find a port, then free it so nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    chat = OpenAIChatModel(f"http://127.0.0.1:{port}", model="m", timeout=5)
    with pytest.raises(ChatModelError, match=rf"could not reach http://127\.0\.0\.1:{port}/v1/chat/completions"):
        chat.generate([{"role": "user", "content": "hi"}])
    with pytest.raises(ChatModelError, match="http:// or https://"):
        OpenAIChatModel("127.0.0.1:8000")


def test_generate_cli_against_the_server(server: FakeServer, capsys: pytest.CaptureFixture) -> None:
    status = generate_cli.main(
        [
            "--model",
            server.url + "#tiny-served",
            "--prompt",
            "Capital?",
            "--system",
            "Be brief.",
            "--max-new-tokens",
            "9",
        ]
    )
    assert status == 0
    assert capsys.readouterr().out.strip() == "Paris. END more"
    body = server.requests[-1]["body"]
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital?"},
    ]
    assert body["max_tokens"] == 9 and body["temperature"] == 0.0


def test_generate_cli_with_an_unreachable_server(capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert generate_cli.main(["--model", f"http://127.0.0.1:{port}#m", "--prompt", "hi"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: could not reach") and f"127.0.0.1:{port}" in err and "Traceback" not in err
