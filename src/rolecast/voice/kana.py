"""Japanese morae and their vowels, for the mouth's vowel shapes (issue 22).

    vowels("こんにちは")        -> ["o", "n", "i", "i", "a"]
    reading("今日は雨です")     -> "キョーワアメデス"  (pyopenjtalk, kokoro's front end)

A mora is one kana with any small kana after it (キョ is one); its vowel is that of its last
kana. ー repeats the vowel before it, ン is "n" (lips nearly closed) and ッ is "" (a held
silence). Kanji need a reading: ``reading`` asks the TTS front end, pyopenjtalk, where it is
installed; without it only the kana in the text are counted.
"""

from __future__ import annotations

import logging
import unicodedata
import warnings

log = logging.getLogger(__name__)

VOWELS = ("a", "i", "u", "e", "o")
_ROWS = {
    "a": "アカガサザタダナハバパマヤラワァャヵ",
    "i": "イキギシジチヂニヒビピミリヰィ",
    "u": "ウクグスズツヅヌフブプムユルゥュヴ",
    "e": "エケゲセゼテデネヘベペメレヱェヶ",
    "o": "オコゴソゾトドノホボポモヨロヲォョ",
}
VOWEL_OF = {k: v for v, row in _ROWS.items() for k in row}
SMALL = set("ァィゥェォャュョヮ")


def katakana(text: str) -> str:
    """Hiragana turned into katakana; everything else as it is."""
    return "".join(chr(ord(c) + 0x60) if "ぁ" <= c <= "ゖ" else c for c in text)


def is_japanese(text: str) -> bool:
    """Any kana in it (kanji alone could be Chinese)."""
    return any("぀" <= c <= "ヿ" for c in text)


def vowels(kana: str) -> list[str]:
    """The vowel of each mora of a kana text (other characters are skipped)."""
    out: list[str] = []
    for c in katakana(unicodedata.normalize("NFKC", kana)):
        if c in SMALL and out:
            out[-1] = VOWEL_OF.get(c, out[-1])  # キョ: one mora, the small kana's vowel
        elif c in VOWEL_OF:
            out.append(VOWEL_OF[c])
        elif c == "ー" and out:
            out.append(out[-1] if out[-1] in VOWELS else "a")
        elif c == "ン":
            out.append("n")
        elif c == "ッ":
            out.append("")
    return out


def reading(text: str) -> str:
    """The text in katakana, read by pyopenjtalk where it is installed (kanji included);
    else the text itself (its kana count, its kanji do not)."""
    try:
        import pyopenjtalk
    except ImportError:
        return text
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            read = pyopenjtalk.g2p(text, kana=True)
    except Exception as exc:  # noqa: BLE001 - a reader's failure costs only the vowel shapes
        log.info("no reading for %r: %s", text[:30], exc)
        return text
    return str(read) if read else text
