"""A reply's face from its tone: each feeling in each language, and none for plain talk."""

from __future__ import annotations

import pytest

from rolecast.avatar.expression import expression


@pytest.mark.parametrize(
    ("text", "face"),
    [
        ("哈哈，太好了！今天的面我请你。", "happy"),
        ("やった！ありがとう、嬉しいな。", "happy"),
        ("Haha, that's wonderful news!", "happy"),
        ("哼，你这个笨蛋，闭嘴！", "angry"),
        ("うるさい！ばかじゃないの？", "angry"),
        ("How dare you, you idiot!", "angry"),
        ("唉……雪团走丢了，我好难过。", "sad"),
        ("ごめんね、寂しい思いをさせて。", "sad"),
        ("I'm sorry. I miss you, and it's lonely here.", "sad"),
        ("什么？！你竟然一个人来了？", "surprised"),
        ("えっ？まさか、本当に？", "surprised"),
        ("Whoa, no way! Really?", "surprised"),
    ],
)
def test_each_feeling_is_read_in_each_language(text: str, face: str) -> None:
    assert expression(text) == face


@pytest.mark.parametrize(
    "text",
    [
        "面四文一碗。",
        "バスは九時に出ます。",
        "The bus leaves at nine.",
        "",
        "来たばかりです。",  # ばかり is "just", not ばか
        "そうそう、ええ、そのとおり。",  # うそ inside そうそう; ええ is "yes"
        "The crusade was cryptic...",  # sad and cry inside other words; an ellipsis
    ],
)
def test_plain_talk_keeps_the_idle_face(text: str) -> None:
    assert expression(text) is None
