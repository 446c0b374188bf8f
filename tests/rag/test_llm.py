"""The OpenAI-compatible client against real HTTP: a dead port, and a tiny server that is slow, flaky or broken."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rag.config import LLMSettings
from rag.errors import LLMError
from rag.llm import OpenAICompatibleLLM
from rag.types import Message

MSG = [Message("user", "hi")]


class _Server:
    """A tiny OpenAI-compatible server whose behaviour each test sets: "ok", "slow", "500", "garbage", "empty"."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.fail_first = 0  # answer 503 to this many chat requests first
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._send(200, json.dumps({"object": "list", "data": [{"id": "tiny-model", "object": "model",
                                                                          "created": 0, "owned_by": "me"}]}).encode())

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                if self.path != "/v1/chat/completions":
                    return self._send(404, b'{"error": {"message": "The model `m` does not exist."}}')
                if server.fail_first > 0:
                    server.fail_first -= 1
                    return self._send(503, b'{"error": {"message": "loading model"}}')
                if server.mode == "slow":
                    time.sleep(3)
                if server.mode == "500":
                    return self._send(500, b'{"error": {"message": "CUDA out of memory"}}')
                if server.mode == "400":
                    return self._send(400, b'{"error": {"message": "context length exceeded"}}')
                if server.mode == "garbage":
                    return self._send(200, b"<html>this is not json</html>", "text/html")
                if server.mode == "empty":
                    return self._send(200, json.dumps({"id": "x", "object": "chat.completion", "created": 0,
                                                       "model": "m", "choices": []}).encode())
                if body.get("stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for word in ["Hello", " from", " the", " stream"]:
                        chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
                                 "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                    self.wfile.write(b"data: [DONE]\n\n")
                    return
                logprobs = None
                if body.get("logprobs"):
                    alts = [{"token": t, "logprob": lp, "bytes": None} for t, lp in (("5", -0.1), ("4", -2.5))]
                    logprobs = {"content": [{"token": "5", "logprob": -0.1, "bytes": None, "top_logprobs": alts}]}
                reply = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                         "choices": [{"index": 0, "finish_reason": "stop", "logprobs": logprobs,
                                      "message": {"role": "assistant", "content": "Paris [1]."}}]}
                self._send(200, json.dumps(reply).encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True  # a "slow" handler still sleeping must not hold up the test's teardown
        self.httpd.block_on_close = False
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def _llm(url: str, **kw: object) -> tuple[OpenAICompatibleLLM, list[float]]:
    sleeps: list[float] = []
    return OpenAICompatibleLLM(LLMSettings(**kw), url, sleep=sleeps.append), sleeps


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed when we leave: nothing listens there


def test_server_down_says_where_and_what_to_do_after_bounded_retries() -> None:
    url = f"http://127.0.0.1:{_dead_port()}/v1"
    llm, sleeps = _llm(url, model="m", max_retries=2)
    with pytest.raises(LLMError) as e:
        llm.complete(MSG)
    msg = str(e.value)
    assert f"cannot reach LLM at {url}" in msg and "rag serve-llm" in msg and "3 attempts" in msg
    assert sleeps == [0.5, 1.0]  # exponential backoff, bounded by max_retries
    with pytest.raises(LLMError, match="cannot reach LLM"):
        list(llm.stream(MSG))


def test_model_defaults_to_the_first_served_and_max_tokens_is_sent(server: _Server) -> None:
    llm, _ = _llm(server.url)
    assert llm.model == "tiny-model"
    [c] = llm.complete(MSG, max_tokens=7)
    assert c.text == "Paris [1]." and c.finish_reason == "stop"
    assert server.requests[-1]["max_tokens"] == 7 and server.requests[-1]["model"] == "tiny-model"
    assert "max_completion_tokens" not in server.requests[-1]  # llama.cpp ignores it


def test_streaming_yields_deltas(server: _Server) -> None:
    llm, _ = _llm(server.url)
    assert list(llm.stream(MSG)) == ["Hello", " from", " the", " stream"]


def test_top_logprobs_and_n_samples(server: _Server) -> None:
    llm, _ = _llm(server.url, model="m")
    out = llm.complete(MSG, max_tokens=1, top_logprobs=5, n=3)
    assert len(out) == 3  # the tiny server, like llama.cpp, returns one choice per call: the client asks again
    assert [(t.token, t.logprob) for t in out[0].top_logprobs[0]] == [("5", -0.1), ("4", -2.5)]
    assert server.requests[0]["logprobs"] is True and server.requests[0]["top_logprobs"] == 5


def test_a_server_still_loading_is_retried_until_it_answers(server: _Server) -> None:
    server.fail_first = 2
    llm, sleeps = _llm(server.url, model="m", max_retries=2)
    assert llm.complete(MSG)[0].text == "Paris [1]."
    assert len(sleeps) == 2


def test_slow_server_times_out_with_a_clear_message_and_no_retry(server: _Server) -> None:
    server.mode = "slow"
    llm, sleeps = _llm(server.url, model="m", timeout_s=0.5, max_retries=2)
    t = time.perf_counter()
    with pytest.raises(LLMError, match=r"did not answer within 0.5 s.*RAG_LLM__TIMEOUT_S"):
        llm.complete(MSG)
    assert time.perf_counter() - t < 2.5 and sleeps == []


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("500", r"HTTP 500.*CUDA out of memory.*after 3 attempts"),
        ("400", r"HTTP 400.*context length exceeded"),
        ("garbage", r"reply this client cannot read|no choices"),
        ("empty", r"replied with no choices"),
    ],
)
def test_bad_replies_become_llm_errors(server: _Server, mode: str, expected: str) -> None:
    server.mode = mode
    llm, _ = _llm(server.url, model="m")
    with pytest.raises(LLMError, match=expected):
        llm.complete(MSG)


def test_unknown_model_names_the_setting(server: _Server) -> None:
    llm, _ = _llm(server.url + "/nope", model="m")
    with pytest.raises(LLMError, match="has no model 'm'.*RAG_LLM__MODEL"):
        llm.complete(MSG)
