"""The server under clients that go away or dawdle (security review, issue 15): a dropped
stream or request frees the model at once and leaves no turn, a stalled reader is cut off, a
slow or aborted request body is one line in the log. A scripted backend paced like a model
(``SlowLLM``) makes a held model show as a hang."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

anyio = pytest.importorskip("anyio", reason="needs the server extra")
TestClient = pytest.importorskip("starlette.testclient", reason="needs the server extra").TestClient
httpx = pytest.importorskip("httpx", reason="needs the test extra")

from servers import uvicorn_thread

from rolecast.backends.base import GenerationParams, LockedLLM
from rolecast.backends.scripted import ScriptedLLM
from rolecast.character.package import save_character
from rolecast.cli.main import main
from rolecast.server.app import ServerState, create_app
from rolecast.server.keys import LOCAL
from rolecast.server.run import build_state

from conftest import make_character, make_english_character

pytestmark = pytest.mark.e2e  # uvicorn serving on 127.0.0.1, real sockets and timeouts

KEY_A, KEY_B = "key-aaaa-1111", "key-bbbb-2222"
# a long reply, one character a chunk: 200 chunks, 10 s at SlowLLM's default pace
LONG = ("从前桥头有一盏灯，每晚都亮着，给晚归的船照路。" * 10)[:200]
SHORT = "坐下先喝口热汤吧。"
ASK = {"model": "xm", "messages": [{"role": "user", "content": "讲个很长的故事"}]}


@pytest.fixture
def chars(rolecast_home: Path) -> Path:
    save_character(make_character(), rolecast_home / "characters" / "xm")
    save_character(make_english_character(), rolecast_home / "characters" / "mia")
    return rolecast_home


class SlowLLM(ScriptedLLM):
    """Scripted replies at a model's pace, a chunk every ``delay`` seconds; counts the chunks
    made and the replies stopped before their end."""

    def __init__(self, delay: float = 0.05) -> None:
        super().__init__()
        self.delay = delay
        self.made = 0
        self.stopped = 0

    def stream(self, messages: Sequence[dict[str, str]], params: GenerationParams) -> Iterator[str]:
        finished = False
        try:
            for chunk in super().stream(messages, params):
                time.sleep(self.delay)
                self.made += 1
                yield chunk
            finished = True
        finally:
            self.stopped += not finished


def slow_state(keys: Sequence[str] = (), **limits: Any) -> tuple[ServerState, SlowLLM, LockedLLM]:
    state = build_state(api_keys=keys, backend="scripted", rate=0, **limits)
    llm = SlowLLM()
    locked = state._llms[None] = LockedLLM(llm)  # as an in-process model is shared
    return state, llm, locked


@contextlib.contextmanager
def serving(state: ServerState) -> Iterator[str]:
    """``state``'s app under uvicorn on 127.0.0.1, logging through the root logger (caplog).
    Only the character the tests talk to is loaded first (not every one, as at start-up)."""
    state.character("xm")
    try:
        with uvicorn_thread(create_app(state), log_config=None, lifespan="off") as base:
            yield base
    finally:
        state.store.close()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def wait_until(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def ask_b(base: str, timeout: float) -> tuple[httpx.Response, float]:
    """Another key's plain request: its response and how long it took."""
    start = time.monotonic()
    with httpx.Client(base_url=base, headers=auth(KEY_B), timeout=timeout) as b:
        try:
            r = b.post("/v1/chat/completions", json={**ASK, "user": "b"})
        except httpx.ReadTimeout:
            pytest.fail(f"another key's request waited over {timeout} s for the model")
    return r, time.monotonic() - start


# ---------------------------------------------------------------- clients that go away


def test_a_dropped_stream_frees_the_model_at_once(chars: Path) -> None:
    state, llm, _ = slow_state(keys=[KEY_A, KEY_B])
    llm.enqueue(list(LONG)).enqueue(list(SHORT))
    with serving(state) as base:
        with httpx.Client(base_url=base, headers=auth(KEY_A), timeout=30) as a:
            body = {**ASK, "stream": True, "user": "dropped"}
            with a.stream("POST", "/v1/chat/completions", json=body) as r:
                assert r.status_code == 200
                events = []
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        events.append(json.loads(line[6:]))
                    if len(events) == 4:
                        break  # ... and hang up mid-reply
        assert "".join(e["choices"][0]["delta"].get("content", "") for e in events)
        r, took = ask_b(base, timeout=5)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == SHORT
        assert took < 4, took  # the model was free: not held until a garbage collection
        wait_until(lambda: llm.stopped == 1)
        assert llm.made < len(LONG) // 2  # the dropped reply stopped, it did not run on
        with httpx.Client(base_url=base, headers=auth(KEY_A), timeout=10) as a:
            assert a.get("/v1/sessions/dropped").status_code == 404  # no turn recorded


def test_a_dropped_request_stops_and_is_not_recorded(chars: Path) -> None:
    """A plain (not streamed) request follows the stream's rule: a client gone before its
    reply is ready stops the model and leaves no turn."""
    state, llm, _ = slow_state(keys=[KEY_A, KEY_B])
    llm.enqueue(list(LONG[:100])).enqueue(list(SHORT))  # A's reply would take 5 s
    with serving(state) as base:
        with httpx.Client(base_url=base, headers=auth(KEY_A), timeout=1) as a:
            with pytest.raises(httpx.ReadTimeout):  # A gives up after 1 s and hangs up
                a.post("/v1/chat/completions", json={**ASK, "user": "gone"})
        r, took = ask_b(base, timeout=10)
        wait_until(lambda: llm.stopped == 1 or llm.made >= 100 + len(SHORT))  # A's is over
        time.sleep(0.2)
        with httpx.Client(base_url=base, headers=auth(KEY_A), timeout=10) as a:
            assert a.get("/v1/sessions/gone").status_code == 404  # no turn recorded
        assert llm.stopped == 1  # A's generation was stopped, not run to its end ...
        assert r.status_code == 200 and took < 3, (r.status_code, took)  # ... for B's sake


def test_a_delivered_reply_is_recorded_streamed_or_not(chars: Path) -> None:
    state, llm, _ = slow_state()
    llm.delay = 0
    llm.enqueue(list(SHORT)).enqueue(list("面来了。"))
    client = TestClient(create_app(state))
    r = client.post("/v1/chat/completions", json={**ASK, "user": "s"})
    assert r.status_code == 200
    with client.stream(
        "POST", "/v1/chat/completions", json={**ASK, "user": "s", "stream": True}
    ) as s:
        lines = [ln for ln in s.iter_lines() if ln]
    assert lines[-1] == "data: [DONE]"
    got = client.get("/v1/sessions/s").json()["messages"]
    line = "讲个很长的故事"
    assert [m["content"] for m in got] == [line, SHORT, line, "面来了。"]
    assert llm.stopped == 0
    state.store.close()


def test_a_reply_given_up_while_queued_starts_no_model() -> None:
    llm = ScriptedLLM(["不该说的话"])
    locked = LockedLLM(llm)
    stop = threading.Event()
    got: list[str] = []
    messages = [{"role": "user", "content": "x"}]
    with locked.lock:  # another reply is generating
        thread = threading.Thread(
            target=lambda: got.extend(locked.stream(messages, GenerationParams(), stop=stop))
        )
        thread.start()
        time.sleep(0.2)
        stop.set()  # its client went while it waited
        thread.join(timeout=2)
        assert not thread.is_alive()
    assert got == [] and llm.requests == []
    assert locked.lock.acquire(blocking=False)


# ---------------------------------------------------------------- clients that dawdle


def test_a_stalled_reader_is_cut_off_after_the_send_timeout(
    chars: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that stops reading (its socket buffers full: ``send`` blocks) holds the model
    for ``send_timeout`` seconds at most; then its stream ends and the model is free."""
    state, llm, locked = slow_state(send_timeout=0.3)
    llm.delay = 0.01
    llm.enqueue(list(LONG))
    app = create_app(state)
    body = json.dumps({**ASK, "stream": True, "user": "stalled"}).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[dict[str, Any]] = []

    async def call() -> None:
        requests = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if requests:
                return requests.pop()
            await anyio.sleep_forever()  # still connected, reading nothing
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            if len(sent) == 4:  # the start and three events, then its buffers are full
                await anyio.sleep_forever()
            sent.append(message)

        with anyio.fail_after(5):
            await app(scope, receive, send)

    with caplog.at_level(logging.WARNING):
        anyio.run(call)
    assert locked.lock.acquire(blocking=False)  # the model is free
    locked.lock.release()
    assert llm.stopped == 1 and llm.made < len(LONG) // 2
    assert state.store.session_character(LOCAL, "stalled") is None
    assert any("cut off" in r.getMessage() for r in caplog.records)
    state.store.close()


def partial_request(base: str, declared: int, sent: bytes) -> socket.socket:
    """A POST that declares ``declared`` body bytes and sends only ``sent``."""
    s = socket.create_connection(("127.0.0.1", httpx.URL(base).port or 80), timeout=5)
    s.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\n"
        + f"Content-Length: {declared}\r\n\r\n".encode()
        + sent
    )
    return s


def test_a_slow_body_gets_408_and_one_log_line(
    chars: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    state, _, _ = slow_state(body_timeout=0.5)
    with serving(state) as base:
        with partial_request(base, 200, b'{"model": "xm", ') as s:
            data = b""
            try:
                while chunk := s.recv(65536):
                    data += chunk
            except TimeoutError:
                pytest.fail(f"no answer 5 s after the body stalled; got {data!r}")
    head, _, payload = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), head
    error = json.loads(payload)["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "request_timeout"
    assert "0.5 s" in error["message"]
    lines = [r for r in caplog.records if "request body" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def test_an_aborted_body_is_one_log_line(chars: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    state, _, _ = slow_state()
    with serving(state) as base:
        with partial_request(base, 200, b'{"model": "xm", '):
            time.sleep(0.3)  # the server is reading the body ... and the client hangs up

        def logged() -> bool:
            return any("request body" in r.getMessage() or r.exc_info for r in caplog.records)

        wait_until(logged, 5)
        time.sleep(0.2)
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    lines = [r for r in caplog.records if "request body" in r.getMessage()]
    assert len(lines) == 1 and lines[0].name == "rolecast.server.app"


def test_serve_help_documents_the_limits(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--send-timeout SECONDS" in out and "(default: 10)" in out
    assert "--body-timeout SECONDS" in out and "else 408 (default: 30)" in out
