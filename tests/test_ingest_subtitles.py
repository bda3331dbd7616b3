"""rolecast.ingest: reading subtitle files and grouping their lines into scenes.

Every subtitle file here is written by the tests themselves.
"""

from __future__ import annotations

import codecs
import random

import pytest

pytestmark = pytest.mark.needs("pysubs2", "charset_normalizer", extra="ingest")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rolecast.character.model import Scene
from rolecast.errors import InputError, ParseError
from rolecast.ingest.kinds import style_name_kind
from rolecast.ingest.languages import language_of
from rolecast.ingest.scenes import UNKNOWN_SPEAKER, group_scenes, make_scenes, solo_spans
from rolecast.ingest.speakers import split_prefix
from rolecast.ingest.subtitles import MAX_BYTES, SubLine, Subtitles, read_subtitles

STYLE_FORMAT = (
    "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, "
    "BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, "
    "BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding"
)
EVENT_FORMAT = "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text"


def style(name: str, alignment: int = 2) -> str:
    return (
        f"Style: {name},Arial,48,&H00FFFFFF,&H000000FF,&H00000000,&H00000000,"
        f"0,0,0,0,100,100,0,0,1,2,1,{alignment},20,20,30,1"
    )


def dialogue(start: str, end: str, text: str, style: str = "Default", name: str = "") -> str:
    return f"Dialogue: 0,{start},{end},{style},{name},0,0,0,,{text}"


def ass(events: list[str], styles: list[str] | None = None) -> str:
    styles = styles or [style("Default")]
    return "\n".join(
        [
            "[Script Info]",
            "ScriptType: v4.00+",
            "PlayResX: 1920",
            "PlayResY: 1080",
            "",
            "[V4+ Styles]",
            STYLE_FORMAT,
            *styles,
            "",
            "[Events]",
            EVENT_FORMAT,
            *events,
            "",
        ]
    )


def srt(*cues: tuple[str, str, str]) -> str:
    blocks = [f"{i}\n{a} --> {b}\n{text}\n" for i, (a, b, text) in enumerate(cues, 1)]
    return "\n".join(blocks)


def read(text: str, name: str, **kwargs: object) -> Subtitles:
    return read_subtitles(text.encode("utf-8"), name, **kwargs)  # type: ignore[arg-type]


def by_index(subs: Subtitles) -> dict[int, SubLine]:
    return {ln.index: ln for ln in subs.lines}


# ---------------------------------------------------------------- ASS


ASS_EPISODE = ass(
    styles=[style("Default"), style("Sign", 8), style("OP_Romaji", 8), style("Notes")],
    events=[
        dialogue("0:00:01.00", "0:00:03.50", r"{\i1}Hello{\i0} there,\Nfriend.", name="Aoi"),
        dialogue("0:00:04.00", "0:00:06.00", r"Ken: Where\hare  we?"),
        dialogue("0:00:04.00", "0:00:06.00", r"{\pos(960,120)\fs40}BAKERY"),
        dialogue("0:00:05.00", "0:00:07.00", r"{\an8}Meanwhile, upstairs"),
        dialogue("0:00:05.00", "0:00:07.00", "Platform 3", style="Sign"),
        dialogue("0:00:08.00", "0:00:10.00", r"{\k25}so{\k30}ra {\kf40}ni", style="OP_Romaji"),
        dialogue("0:00:08.00", "0:00:10.00", r"{\ko20}la{\k20}la"),
        dialogue("0:00:11.00", "0:00:12.00", r"{\p1}m 0 0 l 100 0 100 100 0 100{\p0}"),
        dialogue("0:00:11.00", "0:00:12.00", r"{\p1}m 0 0 l 10 0 10 10{\p0}EXIT"),
        dialogue("0:00:13.00", "0:00:14.00", r"{\move(0,0,100,100)}Sliding"),
        "Comment: 0,0:00:13.00,0:00:14.00,Default,,0,0,0,,not shown",
        dialogue("0:00:15.00", "0:00:17.00", r"I said {TL: a pun in Japanese}no."),
        dialogue("0:00:18.00", "0:00:19.00", "The author explains the pun.", style="Notes"),
        dialogue("0:00:20.00", "0:00:22.00", r"{\fad(200,200)}Fine, {\b1}fine{\b0}."),
        dialogue("0:00:23.00", "0:00:25.00", "Chapter 2: The Bakery", style="Title"),
    ],
)


def test_ass_text_is_cleaned_and_signs_and_songs_are_told_apart() -> None:
    subs = read(ASS_EPISODE, "episode01.ass")
    assert (subs.format, subs.encoding, subs.dropped, subs.clipped) == ("ass", "utf-8", (), 0)
    ln = by_index(subs)
    assert ln[1].text == "Hello there,\nfriend." and ln[1].speaker_hint == "Aoi"
    assert (ln[1].start, ln[1].end, ln[1].style) == (1.0, 3.5, "Default")
    assert ln[2].text == "Where are we?" and ln[2].speaker_hint == "Ken"
    assert ln[12].text == "I said no."  # a {comment} is not text
    assert ln[14].text == "Fine, fine." and ln[14].kind == "dialogue" and ln[14].reason == ""
    kinds = {i: (x.kind, x.reason) for i, x in ln.items()}
    assert kinds[3] == ("sign", "\\pos override")
    assert kinds[4] == ("sign", "top alignment override \\an8")
    assert kinds[5] == ("sign", "style 'Sign' is named like a sign style")
    assert kinds[6] == ("song", "karaoke tag \\k25") and ln[6].text == "sora ni"
    assert kinds[7] == ("song", "karaoke tag \\ko20") and ln[7].text == "lala"
    assert 8 not in ln  # a drawing alone leaves no text
    assert kinds[9] == ("sign", "drawing (\\p)") and ln[9].text == "EXIT"
    assert kinds[10] == ("sign", "\\move override")
    assert 11 not in ln  # a Comment event
    assert kinds[13] == ("sign", "style 'Notes' is named like a sign style")
    assert (ln[15].kind, ln[15].text, ln[15].speaker_hint) == (
        "sign",
        "Chapter 2: The Bakery",
        None,
    )
    assert [x.index for x in subs.dialogue] == [1, 2, 12, 14]
    assert [x.start for x in subs.lines] == sorted(x.start for x in subs.lines)


def test_a_top_aligned_style_makes_a_sign() -> None:
    text = ass(
        styles=[style("Default"), style("Upper", 8)],
        events=[dialogue("0:00:01.00", "0:00:02.00", "A caption", style="Upper")],
    )
    (line,) = read(text, "x.ass").lines
    assert (line.kind, line.reason) == ("sign", "style 'Upper' is top-aligned (\\an8)")


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("Sign", "sign"),
        ("sign_big", "sign"),
        ("TL Note", "sign"),
        ("TLNote", "sign"),
        ("Title", "sign"),
        ("注释", "sign"),
        ("OP_Romaji", "song"),
        ("ED-JP", "song"),
        ("OPJP", "song"),
        ("EDchs", "song"),
        ("Song", "song"),
        ("Karaoke", "song"),
        ("op1", "song"),
        ("Default", None),
        ("Main", None),
        ("Editor", None),
        ("Opinion", None),
        ("Edo", None),
        ("Italics", None),
    ],
)
def test_style_names(name: str, kind: str | None) -> None:
    assert style_name_kind(name) == kind


def test_ssa_v4_file_and_legacy_top_alignment() -> None:
    text = "\n".join(
        [
            "[Script Info]",
            "ScriptType: v4.00",
            "",
            "[V4 Styles]",
            "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, TertiaryColour, "
            "BackColour, Bold, Italic, BorderStyle, Outline, Shadow, Alignment, MarginL, "
            "MarginR, MarginV, AlphaLevel, Encoding",
            "Style: Default,Arial,20,16777215,65535,65535,0,0,0,1,2,2,2,10,10,10,0,0",
            "",
            "[Events]",
            "Format: Marked, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text",
            "Dialogue: Marked=0,0:00:01.00,0:00:02.00,Default,Mio,0000,0000,0000,,Good morning.",
            r"Dialogue: Marked=0,0:00:03.00,0:00:04.00,Default,,0000,0000,0000,,{\a6}A sign",
            "",
        ]
    )
    subs = read(text, "old.ssa")
    assert subs.format == "ssa"
    first, second = subs.lines
    assert (first.text, first.speaker_hint, first.kind) == ("Good morning.", "Mio", "dialogue")
    assert (second.kind, second.reason) == ("sign", "top alignment override \\a6")


def test_format_is_detected_from_content_when_the_name_has_no_known_extension() -> None:
    assert read(ASS_EPISODE, "episode01.txt").format == "ass"
    assert read(srt(("00:00:01,000", "00:00:02,000", "Hi.")), "subs").format == "srt"
    assert read("WEBVTT\n\n00:01.000 --> 00:02.000\nHi.\n", "subs.srt").format == "vtt"
    assert read(srt(("00:00:01,000", "00:00:02,000", "Hi.")), "misnamed.ass").format == "srt"


# ---------------------------------------------------------------- SRT and WebVTT


def test_srt_tags_and_speaker_prefixes() -> None:
    text = srt(
        ("00:00:01,000", "00:00:02,000", "<i>Mika: Are you <b>sure</b>?</i>"),
        ("00:00:03,000", "00:00:04,000", '<font color="#ffff00">Riku：</font>Yes.'),
        ("00:00:05,000", "00:00:06,000", "（旁白）那一年的夏天很长。"),
        ("00:00:07,000", "00:00:08,000", "[Sora] Over here!"),
        ("00:00:09,000", "00:00:10,000", "Meet me at 12:30 sharp."),
        ("00:00:11,000", "00:00:12,000", "12:30 already?"),
        ("00:00:13,000", "00:00:14,000", "note: this is lower case"),
        ("00:00:15,000", "00:00:16,000", "Mika: Hi.\nRiku: Hello."),
        ("00:00:17,000", "00:00:18,000", "A very long speaker name here: no"),
        ("00:00:19,000", "00:00:20,000", r"{\an8}Off screen"),
        ("00:00:21,000", "00:00:22,000", "Wait, you: what?"),
        ("00:00:23,000", "00:00:24,000", "小雪：  我们走吧。\n快点！"),
        ("00:00:25,000", "00:00:26,000", "♪ La la la ♪"),
        ("00:00:27,000", "00:00:28,000", "Use {curly} braces & <3 love"),
    )
    got = [(x.speaker_hint, x.text, x.kind) for x in read(text, "show.srt").lines]
    assert got == [
        ("Mika", "Are you sure?", "dialogue"),
        ("Riku", "Yes.", "dialogue"),
        ("旁白", "那一年的夏天很长。", "dialogue"),
        ("Sora", "Over here!", "dialogue"),
        (None, "Meet me at 12:30 sharp.", "dialogue"),
        (None, "12:30 already?", "dialogue"),
        (None, "note: this is lower case", "dialogue"),
        (None, "Mika: Hi.\nRiku: Hello.", "dialogue"),  # two speakers: no single hint
        (None, "A very long speaker name here: no", "dialogue"),
        (None, "Off screen", "sign"),
        (None, "Wait, you: what?", "dialogue"),
        ("小雪", "我们走吧。\n快点！", "dialogue"),
        (None, "♪ La la la ♪", "song"),
        (None, "Use {curly} braces & <3 love", "dialogue"),
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Name: text", ("Name", "text")),
        ("名前：テキスト", ("名前", "テキスト")),
        ("（名字）文字", ("名字", "文字")),
        ("[Name] text", ("Name", "text")),
        ("【旁白】夜深了。", ("旁白", "夜深了。")),
        ("Dr. Kim: Sit down.", ("Dr. Kim", "Sit down.")),
        ("Name:", (None, "Name:")),
        ("[Music]", (None, "[Music]")),
        ("At 12:30 we go", (None, "At 12:30 we go")),
        ("See https://example.org", (None, "See https://example.org")),
        ("Https://example.org", (None, "Https://example.org")),
        ("Thirteen chars: x", (None, "Thirteen chars: x")),
        ("Twelve chars: x", ("Twelve chars", "x")),
        ("Well... you: x", (None, "Well... you: x")),
    ],
)
def test_speaker_prefixes(line: str, expected: tuple[str | None, str]) -> None:
    assert split_prefix(line) == expected


def test_vtt_voices_entities_ruby_and_notes() -> None:
    text = "\n".join(
        [
            "WEBVTT",
            "",
            "STYLE",
            "::cue { color: white }",
            "",
            "intro",
            "00:01.000 --> 00:03.000 line:90%",
            "<v Hana>Did you <c.yellow>see</c> that?</v>",
            "",
            "NOTE a comment between cues",
            "",
            "00:04.000 --> 00:05.500",
            "<v.loud Taro>Fish &amp; chips!",
            "",
            "00:00:06.000 --> 00:00:08.000",
            "<ruby>明日<rt>あした</rt></ruby>は<00:00:07.000>晴れ",
            "",
            "00:09.000 --> 00:10.000",
            "<v Hana>Go!</v>\n<v Taro>No!</v>",
            "",
        ]
    )
    subs = read(text, "clip.vtt")
    assert subs.format == "vtt"
    got = [(x.start, x.end, x.speaker_hint, x.text) for x in subs.lines]
    assert got == [
        (1.0, 3.0, "Hana", "Did you see that?"),
        (4.0, 5.5, "Taro", "Fish & chips!"),
        (6.0, 8.0, None, "明日は晴れ"),
        (9.0, 10.0, None, "Go!\nNo!"),  # two voices in one cue: no single hint
    ]


# ---------------------------------------------------------------- encodings

ENCODED_TEXTS = {
    "gb18030": ["老板，今天的面还有吗？", "还剩最后两碗，要不要加个荷包蛋？"],
    "shift_jis": ["駅までの道を教えてください。", "この角を右に曲がって、まっすぐです。"],
    "big5": ["颱風要來了，窗戶都關好了嗎？", "關好了，蠟燭也準備好了。"],
    "utf-8": ["Ça va? 你好，世界。", "こんにちは、안녕하세요!"],
}


def encoded_srt(lines: list[str]) -> str:
    return srt(
        ("00:00:01,000", "00:00:03,500", lines[0]), ("00:00:04,000", "00:00:06,000", lines[1])
    )


@pytest.mark.parametrize(
    ("texts", "codec", "bom", "expected"),
    [
        ("utf-8", "utf-8", b"", "utf-8"),
        ("utf-8", "utf-8", codecs.BOM_UTF8, "utf-8-sig"),
        ("utf-8", "utf-16-le", codecs.BOM_UTF16_LE, "utf-16-le"),
        ("utf-8", "utf-16-be", codecs.BOM_UTF16_BE, "utf-16-be"),
        ("utf-8", "utf-32-le", codecs.BOM_UTF32_LE, "utf-32-le"),
        ("utf-8", "utf-32-be", codecs.BOM_UTF32_BE, "utf-32-be"),
        ("utf-8", "utf-16-le", b"", "utf-16-le"),
        ("utf-8", "utf-16-be", b"", "utf-16-be"),
        ("gb18030", "gb18030", b"", "gb18030"),
        ("gb18030", "gbk", b"", "gb18030"),
        ("shift_jis", "shift_jis", b"", "cp932"),
        ("big5", "big5", b"", "cp950"),
    ],
)
def test_encodings_are_detected(texts: str, codec: str, bom: bytes, expected: str) -> None:
    lines = ENCODED_TEXTS[texts]
    data = bom + encoded_srt(lines).replace("\n", "\r\n").encode(codec)
    subs = read_subtitles(data, "episode.srt")
    assert subs.encoding == expected
    assert [x.text for x in subs.lines] == lines


def test_legacy_encoding_in_an_ass_file() -> None:
    text = ass([dialogue("0:00:01.00", "0:00:02.00", "今日はいい天気ですね。", name="美咲")])
    (line,) = read_subtitles(text.encode("cp932"), "ep.ass").lines
    assert (line.text, line.speaker_hint) == ("今日はいい天気ですね。", "美咲")


def test_undecodable_text_names_the_file_and_what_was_tried() -> None:
    data = encoded_srt(["Un caf\u00e9 cr\u00e8me, s'il vous pla\u00eet.", "Voil\u00e0 !"])
    with pytest.raises(ParseError) as err:
        read_subtitles(data.encode("cp1252"), "french.srt")
    message = str(err.value)
    assert message.startswith("french.srt: cannot decode")
    assert "utf-8: invalid at byte" in message and "gb18030, cp932, big5" in message
    assert err.value.path == "french.srt"


def test_an_encoding_can_be_forced() -> None:
    data = encoded_srt(["Un caf\u00e9.", "Merci."]).encode("cp1252")
    subs = read_subtitles(data, "french.srt", encoding="cp1252")
    assert subs.encoding == "cp1252" and subs.lines[0].text == "Un caf\u00e9."
    with pytest.raises(ParseError):
        read_subtitles("你好".encode("gb18030"), "x.srt", encoding="utf-8")
    with pytest.raises(InputError):
        read_subtitles(data, "x.srt", encoding="no-such-codec")


# ---------------------------------------------------------------- bilingual


BILINGUAL = ass(
    [
        dialogue("0:00:01.00", "0:00:02.00", r"你在干什么？\N何をしているの？"),
        dialogue("0:00:03.00", "0:00:04.00", r"小明：快走吧！\Nシャオミン：早く行こう！"),
        dialogue("0:00:05.00", "0:00:06.00", r"我没事。\N大丈夫だよ。"),
        dialogue("0:00:07.00", "0:00:08.00", r"嗯。"),
        dialogue("0:00:09.00", "0:00:10.00", r"♪\N走吧\N行こう"),
    ]
)


def test_bilingual_zh_ja_auto_picks_the_usual_first_language() -> None:
    subs = read(BILINGUAL, "bi.ass")
    assert subs.primary_language == "zh"
    got = [(x.text, x.alt_text, x.speaker_hint) for x in subs.lines]
    assert got == [
        ("你在干什么？", "何をしているの？", None),
        ("快走吧！", "早く行こう！", "小明"),
        ("我没事。", "大丈夫だよ。", None),
        ("嗯。", None, None),
        ("♪\n走吧", "行こう", None),
    ]


def test_bilingual_explicit_primary_language() -> None:
    subs = read(BILINGUAL, "bi.ass", primary_language="ja")
    assert subs.primary_language == "ja"
    assert [(x.text, x.alt_text) for x in subs.lines][:3] == [
        ("何をしているの？", "你在干什么？"),
        ("早く行こう！", "快走吧！"),
        ("大丈夫だよ。", "我没事。"),
    ]
    with pytest.raises(InputError):
        read(BILINGUAL, "bi.ass", primary_language="klingon")


def test_bilingual_zh_en() -> None:
    text = srt(
        ("00:00:01,000", "00:00:02,000", "Where is the station?\n车站在哪里？"),
        ("00:00:03,000", "00:00:04,000", "Turn left at the bakery.\n在面包店左转。"),
        ("00:00:05,000", "00:00:06,000", "Thanks!\n谢谢！"),
    )
    auto = read(text, "zh-en.srt")
    assert auto.primary_language == "en"
    assert (
        auto.lines[0].text == "Where is the station?" and auto.lines[0].alt_text == "车站在哪里？"
    )
    zh = read(text, "zh-en.srt", primary_language="zh-Hans")
    assert [(x.text, x.alt_text) for x in zh.lines][2] == ("谢谢！", "Thanks!")


def test_one_language_is_not_split_in_auto_mode() -> None:
    text = srt(
        ("00:00:01,000", "00:00:02,000", "我们去吃iPhone店旁边的面吧。\n好不好？"),
        ("00:00:03,000", "00:00:04,000", "好。"),
    )
    subs = read(text, "zh.srt")
    assert subs.primary_language is None
    assert subs.lines[0].text == "我们去吃iPhone店旁边的面吧。\n好不好？"
    assert subs.lines[0].alt_text is None


def test_separate_events_with_identical_times_are_merged() -> None:
    text = ass(
        styles=[style("CN"), style("JP")],
        events=[
            dialogue("0:00:01.00", "0:00:02.00", "早上好。", style="CN", name="Aoi"),
            dialogue("0:00:03.00", "0:00:04.00", "你去哪儿？", style="CN"),
            dialogue("0:00:05.00", "0:00:06.00", "一起走吧。", style="CN"),
            dialogue("0:00:05.00", "0:00:06.00", "我也去。", style="CN"),  # two speakers
            dialogue("0:00:01.00", "0:00:02.00", "おはよう。", style="JP"),
            dialogue("0:00:03.00", "0:00:04.00", "どこ行くの？", style="JP"),
        ],
    )
    subs = read(text, "two-tracks.ass")
    got = [(x.index, x.style, x.text, x.alt_text, x.speaker_hint) for x in subs.lines]
    assert got == [
        (1, "CN", "早上好。", "おはよう。", "Aoi"),
        (2, "CN", "你去哪儿？", "どこ行くの？", None),
        (3, "CN", "一起走吧。", None, None),
        (4, "CN", "我也去。", None, None),
    ]


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("你在干什么？", "zh"),
        ("何をしているの？", "ja"),
        ("全員、撤退しろ", "ja"),
        ("안녕하세요", "ko"),
        ("Hello there", "en"),
        ("Привет", "ru"),
        ("哈利・波特", "zh"),
        ("我的iPhone", "zh"),
        ("♪ ~ …", None),
        ("123", None),
    ],
)
def test_language_of_a_line(text: str, language: str | None) -> None:
    assert language_of(text) == language


# ---------------------------------------------------------------- times


def test_times_beyond_the_media_are_clipped_and_bad_events_dropped() -> None:
    text = ass(
        [
            dialogue("0:00:01.00", "0:00:02.00", "Fine."),
            dialogue("0:00:08.00", "0:00:12.00", "Crossing the end."),
            dialogue("0:00:09.00", "0:00:11.00", "Also crossing."),
            dialogue("0:00:11.00", "0:00:13.00", "After the end."),
            dialogue("0:00:05.00", "0:00:04.00", "Backwards."),
            dialogue("-0:00:01.00", "0:00:01.00", "Negative."),
        ]
    )
    subs = read(text, "ep.ass", duration=10.0)
    assert [(x.text, x.start, x.end) for x in subs.lines] == [
        ("Fine.", 1.0, 2.0),
        ("Crossing the end.", 8.0, 10.0),
        ("Also crossing.", 9.0, 10.0),
    ]
    assert subs.clipped == 2
    assert subs.dropped == (
        "event 4: starts after the end of the media (0:00:11.000 >= 0:00:10.000)",
        "event 5: ends before it starts (0:00:04.000 < 0:00:05.000)",
        "event 6: negative time (-0:00:01.000 to 0:00:01.000)",
    )
    without = read(text, "ep.ass")
    assert without.clipped == 0 and len(without.lines) == 4 and len(without.dropped) == 2
    with pytest.raises(InputError):
        read(text, "ep.ass", duration=-1.0)


def test_end_before_start_in_srt_is_dropped_and_reported() -> None:
    text = srt(
        ("00:00:05,000", "00:00:04,000", "Backwards."),
        ("00:00:06,000", "00:00:07,000", "Forwards."),
    )
    subs = read(text, "x.srt")
    assert [x.text for x in subs.lines] == ["Forwards."]
    assert subs.dropped == ("event 1: ends before it starts (0:00:04.000 < 0:00:05.000)",)


# ---------------------------------------------------------------- bad input


def garbage(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (b"", "empty.srt", "empty file"),
        (b"  \r\n\t\n", "blank.ass", "empty file"),
        (codecs.BOM_UTF8, "bom-only.srt", "empty file"),
        (garbage(4096, 1), "noise.srt", ""),
        (garbage(4096, 2), "noise.ass", ""),
        (garbage(4096, 3), "noise.bin", ""),
        (b"\x00\x01\x02\x03" * 100, "zeros.vtt", ""),
        (b"just some words, no times at all\n", "words.srt", "no subtitle events"),
        (b"just some words\n", "words.txt", "not a subtitle file"),
        (ASS_EPISODE[: ASS_EPISODE.index("[Events]")].encode(), "cut.ass", "no subtitle events"),
        (ASS_EPISODE[: ASS_EPISODE.index("0:00:04.00") + 4].encode(), "cut.ass", "malformed"),
        (ASS_EPISODE.replace(",48,", ",big,").encode(), "bad-style.ass", "malformed ASS"),
        (b'<tt xmlns="http://www.w3.org/ns/ttml"></tt>', "x.ttml", "unsupported format 'ttml'"),
        (b"{1}{25}Hello\n{30}{50}World\n", "movie.sub", "unsupported format 'microdvd'"),
    ],
)
def test_bad_input_raises_parse_error(data: bytes, name: str, message: str) -> None:
    with pytest.raises(ParseError) as err:
        read_subtitles(data, name)
    assert str(err.value).startswith(f"{name}: ")
    assert message in str(err.value)


def test_oversized_file_is_refused_before_decoding() -> None:
    with pytest.raises(ParseError, match="too large"):
        read_subtitles(b"1" * (MAX_BYTES + 1), "huge.srt")
    with pytest.raises(ParseError, match="too large"):
        read_subtitles(srt(("00:00:01,000", "00:00:02,000", "Hi.")).encode(), "x.srt", max_bytes=10)


def test_parser_warnings_become_notes_not_errors() -> None:
    text = ASS_EPISODE.replace(",1,2,1,2,20,20,30,1", ",1,2,1,x,20,20,30,1", 1)
    subs = read(text, "odd.ass")
    assert subs.notes == ("Failed to parse alignment, using default",)
    assert by_index(subs)[1].text == "Hello there,\nfriend."


# ---------------------------------------------------------------- scenes


def line(i: int, start: float, end: float, kind: str = "dialogue", hint: str | None = None):
    return SubLine(i, start, end, f"line {i}", None, hint, kind, "", "Default")


def test_scenes_split_at_silences_and_skip_signs() -> None:
    lines = [
        line(1, 0, 2),
        line(2, 3, 9),
        line(3, 4, 5),  # overlaps line 2: the silence after it counts from 9
        line(4, 14, 15),
        line(5, 15.5, 16, kind="sign"),
        line(6, 22.5, 24),
        line(7, 24, 25, kind="song"),
    ]
    groups = group_scenes(lines)
    assert [[x.index for x in g] for g in groups] == [[1, 2, 3, 4], [6]]
    assert [[x.index for x in g] for g in group_scenes(lines, gap=4.9)] == [[1, 2, 3], [4], [6]]


def test_solo_spans_keep_the_part_of_each_line_heard_alone() -> None:
    lines = [
        line(1, 0, 3),
        line(2, 2.5, 5),  # cut by 1 and 3: alone 3-4 (1.0 s) and 4.3-5 (0.7 s)
        line(3, 4, 4.3),  # inside 2: never alone
        line(4, 10, 10.2),  # inside 5
        line(5, 10, 11),
        line(6, 12, 12.4, kind="sign"),  # not dialogue: neither cut nor kept
        line(7, 12.2, 13),
        line(8, 20, 30),  # a long line with a short one inside: the longer side wins
        line(9, 21, 22),  # inside 8: never alone
    ]
    spans = solo_spans(lines)
    assert spans == {1: (0, 2.5), 2: (3, 4), 5: (10.2, 11), 7: (12.2, 13), 8: (22, 30)}
    # a line nothing overlaps is kept however short; an overlapped one needs min_solo alone
    strict = solo_spans(lines, min_solo=1.5)
    assert 7 in strict and 2 not in strict and 1 in strict


def test_long_scene_is_split_at_its_longest_pause() -> None:
    starts = [0, 2, 4, 6, 8, 13, 15, 17, 19, 21, 23, 28.5, 30, 32]
    lines = [line(i, s, s + 1.5) for i, s in enumerate(starts, 1)]
    assert len(group_scenes(lines)) == 1
    # pauses of 0.5 s, but 3.5 s before line 6 and 4.0 s before line 12: cut there first
    by_lines = group_scenes(lines, max_lines=12)
    assert [[x.index for x in g] for g in by_lines] == [list(range(1, 12)), [12, 13, 14]]
    by_lines = group_scenes(lines, max_lines=10)
    assert [[x.index for x in g] for g in by_lines] == [
        [1, 2, 3, 4, 5],
        list(range(6, 12)),
        [12, 13, 14],
    ]
    by_lines = group_scenes(lines, max_lines=5)
    assert [[x.index for x in g] for g in by_lines] == [
        [1, 2, 3, 4, 5],
        [6, 7, 8],
        [9, 10, 11],
        [12, 13, 14],
    ]
    by_time = group_scenes(lines, max_seconds=25)
    assert [[x.index for x in g] for g in by_time] == [list(range(1, 12)), [12, 13, 14]]
    by_time = group_scenes(lines, max_seconds=20)
    assert [[x.index for x in g] for g in by_time] == [
        [1, 2, 3, 4, 5],
        list(range(6, 12)),
        [12, 13, 14],
    ]


def test_equal_pauses_split_in_the_middle_and_a_long_line_stays_whole() -> None:
    lines = [line(i, i * 2.0, i * 2.0 + 1) for i in range(8)]
    groups = group_scenes(lines, max_lines=4)
    assert [[x.index for x in g] for g in groups] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert group_scenes([line(1, 0, 500)], max_seconds=240) == [[line(1, 0, 500)]]
    with pytest.raises(InputError):
        group_scenes(lines, max_lines=0)


def test_make_scenes_ids_speakers_and_times() -> None:
    lines = [line(1, 0, 1, hint="Aoi"), line(2, 1, 2), line(3, 20, 21, hint="Ken")]
    scenes = make_scenes(group_scenes(lines), episode=3)
    assert [s.id for s in scenes] == ["ep3-s001", "ep3-s002"]
    assert all(isinstance(s, Scene) and s.title == "" for s in scenes)
    first = scenes[0].lines
    assert [(x.speaker, x.text, x.start, x.end) for x in first] == [
        ("Aoi", "line 1", 0, 1),
        (UNKNOWN_SPEAKER, "line 2", 1, 2),
    ]
    assert UNKNOWN_SPEAKER == "?"
    narrated = make_scenes(
        [lines], "S01E02", speaker_of=lambda ln: "" if ln.index == 2 else ln.speaker_hint
    )
    assert [x.speaker for x in narrated[0].lines] == ["Aoi", "", "Ken"]
    assert narrated[0].id == "epS01E02-s001"
    titled = make_scenes([lines[:1], []], 1, title_of=lambda g: f"at {g[0].start:.0f}s")
    assert [(s.id, s.title) for s in titled] == [("ep1-s001", "at 0s")]
    with pytest.raises(InputError):
        make_scenes([lines], "ep 1")


def test_read_then_group_end_to_end() -> None:
    subs = read(ASS_EPISODE, "episode01.ass")
    scenes = make_scenes(group_scenes(subs.lines, gap=2.5), episode=1)
    assert [[x.text for x in s.lines] for s in scenes] == [
        ["Hello there, friend.", "Where are we?"],
        ["I said no."],
        ["Fine, fine."],
    ]
    assert scenes[0].lines[1].speaker == "Ken" and scenes[1].lines[0].speaker == "?"


# ---------------------------------------------------------------- properties

NAMES = st.sampled_from(["a.srt", "a.ass", "a.ssa", "a.vtt", "a.txt", "a", "a.SRT"])
FRAGMENTS = st.sampled_from(
    [
        "1\n",
        "00:00:01,000 --> 00:00:02,000\n",
        "00:00:03.5 --> 00:00:01.000\n",
        "99:99:99,999 --> 00:00:00,000\n",
        "WEBVTT\n",
        "[Script Info]\n",
        "[V4+ Styles]\n",
        "[V4 Styles]\n",
        "[Events]\n",
        STYLE_FORMAT + "\n",
        EVENT_FORMAT + "\n",
        style("Default") + "\n",
        "Style: X,,,,\n",
        "Dialogue: 0,0:00:01.00,0:00:02.00,Default,,0,0,0,,{\\pos(1,2)}Hi\\N你好\n",
        "Dialogue: 0,0:00:01.00\n",
        "Dialogue: x,y,z\n",
        "Comment: 0,0:00:01.00,0:00:02.00,Default,,0,0,0,,c\n",
        "{\\p1}m 0 0{\\p0}",
        "{\\k10}",
        "<v Ann>",
        "<i>",
        "Name: ",
        "\n",
        "\r\n",
        "\ufeff",
    ]
)


def returns_or_parse_error(data: bytes, name: str, duration: float | None = None) -> None:
    try:
        subs = read_subtitles(data, name, duration=duration)
    except ParseError:
        return
    assert isinstance(subs, Subtitles)
    for ln in subs.lines:
        assert 0 <= ln.start <= ln.end and ln.text and ln.kind in ("dialogue", "sign", "song")
        assert duration is None or ln.end <= duration


@settings(max_examples=150, deadline=None, database=None)
@given(data=st.binary(max_size=2000), name=NAMES)
def test_random_bytes_return_or_raise_parse_error(data: bytes, name: str) -> None:
    returns_or_parse_error(data, name)


@settings(max_examples=150, deadline=None, database=None)
@given(
    text=st.text(max_size=500),
    name=NAMES,
    codec=st.sampled_from(["utf-8", "utf-16", "gb18030", "utf-8-sig"]),
)
def test_random_text_returns_or_raises_parse_error(text: str, name: str, codec: str) -> None:
    returns_or_parse_error(text.encode(codec, errors="replace"), name)


@settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    parts=st.lists(st.one_of(FRAGMENTS, st.text(max_size=20)), max_size=40),
    name=NAMES,
    duration=st.none() | st.floats(min_value=0.5, max_value=10),
)
def test_subtitle_like_text_returns_or_raises_parse_error(
    parts: list[str], name: str, duration: float | None
) -> None:
    returns_or_parse_error("".join(parts).encode("utf-8", errors="replace"), name, duration)


TIMED = st.builds(
    lambda start, length, kind: (start, length, kind),
    st.floats(min_value=0, max_value=2000, allow_nan=False),
    st.floats(min_value=0, max_value=300, allow_nan=False),
    st.sampled_from(["dialogue", "dialogue", "dialogue", "sign", "song"]),
)


@settings(max_examples=200, deadline=None, database=None)
@given(
    timed=st.lists(TIMED, max_size=120),
    sort=st.booleans(),
    gap=st.floats(min_value=0, max_value=30),
    max_lines=st.integers(min_value=1, max_value=50),
    max_seconds=st.floats(min_value=0.5, max_value=400),
)
def test_group_scenes_keeps_every_dialogue_line_once_in_order(
    timed: list[tuple[float, float, str]],
    sort: bool,
    gap: float,
    max_lines: int,
    max_seconds: float,
) -> None:
    if sort:
        timed = sorted(timed)
    lines = [line(i, s, s + n, kind=k) for i, (s, n, k) in enumerate(timed)]
    groups = group_scenes(lines, gap=gap, max_lines=max_lines, max_seconds=max_seconds)
    assert [x for g in groups for x in g] == [x for x in lines if x.kind == "dialogue"]
    for g in groups:
        assert g and (len(g) == 1 or len(g) <= max_lines)
        assert len(g) == 1 or max(x.end for x in g) - min(x.start for x in g) <= max_seconds
