"""The stage beside the chat: the character's avatar, which talks while a reply is heard.

``stage_html`` writes it (pure: paths in, HTML out); ``static/avatar.js``, loaded in the
page's head, moves it: each animation frame it reads the playing audio's time and shows the
mouth the timeline beside the WAV (``NAME.mouth.json``, written by ``ChatTab.speak_last``)
gives for that time. A sprite is its frames stacked, one shown; a VRM model is drawn on a
canvas by ``static/vrm.js`` (three.js and three-vrm, bundled from npm by ``scripts/build-web``).
"""

from __future__ import annotations

from html import escape
from importlib import resources
from pathlib import Path
from urllib.parse import quote

from ..avatar import Avatar, SpriteAvatar, VrmAvatar

FILE_ROUTE = "/gradio_api/file="  # Gradio's route for files under its allowed paths
TIMELINE = ".mouth.json"  # beside each spoken WAV: NAME.wav -> NAME.mouth.json

CSS = """
#rc-avatar .rc-stage { position: relative; margin: 0 auto; max-width: 100%; }
#rc-avatar .rc-stage img { display: block; max-width: 100%; max-height: 360px; margin: 0 auto;
  visibility: hidden; }
#rc-avatar .rc-stage img + img { position: absolute; top: 0; left: 0; right: 0; }
#rc-avatar .rc-stage img.on { visibility: visible; }
#rc-avatar .rc-stage { animation: rc-breathe 4.5s ease-in-out infinite;
  transform-origin: 50% 100%; }
#rc-avatar .rc-stage.talking { animation-duration: 3s; }
#rc-avatar .rc-stage canvas { width: 100%; height: 360px; display: block; }
#rc-avatar .rc-stage[data-error]::after { content: attr(data-error); color: #b00; }
@keyframes rc-breathe { 0%, 100% { transform: translateY(0) scale(1); }
  50% { transform: translateY(-1.5px) scale(1.006); } }
@media (prefers-reduced-motion: reduce) { #rc-avatar .rc-stage { animation: none; } }
"""


def static_dir() -> Path:
    return Path(str(resources.files("rolecast.web") / "static"))


def file_url(path: Path | str) -> str:
    return FILE_ROUTE + quote(str(path))


def timeline_path(wav: Path | str) -> Path:
    wav = Path(wav)
    return wav.with_name(wav.stem + TIMELINE)


def head_html() -> str:
    """What the page's <head> gets: the avatar's and the page's scripts (inline, so they need
    no route)."""
    scripts = [(static_dir() / name).read_text(encoding="utf-8") for name in ("avatar.js", "ui.js")]
    return "".join(f"<script>{s}</script>" for s in scripts)


def stage_html(avatar: Avatar | None, audio_dir: Path, say: str | None = None) -> str:
    """The stage for an avatar ("" for none): its frames or canvas, where timelines are
    found (``audio_dir``), and ``say``, the WAV of the reply to speak now (it plays once)."""
    if avatar is None:
        return ""
    data = {"timelines": file_url(audio_dir) + "/"}
    if say:
        data["say"] = file_url(say)
    if isinstance(avatar, VrmAvatar):
        data |= {
            "kind": "vrm",
            "model": file_url(avatar.path(avatar.model)),
            "vrm-script": file_url(static_dir() / "vrm.js"),
        }
        if not (static_dir() / "vrm.js").is_file():
            data["error"] = "VRM avatars need the renderer bundle: run scripts/build-web"
        inner = "<canvas></canvas>"
    else:
        data["kind"] = "sprite"
        inner = "".join(
            f'<img data-frame="{escape(name)}" src="{escape(file_url(avatar.path(file)))}"'
            f'{" class=on" if name == "idle" else ""} alt="">'
            for name, file in sprite_frames(avatar).items()
        )
    attrs = " ".join(f'data-{k}="{escape(v)}"' for k, v in data.items())
    return f'<div class="rc-stage" {attrs}>{inner}</div>'


def sprite_frames(avatar: SpriteAvatar) -> dict[str, str]:
    """Every frame the page may show, by name: idle first (it sizes the stage), the mouth's
    shapes and vowels, the blink and the expressions."""
    frames = {"idle": avatar.idle, **avatar.mouth}
    if avatar.blink:
        frames["blink"] = avatar.blink
    return frames | avatar.expressions
