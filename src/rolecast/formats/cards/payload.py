"""The rolecast payload: the whole character under a card's ``data.extensions.rolecast``.

An exported card carries it so that importing the card again gives the same character back
(canon, lore, kept card fields and all); other tools ignore the extension. On import every
part of it is checked as strictly as a package on disk.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...character.model import Character
from ...character.package import (
    PATH_HINT,
    TOML_KEYS,
    parse_canon,
    parse_lore,
    parse_voice,
    path_problem,
    safe_image_name,
)
from ...character.safezip import unsafe_name
from ...errors import PackageError, ParseError
from ..chatharuhi import default_narrator
from .fields import json_safe, opt_dict, opt_str, opt_str_list
from .from_card import check_cid, derive_id

PAYLOAD_VERSION = 1
_TOML_KEYS = TOML_KEYS  # character.toml keys a payload's ``extra`` must not shadow


def build_payload(character: Character, extensions: dict[str, Any]) -> dict[str, Any]:
    """The payload for ``character``; ``extensions`` are the card's other extensions."""
    extra = {k: v for k, v in character.extra.items() if not k.startswith("_") and json_safe(v)}
    card = {k: v for k, v in character.card.items() if json_safe(v)}
    if "extensions" in card:
        card["extensions"] = extensions
    return {
        "version": PAYLOAD_VERSION,
        "character": {
            "id": character.id,
            "name": character.name,
            "persona": character.persona,
            "aliases": list(character.aliases),
            "language": character.language,
            "source": character.source,
            "user_role": character.user_role,
            "narrators": list(character.narrators),
            "greetings": list(character.greetings),
            "description": character.description,
            "portrait": character.portrait,
            "extra": extra,
            **({"voice": character.voice.to_dict()} if character.voice is not None else {}),
        },
        "canon": [scene.to_dict() for scene in character.scenes],
        "lore": [entry.to_dict() for entry in character.lore],
        "card": card,
    }


def _toml_safe(val: Any) -> bool:
    if isinstance(val, (str, bool, int, float)):
        return True
    if isinstance(val, list):
        return all(_toml_safe(v) for v in val)
    if isinstance(val, dict):
        return all(isinstance(k, str) and _toml_safe(v) for k, v in val.items())
    return False


def restore(
    payload: Any, data: dict[str, Any], cid: str | None, path: str | Path | None
) -> Character:
    """The character exactly as the exporter wrote it under ``extensions.rolecast``."""
    at = "extensions.rolecast"
    if not isinstance(payload, dict):
        raise ParseError(f"'{at}' must be an object", path)
    version = payload.get("version")
    if version != PAYLOAD_VERSION or isinstance(version, bool):
        raise ParseError(
            f"'{at}.version' is {version!r}; this rolecast reads version {PAYLOAD_VERSION}", path
        )
    ch = payload.get("character")
    if not isinstance(ch, dict):
        raise ParseError(f"'{at}.character' must be an object", path)
    where = f"{at}.character."
    name = ch.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ParseError(f"'{where}name' must be a non-empty string", path)
    text = {
        k: opt_str(ch, k, where, path)
        for k in ("id", "persona", "language", "source", "user_role", "description", "portrait")
    }
    lists = {k: opt_str_list(ch, k, where, path) for k in ("aliases", "narrators", "greetings")}
    for key, default in (("language", "zh"), ("user_role", "user")):  # absent: the default
        if ch.get(key) is None:
            text[key] = default
    if ch.get("narrators") is None:
        lists["narrators"] = [default_narrator(text["language"])]
    extra = opt_dict(ch, "extra", where, path)
    for key, val in extra.items():
        if key.startswith("_") or key in _TOML_KEYS:
            raise ParseError(f"'{where}extra' may not hold the reserved key {key!r}", path)
        if not _toml_safe(val):
            raise ParseError(f"'{where}extra.{key}' holds a value TOML cannot store", path)
    portrait = text["portrait"]
    if portrait:
        parts = portrait.split("/")
        if unsafe_name(portrait) or ":" in portrait:
            raise ParseError(f"'{where}portrait' is not a safe relative path", path)
        try:
            safe_image_name(parts[-1])
        except PackageError as exc:
            raise ParseError(f"'{where}portrait': {exc}", path) from None
    if cid:
        the_id = check_cid(cid, path)
    elif text["id"]:
        the_id = check_cid(text["id"], path)
    else:
        the_id = derive_id(name)
    scenes = _payload_rows(payload, "canon", parse_canon, path)
    for i, scene in enumerate(scenes):  # a path out of the package would be read and shown
        for j, line in enumerate(scene.lines):
            problem = path_problem(line.image) if line.image else None
            if problem is not None:
                raise ParseError(
                    f"'{at}.canon[{i}].lines[{j}].image' {line.image!r} {problem}; {PATH_HINT}",
                    path,
                )
    lore = _payload_rows(payload, "lore", parse_lore, path)
    voice = parse_voice(ch, Path(f"{where}voice")) if ch.get("voice") is not None else None
    card = payload.get("card", {})
    if not isinstance(card, dict):
        raise ParseError(f"'{at}.card' must be an object", path)
    card = dict(card)
    extensions = {
        k: v for k, v in opt_dict(data, "extensions", "", path).items() if k != "rolecast"
    }
    if extensions or "extensions" in card:
        card["extensions"] = extensions
    return Character(
        id=the_id,
        name=name,
        persona=text["persona"],
        scenes=scenes,
        aliases=lists["aliases"],
        language=text["language"],
        source=text["source"],
        user_role=text["user_role"],
        narrators=lists["narrators"],
        greetings=lists["greetings"],
        description=text["description"],
        portrait=portrait,
        lore=lore,
        voice=voice,
        card=card,
        extra=dict(extra),
    )


def _payload_rows(
    payload: dict[str, Any],
    key: str,
    parse: Callable[[str, Path], list[Any]],
    path: str | Path | None,
) -> list[Any]:
    rows = payload.get(key, [])
    if not isinstance(rows, list):
        raise ParseError(f"'extensions.rolecast.{key}' must be a list", path)
    # one JSON row per line, ASCII only so that no character inside a row can split it
    text = "".join(json.dumps(row, ensure_ascii=True) + "\n" for row in rows)
    try:
        return parse(text, Path(f"extensions.rolecast.{key}"))
    except ParseError as exc:
        raise ParseError(
            f"'extensions.rolecast.{key}[{(exc.line or 1) - 1}]': {exc.reason}", path
        ) from None
