"""The script, hence a language code, of a subtitle line, for splitting bilingual events.

This is script detection, not language identification: ``"ja"`` is a line with kana, ``"zh"``
one of Han characters without kana, ``"ko"`` Hangul, ``"en"`` any Latin-script line and
``"ru"`` any Cyrillic one. A Japanese line written in kanji alone reads as ``"zh"``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..errors import InputError

LANGUAGES = ("zh", "ja", "ko", "en", "ru")
CJK_WEIGHT = 3  # one CJK character carries about as much as a short Latin word
KANA_SHARE = 0.1  # kana among kana + Han that makes a line Japanese
# kana (not U+30FB KATAKANA MIDDLE DOT, also used in Chinese names), Han, Hangul, Latin and
# Cyrillic letters
_SCRIPTS = tuple(
    re.compile(f"[{ranges}]")
    for ranges in (
        "\u3040-\u30fa\u30fc-\u30ff\u31f0-\u31ff\uff66-\uff9f",
        "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff",
        "\uac00-\ud7af\u1100-\u11ff\u3130-\u318f",
        "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff",
        "\u0400-\u04ff",
    )
)


def language_of(text: str) -> str | None:
    """``zh``, ``ja``, ``ko``, ``en``, ``ru`` or None (no letters, or another script)."""
    kana, han, hangul, latin, cyrillic = (len(p.findall(text)) for p in _SCRIPTS)
    if kana and kana >= KANA_SHARE * (kana + han):
        return "ja"
    scores = {
        "zh": CJK_WEIGHT * (han + kana),
        "ko": CJK_WEIGHT * hangul,
        "en": latin,
        "ru": cyrillic,
    }
    best = max(scores, key=lambda k: scores[k])
    return best if scores[best] else None


def normalize_language(code: str) -> str:
    """``"auto"`` or one of :data:`LANGUAGES` for a code such as ``zh-Hant`` or ``EN_us``."""
    c = code.strip().lower().replace("_", "-").split("-", 1)[0]
    if c == "auto" or c in LANGUAGES:
        return c
    raise InputError(
        f"unknown primary language {code!r}: use auto or one of {', '.join(LANGUAGES)} "
        "(en stands for any Latin-script line, ru for any Cyrillic one)"
    )


def split_bilingual(
    lines: Sequence[str], languages: Sequence[str | None], primary: str | None
) -> tuple[list[str], list[str]]:
    """``(primary lines, other lines)`` of one event, given each line's language.

    An event in one language (lines without letters, such as ``♪``, do not count) keeps all
    its lines. Otherwise the lines in ``primary`` (or, if the event has none, in its first
    line's language) plus those without letters are the text, the rest the alternative.
    """
    present = [lang for lang in languages if lang]
    if primary is None or len(set(present)) < 2:
        return list(lines), []
    main = primary if primary in present else present[0]
    text = [ln for ln, lang in zip(lines, languages, strict=True) if lang in (main, None)]
    alt = [ln for ln, lang in zip(lines, languages, strict=True) if lang not in (main, None)]
    return text, alt
