"""Starting real servers for tests and benchmarks on 127.0.0.1: a free port, uvicorn in a
thread, llama.cpp's OpenAI-compatible server, and a process whose URL is polled until it
answers."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def uvicorn_thread(app: Any, seconds: float = 60, **config: Any) -> Iterator[str]:
    """``app`` served by uvicorn in a thread; yields its base URL, stops it after."""
    import uvicorn

    port = free_port()
    config.setdefault("log_level", "warning")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + seconds
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def wait_for_url(
    url: str, proc: subprocess.Popen[bytes], log: Path | None = None, seconds: float = 120
) -> None:
    """Poll ``url`` until it answers (any status below 500); fail with the log's tail if ``proc``
    exits or time runs out."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                answer.read()
            return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return  # it answered (a login page, a 404): it is up
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise AssertionError(f"{url} did not come up: {tail}")
        time.sleep(0.3)


@contextlib.contextmanager
def llama_server(
    model: Path,
    log: Path | None = None,
    *,
    n_ctx: int = 2048,
    threads: int | None = None,
    env: dict[str, str] | None = None,
    seconds: float = 180,
) -> Iterator[str]:
    """llama.cpp's OpenAI-compatible server (llama-cpp-python's) with ``model`` on loopback;
    yields its base URL (``.../v1``), stops it after. Requests are decoded one at a time and
    a new one waits rather than cutting the one being streamed. ``threads`` sets prompt and
    generation threads alike (default: llama.cpp's own); output goes to ``log``, else nowhere."""
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx)]
    cmd += ["--interrupt_requests", "False"]
    if threads is not None:
        cmd += ["--n_threads", str(threads), "--n_threads_batch", str(threads)]
    with open(log, "wb") if log else open(os.devnull, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        url = f"http://127.0.0.1:{port}/v1"
        wait_for_url(url + "/models", proc, log, seconds=seconds)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
