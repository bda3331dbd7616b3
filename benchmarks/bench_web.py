"""Web page figures: time from launch to a usable page, and what the page adds to a turn.

    python benchmarks/bench_web.py [--turns 20] [--backend local]

1. Launch: `rolecast web` is started as a process; the time until Chromium (Debian's, through
   Playwright) shows the page with the character loaded (name, greeting, portrait slot).
2. Per turn, in process: the handler the Send button calls (WebApp.on_send, every streamed
   view included) against the library call it wraps (Session.reply), same scripted reply.
3. Per turn, in the browser: Send clicked in Chromium until the reply is on the page (echo
   backend), against the library call with the echo backend. (gradio_client is not used: it
   spends about 160 ms on its own machinery even for a handler that does nothing.)
Medians of ``--turns`` turns.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

LINES = ["你好，你是谁？", "今天的面多少钱一碗？", "你怕不怕河水？", "明天还开摊吗？"]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_time(backend: str, home: str) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    port = free_port()
    env = {**os.environ, "ROLECAST_HOME": home}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rolecast.cli.main",
            "web",
            "--backend",
            backend,
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("rolecast web exited") from None
                time.sleep(0.05)
        listening = time.perf_counter() - start
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page()
            t0 = time.perf_counter()
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#rc-header h3", timeout=60_000)
            usable = time.perf_counter()
            browser.close()
        return {
            "listening_s": listening,
            "page_s": usable - t0,
            "launch_to_usable_s": usable - start,
        }
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def in_process(turns: int) -> dict[str, float]:
    from rolecast.backends.base import LockedLLM
    from rolecast.backends.scripted import ScriptedLLM
    from rolecast.web.app import WebApp

    app = WebApp(backend="scripted")
    reply = "小满:「汤刚滚，面刚醒，坐下先喝口热的，今天的雾可真大咯。」"
    app._llms[("scripted", None)] = LockedLLM(ScriptedLLM([reply] * (2 * turns + 2)))
    state = app.on_load(None)[0]
    tab = app.tab(state)
    lib, ui = [], []
    for i in range(turns):
        line = LINES[i % len(LINES)]
        t = time.perf_counter()
        tab.session.reply(line)
        lib.append(time.perf_counter() - t)
        del tab.session.history[-2:]  # same history length for the next call
        t = time.perf_counter()
        for _ in app.on_send(line, "", False, state):
            pass
        ui.append(time.perf_counter() - t)
        app.on_new(state)
    return _summary(lib, ui)


# In the page: click a button, resolve with the milliseconds until the chat shows ``line`` (or,
# for None, until it is empty). Timed by the page itself, so no driver round trip is included.
SHOWN_AFTER_CLICK = """([button, line]) => new Promise(resolve => {
  const chat = document.querySelector('#rc-chat');
  const done = () => {
    const bots = [...chat.querySelectorAll('[data-testid="bot"]')];
    return line === null ? bots.length === 0 : bots.some(e => e.innerText.includes(line));
  };
  const t0 = performance.now();
  const obs = new MutationObserver(() => {
    if (done()) { obs.disconnect(); resolve(performance.now() - t0); }
  });
  obs.observe(chat, {subtree: true, childList: true, characterData: true});
  setTimeout(() => { obs.disconnect(); resolve(-1); }, 20000);  // never shown: reported
  document.querySelector(button).click();
})"""


def in_browser(turns: int, home: str) -> dict[str, float]:
    """Send clicked in Chromium -> the reply shown, against the library call (echo backend)."""
    from playwright.sync_api import sync_playwright

    from rolecast.backends.scripted import EchoLLM
    from rolecast.character import store
    from rolecast.retrieval.index import load_index
    from rolecast.session import Session

    port = free_port()
    env = {**os.environ, "ROLECAST_HOME": home}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rolecast.cli.main",
            "web",
            "--backend",
            "echo",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        c = store.load(store.DEFAULT_CHARACTER)
        session = Session(c, load_index(c, "use"), EchoLLM())
        lib, ui, floor = [], [], []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#rc-header h3", timeout=60_000)
            if page.query_selector("#rc-new") is None:  # New chat folded under "more"
                page.click("#rc-more >> text=more")
                page.wait_for_selector("#rc-new", timeout=10_000)
            missed = 0
            for i in range(turns):
                line = f"{LINES[i % len(LINES)]} {i}"
                t = time.perf_counter()
                session.reply(line)
                lib.append(time.perf_counter() - t)
                session.history.clear()
                page.fill("#rc-text textarea", line)
                shown = page.evaluate(SHOWN_AFTER_CLICK, ["#rc-send", line])
                if shown < 0:
                    missed += 1
                    said = page.inner_text("#rc-chat")[-200:]
                    print(
                        f"(turn {i}: {line!r} was not shown in 20 s; the chat: {said!r})",
                        file=sys.stderr,
                    )
                else:
                    ui.append(shown / 1000)
                floor.append(page.evaluate(SHOWN_AFTER_CLICK, ["#rc-new", None]) / 1000)
                # the turn's event may still be finishing (memory, saving): a Send clicked
                # before it ends is ignored by Gradio (one submission at a time), so wait
                page.wait_for_timeout(300)
            browser.close()
        out = _summary(lib, ui)
        out["new_chat_ms"] = statistics.median(floor) * 1000
        out["missed"] = missed
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _summary(lib: list[float], ui: list[float]) -> dict[str, float]:
    lm, um = statistics.median(lib) * 1000, statistics.median(ui) * 1000
    return {"library_ms": lm, "page_ms": um, "added_ms": um - lm, "ratio": um / lm if lm else 0.0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--turns", type=int, default=20)
    ap.add_argument("--backend", default="local", help="backend for the launch figure")
    args = ap.parse_args(argv)
    home = os.environ.setdefault("ROLECAST_HOME", tempfile.mkdtemp(prefix="rolecast-bench-"))
    print(f"# rolecast web benchmark ({time.strftime('%Y-%m-%d %H:%M')}, nproc {os.cpu_count()})\n")
    from rolecast.character import store
    from rolecast.retrieval.index import load_index

    load_index(store.load(store.DEFAULT_CHARACTER), "use")  # the index is built once, before
    launch = launch_time(args.backend, home)
    print(f"## Launch ({args.backend} backend, default character)\n")
    print("| listening | page shown with the character | launch to usable (target <= 3 s) |")
    print("|---|---|---|")
    print(
        f"| {launch['listening_s']:.2f} s | {launch['page_s']:.2f} s "
        f"| {launch['launch_to_usable_s']:.2f} s |\n"
    )
    print(f"## Per turn (median of {args.turns})\n")
    print("| path | library call | through the page | added (target <= 50 ms) |\n|---|---|---|---|")
    browser = in_browser(args.turns, home)
    for label, r in (
        ("in process, scripted backend", in_process(args.turns)),
        ("in Chromium (Send clicked to reply shown), echo backend", browser),
    ):
        print(
            f"| {label} | {r['library_ms']:.1f} ms | {r['page_ms']:.1f} ms "
            f"| {r['added_ms']:.1f} ms |"
        )
    print(
        f"\nFor scale, Gradio's own round trip: New chat clicked (a handler that only empties "
        f"the chat) until the page shows it: {browser['new_chat_ms']:.1f} ms; the reply adds "
        f"{browser['page_ms'] - browser['new_chat_ms']:.1f} ms to that."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
