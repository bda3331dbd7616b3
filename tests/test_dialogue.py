from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rolecast.character.dialogue import (
    format_dialogue,
    parse_dialogue,
    parse_line,
    read_dialogue_file,
)
from rolecast.character.model import Line
from rolecast.errors import ParseError


@pytest.mark.parametrize(
    "raw, speaker, text",
    [
        ("春日:「特训！现在就开始！」", "春日", "特训！现在就开始！"),
        ("春日：「全角冒号也行」", "春日", "全角冒号也行"),
        ("  阿虚 : 「前后有空格」  ", "阿虚", "前后有空格"),
        ("旁白:春日跑向了操场", "旁白", "春日跑向了操场"),
        ("旁白： 全角冒号的旁白", "旁白", "全角冒号的旁白"),
        ("Narrator:Harry looked up.", "Narrator", "Harry looked up."),
        (":Fred looking flabbergasted.", "", "Fred looking flabbergasted."),
        ("'''Scene''':「The apartment.」", "Scene", "The apartment."),
        (":「''(Time shift)''」", "", "(Time shift)"),
        ("春日:「那里」(春日指向操场)", "春日", "那里(春日指向操场)"),
        ("Sheldon:「Bazinga.」 (smiles)", "Sheldon", "Bazinga. (smiles)"),
        ("\ufeff小满:「带 BOM 的第一行」", "小满", "带 BOM 的第一行"),
        ("七神之中，尚在执政之位的唯留下两位。", "", "七神之中，尚在执政之位的唯留下两位。"),
        ("以下是他和你的经历：", "", "以下是他和你的经历："),
    ],
)
def test_variants_of_the_real_corpus(raw: str, speaker: str, text: str) -> None:
    line, note = parse_line(raw)
    assert (line.speaker, line.text) == (speaker, text)
    assert note is None


def test_repairs_are_kept_and_reported() -> None:
    result = parse_dialogue("赵刚:「没有收尾的括号\n旁白:多了一个括号」\n", path="x.txt")
    assert [ln.text for ln in result.lines] == ["没有收尾的括号", "多了一个括号"]
    assert [(p.path, p.line) for p in result.repaired] == [("x.txt", 1), ("x.txt", 2)]
    assert not result.problems


def test_unparseable_lines_are_reported_with_file_and_line() -> None:
    text = "春日:「好」\n\n韦小宝:「」\n阿虚:「对」\n」奇怪的行\n"
    result = parse_dialogue(text, path="story.txt")
    assert [ln.text for ln in result.lines] == ["好", "对"]
    assert result.linenos == [1, 4]
    assert [(p.path, p.line) for p in result.problems] == [("story.txt", 3), ("story.txt", 5)]
    assert "story.txt:3:" in str(result.problems[0])
    with pytest.raises(ParseError, match="story.txt:3"):
        result.raise_first()


def test_undecodable_file_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.txt"
    f.write_bytes("春日:「好」\n".encode() + b"\xff\xfe broken\n")
    with pytest.raises(ParseError, match=r"bad.txt:2: not valid UTF-8"):
        read_dialogue_file(f)


def test_utf8_bom_file(tmp_path: Path) -> None:
    f = tmp_path / "bom.txt"
    f.write_bytes("\ufeff春日:「好」\r\n阿虚:「嗯」\r\n".encode())
    assert [ln.speaker for ln in read_dialogue_file(f).lines] == ["春日", "阿虚"]


_speaker = st.text(
    alphabet=st.characters(
        blacklist_characters=":：「」\n\r'", blacklist_categories=("Cs", "Cc", "Z")
    ),
    min_size=1,
    max_size=12,
).filter(lambda s: s.strip() == s and s.lower() not in ("旁白", "narrator", "scene"))
_text = st.text(
    alphabet=st.characters(
        blacklist_characters="「」\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\ufeff\u200b\u200c\u200d\u2060",
        blacklist_categories=("Cs", "Cc"),
    ),
    min_size=1,
    max_size=40,
).filter(lambda s: s.strip() == s and s and not s.startswith("''") and "\ufffd" not in s)


@given(st.lists(st.tuples(_speaker, _text), min_size=1, max_size=8))
def test_format_then_parse_round_trips(pairs: list[tuple[str, str]]) -> None:
    lines = [Line(s, t) for s, t in pairs]
    parsed = parse_dialogue(format_dialogue(lines))
    assert not parsed.problems
    assert [(ln.speaker, ln.text) for ln in parsed.lines] == pairs
