"""Signs and songs told apart from dialogue, by style, position and markup.

:func:`classify` returns ``(kind, reason)``: ``kind`` is ``"dialogue"``, ``"sign"`` or
``"song"`` and ``reason`` names the rule that fired (``""`` for dialogue). Rules, first match
wins: karaoke tags; a karaoke or banner effect; a song-like then a sign-like style name; a
drawing; ``\\pos``/``\\move``; a top alignment override; a top-aligned style; music notes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

DIALOGUE, SIGN, SONG = "dialogue", "sign", "song"
KINDS = (DIALOGUE, SIGN, SONG)

SONG_WORDS = frozenset(
    "op ed opening ending song songs karaoke kara lyric lyrics insert theme music".split()
)
SIGN_WORDS = frozenset(
    "sign signs title titles note notes tlnote typeset ts screen logo credit credits staff "
    "eyecatch".split()
)
# what may follow OP/ED in a style name written as one word, like "OPJP" or "EDchs"
LANGUAGE_SUFFIXES = frozenset(
    "jp ja jpn cn ch chs cht zh sc tc en eng rom romaji kanji kr ko kor tl trans".split()
)
SONG_CJK = ("歌词", "歌詞", "片头", "片頭", "片尾", "主题曲", "主題曲", "插曲", "卡拉")
SIGN_CJK = ("注释", "注釋", "标题", "標題", "屏幕", "标注", "標註", "说明", "說明", "字幕组")
MUSIC_NOTES = "♪♫♬♩"

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+")
_LETTERS = re.compile(r"[a-z]+")
_KARAOKE = re.compile(r"(?:kf|ko|k|K)\d")
_ALIGN_ASS = re.compile(r"an([1-9])")
_ALIGN_SSA = re.compile(r"a(\d{1,2})")
_SSA_TOP = {5, 6, 7}  # legacy \a values for the top row


def classify(
    style: str,
    style_alignment: int | None,
    tags: Sequence[str],
    drawing: bool,
    effect: str,
    lines: Sequence[str],
) -> tuple[str, str]:
    """``(kind, reason)`` for one event; ``style_alignment`` is the style's ASS numpad value."""
    for tag in tags:
        if _KARAOKE.match(tag):
            return SONG, f"karaoke tag \\{tag}"
    effect_kind = _effect_kind(effect)
    if effect_kind:
        return effect_kind, f"effect {effect.strip()!r}"
    style_kind = style_name_kind(style)
    if style_kind:
        return style_kind, f"style {style!r} is named like a {style_kind} style"
    if drawing:
        return SIGN, "drawing (\\p)"
    for tag in tags:
        if tag.startswith(("pos(", "move(")):
            return SIGN, f"\\{tag.split('(')[0]} override"
    for tag in tags:
        if _top_override(tag):
            return SIGN, f"top alignment override \\{tag}"
    if style_alignment in (7, 8, 9):
        return SIGN, f"style {style!r} is top-aligned (\\an{style_alignment})"
    if lines and (lines[0][:1] in MUSIC_NOTES or lines[-1][-1:] in MUSIC_NOTES):
        return SONG, "music note in the text"
    return DIALOGUE, ""


@lru_cache(maxsize=1024)
def style_name_kind(style: str) -> str | None:
    """``song``, ``sign`` or None for a style name like ``OP_Romaji``, ``Sign`` or ``Default``."""
    for text in SONG_CJK:
        if text in style:
            return SONG
    for text in SIGN_CJK:
        if text in style:
            return SIGN
    # the words of the name ("OP_Romaji", "TLNote"), and the name as one word ("EDchs")
    words = [w.lower() for w in _WORD.findall(style)] + ["".join(_LETTERS.findall(style.lower()))]
    if any(w in SONG_WORDS or _op_ed_language(w) for w in words):
        return SONG
    if any(w in SIGN_WORDS for w in words):
        return SIGN
    return None


def _op_ed_language(word: str) -> bool:
    """``opjp``, ``edchs``: OP or ED and a language written as one word."""
    return word[:2] in ("op", "ed") and word[2:] in LANGUAGE_SUFFIXES


def _effect_kind(effect: str) -> str | None:
    e = effect.strip().lower()
    if e == "fx" or e.startswith("karaoke"):
        return SONG
    if e.startswith(("banner", "scroll")):
        return SIGN
    return None


def _top_override(tag: str) -> bool:
    m = _ALIGN_ASS.fullmatch(tag)
    if m:
        return int(m.group(1)) >= 7
    m = _ALIGN_SSA.fullmatch(tag)
    return m is not None and int(m.group(1)) in _SSA_TOP
