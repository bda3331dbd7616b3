"""The web page in a real browser: Debian's Chromium driven by Playwright, against `rolecast web`.

Needs /usr/bin/chromium (Debian package `chromium`; `.ci/run` installs it) and the `playwright`
package; never `playwright install`. Skipped where either is missing, except under CI, where a
missing browser is a failure. The screenshot is kept in ``test-artifacts/`` (or
``$ROLECAST_ARTIFACTS``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from servers import free_port

from rolecast.character.model import Line, Scene
from rolecast.character.package import save_character

from conftest import make_english_character

pytestmark = pytest.mark.e2e  # Chromium through Playwright

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = Path(
    os.environ.get("ROLECAST_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts")
)


def _browser_or_skip():  # type: ignore[no-untyped-def]
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if sync_playwright is None or not CHROMIUM.is_file():
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium and the playwright package")
        pytest.skip("needs /usr/bin/chromium and playwright")
    return sync_playwright


def _png(rgb: tuple[int, int, int]) -> bytes:
    import io

    from PIL import Image  # comes with gradio

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), rgb).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def server(rolecast_home: Path):  # type: ignore[no-untyped-def]
    c = make_english_character()
    c.portrait = "images/portrait.png"
    c.scenes.append(
        Scene(
            "frames",
            "frames",
            (Line("Mia", "Coal! Drop that fish right now!", image="images/coal.png"),),
        )
    )
    save_character(
        c,
        rolecast_home / "characters" / "mia",
        images={"portrait.png": _png((40, 90, 160)), "coal.png": _png((200, 30, 30))},
    )
    with web_server(rolecast_home, "mia") as url:
        yield url


@contextlib.contextmanager
def web_server(rolecast_home: Path, cid: str, *extra: str):  # type: ignore[no-untyped-def]
    """``rolecast web CID --backend echo`` on a free port, its URL while it runs."""
    port = free_port()
    env = {**os.environ, "ROLECAST_HOME": str(rolecast_home)}
    log = open(rolecast_home / "web.log", "wb")  # noqa: SIM115 - closed at teardown
    argv = ["web", cid, "--backend", "echo", "--port", str(port), *extra]
    proc = subprocess.Popen(
        [sys.executable, "-m", "rolecast.cli.main", *argv],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None:
                log.close()
                out = (rolecast_home / "web.log").read_text(errors="replace")
                raise AssertionError(f"rolecast web exited:\n{out}") from None
            time.sleep(0.2)
    else:
        proc.kill()
        log.close()
        raise AssertionError("rolecast web did not start in 60 s")
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def _bot_texts(page) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.inner_text() for e in page.query_selector_all('#rc-chat [data-testid="bot"]')]


def test_pick_send_stream_and_see_the_scene_image(server: str) -> None:
    sync_playwright = _browser_or_skip()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(server)
        page.wait_for_selector("#rc-header h3", timeout=30_000)
        # pick the character (it is the default here: pick it again through the list)
        page.click("#rc-tab-characters-button")
        page.click("#rc-picker input")
        page.get_by_role("option", name="Mia (mia)").click()
        page.wait_for_function(
            "document.querySelector('#rc-header h3')?.innerText === 'Mia'", timeout=10_000
        )
        assert page.input_value("#rc-role input, #rc-role textarea") == "Guest"
        page.click("#rc-tab-scene-button")
        assert page.query_selector("#rc-image img") is not None  # the portrait

        page.fill("#rc-text textarea", "Coal! Drop that fish right now!")
        page.press("#rc-text textarea", "Enter")
        page.wait_for_function(
            "[...document.querySelectorAll('#rc-chat [data-testid=\"bot\"]')]"
            ".some(e => e.innerText.includes('Drop that fish'))",
            timeout=20_000,
        )
        page.wait_for_function(
            "document.querySelector('#rc-image img')?.src.includes('coal')", timeout=10_000
        )
        assert "Drop that fish" in page.inner_text("#rc-caption") or "coal" in page.inner_text(
            "#rc-caption"
        )
        assert page.input_value("#rc-text textarea") == ""  # the box was emptied
        canon = page.inner_text("#rc-canon")  # the canon behind the reply, as its lines
        assert "canon behind this reply" in canon and "Coal! Drop that fish" in canon

        # a refused message: the notice shows and nothing is lost
        page.fill("#rc-text textarea", "x" * 2500)
        page.press("#rc-text textarea", "Enter")
        page.wait_for_selector("text=message too long", timeout=10_000)
        assert len(page.input_value("#rc-text textarea")) == 2500
        assert len(_bot_texts(page)) == 1

        # the voice toggle: the next reply gets an audio player that plays a WAV
        page.click("#rc-voice input")
        page.wait_for_selector("#rc-voice-status >> text=replies are spoken", timeout=20_000)
        page.fill("#rc-text textarea", "Good evening, Mia.")
        page.press("#rc-text textarea", "Enter")
        player = '#rc-chat [data-testid="waveform-Audio"]'
        page.wait_for_selector(player, timeout=30_000)
        link = page.get_attribute('#rc-chat a[data-testid="download-link"]', "href")
        assert link and link.endswith(".wav"), link
        got = page.request.get(link)
        assert got.ok and got.body()[:4] == b"RIFF" and len(got.body()) > 10_000

        page.screenshot(path=str(ARTIFACTS / "web-chat.png"), full_page=True)
        browser.close()
