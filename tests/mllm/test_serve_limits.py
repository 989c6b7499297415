"""mllm.serve input limits: prompt length against the context, the bounded queue and the per-request time."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from mllm.backbones import ChatModel, TransformersChatModel
from mllm.serve import ChatServer

SERVED = "limits-1"


class WordChat(ChatModel):
    """Tokens are whitespace words, at most 10 characters each; a context of 50 tokens; optional delay."""

    name = "words"
    context_length = 50

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        self.counted = 0
        self.calls: list[dict[str, Any]] = []

    def count_prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        self.counted += 1
        return sum(len(m["content"].split()) for m in messages)

    def max_chars_per_token(self) -> int:
        return 10

    def generate(self, messages, max_new_tokens=256, temperature=0.0, stop=None, seed=None) -> str:
        self.calls.append({"max_new_tokens": max_new_tokens, "max_time": self.max_time})
        time.sleep(self.delay)
        self.usage.record(self.count_prompt_tokens(messages), 1)
        return "ok"


def post(url: str, body: Any) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url + "/chat/completions", data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def ask(text: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], **extra}


def test_a_huge_prompt_is_400_before_any_tokenisation() -> None:
    chat = WordChat()
    with ChatServer(chat, port=0, name=SERVED) as server:
        status, reply = post(server.url, ask("x" * 501))  # 501 characters cannot fit 50 tokens of <= 10 characters
        assert status == 400 and chat.counted == 0 and chat.calls == []
        error = reply["error"]
        assert error["code"] == "context_length_exceeded" and error["param"] == "messages"
        assert "context is 50 tokens" in error["message"] and "501 characters" in error["message"]
        assert post(server.url, ask("hello"))[0] == 200  # and it keeps serving


def test_the_exact_token_count_decides_and_the_reply_budget_shrinks_to_fit() -> None:
    chat = WordChat()
    with ChatServer(chat, port=0, name=SERVED, max_new_tokens_limit=64) as server:
        status, reply = post(server.url, ask("w " * 50))  # 100 characters, 50 tokens: the whole context
        assert status == 400 and "50 tokens" in reply["error"]["message"] and chat.calls == []
        status, _ = post(server.url, ask("w " * 45, max_tokens=20))
        assert status == 200 and chat.calls[-1]["max_new_tokens"] == 5  # 45 + 5 = the context of 50


def test_the_queue_is_bounded() -> None:
    chat = WordChat(delay=0.6)
    statuses: list[int] = []
    with ChatServer(chat, port=0, name=SERVED, max_queue=1) as server:
        threads = [threading.Thread(target=lambda: statuses.append(post(server.url, ask("hi"))[0])) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
        assert sorted(statuses) == [200, 200, 503, 503]  # one generating, one waiting, two refused
        assert len(chat.calls) == 2 and server.health()["requests_served"] == 2
        assert post(server.url, ask("again"))[0] == 200


def test_the_request_time_is_bounded() -> None:
    chat = WordChat(delay=0.8)
    results: list[tuple[int, dict[str, Any]]] = []
    with ChatServer(chat, port=0, name=SERVED, request_timeout=0.3) as server:
        first = threading.Thread(target=lambda: results.append(post(server.url, ask("first"))))
        first.start()
        time.sleep(0.1)
        status, reply = post(server.url, ask("second"))  # waits 0.3 s for the model, then gives up
        first.join(timeout=20)
    assert status == 503 and reply["error"]["code"] == "timeout" and "--request-timeout" in reply["error"]["message"]
    assert results[0][0] == 200
    assert 0 < chat.calls[0]["max_time"] <= 0.3 and chat.max_time is None  # generation gets the rest; reset after


def test_smollm2_refuses_a_2mb_prompt_fast_naming_its_8192_token_context(smollm2: tuple) -> None:
    chat = TransformersChatModel(smollm2)
    assert chat.context_length == 8192 and chat.count_prompt_tokens([{"role": "user", "content": "hi"}]) > 1
    with ChatServer(chat, port=0, name=SERVED) as server:
        started = time.perf_counter()
        status, reply = post(server.url, ask("word " * 419_000))  # about 2 MB, under the 8 MB body cap
        assert status == 400 and "8192 tokens" in reply["error"]["message"]
        assert time.perf_counter() - started < 5
        status, reply = post(server.url, ask("word " * 9_000))  # under the character bound: counted exactly
        assert status == 400 and "9" in reply["error"]["message"].split(" tokens")[0]
        assert chat.usage.calls == 0


def test_open_connections_are_bounded_and_the_server_recovers() -> None:
    import socket

    chat = WordChat()
    with ChatServer(chat, port=0, name=SERVED, max_connections=2) as server:
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(2)]  # slow clients
        time.sleep(0.2)
        third = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        reply = b""
        try:
            while chunk := third.recv(4096):
                reply += chunk
        except OSError:
            pass
        third.close()
        assert reply.startswith(b"HTTP/1.1 503") and b"--max-connections" in reply
        for sock in idle:
            sock.close()
        time.sleep(0.2)
        assert post(server.url, ask("hello"))[0] == 200  # the slots are free again
