"""The avatar talks in the web page, in Debian's Chromium (Playwright): a sprite drafted from a
portrait opens and closes its mouth while a spoken reply plays, following the timeline the
server wrote beside the WAV, and rests when it ends; a VRM model built here loads in three.js
and its mouth's blend shape follows the same timeline. Frame rates are measured while talking.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from minimal_vrm import minimal_vrm
from test_web_browser import ARGS, ARTIFACTS, CHROMIUM, _browser_or_skip, web_server

from rolecast.avatar import avatar_toml, draft_sprites
from rolecast.character.package import save_character

from conftest import make_english_character

pytestmark = pytest.mark.e2e

TALK = "Haha, that's wonderful news! Coal came home, and he brought a fish for the soup tonight."
AUTOPLAY = ["--autoplay-policy=no-user-gesture-required"]
WEBGL = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]


def _face() -> bytes:
    import io

    from PIL import Image, ImageDraw

    im = Image.new("RGB", (200, 240), (120, 170, 220))
    draw = ImageDraw.Draw(im)
    draw.ellipse((30, 30, 170, 210), fill=(245, 215, 190))
    draw.ellipse((65, 95, 90, 115), fill=(40, 40, 60))
    draw.ellipse((110, 95, 135, 115), fill=(40, 40, 60))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def _character(home: Path, avatar: str) -> Path:
    c = make_english_character()
    c.portrait = "images/portrait.png"
    folder = home / "characters" / "mia"
    save_character(c, folder, images={"portrait.png": _face()})
    out = folder / "avatar"
    out.mkdir()
    if avatar == "sprite":
        from PIL import Image

        frames = draft_sprites(
            Image.open(folder / "images" / "portrait.png"),
            (75, 150, 50, 24),
            [(60, 90, 35, 30), (105, 90, 35, 30)],
        )
        for name, im in frames.items():
            im.save(out / f"{name}.png")
        happy = frames["closed"].copy()  # the happy face: a tint the test can tell apart
        happy.paste((255, 200, 0, 255), (0, 0, 200, 12))
        happy.save(out / "happy.png")
        toml = avatar_toml(blink=True) + '\n[expressions]\nhappy = "happy.png"\n'
        (out / "avatar.toml").write_text(toml, "utf-8")
    else:
        minimal_vrm(out / "face.vrm")
        (out / "avatar.toml").write_text('kind = "vrm"\nmodel = "face.vrm"\n', "utf-8")
    return folder


def _talk(page, url: str) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """Turn the voice on, send the line, wait for the reply to be said to its end; the
    timeline the page followed."""
    page.wait_for_selector("#rc-avatar .rc-stage", timeout=30_000)
    page.click("#rc-voice input")
    page.wait_for_selector("#rc-voice-status >> text=replies are spoken", timeout=30_000)
    page.fill("#rc-text textarea", TALK)
    page.press("#rc-text textarea", "Enter")
    page.wait_for_function(
        "document.querySelector('#rc-avatar .rc-stage')?.dataset.say", timeout=60_000
    )
    page.wait_for_function("window.rolecastAvatar.samples.length > 0", timeout=20_000)
    page.wait_for_function(
        "window.rolecastAvatar.playing && window.rolecastAvatar.playing.ended", timeout=30_000
    )
    say = page.get_attribute("#rc-avatar .rc-stage", "data-say")
    assert say and say.endswith(".wav")
    say = url.rstrip("/") + say
    got = page.request.get(say.removesuffix(".wav") + ".mouth.json")
    assert got.ok, say
    timeline: dict = json.loads(got.body())  # type: ignore[type-arg]
    wav = page.request.get(say)
    assert wav.ok and wav.body()[:4] == b"RIFF"
    return timeline


def _check_followed(samples: list[list], timeline: dict) -> None:  # type: ignore[type-arg]
    """Every sample's mouth is the timeline's at that audio time, and the samples cover the
    reply from start to end."""
    fps, shapes = timeline["fps"], timeline["shapes"]
    times = [t for t, *_ in samples]
    assert times == sorted(times)
    assert times[0] < 0.2 and times[-1] > timeline["duration"] - 0.3
    for t, shape, *_ in samples:
        assert shape == shapes[min(int(t * fps), len(shapes) - 1)], (t, shape)


def test_a_sprite_avatar_talks_while_the_reply_plays(rolecast_home: Path) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("needs espeak-ng for the voice")
    sync_playwright = _browser_or_skip()
    _character(rolecast_home, "sprite")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with web_server(rolecast_home, "mia") as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS + AUTOPLAY)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        # the frames the page shows, as they change, recorded in the page itself
        page.add_init_script(
            """window.__shown = [];
            new MutationObserver(() => {
              const st = document.querySelector('#rc-avatar .rc-stage');
              const on = st && st.querySelector('img.on');
              const f = on && on.dataset.frame;
              if (f && f !== window.__shown.at(-1)) window.__shown.push(f);
            }).observe(document, {subtree: true, attributes: true, childList: true});"""
        )
        page.goto(url)
        page.wait_for_selector("#rc-avatar .rc-stage img.on", timeout=30_000)
        # the avatar stands in for the portrait: no portrait box beside it
        assert not page.is_visible("#rc-image img")
        timeline = _talk(page, url)
        assert timeline["expression"] == "happy"
        assert {"open", "closed"} <= set(timeline["shapes"])
        samples = page.evaluate("window.rolecastAvatar.samples")
        _check_followed(samples, timeline)
        shown = page.evaluate("window.__shown")
        assert {"open", "half"} & set(shown) and "happy" in shown, shown
        # the mouth moved many times, not once
        assert len(shown) >= 7, shown  # each entry a change of frame
        fps = page.evaluate("window.rolecastAvatar.fps()")
        # at rest once it has ended: the mouth closed (the happy face may linger a moment)
        page.wait_for_timeout(300)
        assert page.get_attribute("#rc-avatar .rc-stage", "data-mouth") == "closed"
        assert page.get_attribute("#rc-avatar .rc-stage", "data-frame") in {
            "closed",
            "blink",
            "happy",
            "idle",
        }
        page.wait_for_function(
            "['closed', 'blink'].includes(document.querySelector('#rc-avatar .rc-stage')"
            ".dataset.frame)",
            timeout=6_000,
        )
        page.screenshot(path=str(ARTIFACTS / "avatar-sprite.png"))
        (ARTIFACTS / "avatar-fps.txt").write_text(f"sprite {fps:.1f} fps while talking\n")
        assert fps >= 30, fps
        browser.close()


def test_a_vrm_avatar_moves_its_mouth_blend_shape(rolecast_home: Path) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("needs espeak-ng for the voice")
    sync_playwright = _browser_or_skip()
    from rolecast.web.stage import static_dir

    if not (static_dir() / "vrm.js").is_file():
        pytest.fail("the VRM renderer is not bundled: run scripts/build-web")
    _character(rolecast_home, "vrm")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    args = [a for a in ARGS if a != "--disable-gpu"] + AUTOPLAY + WEBGL
    with web_server(rolecast_home, "mia") as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=args)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url)
        page.wait_for_function(
            "window.rolecastAvatar && window.rolecastAvatar.vrm"
            " || document.querySelector('#rc-avatar .rc-stage')?.dataset.error",
            timeout=60_000,
        )
        error = page.get_attribute("#rc-avatar .rc-stage", "data-error")
        assert error is None, error
        assert page.evaluate("window.rolecastAvatar.vrm.vrm.meta.name") == "rolecast test face"
        # the mouth's weight, recorded with the audio's time at every rendered frame
        page.evaluate(
            """() => { const A = window.rolecastAvatar, v = A.vrm, up = v.update;
            window.__weights = [];
            v.update = (dt, s) => { up(dt, s);
              const m = A.playing;
              const mesh = v.vrm.scene.getObjectByName('face');
              if (m && !m.paused && !m.ended) window.__weights.push(
                [m.currentTime, s.opening, v.weights.aa, mesh.morphTargetInfluences[0]]); }; }"""
        )
        timeline = _talk(page, url)
        weights = page.evaluate("window.__weights")
        assert len(weights) > 20
        fps, opens = timeline["fps"], timeline["open"]
        for t, opening, aa, influence in weights:
            want = opens[min(int(t * fps), len(opens) - 1)]
            assert opening == pytest.approx(want, abs=1e-6)
            assert aa == pytest.approx(want, abs=1e-3)  # the expression's weight
            assert influence == pytest.approx(want, abs=1e-3)  # the mesh's blend shape
        assert max(w[3] for w in weights) > 0.6 and min(w[3] for w in weights) == 0
        vrm_fps = page.evaluate("window.rolecastAvatar.fps()")
        page.screenshot(path=str(ARTIFACTS / "avatar-vrm.png"))
        # another character (no avatar): the model is let go; back to Mia: drawn again
        page.click("#rc-tab-characters-button")
        page.click('.rc-card[data-id="xiaoman"]')
        page.wait_for_function("window.rolecastAvatar.vrm === null", timeout=20_000)
        page.click('.rc-card[data-id="mia"]')
        page.wait_for_function(
            "window.rolecastAvatar.vrm && document.querySelector('#rc-avatar .rc-stage')"
            ".contains(window.rolecastAvatar.vrm.canvas)",
            timeout=30_000,
        )
        with open(ARTIFACTS / "avatar-fps.txt", "a") as f:
            f.write(f"vrm {vrm_fps:.1f} fps while talking (SwiftShader)\n")
        assert vrm_fps >= 30, vrm_fps
        browser.close()
