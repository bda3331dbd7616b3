"""The dialogue text format of the source project, read and written.

    名字:「台词」          a spoken line (half- or full-width colon)
    名字:「台词」(动作)    a spoken line with a trailing stage direction, kept in the text
    旁白:叙述文字          narration: a narrator name (旁白, narrator, scene, ...) without brackets
    :叙述文字              narration with an empty speaker
    '''Scene''':「…」      wiki-bold speaker names are unwrapped
    叙述文字               a line with no speaker at all is narration

Lines that cannot be read (no text, stray closing brackets, undecodable bytes) are
reported with their file and line number and left out; lines that were repaired
(a missing closing bracket) are kept and reported too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ParseError
from .model import DEFAULT_NARRATORS, Line

_SPEAKER_MAX = 40
_PREFIX = re.compile(r"^(?P<speaker>[^:：「」\n]{0,%d}?)\s*[:：]\s*(?P<rest>.*)$" % _SPEAKER_MAX)
_INVISIBLE = dict.fromkeys(map(ord, "\ufeff\u200b\u200c\u200d\u2060"), None)
_OPEN, _CLOSE = "「", "」"


@dataclass
class ParseResult:
    lines: list[Line] = field(default_factory=list)
    linenos: list[int] = field(default_factory=list)  # 1-based source line of each parsed line
    problems: list[ParseError] = field(default_factory=list)  # lines left out
    repaired: list[ParseError] = field(default_factory=list)  # lines kept after a repair

    def raise_first(self) -> None:
        if self.problems:
            raise self.problems[0]


def _unwrap_speaker(raw: str) -> str:
    s = raw.strip()
    if s.startswith("''") and s.endswith("''"):  # wiki bold or italic around the name
        s = s.strip("'").strip()
    return s


def _unwrap_text(text: str) -> str:
    t = text.strip()
    while len(t) >= 4 and t.startswith("''") and t.endswith("''"):
        t = t[2:-2].strip()
    return t


def _join(spoken: str, trailing: str) -> str:
    if not trailing:
        return spoken
    sep = "" if spoken and ord(spoken[-1]) > 0x2E80 else " "  # no space after CJK text
    return f"{spoken}{sep}{trailing}"


def parse_line(raw: str) -> tuple[Line, str | None]:
    """Parse one non-blank line. Returns the line and a repair note (or None).

    Raises ValueError with the reason when the line cannot be read.
    """
    text = raw.translate(_INVISIBLE).strip()
    if not text:
        raise ValueError("blank line")
    if "\ufffd" in text:
        raise ValueError("undecodable characters (U+FFFD) in line")
    m = _PREFIX.match(text)
    if m is None:
        if text.count(_CLOSE) > text.count(_OPEN):
            raise ValueError(f"stray {_CLOSE!r} with no speaker")
        return Line("", text), None  # prose: narration with no speaker
    speaker, rest = _unwrap_speaker(m["speaker"]), m["rest"].strip()
    note = None
    if rest.startswith(_OPEN):
        close = rest.rfind(_CLOSE)
        if close == -1:
            spoken, trailing = rest[1:], ""
            note = f"missing closing {_CLOSE!r}; kept the rest of the line as the text"
        else:
            spoken, trailing = rest[1:close], rest[close + 1 :].strip()
        body = _join(_unwrap_text(spoken), trailing)
    elif not rest:
        return Line("", text), None  # "一句说明：" with nothing after it: prose, not a speaker
    else:
        if rest.count(_CLOSE) > rest.count(_OPEN):
            if not rest.endswith(_CLOSE):
                raise ValueError(f"stray {_CLOSE!r} in text of {speaker or 'narration'!r}")
            rest = rest[:-1]
            note = f"stray closing {_CLOSE!r} at the end of the line dropped"
        body = _unwrap_text(rest)
    if not body:
        raise ValueError(f"no text after speaker {speaker!r}" if speaker else "no text")
    return Line(speaker, body), note


def parse_dialogue(
    text: str,
    *,
    path: str | Path | None = None,
) -> ParseResult:
    """Parse a whole dialogue text. Never raises for a bad line: see ``ParseResult``."""
    result = ParseResult()
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line, note = parse_line(raw)
        except ValueError as exc:
            result.problems.append(ParseError(f"{exc}: {raw.strip()[:80]!r}", path, lineno))
            continue
        if note:
            result.repaired.append(ParseError(note, path, lineno))
        result.lines.append(line)
        result.linenos.append(lineno)
    return result


def read_dialogue_file(path: Path) -> ParseResult:
    """Read a dialogue file as UTF-8 (with or without BOM); a decode error names file and line."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        lineno = data[: exc.start].count(b"\n") + 1
        raise ParseError(f"not valid UTF-8 (byte {exc.start})", path, lineno) from None
    return parse_dialogue(text, path=path)


def format_line(line: Line, narrators: Iterable[str] = DEFAULT_NARRATORS) -> str:
    """One line back in the dialogue format: ``名字:「台词」`` or ``旁白:叙述``."""
    speaker = line.speaker.strip()
    names = {n.lower() for n in (*narrators, *DEFAULT_NARRATORS)}
    if speaker == "" or speaker.lower() in names:
        return f"{speaker or '旁白'}:{line.text}"
    return f"{speaker}:{_OPEN}{line.text}{_CLOSE}"


def format_dialogue(lines: Iterable[Line], narrators: Iterable[str] = DEFAULT_NARRATORS) -> str:
    narrators = tuple(narrators)
    return "\n".join(format_line(ln, narrators) for ln in lines)
