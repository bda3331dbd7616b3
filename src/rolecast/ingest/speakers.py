"""Speaker prefixes in subtitle text: ``Name: text``, ``Name：text``, ``（Name）text``,
``[Name] text`` and ``【Name】text``.

A prefix counts only when it is short (at most :data:`MAX_NAME` characters), has a letter, has
no sentence punctuation, is not part of a time such as ``12:30``, starts with a capital when it
starts with a cased letter (``note: ...`` and ``[laughs] ...`` are not speakers) and is
followed by some text. Sound descriptions written like names (``[Door slams] ...``) still pass.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

MAX_NAME = 12

_PREFIX = re.compile(
    r"(?:(?P<colon>[^:：\[\]【】（）\n]{1,40}?)\s*[:：]"
    r"|（(?P<paren>[^（）\n]{1,40})）"
    r"|\[(?P<bracket>[^\[\]\n]{1,40})\]"
    r"|【(?P<lenticular>[^【】\n]{1,40})】)"
    r"\s*(?P<rest>.*)",
    re.S,
)
_PUNCTUATION = set(',，。!！?？、…;；"“”「」『』《》<>')


def split_prefix(line: str) -> tuple[str | None, str]:
    """``(name, text without the prefix)``, or ``(None, line)`` when it has no speaker prefix."""
    m = _PREFIX.match(line)
    if not m:
        return None, line
    name = next(g for g in (m["colon"], m["paren"], m["bracket"], m["lenticular"]) if g)
    name, rest = name.strip(), m["rest"].strip()
    if not rest or not _is_name(name):
        return None, line
    if m["colon"] and name[-1].isdigit() and rest[0].isdigit():
        return None, line  # a time or a ratio: "at 12:30", "3:2"
    if m["colon"] and rest.startswith("//"):
        return None, line  # an address
    return name, rest


def split_prefixes(lines: Sequence[str]) -> tuple[str | None, list[str]]:
    """One speaker for several lines: the prefix they share, removed from each line.

    Lines with different speakers (``A: hi`` / ``B: hello``) give None and stay as they are.
    """
    found = [split_prefix(ln) for ln in lines]
    names = {name for name, _ in found if name}
    if len(names) != 1:
        return None, list(lines)
    return names.pop(), [rest for _, rest in found]


def _is_name(name: str) -> bool:
    if not name or len(name) > MAX_NAME or ".." in name:
        return False
    if not any(ch.isalpha() for ch in name) or any(ch in _PUNCTUATION for ch in name):
        return False
    first = name[0]
    return first.isupper() or first.lower() == first.upper()  # capital, or uncased (CJK)
