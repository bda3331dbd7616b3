"""Card export: a :class:`Character` as a V3 card in JSON, PNG (the portrait, or a
placeholder, with ``ccv3`` and ``chara`` text chunks) or CHARX (the portrait as the icon
and the package's images as assets). Reads images from the package; writes nothing.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Literal

from ...character.model import Character
from ...errors import InputError, PackageError, ParseError
from . import limits
from .charx import charx_bytes
from .fields import json_bytes
from .from_card import IMAGE_EXTS
from .png import PNG_SIGNATURE, is_card_chunk, placeholder_png, png_bytes, png_chunks
from .to_card import card_v2, card_v3

Format = Literal["json", "png", "charx"]


def _read_image(images_dir: Path | None, name: str) -> bytes | None:
    if images_dir is None or not name:
        return None
    path = images_dir / name
    if not path.is_file():
        return None
    if path.stat().st_size > limits.MAX_MEMBER:
        raise PackageError(
            f"{path}: image larger than {limits.MAX_MEMBER} bytes cannot be exported"
        )
    return path.read_bytes()


def _portrait_chunks(character: Character, images_dir: Path | None) -> list[tuple[bytes, bytes]]:
    name = PurePosixPath(character.portrait).name if character.portrait else ""
    raw = _read_image(images_dir, name)
    if raw is not None and raw.startswith(PNG_SIGNATURE):
        try:
            return png_chunks(raw, name)
        except ParseError:
            pass  # a broken portrait: a plain one instead
    return png_chunks(placeholder_png(character.name))


def _export_png(character: Character, images_dir: Path | None) -> bytes:
    v3 = card_v3(character, [{"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"}])
    chunks = [c for c in _portrait_chunks(character, images_dir) if not is_card_chunk(*c)]
    texts = [
        (b"tEXt", b"ccv3\0" + base64.b64encode(json_bytes(v3))),
        (b"tEXt", b"chara\0" + base64.b64encode(json_bytes(card_v2(v3)))),
    ]
    return png_bytes(chunks[:-1] + texts + chunks[-1:])


def _package_images(images_dir: Path | None) -> Iterator[Path]:
    if images_dir is None or not images_dir.is_dir():
        return
    for f in sorted(images_dir.iterdir()):
        ext = f.suffix.lower().lstrip(".")
        if f.is_file() and not f.name.startswith(".") and ext in IMAGE_EXTS:
            yield f


def _export_charx(character: Character, images_dir: Path | None) -> bytes:
    files: list[tuple[str, bytes]] = []
    assets: list[dict[str, str]] = []
    portrait = PurePosixPath(character.portrait).name if character.portrait else ""
    icon = _read_image(images_dir, portrait)
    if icon is not None and icon.startswith(PNG_SIGNATURE):
        try:  # an imported PNG card's own (stale) card chunks stay behind
            icon = png_bytes([c for c in png_chunks(icon) if not is_card_chunk(*c)])
        except ParseError:
            pass
    if icon is not None:
        ext = PurePosixPath(portrait).suffix.lower().lstrip(".") or "png"
        member = f"assets/icon/images/main.{ext}"
        files.append((member, icon))
        assets.append({"type": "icon", "uri": f"embeded://{member}", "name": "main", "ext": ext})
    for f in _package_images(images_dir):
        if f.name == portrait:
            continue
        member = f"assets/other/images/{f.name}"
        files.append((member, _read_image(images_dir, f.name) or b""))
        ext = f.suffix.lower().lstrip(".")
        assets.append({"type": "other", "uri": f"embeded://{member}", "name": f.stem, "ext": ext})
    return charx_bytes(json_bytes(card_v3(character, assets)), files)


def export_card(character: Character, images_dir: Path | None, fmt: Format = "json") -> bytes:
    """``character`` as a V3 card: ``json``, ``png`` (with a V2 copy for older readers) or
    ``charx``. Reads the portrait and images from ``images_dir``; writes nothing."""
    if fmt == "json":
        return json_bytes(card_v3(character))
    if fmt == "png":
        return _export_png(character, images_dir)
    if fmt == "charx":
        return _export_charx(character, images_dir)
    raise InputError(f"unknown card format {fmt!r}; use json, png or charx")
