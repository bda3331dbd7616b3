"""Lore (world information): entries whose keys come up in the conversation join the canon.

An entry is triggered when one of its keys appears in the new line or the last few turns
(case-insensitively unless the entry says ``case_sensitive``); entries marked ``constant``
always are, entries with ``enabled: false`` never. Triggered entries become one-line
narration scenes placed before the retrieved canon, so they share its budget and rendering.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..character.model import Character, Line, LoreEntry, Scene

LORE_PREFIX = "lore:"
SCAN_TURNS = 2  # earlier turns scanned for keys besides the new line
MAX_ENTRIES = 4  # triggered entries sent per turn at most


def _on(entry: LoreEntry, key: str) -> bool:
    return entry.extra.get(key) is True


def triggered(character: Character, texts: Sequence[str]) -> list[LoreEntry]:
    """The lore entries that ``texts`` (newest first) bring up, in the character's order."""
    if not character.lore:
        return []
    joined = "\n".join(texts)
    folded = joined.casefold()
    out = []
    for entry in character.lore:
        if entry.extra.get("enabled") is False or not entry.content.strip():
            continue
        if _on(entry, "constant"):
            out.append(entry)
            continue
        keys = [k for k in entry.keys if k.strip()]
        if _on(entry, "case_sensitive"):
            hit = any(k in joined for k in keys)
        else:
            hit = any(k.casefold() in folded for k in keys)
        if hit:
            out.append(entry)
    return out[:MAX_ENTRIES]


def lore_scenes(character: Character, texts: Sequence[str]) -> list[Scene]:
    narrator = character.narrators[0] if character.narrators else ""
    return [
        Scene(
            f"{LORE_PREFIX}{entry.name or i}", entry.name, (Line(narrator, entry.content.strip()),)
        )
        for i, entry in enumerate(triggered(character, texts))
    ]
