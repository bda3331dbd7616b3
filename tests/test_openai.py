"""The openai backend against a real llama.cpp server on 127.0.0.1, directly and through
a small fault-injecting proxy (429, 500, a dropped stream, a stall, a bad key)."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from servers import llama_server

from rolecast.backends.base import GenerationParams
from rolecast.backends.models import resolve_model
from rolecast.backends.openai_compat import OpenAILLM, retry_after
from rolecast.errors import BackendError
from rolecast.retrieval.index import load_index
from rolecast.session import Session

from conftest import make_english_character

pytestmark = pytest.mark.e2e  # llama.cpp's server and the official SDK

PARAMS = GenerationParams(max_tokens=24, seed=1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """llama.cpp's OpenAI-compatible server with SmolLM2, on loopback."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    with llama_server(resolve_model("smollm2"), log) as url:
        yield url


class FaultProxy:
    """Forwards to the upstream server; each request takes the next fault from ``plan``:
    "pass", "429", "500", "401", "404", "drop" (relay a little of the stream, then cut the
    connection) or "stall" (say nothing for ``stall_s``)."""

    def __init__(self, upstream: str, stall_s: float = 3.0) -> None:
        self.upstream = upstream.split("//", 1)[1].split("/", 1)[0]
        self.plan: deque[str] = deque()
        self.seen: list[str] = []
        self.stall_s = stall_s
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, code: int, body: dict, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fault = proxy.plan.popleft() if proxy.plan else "pass"
                proxy.seen.append(fault)
                error = {"error": {"message": f"injected {fault}", "type": "test"}}
                if fault == "429":
                    return self._send(429, error, {"Retry-After": "1"})
                if fault in ("500", "401", "404"):
                    return self._send(int(fault), error)
                if fault == "stall":
                    time.sleep(proxy.stall_s)
                    return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=120)
                conn.request("POST", self.path, body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Connection", "close")
                self.end_headers()
                sent = 0
                while chunk := resp.read1(256):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                    sent += chunk.count(b"data:")
                    if fault == "drop" and sent >= 4:  # cut without the closing chunk
                        self.connection.shutdown(socket.SHUT_RDWR)
                        break
                else:
                    self.wfile.write(b"0\r\n\r\n")
                resp.close()
                conn.close()
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def proxy(server: str):
    p = FaultProxy(server)
    yield p
    p.close()


_open: list[OpenAILLM] = []


@pytest.fixture(autouse=True)
def _close_clients():
    yield
    while _open:
        _open.pop().close()


def _session(llm, tmp_path: Path, embedder) -> Session:
    _open.append(llm)
    c = make_english_character()
    return Session(c, load_index(c, embedder), llm, params=PARAMS)


def test_streams_a_reply_from_a_real_server(server: str, tmp_path: Path, embedder) -> None:
    llm = OpenAILLM(base_url=server, model="smollm2")
    s = _session(llm, tmp_path, embedder)
    line = "The cat is back and it took your fish!"
    chunks = list(llm.stream(s.prepare(line).assembly.messages, PARAMS))
    assert len(chunks) > 1  # the server streams
    # the session may hold a short reply back whole (it could still turn into the user's line
    # said back), so its pieces are what it showed, joined to the recorded reply
    pieces = list(s.say(line))
    assert pieces and s.last is not None and s.last.reply == "".join(pieces)
    assert [t.speaker for t in s.history] == ["Guest", "Mia"]


def test_429_with_retry_after_is_retried(proxy: FaultProxy, tmp_path: Path, embedder) -> None:
    waits: list[float] = []
    llm = OpenAILLM(base_url=proxy.url, model="m", sleep=waits.append)
    proxy.plan.extend(["429", "500"])
    reply = _session(llm, tmp_path, embedder).reply("Hello there")
    assert reply and proxy.seen == ["429", "500", "pass"]
    assert waits == [1.0, 1.0]  # Retry-After honoured, then backoff 0.5 * 2**1


def test_gives_up_after_the_retries(proxy: FaultProxy, tmp_path: Path, embedder) -> None:
    llm = OpenAILLM(base_url=proxy.url, model="m", retries=2, sleep=lambda _s: None)
    proxy.plan.extend(["500"] * 3)
    s = _session(llm, tmp_path, embedder)
    with pytest.raises(BackendError, match=r"failed 3 times, last: 500"):
        s.reply("Hello")
    assert s.history == []


def test_dropped_stream_is_not_retried_and_history_is_kept(
    proxy: FaultProxy, tmp_path: Path, embedder
) -> None:
    llm = OpenAILLM(base_url=proxy.url, model="m", sleep=lambda _s: None)
    s = _session(llm, tmp_path, embedder)
    s.reply("Hello")
    before = list(s.history)
    proxy.plan.append("drop")
    shown: list[str] = []
    with pytest.raises(BackendError, match="broke off.*nothing was saved"):
        for piece in s.say("Tell me about the lamp on the bridge"):
            shown.append(piece)
    assert proxy.seen == ["pass", "drop"]  # no retry once tokens were shown
    assert s.history == before


def test_stalled_server_times_out(proxy: FaultProxy, tmp_path: Path, embedder) -> None:
    llm = OpenAILLM(base_url=proxy.url, model="m", timeout=0.5, retries=0)
    proxy.plan.append("stall")
    s = _session(llm, tmp_path, embedder)
    started = time.monotonic()
    with pytest.raises(BackendError, match="timed out"):
        s.reply("Hello")
    assert time.monotonic() - started < 3 and s.history == []


@pytest.mark.parametrize(
    "fault, message", [("401", "refused the API key"), ("404", "does not know the model 'm'")]
)
def test_bad_key_and_unknown_model_are_clear(proxy, tmp_path, embedder, fault, message) -> None:
    llm = OpenAILLM(base_url=proxy.url, model="m", sleep=lambda _s: None)
    proxy.plan.append(fault)
    with pytest.raises(BackendError, match=message):
        _session(llm, tmp_path, embedder).reply("Hello")
    assert proxy.seen == [fault]


def test_settings_come_from_the_environment_then_the_config_file(rolecast_home: Path) -> None:
    from rolecast import config
    from rolecast.backends.spec import backend_spec

    config.write_setting("model", "from-file")
    env = {"ROLECAST_HOME": str(rolecast_home), "OPENAI_BASE_URL": "http://127.0.0.1:1/v1"}
    llm = backend_spec("openai", environ=env).open()
    assert isinstance(llm, OpenAILLM)
    assert (llm.model, llm.base_url) == ("from-file", "http://127.0.0.1:1/v1")
    env["ROLECAST_MODEL"] = "from-env"
    assert backend_spec("openai", environ=env).open().model == "from-env"
    assert backend_spec("openai", "explicit", environ=env).open().model == "explicit"
    with pytest.raises(BackendError, match="needs an API key for api.openai.com"):
        backend_spec("openai", "x", environ={"ROLECAST_HOME": str(rolecast_home)}).open()
    # the backend itself reads no settings: what it is not given, it does not have
    with pytest.raises(BackendError, match="needs a model"):
        OpenAILLM(base_url="http://127.0.0.1:1/v1")


def test_retry_after_forms() -> None:
    assert retry_after({"retry-after": "2"}) == 2.0
    assert retry_after({"retry-after-ms": "250"}) == 0.25
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after(None) is None
