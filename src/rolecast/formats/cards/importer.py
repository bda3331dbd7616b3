"""Card import: a card file's bytes (JSON, PNG or CHARX, told apart by content) to a
:class:`Character` and the files for its ``images/`` folder; and the fuzz target.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ...character.model import Character
from ...character.safezip import SafeZip
from ...errors import InputError, ParseError
from ..injection import injection_warnings
from . import limits
from .charx import ZIP_MAGIC, charx_card, charx_images, open_charx
from .fields import assets as card_assets
from .fields import card_data, load_json, opt_dict
from .from_card import from_card, image_name
from .payload import restore
from .png import PNG_SIGNATURE, card_from_png


@dataclass
class CardImport:
    """An imported card: the character (not yet saved), files for its ``images/`` folder,
    and warnings for the user (card text that looks like a prompt injection)."""

    character: Character
    images: dict[str, bytes] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def import_card(
    data: bytes,
    filename: str,
    cid: str | None = None,
    *,
    speaker: str | None = None,
    user_role: str | None = None,
) -> CardImport:
    """A character from a card file's bytes: JSON, PNG or CHARX, told apart by content.

    ``filename`` names the file in errors and in the description; ``cid`` is the package id
    (default: the exported id, else one made from the card name). ``user_role`` is the role
    the user speaks as (``{{user}}`` becomes it; default ``user``); a card holds one
    character, so a ``speaker`` that does not name it is an :class:`InputError`.
    """
    if user_role is not None and not user_role.strip():
        raise InputError("the user role must not be empty")
    imported = _read(bytes(data), filename, cid, user_role.strip() if user_role else None)
    c = imported.character
    if speaker is not None and not _names(speaker, c.name, *c.aliases):
        raise InputError(
            f"a character card holds one character, {c.name}; {speaker!r} is not it "
            "(leave the speaker out for a card)"
        )
    return imported


def _names(asked: str, *names: str) -> bool:
    """``asked`` is one of ``names`` but for case and spaces."""
    want = "".join(asked.split()).casefold()
    return any("".join(n.split()).casefold() == want for n in names)


def _read(data: bytes, filename: str, cid: str | None, user: str | None) -> CardImport:
    path = filename
    if len(data) > limits.MAX_FILE:
        raise ParseError(f"card file larger than the {limits.MAX_FILE} byte limit", path)
    if data.startswith(PNG_SIGNATURE[:4]):
        obj, png = card_from_png(data, path)
        return _character(obj, filename, cid, user, png=png)
    if data.startswith(ZIP_MAGIC) or data.startswith(b"PK\x05\x06"):
        with open_charx(data, path) as zipped:
            return _character(charx_card(zipped, path), filename, cid, user, zipped=zipped)
    return _character(load_json(data, "card JSON", path), filename, cid, user)


def _character(
    obj: Any,
    filename: str,
    cid: str | None,
    user: str | None,
    png: bytes | None = None,
    zipped: SafeZip | None = None,
) -> CardImport:
    """The character and images of a card object read from ``filename``; ``user`` the user
    role asked for; ``png`` is the picture of a PNG card (its card chunks removed),
    ``zipped`` the zip of a CHARX."""
    path: str | Path = filename
    spec, fields = card_data(obj, path)
    where = "data." if spec else ""
    assets = card_assets(fields, where, path)
    payload = opt_dict(fields, "extensions", where, path).get("rolecast")

    if payload is not None:
        character = restore(payload, fields, cid, path)
        if user is not None:
            character.user_role = user
        portrait_name = PurePosixPath(character.portrait).name if character.portrait else ""
    else:
        portrait_name = ""
    images: dict[str, bytes] = {}
    taken: set[str] = {portrait_name.lower()} if portrait_name else set()
    # ``ccdefault:`` means the PNG itself: imported from a PNG, meaningless anywhere else
    imported = {i for i, a in enumerate(assets) if a.get("uri") == "ccdefault:"}
    icon: bytes | None = None
    icon_ext = "png"
    if png is not None:
        icon = png
    elif zipped is not None:
        icon, icon_ext = charx_images(zipped, assets, images, taken, imported)

    if payload is None:
        character = from_card(spec, fields, filename, cid, path, imported, user or "user")
        if icon is not None:
            portrait_name = image_name(f"portrait.{icon_ext}", taken)
            images[portrait_name] = icon
            character.portrait = f"images/{portrait_name}"
    elif icon is not None and portrait_name:
        # a PNG carries only a PNG portrait; a CHARX icon is the portrait whatever its type
        if png is None or portrait_name.lower().endswith(".png"):
            images[portrait_name] = icon
    sent = _sent_fields(fields, where) if payload is None else _payload_fields(character, where)
    return CardImport(character, images, injection_warnings(sent))


def _sent_fields(data: dict[str, Any], where: str) -> Iterator[tuple[str, str]]:
    """The text fields of a foreign card that reach the model, by name (checked already)."""
    for key in (
        "system_prompt",
        "description",
        "personality",
        "scenario",
        "first_mes",
        "mes_example",
        "post_history_instructions",
    ):
        if isinstance(data.get(key), str):
            yield f"{where}{key}", data[key]
    for key in ("alternate_greetings", "group_only_greetings"):
        for i, text in enumerate(data.get(key) or []):
            yield f"{where}{key}[{i}]", text
    book = data.get("character_book")
    entries = book.get("entries") if isinstance(book, dict) else None
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        if isinstance(entry, dict) and isinstance(entry.get("content"), str):
            yield f"{where}character_book.entries[{i}].content", entry["content"]


def _payload_fields(c: Character, where: str) -> Iterator[tuple[str, str]]:
    """What a rolecast payload sends to the model, named as its fields."""
    at = f"{where}extensions.rolecast"
    yield f"{at}.character.persona", c.persona
    for i, text in enumerate(c.greetings):
        yield f"{at}.character.greetings[{i}]", text
    for i, scene in enumerate(c.scenes):
        for j, line in enumerate(scene.lines):
            yield f"{at}.canon[{i}].lines[{j}].text", line.text
    for i, entry in enumerate(c.lore):
        yield f"{at}.lore[{i}].content", entry.content


def fuzz_one(data: bytes) -> None:
    """Fuzz target: import ``data``; a ``ParseError`` is the one allowed failure."""
    try:
        import_card(data, "fuzz-input")
    except ParseError:
        pass
