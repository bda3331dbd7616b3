"""A character's avatar: sprites ("PNGtuber" style) in the package's ``avatar/`` folder.

    avatar/avatar.toml
        kind = "sprite"
        idle = "idle.png"                  # the mouth closed, eyes open
        blink = "blink.png"                # optional: eyes closed
        [mouth]
        closed = "idle.png"
        half = "half.png"
        open = "open.png"
        [expressions]                      # optional: happy, angry, sad, surprised
        happy = "happy.png"

The mouth may also have a picture per vowel (``a i u e o``): where a Japanese reply's
timeline says which vowel is said, the page shows it in place of ``half`` or ``open``.

    avatar/avatar.toml
        kind = "vrm"
        model = "model.vrm"                # a VRM 0.x or 1.0 model: its aa ih ou ee oh and
                                           # blink expressions move; rendered by three.js

A page shows ``mouth[shape]`` for the mouth timeline's shape at the audio's current time
(``voice.mouth``), ``blink`` now and then, ``idle`` otherwise, and the reply's expression
(``avatar.expression``) while it is said. ``draft_sprites`` makes the
frames from a portrait: the mouth region painted over in the skin's tone and a mouth drawn
half and fully open, the eyes closed with a line; ``rolecast avatar make NAME --from-portrait``
writes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import tomllib
from ..errors import InputError

FOLDER = "avatar"
TOML = "avatar.toml"
SHAPES = ("closed", "half", "open")
VISEMES = ("a", "i", "u", "e", "o")
EXPRESSIONS = ("happy", "angry", "sad", "surprised")
KINDS = ("sprite", "vrm")
KEYS = {"kind", "idle", "blink", "mouth", "expressions", "model"}

Box = tuple[int, int, int, int]  # x, y, width, height in pixels


@dataclass(frozen=True)
class SpriteAvatar:
    folder: Path
    idle: str
    mouth: dict[str, str]
    blink: str | None = None
    expressions: dict[str, str] = field(default_factory=dict)

    def path(self, name: str) -> Path:
        return self.folder / name

    def frame(self, shape: str = "closed", blinking: bool = False) -> Path:
        """The picture for a mouth shape (and closed eyes, where there is a blink frame and
        the mouth is closed)."""
        if blinking and self.blink and shape == "closed":
            return self.path(self.blink)
        return self.path(self.mouth.get(shape) or self.idle)


@dataclass(frozen=True)
class VrmAvatar:
    folder: Path
    model: str

    def path(self, name: str) -> Path:
        return self.folder / name


Avatar = SpriteAvatar | VrmAvatar


def _image_name(value: Any, folder: Path, key: str) -> str:
    where = f"{folder / TOML}: {key}"
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where} must name a picture in {folder}")
    path = (folder / value).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise InputError(f"{where}: {value!r} is outside the avatar folder")
    if not path.is_file():
        raise InputError(f"{where}: {value!r} is not in {folder}")
    return value


def read_avatar(package: Path) -> Avatar | None:
    """The package's avatar, or None when it has none; an InputError naming the file and the
    key for anything wrong."""
    folder = package / FOLDER
    path = folder / TOML
    if not path.is_file():
        return None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{path} cannot be read: {exc}") from None
    extra = sorted(set(data) - KEYS)
    if extra:
        raise InputError(f"{path}: unknown key {extra[0]!r}; known: {', '.join(sorted(KEYS))}")
    kind = data.get("kind", "sprite")
    if kind not in KINDS:
        raise InputError(f"{path}: kind {kind!r} is not one of {', '.join(KINDS)}")
    if kind == "vrm":
        return _vrm(data, folder, path)
    if "model" in data:
        raise InputError(f'{path}: model is for kind = "vrm"; a sprite avatar names pictures')
    mouth = data.get("mouth", {})
    if not isinstance(mouth, dict) or set(mouth) - set(SHAPES) - set(VISEMES):
        raise InputError(f"{path}: [mouth] takes {', '.join(SHAPES + VISEMES)}")
    expressions = data.get("expressions", {})
    if not isinstance(expressions, dict) or set(expressions) - set(EXPRESSIONS):
        raise InputError(f"{path}: [expressions] takes {', '.join(EXPRESSIONS)}")
    idle = _image_name(data.get("idle"), folder, "idle")
    return SpriteAvatar(
        folder,
        idle,
        {k: _image_name(v, folder, f"mouth.{k}") for k, v in mouth.items()},
        _image_name(data["blink"], folder, "blink") if "blink" in data else None,
        {k: _image_name(v, folder, f"expressions.{k}") for k, v in expressions.items()},
    )


def _vrm(data: dict[str, Any], folder: Path, path: Path) -> VrmAvatar:
    extra = sorted(set(data) - {"kind", "model"})
    if extra:
        raise InputError(f'{path}: {extra[0]!r} is for sprites; kind = "vrm" takes model')
    model = _image_name(data.get("model"), folder, "model")
    with open(folder / model, "rb") as f:
        magic = f.read(4)
    if magic != b"glTF":
        raise InputError(
            f"{path}: model {model!r} is not a VRM (a binary glTF starting with 'glTF')"
        )
    return VrmAvatar(folder, model)


def parse_box(text: str, what: str = "--mouth") -> Box:
    """``X,Y,W,H`` in pixels."""
    parts = text.replace(" ", "").split(",")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        raise InputError(f"{what} takes X,Y,WIDTH,HEIGHT in pixels, like 120,210,60,24: {text!r}")
    x, y, w, h = (int(p) for p in parts)
    if w < 2 or h < 2:
        raise InputError(f"{what} {text!r}: the region is too small")
    return x, y, w, h


def check_box(box: Box, size: tuple[int, int], what: str) -> None:
    x, y, w, h = box
    if x + w > size[0] or y + h > size[1]:
        raise InputError(
            f"{what} {x},{y},{w},{h} reaches outside the portrait ({size[0]}x{size[1]} pixels)"
        )


def _skin(image: Any, box: Box) -> tuple[int, int, int]:
    """The tone around a region: the median colour of a ring just outside it."""
    import numpy as np

    x, y, w, h = box
    pad = max(2, min(w, h) // 4)
    arr = np.asarray(image.convert("RGB"))
    y0, y1 = max(0, y - pad), min(arr.shape[0], y + h + pad)
    x0, x1 = max(0, x - pad), min(arr.shape[1], x + w + pad)
    ring = np.ones((y1 - y0, x1 - x0), bool)
    ring[y - y0 : y - y0 + h, x - x0 : x - x0 + w] = False
    pixels = arr[y0:y1, x0:x1][ring]
    med = np.median(pixels, axis=0) if len(pixels) else np.array([230, 200, 180])
    return int(med[0]), int(med[1]), int(med[2])


def draft_sprites(portrait: Any, mouth: Box, eyes: Sequence[Box] = ()) -> dict[str, Any]:
    """Sprite frames drawn over a portrait (a PIL image): ``closed`` (a line), ``half`` and
    ``open`` (an ellipse a third and all of the region's height), ``blink`` (each eye region
    painted over, a closing line drawn). Nothing outside the regions changes."""
    from PIL import ImageDraw

    base = portrait.convert("RGBA")
    check_box(mouth, base.size, "--mouth")
    for box in eyes:
        check_box(box, base.size, "--eyes")
    x, y, w, h = mouth
    skin = _skin(base, mouth)
    lip = (150, 60, 60, 255)
    inside = (90, 25, 30, 255)
    frames = {}
    for shape, share in (("closed", 0.0), ("half", 0.45), ("open", 1.0)):
        im = base.copy()
        draw = ImageDraw.Draw(im)
        draw.rectangle((x, y, x + w - 1, y + h - 1), fill=(*skin, 255))
        mid = y + h // 2
        if share == 0:
            draw.line((x + w // 5, mid, x + w - 1 - w // 5, mid), fill=lip, width=max(1, h // 8))
        else:
            half = max(1, int(h * share / 2) - 1)
            draw.ellipse(
                (x + w // 6, mid - half, x + w - 1 - w // 6, mid + half),
                fill=inside,
                outline=lip,
                width=max(1, h // 10),
            )
        frames[shape] = im
    if eyes:
        im = frames["closed"].copy()
        draw = ImageDraw.Draw(im)
        for ex, ey, ew, eh in eyes:
            tone = _skin(base, (ex, ey, ew, eh))
            draw.rectangle((ex, ey, ex + ew - 1, ey + eh - 1), fill=(*tone, 255))
            draw.arc(
                (ex, ey + eh // 4, ex + ew - 1, ey + eh - 1 - eh // 4),
                0,
                180,
                fill=(40, 30, 30, 255),
                width=max(1, eh // 8),
            )
        frames["blink"] = im
    return frames


def guess_regions(portrait: Any) -> tuple[Box, list[Box]] | None:
    """The mouth and eye regions, from the largest anime face ``animeface`` finds (its face
    box: the mouth at 75-88% of its height, the eyes at 40-55%); None when none is found or
    the package is not installed."""
    try:
        import animeface
    except ImportError:
        return None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        faces = animeface.detect(portrait.convert("RGB"))
    if not faces:
        return None
    face = max(faces, key=lambda f: f.face.pos.width * f.face.pos.height)
    fx, fy, fw, fh = face.face.pos.x, face.face.pos.y, face.face.pos.width, face.face.pos.height
    mouth = (
        fx + int(fw * 0.36),
        fy + int(fh * 0.74),
        max(2, int(fw * 0.28)),
        max(2, int(fh * 0.14)),
    )
    eyes = [
        (fx + int(fw * 0.14), fy + int(fh * 0.38), max(2, int(fw * 0.28)), max(2, int(fh * 0.17))),
        (fx + int(fw * 0.58), fy + int(fh * 0.38), max(2, int(fw * 0.28)), max(2, int(fh * 0.17))),
    ]
    return mouth, eyes


def avatar_toml(blink: bool) -> str:
    lines = ['kind = "sprite"', 'idle = "closed.png"']
    if blink:
        lines.append('blink = "blink.png"')
    lines += ["", "[mouth]"] + [f'{s} = "{s}.png"' for s in SHAPES]
    return "\n".join(lines) + "\n"
