"""mllm.serve: the OpenAI-compatible server, in-process on an ephemeral port, with a scripted chat model."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mllm import serve as serve_cli
from mllm.backbones import ChatModel, ChatModelError, OpenAIChatModel, load_chat_model, truncate_at_stop
from mllm.serve import ChatServer, default_served_name, serve

SERVED = "scripted-1"
HELLO = [{"role": "user", "content": "hello there"}]


class ScriptedChat(ChatModel):
    """Replies ``"echo: <last message> | tail"`` (or the next canned reply); tokens are whitespace words."""

    name = "scripted"

    def __init__(self, replies: list[str] | None = None, delay: float = 0.0) -> None:
        super().__init__()
        self.replies = list(replies or [])
        self.delay = delay
        self.calls: list[dict[str, Any]] = []
        self.active = self.max_active = 0
        self._count_lock = threading.Lock()

    def generate(self, messages, max_new_tokens=256, temperature=0.0, stop=None, seed=None) -> str:
        with self._count_lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(self.delay)
            self.calls.append(
                {"messages": messages, "max_new_tokens": max_new_tokens, "temperature": temperature,
                 "stop": stop, "seed": seed}
            )  # fmt: skip
            if self.replies:
                text = self.replies.pop(0)
            elif messages[-1]["content"] == "crash":
                raise RuntimeError("the scripted model crashed")
            else:
                text = f"echo: {messages[-1]['content']} | tail"
            words = text.split()[:max_new_tokens]
            self.usage.record(sum(len(m["content"].split()) for m in messages), len(words))
            return truncate_at_stop(" ".join(words), stop)
        finally:
            with self._count_lock:
                self.active -= 1


@pytest.fixture
def scripted() -> ScriptedChat:
    return ScriptedChat()


@pytest.fixture
def server(scripted: ScriptedChat) -> Iterator[ChatServer]:
    with ChatServer(scripted, port=0, name=SERVED, max_new_tokens_limit=64) as running:
        yield running


def call(
    url: str, body: Any = None, method: str | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """(status, parsed JSON) of one request; ``body`` bytes are sent as they are, anything else as JSON."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"))
    request.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_round_trip_usage_and_model_discovery(server: ChatServer, scripted: ScriptedChat) -> None:
    assert server.url.startswith("http://127.0.0.1:") and server.port != 0 and server.url.endswith("/v1")
    client = OpenAIChatModel(server.url)  # no model name: asked of GET /v1/models
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "capital of France?"}]
    assert client.generate(messages, max_new_tokens=20, temperature=0.5, seed=3) == "echo: capital of France? | tail"
    assert client.model == SERVED
    assert scripted.calls == [{"messages": messages, "max_new_tokens": 20, "temperature": 0.5, "stop": None, "seed": 3}]
    assert client.usage.prompt_tokens == 5 and client.usage.completion_tokens == 6  # the model's own counts
    client.generate(HELLO)  # asks for 256 new tokens: capped at the server's limit of 64
    assert client.usage.total_prompt_tokens == 7 and client.usage.total_completion_tokens == 11
    assert scripted.calls[-1]["max_new_tokens"] == 64 and scripted.calls[-1]["temperature"] == 0.0

    status, models = call(server.url + "/models")
    assert status == 200 and models["object"] == "list" and [m["id"] for m in models["data"]] == [SERVED]
    assert call(server.url + f"/models/{SERVED}")[1]["id"] == SERVED
    status, health = call(server.url.removesuffix("/v1") + "/health")
    assert status == 200 and health == {"status": "ok", "model": SERVED, "requests_served": 2}


def test_response_shape_and_finish_reason(server: ChatServer) -> None:
    status, reply = call(server.url + "/chat/completions", {"model": SERVED, "messages": HELLO, "max_tokens": 2})
    assert status == 200
    assert reply["object"] == "chat.completion" and reply["model"] == SERVED and reply["id"].startswith("chatcmpl-")
    assert isinstance(reply["created"], int)
    (choice,) = reply["choices"]
    assert choice["message"] == {"role": "assistant", "content": "echo: hello"}
    assert choice["finish_reason"] == "length"  # the budget of 2 tokens was used up
    assert reply["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}
    # No model field (llama.cpp-style clients), text content parts, the "developer" role: all accepted.
    parts = [{"role": "developer", "content": "x"}, {"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    status, reply = call(server.url + "/chat/completions", {"messages": parts})
    assert status == 200 and reply["choices"][0]["finish_reason"] == "stop"
    assert reply["choices"][0]["message"]["content"] == "echo: hi | tail"


def test_stop_sequences(server: ChatServer, scripted: ScriptedChat) -> None:
    client = OpenAIChatModel(server.url, model=SERVED)
    assert client.generate(HELLO, stop=[" |", "zzz"]) == "echo: hello there"
    assert scripted.calls[-1]["stop"] == [" |", "zzz"]
    status, reply = call(server.url + "/chat/completions", {"messages": HELLO, "stop": "there"})  # a bare string
    assert status == 200 and reply["choices"][0]["message"]["content"] == "echo: hello "
    assert scripted.calls[-1]["stop"] == ["there"]


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        (b"{not json", None, "not valid JSON"),
        ([1, 2], None, "JSON object"),
        ({"model": SERVED}, "messages", "non-empty list"),
        ({"messages": []}, "messages", "non-empty list"),
        ({"messages": ["hi"]}, "messages[0]", "must be an object"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role", "must be one of"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content", "must be a string"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content", "text parts"),
        ({"messages": HELLO, "model": "gpt-9"}, "model", "not served here"),
        ({"messages": HELLO, "model": 7}, "model", "must be a string"),
        ({"messages": HELLO, "max_tokens": "ten"}, "max_tokens", "positive integer"),
        ({"messages": HELLO, "max_tokens": 0}, "max_tokens", "positive integer"),
        ({"messages": HELLO, "max_completion_tokens": True}, "max_completion_tokens", "positive integer"),
        ({"messages": HELLO, "temperature": "hot"}, "temperature", "from 0 to 2"),
        ({"messages": HELLO, "temperature": -0.1}, "temperature", "from 0 to 2"),
        ({"messages": HELLO, "stop": [1]}, "stop", "list of strings"),
        ({"messages": HELLO, "seed": 1.5}, "seed", "integer"),
        ({"messages": HELLO, "n": 2}, "n", "must be 1"),
        ({"messages": HELLO, "stream": True}, "stream", "streaming is not supported"),
    ],
)
def test_bad_requests_are_400_naming_the_field(
    server: ChatServer, scripted: ScriptedChat, body: Any, param: str | None, fragment: str
) -> None:
    status, reply = call(server.url + "/chat/completions", body, method="POST")
    assert status == 400
    assert reply["error"]["type"] == "invalid_request_error" and reply["error"]["param"] == param
    assert fragment in reply["error"]["message"]
    if param:
        assert param.split("[")[0] in reply["error"]["message"]
    assert scripted.calls == []  # nothing reached the model


def test_keep_alive_connection_is_fast_and_survives_errors(server: ChatServer) -> None:
    """A reused connection: a 400 does not desync it, and replies are not held back by Nagle + delayed ACK."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    good = json.dumps({"messages": HELLO}).encode()
    bad = json.dumps({"messages": HELLO, "seed": "x"}).encode()
    seconds = []
    for body in (bad, good, bad, good, good, good, good):
        started = time.perf_counter()
        connection.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        reply = json.loads(response.read())
        seconds.append(time.perf_counter() - started)
        assert response.status == (400 if body is bad else 200), reply
    connection.close()
    assert sorted(seconds)[len(seconds) // 2] < 0.035  # with Nagle on, each reply waited ~40 ms


def test_client_reports_the_servers_error(server: ChatServer) -> None:
    with pytest.raises(ChatModelError, match=r"HTTP 400: .*not served here"):
        OpenAIChatModel(server.url, model="someone-else").generate(HELLO)


def test_api_key(scripted: ScriptedChat) -> None:
    with serve(scripted, port=0, name=SERVED, api_key="s3cret") as server:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            status, reply = call(server.url + "/chat/completions", {"messages": HELLO}, headers=headers)
            assert status == 401 and reply["error"]["code"] == "invalid_api_key"
            assert "Authorization: Bearer" in reply["error"]["message"]
        assert call(server.url + "/models")[0] == 401
        assert scripted.calls == []
        with pytest.raises(ChatModelError, match="HTTP 401"):
            OpenAIChatModel(server.url, model=SERVED, api_key="wrong").generate(HELLO)
        client = OpenAIChatModel(server.url, api_key="s3cret")
        assert client.generate(HELLO) == "echo: hello there | tail" and client.model == SERVED
        assert call(server.url.removesuffix("/v1") + "/health")[0] == 200  # probes need no key


def test_unknown_paths_and_methods(server: ChatServer) -> None:
    root = server.url.removesuffix("/v1")
    for url in (root + "/v1/completions", root + "/", root + "/v2/chat/completions"):
        status, reply = call(url)
        assert status == 404 and "unknown path" in reply["error"]["message"]
    assert call(root + "/v1/embeddings", {"input": "x"})[0] == 404
    status, reply = call(server.url + "/models/other-model")
    assert status == 404 and reply["error"]["param"] == "model"
    assert call(server.url + "/chat/completions")[0] == 405  # GET on a POST endpoint


def test_model_crash_is_500_and_the_server_keeps_serving(server: ChatServer, caplog: pytest.LogCaptureFixture) -> None:
    status, reply = call(server.url + "/chat/completions", {"messages": [{"role": "user", "content": "crash"}]})
    assert status == 500 and reply["error"]["type"] == "server_error" and "crashed" in reply["error"]["message"]
    assert "the scripted model crashed" in caplog.text
    assert OpenAIChatModel(server.url, model=SERVED).generate(HELLO) == "echo: hello there | tail"


def test_requests_are_logged(server: ChatServer, caplog: pytest.LogCaptureFixture) -> None:
    def logged(predicate) -> bool:
        # the server thread writes its access line after the reply, so the client may return first: wait for it
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if any(predicate(r.getMessage()) for r in caplog.records if r.name == "mllm.serve"):
                return True
            time.sleep(0.01)
        return False

    with caplog.at_level("INFO", logger="mllm.serve"):
        OpenAIChatModel(server.url, model=SERVED).generate(HELLO)
        call(server.url + "/nowhere")
        assert logged(lambda line: line.startswith("POST /v1/chat/completions 200") and "prompt=2" in line)
        assert logged(lambda line: line.startswith("GET /v1/nowhere 404"))


def test_generation_is_serialised() -> None:
    slow = ScriptedChat(delay=0.05)
    with serve(slow, port=0, name=SERVED) as server:
        replies: list[str] = []

        def one(i: int) -> None:
            replies.append(OpenAIChatModel(server.url, model=SERVED).generate([{"role": "user", "content": f"q{i}"}]))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    assert sorted(replies) == [f"echo: q{i} | tail" for i in range(4)]
    assert slow.max_active == 1 and slow.usage.calls == 4


def test_cli_help_and_bad_arguments(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        serve_cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--api-key" in out and "--max-new-tokens-limit" in out and "--port" in out
    assert serve_cli.main(["--model", "http://localhost:8000/v1"]) == 2
    assert "already a server" in capsys.readouterr().err
    assert serve_cli.main(["--model", "/no/such/model/folder", "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: model path not found: /no/such/model/folder") and "Traceback" not in err


def test_default_served_names(tmp_path: Path) -> None:
    assert default_served_name("default", None) == "SmolLM2-135M-Instruct"
    assert default_served_name("/models/Qwen2.5-0.5B.Q4_K_M.gguf", None) == "Qwen2.5-0.5B.Q4_K_M"
    assert default_served_name(str(tmp_path), None) == tmp_path.name
    assert default_served_name("HuggingFaceTB/SmolLM2-360M-Instruct", None) == "HuggingFaceTB/SmolLM2-360M-Instruct"
    assert default_served_name(None, str(tmp_path / "lora-demo")) == "lora-demo"
    assert default_served_name("default", str(tmp_path / "lora-demo")) == "SmolLM2-135M-Instruct+lora-demo"


def test_camroll_endpoint_answerer_end_to_end(tmp_path: Path) -> None:
    """The camroll `endpoint` answerer drives its tools through the server, and the harness counts its tokens."""
    from agents.camroll.demo_data import make_demo_roll
    from agents.camroll.graph import ask, build_graph
    from agents.camroll.memory import CamrollMemory, NoVisual
    from agents.camroll.session import make_answerer
    from agents.camroll.tools import CamrollTools
    from evals.camroll_qa import run_eval
    from retrieval import VectorStore
    from retrieval.embed import HashingEmbedder

    roll = tmp_path / "roll"
    make_demo_roll(roll, users=["12"], photos_per_user=40, questions_per_user=10, seed=0, progress=False)
    count_then_answer = [
        '{"action": "count", "args": {"what": "photos"}}',
        '{"action": "answer", "answer": "7", "photo_ids": ["000001"]}',
    ]
    scripted = ScriptedChat(count_then_answer * 4)
    with VectorStore(tmp_path / "store") as store, serve(scripted, port=0, name=SERVED) as server:
        memory = CamrollMemory(store, roll, embedder=HashingEmbedder(), visual=NoVisual(), cache_dir=tmp_path / "c")
        memory.ingest("12", progress=False)
        answerer = make_answerer("endpoint", server.url + "#" + SERVED, "12")
        tools = CamrollTools(memory, "12")
        result = ask(build_graph(tools, answerer), "How many photos do I have?", dt.date(2030, 1, 1))
        # the lean endpoint loop runs a first photo search for the model, then the model asks to count
        assert [c["tool"] for c in tools.calls] == ["search_by_text", "count"]
        assert result["answer"] == "7" and result["cited"] == ["user12/photo/000001"]
        # The second request carried the tool's result back to the model, through HTTP, then asked for the answer
        # (the loop's last step).
        messages = scripted.calls[1]["messages"]
        assert messages[-3] == {
            "role": "assistant", "content": '{"action": "count", "args": {"what": "photos"}}'}  # fmt: skip
        assert messages[-2]["role"] == "user" and messages[-2]["content"].startswith("<tool_result name='count'>")
        assert messages[-1]["role"] == "user" and messages[-1]["content"].startswith("Answer now")
        assert scripted.calls[1]["max_new_tokens"] == answerer.max_new_tokens

        model = load_chat_model(server.url)  # what `--agent endpoint --model URL` builds (name from /v1/models)
        report = run_eval(
            roll, lambda: memory, users=["12"], agent="endpoint", model=model, systems=("hierarchical",),
            max_questions=3, progress=False,
        )  # fmt: skip
    rows = report["rows"]["hierarchical"]
    assert report["agent"] == "endpoint" and len(rows) == 3 and all(r["prediction"] == "7" for r in rows)
    # Tokens per question are the served model's own counts (prompt + completion of its two calls).
    prompts = [sum(len(m["content"].split()) for m in c["messages"]) for c in scripted.calls[2:]]
    completions = sum(len(reply.split()) for reply in count_then_answer)
    assert [r["tokens"] for r in rows] == [
        a + b + completions for a, b in zip(prompts[::2], prompts[1::2], strict=True)
    ]
