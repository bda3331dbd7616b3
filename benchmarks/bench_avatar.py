"""The talking avatar's frame rate in Chromium (issue 22: >= 30 fps while talking, 2 cores).

    python benchmarks/bench_avatar.py [--replies 4] [--kind sprite|vrm|both]

`rolecast web` runs as a process (echo backend, espeak voice) for a character whose avatar is a
sprite drafted from a drawn face, or the minimal VRM model the tests build (three.js through
SwiftShader: no GPU here). Debian's Chromium, through Playwright, turns the voice on and sends
``--replies`` lines; while each reply plays, the page's own animation loop records its frame
times (window.rolecastAvatar.talkTimes). Reported per kind: frames per second while talking
(median over replies), and the frame interval's median, p95 and max over all frames.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_web import free_port  # this folder is on sys.path when run as a script

ROOT = Path(__file__).resolve().parent.parent
LINES = [
    "Haha, that's wonderful news! Coal came home, and he brought a fish for the soup tonight.",
    "The rain has stopped, so I will open the stall by the bridge again before the boats come.",
    "Two coins for the umbrella, and I will mend the hole so well you will never find it again.",
    "Why do I light the lamp? So the late boats find their way home. Somebody has to do it.",
]
CHROMIUM = ["--headless", "--no-sandbox", "--no-first-run", "--disable-background-networking"]
AUTOPLAY = ["--autoplay-policy=no-user-gesture-required"]
WEBGL = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]


def make_character(home: Path, kind: str) -> None:
    from PIL import Image, ImageDraw

    from rolecast.avatar import avatar_toml, draft_sprites
    from rolecast.character.model import Character, Line, Scene
    from rolecast.character.package import save_character

    im = Image.new("RGB", (200, 240), (120, 170, 220))
    draw = ImageDraw.Draw(im)
    draw.ellipse((30, 30, 170, 210), fill=(245, 215, 190))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    c = Character(
        id="mia",
        name="Mia",
        persona="You are Mia, who runs a noodle stall by the bridge.",
        language="en",
        user_role="Guest",
        scenes=[Scene("s1", "the cat", (Line("Mia", "Coal! Drop that fish."),))],
        portrait="images/portrait.png",
    )
    folder = home / "characters" / "mia"
    save_character(c, folder, images={"portrait.png": buf.getvalue()})
    out = folder / "avatar"
    out.mkdir()
    if kind == "sprite":
        for name, frame in draft_sprites(im, (75, 150, 50, 24), [(60, 90, 35, 30)]).items():
            frame.save(out / f"{name}.png")
        (out / "avatar.toml").write_text(avatar_toml(blink=True), "utf-8")
    else:
        sys.path.insert(0, str(ROOT / "tests"))
        from minimal_vrm import minimal_vrm

        minimal_vrm(out / "face.vrm")
        (out / "avatar.toml").write_text('kind = "vrm"\nmodel = "face.vrm"\n', "utf-8")


def measure(kind: str, replies: int) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    home = Path(tempfile.mkdtemp(prefix="rolecast-bench-avatar-"))
    make_character(home, kind)
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rolecast.cli.main",
            "web",
            "mia",
            "--backend",
            "echo",
            "--port",
            str(port),
        ],
        env={**os.environ, "ROLECAST_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    args = CHROMIUM + AUTOPLAY + (WEBGL if kind == "vrm" else ["--disable-gpu"])
    fps, gaps = [], []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            deadline = time.monotonic() + 60
            while True:
                try:
                    page.goto(f"http://127.0.0.1:{port}/")
                    break
                except Exception:  # noqa: BLE001 - not listening yet
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.3)
            page.wait_for_selector("#rc-avatar .rc-stage", timeout=60_000)
            page.click("#rc-voice input")
            page.wait_for_selector("#rc-voice-status >> text=replies are spoken", timeout=30_000)
            for line in (LINES * replies)[:replies]:
                page.evaluate("window.rolecastAvatar.talkTimes = []")
                said = page.get_attribute("#rc-avatar .rc-stage", "data-say")
                page.fill("#rc-text textarea", line)
                page.press("#rc-text textarea", "Enter")
                page.wait_for_function(
                    "(s) => { const st = document.querySelector('#rc-avatar .rc-stage');"
                    " return st && st.dataset.say && st.dataset.say !== s; }",
                    arg=said,
                    timeout=60_000,
                )
                page.wait_for_function(
                    "window.rolecastAvatar.talkTimes.length > 5 && window.rolecastAvatar.playing"
                    " && window.rolecastAvatar.playing.ended",
                    timeout=60_000,
                )
                fps.append(page.evaluate("window.rolecastAvatar.fps()"))
                times = page.evaluate("window.rolecastAvatar.talkTimes")
                gaps += [b - a for a, b in zip(times[:-1], times[1:], strict=True) if b - a < 1000]
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    gaps.sort()
    return {
        "fps": statistics.median(fps),
        "frame_ms_p50": statistics.median(gaps),
        "frame_ms_p95": gaps[int(0.95 * (len(gaps) - 1))],
        "frame_ms_max": gaps[-1],
        "frames": len(gaps),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replies", type=int, default=4)
    ap.add_argument("--kind", choices=["sprite", "vrm", "both"], default="both")
    args = ap.parse_args(argv)
    kinds = ["sprite", "vrm"] if args.kind == "both" else [args.kind]
    print("| avatar | fps while talking (median) | frame ms p50 | p95 | max | frames |")
    print("|---|---|---|---|---|---|")
    for kind in kinds:
        r = measure(kind, args.replies)
        print(
            f"| {kind} | {r['fps']:.1f} | {r['frame_ms_p50']:.1f} | {r['frame_ms_p95']:.1f} "
            f"| {r['frame_ms_max']:.1f} | {r['frames']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
