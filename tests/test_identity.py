"""Who a reply says the character is: a claim to be the user's role or a frequent canon
speaker is found where it starts; the character's own name, possessives, longer names
and parts with a line or two are not claims."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rolecast.character.model import Line, Scene
from rolecast.identity import WrongSelf, claimable_names

from conftest import make_character, make_english_character


def test_claimable_names_are_the_user_role_and_frequent_speakers() -> None:
    c = make_character()
    walk_on = Scene("walk-on", "x", [Line("守门士兵", "站住。"), Line("小满", "自己人。")])
    c = replace(c, scenes=[*c.scenes, walk_on])
    names = claimable_names(c, share=0)
    assert c.user_role in names and "旅人" in names
    assert "小满" not in names  # herself
    assert not any(c.is_narrator(n) for n in names)
    # one line among many is a part, not someone to be mistaken for
    assert "守门士兵" in names and "守门士兵" not in claimable_names(c, share=0.2)


@pytest.mark.parametrize(
    "text, claim",
    [
        ("I'm Guest.", "I'm Guest"),
        ("No, I am Guest, obviously.", "I am Guest"),
        ("Well... my name is Guest", "my name is Guest"),
        ("i'm Guest", "i'm Guest"),
        ("I\u2019m Guest.", "I\u2019m Guest"),  # shown as written
    ],
)
def test_english_claims(text: str, claim: str) -> None:
    found = WrongSelf.for_character(make_english_character()).find(text)
    assert found is not None and found[1] == claim
    assert text[found[0] :].lower().startswith(claim.split()[0].lower())


@pytest.mark.parametrize(
    "text",
    [
        "I'm Mia, and you are Guest.",
        "I'm Guest's friend, not his cook.",
        "I'm Guesthouse keeper.",  # a longer word, not the name
        "I'm guest here too, in a way.",  # names are matched as written
        "You're Guest, aren't you?",
    ],
)
def test_english_non_claims(text: str) -> None:
    assert WrongSelf.for_character(make_english_character()).find(text) is None


def test_chinese_claims_and_non_claims() -> None:
    c = make_character()
    wrong = WrongSelf.for_character(c)
    found = wrong.find("哎呀，我是旅人，刚到。")
    assert found == (3, "我是旅人")
    assert wrong.find("我就是旅人啊") is not None
    assert wrong.find("我是旅人的朋友") is None  # 的: a relation, not a claim
    assert wrong.find("我是小满，开面摊的。") is None
    assert wrong.find("你是旅人吧？") is None
    assert WrongSelf.of([]).find("我是谁") is None


def test_telling_the_user_they_are_the_character_is_a_claim_too() -> None:
    # seen from the default model as 林小满: "因为我知道你是林小满，所以你有点想家了。"
    c = make_character()
    wrong = WrongSelf.for_character(c)
    found = wrong.find("因为我知道你是小满，所以你有点想家了。")
    assert found is not None and found[1] == "你是小满"
    assert wrong.find("你是说小满的面？") is None
    mia = WrongSelf.for_character(make_english_character())
    assert mia.find("Well, you're Mia, so you know.") is not None
    assert mia.find("You are Mia's best customer.") is None
    # an actor playing the part is not the character
    assert wrong.find("我是个小满的演员。") is not None
    assert mia.find("I'm just playing Mia today.") is not None
    assert mia.find("I was playing cards with Mia's cat.") is None
