"""The text encoding of a subtitle file, found before parsing.

Order: an explicit encoding if the caller gives one; a byte order mark (UTF-32, UTF-8,
UTF-16); UTF-16 without a mark when the zero bytes make it plain; strict UTF-8;
then ``charset-normalizer`` restricted to the legacy CJK encodings subtitles come in
(GB18030/GBK, Shift-JIS/CP932, Big5). A legacy family is decoded with its superset codec
(``gb18030``, ``cp932``, ``cp950``), and that codec is the name reported.

Short files are ambiguous between those encodings (charset-normalizer often finds no
difference), so its candidates are ranked by its "chaos" minus the share of non-ASCII
characters that are common ones (first-level Hanzi/Kanji/Hangul of GB2312, Big5, JIS X 0208,
KS X 1001, kana, CJK punctuation): mojibake is full of rare characters. Ties go to the more
frequent encoding for subtitles, in :data:`DETECT_CANDIDATES` order. Korean legacy encodings
(EUC-KR/CP949) are not candidates: such a file decodes as GB18030 mojibake unless the caller
names its encoding.
"""

from __future__ import annotations

import codecs
from functools import lru_cache
from itertools import islice

from ..errors import InputError, MissingDependencyError, ParseError

# UTF-32 LE must be tried before UTF-16 LE: its mark starts with the UTF-16 LE mark.
BOMS: tuple[tuple[bytes, str, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le", "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8", "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16-be"),
)
# what charset-normalizer may look at, and the codecs that decode each family (superset first)
DETECT_CANDIDATES = ("gb18030", "cp932", "big5")
FAMILIES: dict[str, tuple[str, ...]] = {
    "gb18030": ("gb18030",),
    "gbk": ("gb18030",),
    "gb2312": ("gb18030",),
    "cp932": ("cp932",),
    "shift_jis": ("cp932",),
    "big5": ("cp950", "big5hkscs"),
    "cp950": ("cp950", "big5hkscs"),
    "big5hkscs": ("big5hkscs",),
}
_SNIFF = 8192  # bytes looked at to recognise UTF-16 without a mark
_SAMPLE = 20000  # non-ASCII characters looked at to rank candidate decodings
# (codec, first byte range) of each standard's first, most common level
_COMMON_LEVELS = (
    ("gb2312", 0xB0, 0xD7),
    ("big5", 0xA4, 0xC6),
    ("shift_jis", 0x88, 0x98),
    ("euc_kr", 0xB0, 0xC8),
)


def decode(data: bytes, name: str, encoding: str | None = None) -> tuple[str, str]:
    """``(text, encoding used)`` for the bytes of file ``name``; ``ParseError`` if nothing fits.

    ``encoding`` forces one codec (an unknown name raises ``InputError``).
    """
    if encoding is not None:
        return _forced(data, name, encoding)
    tried: list[str] = []
    for bom, codec, label in BOMS:
        if data.startswith(bom):
            text = _try(data[len(bom) :], codec, tried, f"{label} (byte order mark)")
            if text is not None:
                return text, label
            break
    utf16 = _utf16_without_bom(data)
    if utf16 is not None:
        text = _try(data, utf16, tried, f"{utf16} (no byte order mark)")
        if text is not None:
            return text, utf16
    text = _try(data, "utf-8", tried, "utf-8")
    if text is not None:
        return text, "utf-8"
    ranked = _ranked(data, tried)
    if ranked:
        return ranked[0]
    tried.append("charset detection among " + ", ".join(DETECT_CANDIDATES))
    raise ParseError(
        "cannot decode the text: tried " + "; ".join(dict.fromkeys(tried)) + ". Convert the "
        "file to UTF-8, or name its encoding",
        name,
    )


def _forced(data: bytes, name: str, encoding: str) -> tuple[str, str]:
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise InputError(f"unknown text encoding {encoding!r}") from None
    if codec == "utf-8" and data.startswith(codecs.BOM_UTF8):
        codec = "utf-8-sig"
    try:
        return data.decode(codec), codec
    except UnicodeError as exc:
        raise ParseError(f"not valid {codec} text (at byte {_position(exc)})", name) from None


def _try(data: bytes, codec: str, tried: list[str], label: str) -> str | None:
    try:
        return data.decode(codec)
    except UnicodeError as exc:
        tried.append(f"{label}: invalid at byte {_position(exc)}")
        return None


def _position(exc: UnicodeError) -> object:
    return getattr(exc, "start", "?")


def _utf16_without_bom(data: bytes) -> str | None:
    """``utf-16-le``/``-be`` when every other byte is zero often and the others almost never."""
    sample = data[: _SNIFF - (_SNIFF % 2)] if len(data) > _SNIFF else data
    if len(sample) < 4 or len(data) % 2:
        return None
    half = len(sample) // 2
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    if odd >= 0.3 * half and even <= 0.02 * half:
        return "utf-16-le"
    if even >= 0.3 * half and odd <= 0.02 * half:
        return "utf-16-be"
    return None


def _ranked(data: bytes, tried: list[str]) -> list[tuple[str, str]]:
    """``(text, codec)`` of each plausible legacy decoding, best first."""
    try:
        import charset_normalizer
    except ImportError:
        raise MissingDependencyError(
            "reading subtitles that are not UTF-8", "charset-normalizer", "ingest"
        ) from None
    scored: list[tuple[float, int, str, str]] = []
    for match in charset_normalizer.from_bytes(data, cp_isolation=list(DETECT_CANDIDATES)):
        try:
            family = codecs.lookup(match.encoding).name
        except LookupError:
            continue
        for codec in FAMILIES.get(family, (family,)):
            text = _try(data, codec, tried, codec)
            if text is not None:
                score = match.chaos - _commonness(text)
                scored.append((score, _prior(family), text, codec))
                break
    return [(text, codec) for _, _, text, codec in sorted(scored, key=lambda s: s[:2])]


def _prior(family: str) -> int:
    for i, candidate in enumerate(DETECT_CANDIDATES):
        if FAMILIES[candidate] == FAMILIES.get(family):
            return i
    return len(DETECT_CANDIDATES)


def _commonness(text: str) -> float:
    """Share of the (first :data:`_SAMPLE`) non-ASCII characters that are common CJK ones."""
    sample = list(islice((ch for ch in text if ch >= "\x80"), _SAMPLE))
    return sum(map(_is_common, sample)) / len(sample) if sample else 1.0


@lru_cache(maxsize=65536)
def _is_common(ch: str) -> bool:
    o = ord(ch)
    if 0x3000 <= o <= 0x303F or 0xFF01 <= o <= 0xFF5E or 0x2010 <= o <= 0x2027:
        return True  # CJK and fullwidth punctuation, dashes, quotes, ellipsis
    if 0x3041 <= o <= 0x30FC or o == 0xB7:
        return True  # kana, middle dots
    for codec, low, high in _COMMON_LEVELS:
        try:
            encoded = ch.encode(codec)
        except UnicodeError:
            continue
        if len(encoded) == 2 and low <= encoded[0] <= high:
            return True
    return False
