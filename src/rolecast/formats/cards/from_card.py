"""A foreign card (one without a rolecast payload) mapped to a :class:`Character`.

The persona is composed from the system prompt, description, personality and scenario;
``first_mes`` and ``alternate_greetings`` become greetings; each ``<START>`` block of
``mes_example`` becomes a canon scene (a card with none, whose examples often sit in the
description, gets its first greeting as its one canon scene); the lorebook becomes lore;
``{{char}}`` and ``{{user}}`` are replaced. Card fields rolecast does not map are kept in
``Character.card`` so an export writes them back. Also here: package ids and ``images/``
file names made from card names and asset paths.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ...character.model import Character, Line, Scene
from ...character.package import safe_image_name, slug_id, valid_id
from ...errors import PackageError, ParseError
from ..chatharuhi import default_narrator, default_source
from .fields import assets as card_assets
from .fields import book_entries, opt_dict, opt_str, opt_str_list

IMAGE_EXTS = ("png", "jpg", "jpeg", "webp", "gif")
GREETING_SCENE = "greeting"  # the canon scene of a card with no example dialogue
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_CHAR_MACRO = re.compile(r"\{\{\s*char\s*\}\}|<bot>", re.IGNORECASE)
_USER_MACRO = re.compile(r"\{\{\s*user\s*\}\}|<user>", re.IGNORECASE)
_START = re.compile(r"<start>", re.IGNORECASE)
_SPEAKER = re.compile(
    r"^\s*(?P<speaker>\{\{\s*(?:char|user)\s*\}\}|<bot>|<user>"
    r"|[^\s:：*\"“”(\[{<>][^:：*\"“”\n]{0,39}?)\s*[:：][ \t]?(?P<text>.*)$",
    re.IGNORECASE,
)


def _macros(text: str, name: str, user: str) -> str:
    text = _CHAR_MACRO.sub(lambda _: name, text)
    return _USER_MACRO.sub(lambda _: user, text)


def compose_persona(data: dict[str, Any], name: str, user: str = "user") -> str:
    """The persona rolecast uses, from a card's system prompt, description, personality and
    scenario (blank parts left out, macros replaced)."""
    parts = [
        str(data.get("system_prompt") or "").strip(),
        str(data.get("description") or "").strip(),
    ]
    if str(data.get("personality") or "").strip():
        parts.append("Personality: " + str(data["personality"]).strip())
    if str(data.get("scenario") or "").strip():
        parts.append("Scenario: " + str(data["scenario"]).strip())
    return _macros("\n\n".join(p for p in parts if p), name, user)


def parse_mes_example(text: str, name: str, user: str = "user") -> list[Scene]:
    """Canon scenes from a card's ``mes_example``: one scene per ``<START>`` block."""
    scenes: list[Scene] = []
    for block in _START.split(text):
        lines: list[list[str]] = []
        for raw in block.splitlines():
            if not raw.strip():
                continue
            m = _SPEAKER.match(raw)
            if m is not None and len(m["speaker"].split()) <= 4:
                speaker = m["speaker"].strip()
                if _CHAR_MACRO.fullmatch(speaker):
                    speaker = name
                elif _USER_MACRO.fullmatch(speaker):
                    speaker = user
                lines.append([speaker, _macros(m["text"].strip(), name, user)])
            elif lines:
                lines[-1][1] = (lines[-1][1] + "\n" + _macros(raw.strip(), name, user)).strip()
            else:
                lines.append(["", _macros(raw.strip(), name, user)])
        kept = tuple(Line(s, t) for s, t in lines if t)
        if kept:
            scenes.append(Scene(f"example-{len(scenes) + 1}", "example", kept))
    return scenes


def _language(text: str) -> str:
    return "zh" if text and len(_CJK.findall(text)) > 0.2 * len(text) else "en"


def short_notes(notes: str) -> str:
    """The character's one-line description: the first paragraph of the creator notes."""
    first = notes.strip().split("\n\n", 1)[0].strip()
    return first if len(first) <= 300 else first[:299].rstrip() + "…"


derive_id = slug_id  # a package id from a card name


def check_cid(cid: str, path: str | Path | None) -> str:
    """``cid`` when it is a valid package id, else a ``ParseError``."""
    try:
        return valid_id(cid)
    except PackageError as exc:
        raise ParseError(str(exc), path) from None


def image_name(name: str, taken: set[str]) -> str:
    """A safe, unused file name for ``images/`` from any asset path: its last part, kept as
    it is when already safe, else cleaned; a clash gets a ``-2``, ``-3``... suffix."""
    base = re.split(r"[/\\]", name)[-1]
    try:
        safe_image_name(base)
    except PackageError:
        base = re.sub(r"[^\w\-. ]", "_", base).strip().lstrip(".")
    stem, dot, ext = base.rpartition(".")
    if not dot:
        stem, ext = base, ""
    stem = stem.encode()[:150].decode("utf-8", "ignore") or "image"  # bytes: the name cap
    ext = ext.encode()[:16].decode("utf-8", "ignore")
    candidate, n = f"{stem}.{ext}" if ext else stem, 1
    while candidate.lower() in taken:
        n += 1
        candidate = f"{stem}-{n}.{ext}" if ext else f"{stem}-{n}"
    taken.add(candidate.lower())
    try:
        return safe_image_name(candidate)
    except PackageError as exc:  # pragma: no cover - the cleaning above prevents it
        raise ParseError(str(exc)) from None


def _kept_card(
    spec: str, data: dict[str, Any], book: dict[str, Any], assets: list[dict[str, str]]
) -> dict[str, Any]:
    """The card fields rolecast does not map, kept for export."""
    skip = {"name", "nickname", "character_book", "assets", "extensions"}
    card: dict[str, Any] = {k: v for k, v in data.items() if k not in skip and v is not None}
    if spec:
        card["spec"] = spec
    extensions = {
        k: v for k, v in opt_dict(data, "extensions", "", None).items() if k != "rolecast"
    }
    if extensions:
        card["extensions"] = extensions
    if book:
        card["character_book"] = book
    if assets:
        card["assets"] = assets
    return card


def from_card(
    spec: str,
    data: dict[str, Any],
    filename: str,
    cid: str | None,
    path: str | Path | None,
    imported_assets: set[int],
    user: str = "user",
) -> Character:
    """A character from a foreign card (one without a rolecast payload); ``user`` is the
    user role, which ``{{user}}`` becomes."""
    where = "data." if spec else ""
    name = data["name"].strip()
    persona = compose_persona(data, name, user)
    first = opt_str(data, "first_mes", where, path)
    alternates = opt_str_list(data, "alternate_greetings", where, path)
    greetings = [_macros(g.strip(), name, user) for g in [first, *alternates] if g.strip()]
    scenes = parse_mes_example(opt_str(data, "mes_example", where, path), name, user)
    if not scenes and greetings:  # examples only in the description: the greeting is canon
        scenes = [Scene(GREETING_SCENE, "greeting", (Line(name, greetings[0]),))]
    book, lore = book_entries(data, where, path)
    assets = [a for i, a in enumerate(card_assets(data, where, path)) if i not in imported_assets]
    nickname = opt_str(data, "nickname", where, path).strip()
    language = _language(persona + "".join(greetings))
    notes = short_notes(opt_str(data, "creator_notes", where, path))
    character = Character(
        id=check_cid(cid, path) if cid else derive_id(name),
        name=name,
        persona=persona,
        scenes=scenes,
        aliases=[nickname] if nickname and nickname != name else [],
        language=language,
        source=default_source(language),
        user_role=user,
        narrators=[default_narrator(language)],
        greetings=greetings,
        description=notes or f"imported from the character card {filename}",
        lore=lore,
    )
    card = _kept_card(spec, data, book, assets)
    card["_composed_persona"] = persona
    card["_composed_greetings"] = list(greetings)
    card["_composed_canon"] = character.canon_hash()
    character.card = card
    return character
