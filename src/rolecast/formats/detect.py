"""Which format a file is in, and one entry point to import or export any of them.

Import formats: ``card`` (character card JSON, PNG or CHARX; V1, V2, V3) and ``chatharuhi``
(story folder, role JSONL, role zip, or ``hf://OWNER/DATASET/ROLE``). Detection looks at the
bytes, not only the name. Nothing here writes: the caller saves the result atomically.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from ..character.model import Character
from ..errors import ParseError
from .chatharuhi import HF_PREFIX, MAX_FILE, ImportResult

IMPORT_FORMATS = ("card", "chatharuhi")
EXPORT_FORMATS = ("card-png", "card-json", "charx", "chatharuhi-jsonl")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def detect(source: str) -> str:
    """``card`` or ``chatharuhi`` for a path or an ``hf://`` address; a clear error otherwise."""
    if source.startswith(HF_PREFIX):
        return "chatharuhi"
    p = Path(source)
    if p.is_dir():
        if (p / "texts").is_dir():
            return "chatharuhi"
        raise ParseError("a folder that is not a ChatHaruhi story folder (it has no texts/)", p)
    if not p.is_file():
        raise ParseError("no such file or folder", p)
    with open(p, "rb") as f:
        head = f.read(8)
    if head.startswith(PNG_SIGNATURE):
        return "card"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(p) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise ParseError(f"not a readable zip: {exc}", p) from None
        if "card.json" in names:
            return "card"
        if any(n.endswith("chroma.sqlite3") for n in names):
            return "chatharuhi"
        if any(n.endswith("character.toml") for n in names):
            raise ParseError("a rolecast package: install it with 'rolecast install'", p)
        raise ParseError("a zip that is neither a CHARX card nor a ChatHaruhi role zip", p)
    if p.suffix.lower() == ".jsonl":
        return "chatharuhi"
    if p.suffix.lower() == ".json":
        return "card"
    raise ParseError(
        "cannot tell the format: name it, as in 'rolecast import card PATH' or "
        "'rolecast import chatharuhi PATH'",
        p,
    )


def import_source(
    source: str,
    fmt: str | None = None,
    cid: str | None = None,
    *,
    speaker: str | None = None,
    user_role: str | None = None,
) -> ImportResult:
    """Read a character from ``source`` in ``fmt`` (detected when None).

    ``speaker`` picks the character among a ChatHaruhi role's speakers (a card holds one
    character: naming another is an error); ``user_role`` is the role the user speaks as.
    """
    fmt = fmt or detect(source)
    choice = {"speaker": speaker, "user_role": user_role}
    if fmt == "chatharuhi":
        from . import chatharuhi

        if source.startswith(HF_PREFIX):
            return chatharuhi.import_hf(source, cid, speaker=speaker, user_role=user_role)
        return chatharuhi.import_chatharuhi(source, cid, **choice)
    if fmt == "card":
        from . import cards

        p = Path(source)
        if not p.is_file():
            raise ParseError("no such file", p)
        if p.stat().st_size > MAX_FILE:
            raise ParseError(f"larger than {MAX_FILE} bytes", p)
        card = cards.import_card(p.read_bytes(), p.name, cid, **choice)
        return ImportResult(card.character, images=card.images, warnings=card.warnings)
    raise ParseError(f"unknown format {fmt!r}; known: {', '.join(IMPORT_FORMATS)}", source)


def export_bytes(
    character: Character,
    fmt: str,
    images_dir: Path | None,
    embed: Callable[[list[str]], Sequence[Sequence[float]]] | None = None,
) -> bytes:
    """``character`` in an export format, as bytes for the caller to write."""
    if fmt == "chatharuhi-jsonl":
        from .chatharuhi import export_role_jsonl

        return export_role_jsonl(character, embed)
    if fmt in ("card-png", "card-json", "charx"):
        from .cards import export_card

        kinds: dict[str, Literal["png", "json", "charx"]] = {
            "card-png": "png",
            "card-json": "json",
            "charx": "charx",
        }
        return export_card(character, images_dir, kinds[fmt])
    raise ParseError(f"unknown export format {fmt!r}; known: {', '.join(EXPORT_FORMATS)}")
