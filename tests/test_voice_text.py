"""The pure text rules of speech: what is spoken, where sentences end, which language."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rolecast.voice.espeak import to_pinyin
from rolecast.voice.text import (
    guess_language,
    has_speakable,
    pause_after,
    speech_chunks,
    split_sentences,
    spoken_text,
)


@pytest.mark.parametrize(
    "reply, spoken",
    [
        ("（擦了擦手）哟，旅人！", "哟，旅人！"),
        ("坐(笑)，先来碗面。", "坐，先来碗面。"),
        ("【旁白】雨停了。好冷。", "雨停了。好冷。"),
        ("*waves* Hello there!", "Hello there!"),
        ("＊手を振る＊こんにちは。", "こんにちは。"),
        ("Hi [leans in] friend.", "Hi friend."),
        ("林小满:「哟，来碗面？」", "哟，来碗面？"),
        ("小满：好吧。\n旅人：多少钱？", "好吧。\n多少钱？"),
        ("Mia: Drop that fish, Coal!", "Drop that fish, Coal!"),
        ("（外（内）外）你好", "你好"),  # nested brackets
        ("好的（没说完", "好的没说完"),  # an unclosed bracket is dropped, its words kept
        ("At 12:30 we close.", "At 12:30 we close."),  # not a name prefix
        ("「ねえ」と彼女は言った。", "ねえと彼女は言った。"),
    ],
)
def test_spoken_text_skips_narration_and_name_prefixes(reply: str, spoken: str) -> None:
    assert spoken_text(reply) == spoken


@pytest.mark.parametrize("reply", ["（笑）", "*sighs*", "【旁白】 (雨声)", "……！", ""])
def test_nothing_to_speak(reply: str) -> None:
    assert not has_speakable(spoken_text(reply))


@given(st.text(alphabet="ab你好（）()*【】[]：: \n。！", max_size=40))
def test_spoken_text_never_keeps_brackets_or_asterisks(text: str) -> None:
    out = spoken_text(text)
    assert not set(out) & set("()（）【】[]*")


@pytest.mark.parametrize(
    "text, sentences",
    [
        ("哟，雾这么大？坐，先来碗面。八文！", ["哟，雾这么大？", "坐，先来碗面。", "八文！"]),
        (
            "ねえ、キョン！今日は休みだよ。わかった？",
            ["ねえ、キョン！", "今日は休みだよ。", "わかった？"],
        ),
        ("「好。」他走了。", ["「好。」", "他走了。"]),  # the closing quote stays with its sentence
        (
            "Mr. Smith paid 3.5 coins. Fine! Really?",
            ["Mr. Smith paid 3.5 coins.", "Fine!", "Really?"],
        ),
        ("第一行\n第二行", ["第一行", "第二行"]),
        ("真的吗？！……", ["真的吗？！……"]),
        ("no end mark", ["no end mark"]),
    ],
)
def test_split_sentences(text: str, sentences: list[str]) -> None:
    assert split_sentences(text) == sentences


@given(st.text(alphabet="ab 你好。！？.!\n」", max_size=60))
def test_split_sentences_loses_nothing(text: str) -> None:
    squeeze = re.compile(r"\s+")
    assert squeeze.sub("", "".join(split_sentences(text))) == squeeze.sub("", text)


def test_speech_chunks_cut_long_sentences_and_a_short_first_piece() -> None:
    text = "霧が深いね、旅人さん、座って、まず麺を一杯どうぞ。八文よ。"
    assert speech_chunks(text, "ja", first_chars=0) == [
        "霧が深いね、旅人さん、座って、まず麺を一杯どうぞ。",
        "八文よ。",
    ]
    pieces = speech_chunks(text, "ja", first_chars=11)  # the head alone is cut off
    assert pieces == ["霧が深いね、旅人さん、", "座って、まず麺を一杯どうぞ。", "八文よ。"]
    assert speech_chunks(text, "ja", first_chars=8)[:2] == [
        "霧が深いね、",
        "旅人さん、座って、まず麺を一杯どうぞ。",
    ]
    assert speech_chunks("ねえねえねえねえねえねえねえ。", "ja", first_chars=4) == [
        "ねえねえねえねえねえねえねえ。"  # no clause mark: whole
    ]
    long = "、".join(["ながいぶんしょう"] * 20) + "。"
    assert all(len(p) <= 61 for p in speech_chunks(long, "ja", first_chars=0))
    assert speech_chunks("……。好！", "zh") == ["好！"]  # a piece with nothing to say goes
    assert pause_after("好。") > pause_after("好，")


@pytest.mark.parametrize(
    "text, language",
    [
        ("こんにちは、林さん。", "ja"),
        ("今日は寒いね", "ja"),  # kana among kanji
        ("你好，我是林小满。", "zh"),
        ("哈利・波特来了", "zh"),  # the katakana middle dot alone is not Japanese
        ("我喜欢 Python 和 Java", "zh"),
        ("Hello there, friend.", "en"),
        ("안녕하세요", "other"),
        ("Привет", "other"),
        ("123 !!", "other"),
        ("", "other"),
    ],
)
def test_guess_language(text: str, language: str) -> None:
    assert guess_language(text) == language


@pytest.mark.needs("pypinyin", extra="voice")
def test_pinyin_is_numbered_tones_with_ascii_punctuation() -> None:
    assert to_pinyin("你好，世界。") == "ni3 hao3, shi4 jie4."
    assert to_pinyin("好吧——行") == "hao3 ba5, xing2"  # neutral tone is 5, a dash a pause
    assert to_pinyin("「绿色」的 ok 123？") == "lv4 se4 de5 ok 123?"
    assert not re.search(r"[\u4e00-\u9fff]", to_pinyin("雾这么大还摸得到石桥头？"))
