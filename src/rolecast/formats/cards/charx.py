"""CHARX: a zip with ``card.json`` (V3) at its root and the card's assets as members
(``embeded://assets/icon/images/main.png``), read through
:class:`~rolecast.character.safezip.SafeZip` with the caps in :mod:`.limits`, and written.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from ...character.safezip import SafeZip
from ...errors import ParseError
from . import limits
from .fields import load_json
from .from_card import IMAGE_EXTS, image_name

ZIP_MAGIC = b"PK\x03\x04"
CARD_JSON = "card.json"
ASSET_SCHEMES = ("embeded://", "embedded://")  # the spec's spelling, and the correct one


def open_charx(data: bytes, path: str | Path | None) -> SafeZip:
    """A CHARX's zip, checked; every problem with it is a ``ParseError`` naming ``path``."""
    return SafeZip(
        data,
        lambda message: ParseError(message, path),
        max_members=limits.MAX_MEMBERS,
        max_central_dir=limits.MAX_CENTRAL_DIR,
        max_member=limits.MAX_MEMBER,
        max_total=limits.MAX_TOTAL,
    )


def charx_card(zipped: SafeZip, path: str | Path | None) -> Any:
    """The card object in a CHARX's ``card.json``."""
    if CARD_JSON not in zipped:
        raise ParseError("CHARX zip holds no card.json at its root", path)
    return load_json(zipped.read(CARD_JSON), CARD_JSON, path)


def charx_images(
    zipped: SafeZip,
    assets: list[dict[str, str]],
    images: dict[str, bytes],
    taken: set[str],
    imported: set[int],
) -> tuple[bytes | None, str]:
    """Read a CHARX's image assets into ``images``; returns the icon's bytes and extension.

    ``taken`` holds the (lower-case) file names already used; ``imported`` gets the index of
    every asset read, so that the card keeps only the others.
    """
    icon_index: int | None = None
    found: list[tuple[int, str, str]] = []  # asset index, member, extension
    for i, asset in enumerate(assets):
        uri = asset.get("uri", "")
        prefix = next((p for p in ASSET_SCHEMES if uri.startswith(p)), None)
        if prefix is None:
            continue
        member = uri[len(prefix) :]
        if member not in zipped:
            continue
        ext = PurePosixPath(member).suffix.lower().lstrip(".") or asset.get("ext", "").lower()
        if ext not in IMAGE_EXTS:
            continue
        found.append((i, member, ext))
        if asset.get("type") == "icon" and (
            icon_index is None
            or asset.get("name") == "main"
            and assets[icon_index].get("name") != "main"
        ):
            icon_index = i
    icon: bytes | None = None
    icon_ext = "png"
    for i, member, ext in found:
        imported.add(i)
        if i == icon_index:
            icon, icon_ext = zipped.read(member), ext
        else:
            images[image_name(PurePosixPath(member).name, taken)] = zipped.read(member)
    if icon is None:  # no icon listed: a conventional icon member will do
        for name in sorted(zipped.names):
            ext = PurePosixPath(name).suffix.lower().lstrip(".")
            if name.startswith("assets/icon/") and ext in IMAGE_EXTS:
                return zipped.read(name), ext
    return icon, icon_ext


def charx_bytes(card_json: bytes, files: list[tuple[str, bytes]]) -> bytes:
    """A CHARX zip: ``card.json`` and then ``files`` (member name, bytes), deflated."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(CARD_JSON, card_json)
        for member, raw in files:
            zf.writestr(member, raw)
    return buf.getvalue()
