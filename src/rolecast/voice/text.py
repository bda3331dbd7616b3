"""What a voice says: the spoken words of a reply, cut into sentences, and the language
they are in. Pure functions over strings: no model, no I/O.

Narration and stage directions are not spoken: anything in (…), （…）, 【…】, […], *…* or
＊…＊ is dropped, and so is a leading ``Name:`` on a line. Sentences end at 。！？!? (with
any closing quotes that follow), at a full stop before a space in Latin text, and at a line
break; a long sentence is cut further at a clause mark (、，,;；：) so that no piece is too long
for a model, and the first piece can be made short so that playback starts sooner.
"""

from __future__ import annotations

import re
import unicodedata

LANGUAGES = ("ja", "zh", "en", "other")
LANGUAGE_NAMES = {
    "ja": "Japanese (日本語)",
    "zh": "Chinese (中文)",
    "en": "English",
}

# brackets whose contents are narration, not speech: opener -> closer
_PAIRS = {"(": ")", "（": "）", "【": "】", "[": "]", "［": "］", "〔": "〕"}
_PAIRED = re.compile(
    "|".join(rf"{re.escape(o)}[^{re.escape(o + c)}]*{re.escape(c)}" for o, c in _PAIRS.items())
)
_ASTERISKS = re.compile(r"\*+[^*\n]+\*+|＊+[^＊\n]+＊+")
_STRAY = re.compile("[" + re.escape("".join(_PAIRS) + "".join(_PAIRS.values()) + "*＊") + "]")
# "Name:" at the start of a line: at most three words of up to 16 characters, with a letter
# in them and no sentence punctuation ("12:30" and "Well, then: ..." are left alone)
_NAME = r"[^\s:：「」『』\"“”。！？!?,，、.;；()（）]{1,16}"
_PREFIX = re.compile(rf"^\s*(?P<name>{_NAME}(?: {_NAME}){{0,2}})\s*[:：](?!\d)\s*")
_QUOTES = re.compile('[「」『』“”"]')
_SPACES = re.compile(r"[ \t\u3000]+")
_LEADING_PUNCT = re.compile(r"^[\s、，,.。;；:：!！?？…・~〜\-—]+")

_CLOSERS = "」』”\"'’)）】]》〉"
_END = re.compile(rf"(?:[。！？!?]+|…+(?=\n)|\.(?=\s|$)|\n)[{re.escape(_CLOSERS)}]*")
_CLAUSE = re.compile(rf"[、，,;；：:—…]+[{re.escape(_CLOSERS)}]*")
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "prof", "mt", "vs", "etc", "e.g", "i.e", "no"}

SENTENCE_PAUSE_S = 0.3  # silence after a sentence when pieces are joined
CLAUSE_PAUSE_S = 0.12  # after a piece cut at a comma
_SENTENCE_END = re.compile(rf"(?:[。！？!?.…]|\n)[{re.escape(_CLOSERS)}]*$")
DEFAULT_MAX_CHARS = {"ja": 60, "zh": 60, "en": 200, "other": 200}  # longer sentences are cut
FIRST_CHARS = {"ja": 12, "zh": 12, "en": 40, "other": 40}  # first piece for fast playback


def _strip_prefix(line: str) -> str:
    m = _PREFIX.match(line)
    if m and any(ch.isalpha() for ch in m["name"]):
        return line[m.end() :]
    return line


def spoken_text(text: str) -> str:
    """The words a voice should say: without narration in brackets or asterisks, without a
    leading ``Name:`` on each line and without quote marks. Lines are kept apart by ``\\n``."""
    prev = None
    while prev != text:  # innermost pairs first, so nested brackets go too
        prev, text = text, _PAIRED.sub(" ", text)
    text = _ASTERISKS.sub(" ", text)
    text = _STRAY.sub(" ", text)  # an opener without its closer is not spoken either
    lines = []
    for line in text.splitlines():
        line = _QUOTES.sub(" ", _strip_prefix(line))
        line = _LEADING_PUNCT.sub("", _SPACES.sub(" ", line)).strip()
        if line:
            lines.append(_tidy_cjk_spaces(line))
    return "\n".join(lines)


def _tidy_cjk_spaces(line: str) -> str:
    """Drop the spaces left where a bracket was between two CJK characters."""
    return re.sub(r"(?<=[^\x00-\x7f]) (?=[^\x00-\x7f])", "", line)


def has_speakable(text: str) -> bool:
    """Whether there is anything a voice can say: a letter or a digit of any script."""
    return any(ch.isalnum() for ch in text)


def _is_abbreviation(text: str, dot: int) -> bool:
    start = dot
    while start > 0 and (text[start - 1].isalpha() or text[start - 1] == "."):
        start -= 1
    word = text[start:dot].lower()
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (zh, ja, en and the like), each with its closing punctuation."""
    out: list[str] = []
    start = 0
    for m in _END.finditer(text):
        if m.group().startswith(".") and _is_abbreviation(text, m.start()):
            continue
        piece = text[start : m.end()].strip()
        start = m.end()
        if piece:
            out.append(piece)
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    # a piece with nothing to say ("……", "!") joins the sentence before it
    merged: list[str] = []
    for piece in out:
        if merged and not has_speakable(piece):
            merged[-1] += piece
        else:
            merged.append(piece)
    return merged


def _cut(sentence: str, limit: int) -> list[str]:
    """``sentence`` cut at clause marks into pieces of about ``limit`` characters or fewer
    (a piece with no clause mark in reach stays whole)."""
    pieces: list[str] = []
    rest = sentence
    while len(rest) > limit:
        cuts = [m.end() for m in _CLAUSE.finditer(rest) if m.end() < len(rest)]
        if not cuts:
            break
        before = [c for c in cuts if c <= limit]
        at = before[-1] if before else cuts[0]
        head, rest = rest[:at].strip(), rest[at:].strip()
        if not has_speakable(rest):
            rest = head + rest
            break
        pieces.append(head)
    if rest:
        pieces.append(rest)
    return pieces


def speech_chunks(
    text: str,
    language: str | None = None,
    max_chars: int | None = None,
    first_chars: int | None = 0,
) -> list[str]:
    """The pieces to synthesise one after another: sentences, with a long one cut at clause
    marks to ``max_chars``, and the first piece cut to ``first_chars`` where a clause mark
    allows (``None``: the language's default; ``0``: not cut), so that the first sound comes
    sooner."""
    lang = language if language in DEFAULT_MAX_CHARS else "other"
    limit = max_chars or DEFAULT_MAX_CHARS[lang]
    pieces = [p for s in split_sentences(text) for p in _cut(s, limit)]
    first = FIRST_CHARS[lang] if first_chars is None else first_chars
    if pieces and first and len(pieces[0]) > first:
        head, *rest = _cut(pieces[0], first)  # only the head is cut off: the rest stays whole
        pieces[:1] = [head, pieces[0][len(head) :].strip()] if rest else [head]
    return [p for p in pieces if has_speakable(p)]


def _is_kana(ch: str) -> bool:
    o = ord(ch)
    return (
        0x3041 <= o <= 0x309F  # hiragana
        or 0x30A0 <= o <= 0x30FA  # katakana, without ・ (U+30FB) and ー (U+30FC), used in zh too
        or 0x31F0 <= o <= 0x31FF
        or 0xFF66 <= o <= 0xFF9D  # half-width katakana
    )


def _is_han(ch: str) -> bool:
    o = ord(ch)
    return 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0xF900 <= o <= 0xFAFF


def guess_language(text: str) -> str:
    """ja, zh, en or other, from the script alone: any kana means Japanese; Han characters
    without kana mean Chinese; Latin letters (more of them than of any other script) count
    as English; anything else, or nothing to go by, is "other"."""
    han = latin = rest = 0
    for ch in text:
        if _is_kana(ch):
            return "ja"
        if _is_han(ch):
            han += 1
        elif ch.isalpha():
            if "LATIN" in unicodedata.name(ch, ""):
                latin += 1
            else:
                rest += 1
    if han and han >= latin / 4:  # a Chinese line with a few English words is Chinese
        return "zh"
    if latin > rest:
        return "en"
    return "other"


def language_name(code: str) -> str:
    return LANGUAGE_NAMES.get(code, code)


def pause_after(piece: str) -> float:
    """Seconds of silence after a piece of speech: a sentence's or a clause's."""
    return SENTENCE_PAUSE_S if _SENTENCE_END.search(piece.rstrip(" ")) else CLAUSE_PAUSE_S
