"""Starting real servers for tests on 127.0.0.1: a free port, uvicorn in a thread, and a
process whose URL is polled until it answers."""

from __future__ import annotations

import contextlib
import socket
import subprocess
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


def wait_for_url(url: str, proc: subprocess.Popen[bytes], log: Path, seconds: float = 120) -> None:
    """Poll ``url`` until it answers (any status below 500); fail with the log's tail if ``proc``
    exits or time runs out."""
    import urllib.error

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
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise AssertionError(f"{url} did not come up: {tail}")
        time.sleep(0.3)
