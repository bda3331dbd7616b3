"""A :class:`Character` as a card object: V3 (``card_v3``) and its V2 form (``card_v2``).

Fields kept from an imported card are written back as they were when the character has
not changed them; otherwise the persona becomes ``description``, the greetings
``first_mes`` and ``alternate_greetings``, a sample of the canon ``mes_example`` and the
lore ``character_book``. The whole character also travels under
``extensions.rolecast`` (see :mod:`.payload`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...character.model import Character
from .fields import is_number, json_safe
from .from_card import short_notes
from .payload import build_payload

MES_EXAMPLE_CHARS = 2000  # exported sample of the canon
MES_EXAMPLE_SCENES = 8
V3_ONLY = (
    "assets",
    "nickname",
    "creator_notes_multilingual",
    "source",
    "group_only_greetings",
    "creation_date",
    "modification_date",
)
# fields the exporter writes itself; any other kept card field is written back as it was
_MANAGED = {
    "name",
    "nickname",
    "description",
    "personality",
    "scenario",
    "system_prompt",
    "first_mes",
    "alternate_greetings",
    "mes_example",
    "creator_notes",
    "post_history_instructions",
    "tags",
    "creator",
    "character_version",
    "extensions",
    "group_only_greetings",
    "character_book",
    "assets",
    "creator_notes_multilingual",
    "source",
    "creation_date",
    "modification_date",
}


def _speaker_tag(character: Character, speaker: str) -> str | None:
    """``{{char}}``, ``{{user}}``, the speaker's name, or None for narration."""
    if character.is_self(speaker):
        return "{{char}}"
    if character.user_role and speaker.strip() == character.user_role:
        return "{{user}}"
    if character.is_narrator(speaker):
        return None
    return speaker.strip()


def sample_mes_example(character: Character) -> str:
    """Up to 8 canon scenes where the character speaks, as ``<START>`` blocks, capped."""
    blocks: list[str] = []
    size = 0
    for scene in character.scenes:
        if len(blocks) >= MES_EXAMPLE_SCENES:
            break
        if not any(character.is_self(ln.speaker) for ln in scene.lines):
            continue
        block = "<START>"
        for ln in scene.lines:
            tag = _speaker_tag(character, ln.speaker)
            row = f"{tag}: {ln.text}" if tag else f"*{ln.text}*"
            if size + len(block) + 1 + len(row) > MES_EXAMPLE_CHARS:
                break
            block += "\n" + row
        if block == "<START>":
            break
        blocks.append(block)
        size += len(block) + 1
    return "\n".join(blocks)


_ENTRY_TYPES: dict[str, Callable[[Any], bool]] = {
    "enabled": lambda v: isinstance(v, bool),
    "case_sensitive": lambda v: isinstance(v, bool),
    "selective": lambda v: isinstance(v, bool),
    "constant": lambda v: isinstance(v, bool),
    "use_regex": lambda v: isinstance(v, bool),
    "insertion_order": is_number,
    "priority": is_number,
    "id": lambda v: isinstance(v, (str, int)) and not isinstance(v, bool),
    "name": lambda v: isinstance(v, str),
    "comment": lambda v: isinstance(v, str),
    "position": lambda v: isinstance(v, str),
    "secondary_keys": lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
    "extensions": lambda v: isinstance(v, dict),
}


def _book(character: Character) -> dict[str, Any] | None:
    kept = character.card.get("character_book")
    kept = dict(kept) if isinstance(kept, dict) else {}
    if not character.lore and not kept:
        return None
    entries = []
    for i, entry in enumerate(character.lore):
        out: dict[str, Any] = {
            "keys": list(entry.keys),
            "content": entry.content,
            "extensions": {},
            "enabled": True,
            "insertion_order": i,
            "id": i,
        }
        if entry.name:
            out["name"] = entry.name
            out["comment"] = entry.name
        for key, val in entry.extra.items():
            if key in ("keys", "content") or not json_safe(val):
                continue
            check = _ENTRY_TYPES.get(key)
            if check is None or check(val):
                out[key] = val
        entries.append(out)
    kept.pop("entries", None)
    return {"extensions": {}, **kept, "entries": entries}


def _card_str(card: dict[str, Any], key: str, default: str = "") -> str:
    val = card.get(key)
    return val if isinstance(val, str) else default


def _card_list(card: dict[str, Any], key: str) -> list[Any]:
    val = card.get(key)
    return list(val) if isinstance(val, list) else []


def card_v3(character: Character, assets: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """The V3 card object for ``character`` (``assets`` lists files that travel with it)."""
    card = character.card
    data: dict[str, Any] = {
        k: v
        for k, v in card.items()
        if not k.startswith("_")
        and k not in _MANAGED
        and k not in ("spec", "spec_version")
        and json_safe(v)
    }
    unchanged = "_composed_persona" in card and card["_composed_persona"] == character.persona
    data["name"] = character.name
    if unchanged:
        for key in ("description", "personality", "scenario", "system_prompt"):
            data[key] = _card_str(card, key)
    else:
        data.update(description=character.persona, personality="", scenario="", system_prompt="")
    if card.get("_composed_greetings") == character.greetings and "first_mes" in card:
        data["first_mes"] = _card_str(card, "first_mes")
        data["alternate_greetings"] = _card_list(card, "alternate_greetings")
    else:
        data["first_mes"] = character.greetings[0] if character.greetings else ""
        data["alternate_greetings"] = list(character.greetings[1:])
    if card.get("_composed_canon") == character.canon_hash() and "mes_example" in card:
        data["mes_example"] = _card_str(card, "mes_example")
    else:
        data["mes_example"] = sample_mes_example(character)
    notes = _card_str(card, "creator_notes")
    data["creator_notes"] = (
        notes
        if "creator_notes" in card and short_notes(notes) == character.description
        else character.description
    )
    data["post_history_instructions"] = _card_str(card, "post_history_instructions")
    data["tags"] = [t for t in _card_list(card, "tags") if isinstance(t, str)]
    data["creator"] = _card_str(card, "creator")
    data["character_version"] = _card_str(card, "character_version")
    data["group_only_greetings"] = [
        g for g in _card_list(card, "group_only_greetings") if isinstance(g, str)
    ]
    if character.aliases:
        data["nickname"] = character.aliases[0]
    for key in ("creator_notes_multilingual", "source", "creation_date", "modification_date"):
        if key in card and json_safe(card[key]):
            data[key] = card[key]
    kept_assets = [
        a
        for a in _card_list(card, "assets")
        if isinstance(a, dict)
        and isinstance(a.get("uri"), str)
        and not a["uri"].startswith(("embeded://", "embedded://", "ccdefault:"))
        and json_safe(a)
    ]
    data["assets"] = [*(assets or []), *kept_assets]
    book = _book(character)
    if book is not None:
        data["character_book"] = book
    kept_ext = card.get("extensions")
    extensions = {
        k: v
        for k, v in (kept_ext.items() if isinstance(kept_ext, dict) else ())
        if k != "rolecast" and json_safe(v)
    }
    data["extensions"] = {**extensions, "rolecast": build_payload(character, extensions)}
    return {"spec": "chara_card_v3", "spec_version": "3.0", "data": data}


def card_v2(v3: dict[str, Any]) -> dict[str, Any]:
    """The V2 form of a V3 card object: the V3-only fields dropped."""
    data = {k: v for k, v in v3["data"].items() if k not in V3_ONLY}
    book = data.get("character_book")
    if isinstance(book, dict):
        entries = [
            {k: v for k, v in e.items() if k != "use_regex"} for e in book.get("entries", [])
        ]
        data["character_book"] = {**book, "entries": entries}
    return {"spec": "chara_card_v2", "spec_version": "2.0", "data": data}
