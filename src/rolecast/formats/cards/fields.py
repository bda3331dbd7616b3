"""Card JSON, decoded and checked: text encodings, JSON with its size, depth and surrogate
checks, and the card's fields (``spec``, ``data``, string and list fields, the lorebook,
``assets``) with errors that name the field.

Everything here raises ``ParseError`` for bad input and nothing else.
"""

from __future__ import annotations

import codecs
import json
import re
from pathlib import Path
from typing import Any

from ...character.model import LoreEntry
from ...errors import ParseError
from . import limits

_SURROGATE = re.compile(r"[\ud800-\udfff]")

# ---------------------------------------------------------------- JSON


def _decode(raw: bytes, what: str, path: str | Path | None) -> str:
    """Text from UTF-8 (BOM or not) or UTF-16/32 with a BOM; anything else is refused."""
    if raw.startswith(codecs.BOM_UTF8):
        raw, encoding = raw[3:], "utf-8"
    elif raw.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        encoding = "utf-32"
    elif raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = "utf-8"
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ParseError(
            f"{what} is not valid {encoding.upper()} text (undecodable byte at {exc.start}); "
            "save the card as UTF-8",
            path,
        ) from None


def _check_tree(obj: Any, what: str, path: str | Path | None) -> None:
    """Refuse JSON nested deeper than ``MAX_DEPTH`` or holding unpaired surrogates."""
    max_depth = limits.MAX_DEPTH
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if _SURROGATE.search(node):
                raise ParseError(f"{what} holds an unpaired surrogate (\\udXXX escape)", path)
            continue
        if not isinstance(node, (dict, list)):
            continue
        if depth > max_depth:
            raise ParseError(f"{what} is nested more than {max_depth} levels deep", path)
        if isinstance(node, dict):
            stack.extend((k, depth) for k in node)
            stack.extend((v, depth + 1) for v in node.values())
        else:
            stack.extend((v, depth + 1) for v in node)


def load_json(raw: bytes, what: str, path: str | Path | None) -> Any:
    """The JSON value in ``raw`` (``what`` names it in errors), size, depth and text checked."""
    if len(raw) > limits.MAX_CHUNK:
        raise ParseError(f"{what} is larger than the {limits.MAX_CHUNK} byte limit", path)
    text = _decode(raw, what, path)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(
            f"{what} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", path
        ) from None
    except (ValueError, RecursionError) as exc:  # e.g. a 5000-digit number, deep nesting
        raise ParseError(f"{what} is not usable JSON ({exc})", path) from None
    _check_tree(obj, what, path)
    return obj


def json_safe(val: Any) -> bool:
    """Whether ``val`` can be written as JSON."""
    try:
        json.dumps(val, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def json_bytes(obj: Any) -> bytes:
    """``obj`` as UTF-8 JSON; lone surrogates are escaped rather than refused."""
    text = json.dumps(obj, ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(obj, ensure_ascii=True).encode("ascii")


# ---------------------------------------------------------------- field checks


def type_name(val: Any) -> str:
    return "null" if val is None else type(val).__name__


def opt_str(data: dict[str, Any], key: str, where: str, path: str | Path | None) -> str:
    """``data[key]`` as a string: ``""`` when absent or null, an error when not a string."""
    val = data.get(key)
    if val is None:
        return ""
    if not isinstance(val, str):
        raise ParseError(f"card field '{where}{key}' must be a string, not {type_name(val)}", path)
    return val


def opt_str_list(data: dict[str, Any], key: str, where: str, path: str | Path | None) -> list[str]:
    """``data[key]`` as a list of strings: empty when absent or null."""
    val = data.get(key)
    if val is None:
        return []
    if not isinstance(val, list) or not all(isinstance(v, str) for v in val):
        raise ParseError(f"card field '{where}{key}' must be a list of strings", path)
    return list(val)


def opt_dict(data: dict[str, Any], key: str, where: str, path: str | Path | None) -> dict[str, Any]:
    """``data[key]`` as an object: empty when absent or null."""
    val = data.get(key)
    if val is None:
        return {}
    if not isinstance(val, dict):
        raise ParseError(f"card field '{where}{key}' must be an object, not {type_name(val)}", path)
    return val


def is_number(val: Any) -> bool:
    return isinstance(val, (int, float)) and not isinstance(val, bool)


def card_data(obj: Any, path: str | Path | None) -> tuple[str, dict[str, Any]]:
    """The card's spec (``""`` for V1) and its field object, with the key fields checked."""
    if not isinstance(obj, dict):
        raise ParseError(f"a character card must be a JSON object, not {type_name(obj)}", path)
    spec = obj.get("spec")
    data: Any
    if spec is None:
        data, spec = obj, ""
    elif spec in ("chara_card_v2", "chara_card_v3"):
        data = obj.get("data")
        if not isinstance(data, dict):
            raise ParseError(f"card field 'data' must be an object, not {type_name(data)}", path)
    else:
        raise ParseError(f"unsupported card 'spec' {spec!r}", path)
    where = "data." if spec else ""
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ParseError(f"card field '{where}name' is missing or empty", path)
    for key in (
        "description",
        "personality",
        "scenario",
        "first_mes",
        "mes_example",
        "creator_notes",
        "system_prompt",
        "post_history_instructions",
        "creator",
        "character_version",
        "nickname",
    ):
        opt_str(data, key, where, path)
    for key in ("alternate_greetings", "tags", "group_only_greetings", "source"):
        opt_str_list(data, key, where, path)
    opt_dict(data, "extensions", where, path)
    notes = opt_dict(data, "creator_notes_multilingual", where, path)
    if not all(isinstance(v, str) for v in notes.values()):
        raise ParseError(
            f"card field '{where}creator_notes_multilingual' must map to strings", path
        )
    for key in ("creation_date", "modification_date"):
        if data.get(key) is not None and not is_number(data[key]):
            raise ParseError(f"card field '{where}{key}' must be a number", path)
    return spec, data


def book_entries(
    data: dict[str, Any], where: str, path: str | Path | None
) -> tuple[dict[str, Any], list[LoreEntry]]:
    """The lorebook's own fields (without entries) and its entries as lore."""
    book = opt_dict(data, "character_book", where, path)
    where = f"{where}character_book."
    entries = book.get("entries")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise ParseError(f"card field '{where}entries' must be a list", path)
    lore = []
    for i, entry in enumerate(entries):
        at = f"{where}entries[{i}]."
        if not isinstance(entry, dict):
            raise ParseError(f"card field '{where}entries[{i}]' must be an object", path)
        keys = opt_str_list(entry, "keys", at, path)
        content = opt_str(entry, "content", at, path)
        name = opt_str(entry, "name", at, path)
        comment = entry.get("comment")
        extra = {k: v for k, v in entry.items() if k not in ("keys", "content")}
        if name:
            extra.pop("name")
        elif isinstance(comment, str):
            name = comment
        lore.append(LoreEntry(tuple(keys), content, name, extra))
    return {k: v for k, v in book.items() if k != "entries"}, lore


def assets(data: dict[str, Any], where: str, path: str | Path | None) -> list[dict[str, str]]:
    """The card's ``assets`` list, each entry an object of strings."""
    val = data.get("assets")
    if val is None:
        return []
    if not isinstance(val, list):
        raise ParseError(f"card field '{where}assets' must be a list", path)
    for i, asset in enumerate(val):
        if not isinstance(asset, dict):
            raise ParseError(f"card field '{where}assets[{i}]' must be an object", path)
        for key in ("type", "uri", "name", "ext"):
            if not isinstance(asset.get(key, ""), str):
                raise ParseError(f"card field '{where}assets[{i}].{key}' must be a string", path)
    return val
