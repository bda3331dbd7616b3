"""The page a fan keeps open (issue 23), in Debian's Chromium through Playwright, at a desktop
size (1400x1000) and a phone's (390x844): the gallery picks a character, a reply's bubble has
its name and portrait, the canon panel lists the lines behind it, a frame-bearing line puts
the frame inline (it enlarges on click), a card dropped on the page is imported, the keyboard
works, the dark theme holds, and the phone page has no horizontal scroll. Screenshots are kept
in ``test-artifacts/``."""

from __future__ import annotations

import base64

import pytest
from test_web_browser import ARGS, ARTIFACTS, CHROMIUM, _browser_or_skip, server  # noqa: F401

from rolecast.formats.cards import export_card

from conftest import make_english_character

pytestmark = pytest.mark.e2e


def _card_png() -> bytes:
    c = make_english_character()
    c.id, c.name = "nell", "Nell"
    c.greetings = ["The ferry leaves when I say it leaves."]
    return export_card(c, None, "png")


DROP = """([data, name]) => {
  const bytes = Uint8Array.from(atob(data), (ch) => ch.charCodeAt(0));
  const files = new DataTransfer();
  files.items.add(new File([bytes], name, { type: "image/png" }));
  const target = document.querySelector("#rc-chat");
  for (const type of ["dragover", "drop"]) {
    const init = { dataTransfer: files, bubbles: true, cancelable: true };
    target.dispatchEvent(new DragEvent(type, init));
  }
}"""


def test_desktop_gallery_bubbles_canon_lines_inline_frame_drop_and_keys(server: str) -> None:  # noqa: F811
    sync_playwright = _browser_or_skip()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(server)
        page.wait_for_selector("#rc-header h3", timeout=30_000)
        page.wait_for_selector("#rc-status >> text=is ready", timeout=30_000)  # loading said

        # a card dropped anywhere on the page, the Characters tab never opened: imported, picked
        page.evaluate(DROP, [base64.b64encode(_card_png()).decode("ascii"), "nell.png"])
        page.wait_for_function(
            "document.querySelector('#rc-header h3')?.innerText === 'Nell'", timeout=20_000
        )
        assert page.url.startswith(server)  # the browser did not open the file instead

        # the gallery: cards with pictures, filtered as typed, a click picks
        page.click("#rc-tab-characters-button")
        page.wait_for_selector('.rc-card[data-id="mia"] img.rc-card-face', timeout=10_000)
        assert page.is_visible('.rc-card[data-id="xiaoman"]')
        page.fill("#rc-search input, #rc-search textarea", "mia")
        assert page.is_hidden('.rc-card[data-id="xiaoman"]')
        page.click('.rc-card[data-id="mia"]')
        page.wait_for_function(
            "document.querySelector('#rc-header h3')?.innerText === 'Mia'", timeout=10_000
        )

        # a reply: its bubble says whose it is, with her portrait; the frame inline
        page.click("#rc-tab-scene-button")
        page.fill("#rc-text textarea", "Coal! Drop that fish right now!")
        page.press("#rc-text textarea", "Enter")
        bot = "#rc-chat .rc-msg-reply"
        page.wait_for_selector(f"{bot} .rc-inline-frame img", timeout=20_000)
        assert page.inner_text(f"{bot} .rc-name") == "Mia"
        assert "portrait" in (page.get_attribute(f"{bot} img.rc-face", "src") or "")
        assert page.inner_text("#rc-chat .rc-msg-user .rc-name") == "Guest"
        # the canon as lines: the scene behind the reply, Mia's own lines marked
        page.wait_for_selector("#rc-canon .rc-scene .rc-line", timeout=10_000)
        assert page.query_selector_all("#rc-canon .rc-scene.rc-sent")
        assert "Drop that fish" in page.inner_text("#rc-canon .rc-scene[data-scene='frames']")
        assert page.query_selector("#rc-canon .rc-own")
        assert not page.is_visible("#rc-canon details.rc-scores div")  # scores folded away
        # the frame enlarges on click; Esc closes it
        page.click(f"{bot} .rc-inline-frame img")
        page.wait_for_selector(".rc-lightbox img", timeout=5_000)
        page.keyboard.press("Escape")
        page.wait_for_selector(".rc-lightbox", state="detached", timeout=5_000)

        # keys: Shift+Enter is a new line, Enter sends; the arrows swipe outside the box
        page.click("#rc-text textarea")
        page.keyboard.type("first line")
        page.keyboard.press("Shift+Enter")
        page.keyboard.type("second line")
        assert page.input_value("#rc-text textarea") == "first line\nsecond line"
        page.keyboard.press("Enter")
        page.wait_for_function(
            "[...document.querySelectorAll('#rc-chat .rc-msg-reply .rc-said')]"
            ".some(e => e.innerText.includes('second line'))",
            timeout=20_000,
        )
        page.click("#rc-regen")
        page.wait_for_selector("#rc-chat .rc-note >> text=2/2", timeout=20_000)
        page.click("#rc-header")  # focus out of the text box
        page.keyboard.press("ArrowLeft")
        page.wait_for_selector("#rc-chat .rc-note >> text=1/2", timeout=10_000)
        page.screenshot(path=str(ARTIFACTS / "page-desktop.png"), full_page=True)

        page.click("#rc-tab-characters-button")
        page.wait_for_selector("#rc-import-status >> text=imported Nell as nell", timeout=20_000)
        page.wait_for_selector('.rc-card[data-id="nell"]', timeout=10_000)
        # the gallery's import card opens a file chooser; a file that is no character gets
        # the importer's error and nothing is added
        with page.expect_file_chooser() as chooser:
            page.click(".rc-import-card")
        chooser.value.set_files(
            files=[{"name": "junk.png", "mimeType": "image/png", "buffer": b"not a card"}]
        )
        page.wait_for_selector("text=cannot tell the format", timeout=10_000)
        assert not page.query_selector('.rc-card[data-id="junk"]')

        # the dark theme, remembered across a reload
        page.click("#rc-theme")
        assert page.evaluate("document.body.classList.contains('dark')")
        page.reload()
        page.wait_for_selector("#rc-header h3", timeout=30_000)
        assert page.evaluate("document.body.classList.contains('dark')")
        # the reload goes on with the chat this browser had with Mia
        page.wait_for_selector("#rc-chat .rc-msg-reply >> text=Drop that fish", timeout=10_000)
        # and the character imported before the reload can be picked from its card
        page.click("#rc-tab-characters-button")
        page.click('.rc-card[data-id="nell"]')
        page.wait_for_function(
            "document.querySelector('#rc-header h3')?.innerText === 'Nell'", timeout=10_000
        )
        page.wait_for_selector("#rc-chat .rc-msg-reply", state="detached", timeout=10_000)
        page.screenshot(path=str(ARTIFACTS / "page-desktop-dark.png"), full_page=True)
        browser.close()


def test_a_phone_sized_page_has_no_horizontal_scroll(server: str) -> None:  # noqa: F811
    sync_playwright = _browser_or_skip()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
        page.goto(server)
        page.wait_for_selector("#rc-header h3", timeout=30_000)
        page.fill("#rc-text textarea", "Coal! Drop that fish right now!")
        page.press("#rc-text textarea", "Enter")
        page.wait_for_selector("#rc-chat .rc-msg-reply .rc-inline-frame img", timeout=20_000)
        page.wait_for_selector("#rc-canon .rc-line", timeout=10_000)
        widths = page.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert widths[0] <= widths[1], widths
        # the side panel comes under the chat, not beside it
        chat = page.query_selector("#rc-left").bounding_box()
        side = page.query_selector("#rc-side").bounding_box()
        assert chat and side and side["y"] >= chat["y"] + chat["height"] - 1
        page.screenshot(path=str(ARTIFACTS / "page-phone.png"), full_page=True)
        page.click("#rc-tab-characters-button")
        page.wait_for_selector(".rc-card", timeout=10_000)
        widths = page.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert widths[0] <= widths[1], widths
        page.screenshot(path=str(ARTIFACTS / "page-phone-gallery.png"), full_page=True)
        browser.close()
