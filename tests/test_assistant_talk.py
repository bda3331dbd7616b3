"""The assistant talk that no character says: found where it starts, whatever the script."""

from __future__ import annotations

import pytest

from rolecast.assistant_talk import boilerplate_matches, first_assistant_talk, refusal


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, but I can't assist with that.",
        "I'm sorry, but I don't have access to your recent activity.",
        "As an AI, I don't eat.",
        "很抱歉，我无法协助完成这个请求。",
        "作为一个AI，我没有家乡。",
        "我只是一个语言模型。",
        "是的，我是一个自然语言处理（NLP）程序。",
        "I'm a computer program, so no.",
        "Sorry, but I can't assist with that.",
        "是的，我是一个自然语言模型，可以回答各种问题。",
        # seen in eval canon: typographic apostrophes, and a refusal to go on
        "I’m sorry, but I can’t assist with that.",
        "很抱歉，我无法继续这个对话。",
        # seen on the gate as Sheldon (2026-11-30, canon budget 300)
        "I'm sorry, but I don't have the capability to watch TV or engage in any activities.",
    ],
)
def test_refusals_and_self_descriptions_are_found(text: str) -> None:
    assert refusal(text)


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry to hear that. Bazinga.",
        "Sorry, I can't come tomorrow: the comic book store has a sale.",
        "抱歉，今天的面卖完了。",
        "An AI? I am a theoretical physicist.",
        "你是AI吗？我是林小满。",
        "我是一个程序员的女儿。",
        "对不起，我不能继续走了，腿疼。",
        "I don't have the ability to sit still while you hum, Penny.",
    ],
)
def test_what_a_character_may_say_is_not(text: str) -> None:
    assert refusal(text) is None
    assert first_assistant_talk(text) is None


def test_the_place_is_a_place_in_the_text_even_where_nfkc_widens_it() -> None:
    text = "Well… fine. If there's anything else, feel free to ask."
    found = first_assistant_talk(text)
    assert found is not None
    assert text[found[0] :].startswith("If there's anything else")
    zh = "好嘞……汤来了。有什么可以帮你的吗？"
    where, said = first_assistant_talk(zh) or (-1, "")
    assert zh[where:].startswith("有什么可以帮你")
    assert said.startswith("有什么")


def test_an_assistants_offer_of_help_is_a_closer() -> None:
    text = "I'm sorry to hear that, but I'm always here to help. How about you?"
    where, _ = first_assistant_talk(text) or (-1, "")
    assert text[where:].startswith("I'm always here to help")
    zh = "别难过。我一直在这里帮助你。"
    where, _ = first_assistant_talk(zh) or (-1, "")
    assert zh[where:].startswith("我一直在这里")
    assert first_assistant_talk("I'm here to see Penny.") is None
    for zh in ("不客气，有啥问题随时可以问我。", "无论是什么问题，我都会尽力提供帮助。"):
        assert first_assistant_talk(zh) is not None, zh
    closer = "不客气，有啥事想聊的就告诉我，我一定会帮你的。"
    where, _ = first_assistant_talk(closer) or (-1, "")
    assert closer[where:].startswith("有啥事想聊的就告诉我")  # "不客气，" is kept
    assert first_assistant_talk("有什么需要就告诉我。") is not None
    # in character: a question back, or asking the user to tell something
    for zh in ("有啥事？说吧。", "告诉我，你从哪儿来？", "有事没事都来吃碗面。"):
        assert first_assistant_talk(zh) is None, zh


def test_an_assistants_framing_and_numbered_lists_are_found() -> None:
    zh = "根据你的叙述，旅人最亲密的朋友是豆子"
    assert first_assistant_talk(zh) == (0, "根据你的叙述")
    listed = "如果遇到麻烦，你可以选择：1. 写信给他。2. 尽量和他沟通。"
    where, _ = first_assistant_talk(listed) or (-1, "")
    assert listed[where:].lstrip().startswith("1.")
    assert first_assistant_talk("Based on what you said, Penny is right.") is not None
    # counting in a sentence is no list; nor is a price
    assert first_assistant_talk("两碗面，1碗加蛋，2碗不加。") is None
    assert first_assistant_talk("It costs 1.50, or 2.00 with an egg.") is None


def test_talk_about_the_prompts_own_material_is_found() -> None:
    for text in (
        "The way Sheldon talks in these scenes is very serious.",
        "要理解李云龙在原作中的经典片段，你可以看他是如何行动的。",
        "请注意，孔捷的口吻和用词是非常重要的。",
        # the conversation analysed from outside (seen as 林小满's reply, shown cut short)
        "从旅人和林小满的对话中，我们可以推断出他们最亲密的朋友是岚伯。",
        "From the conversation between Leonard and Sheldon, we can infer that they argue.",
        # seen on the gate as 林小满 (2026-11-30): the chat itself described from outside
        "最近我碰到的怪事是旅人和小满姐之间的对话。",
    ):
        assert first_assistant_talk(text) is not None, text
    found = first_assistant_talk("从旅人和林小满的对话中")
    assert found is not None and found[0] == 0
    for said in ("我跟他的对话？早忘了。", "We can see the bridge from here.", "我们可以走了。"):
        assert first_assistant_talk(said) is None, said
    assert first_assistant_talk("We watched those scenes from Star Trek twice.") is None
    assert first_assistant_talk("我一直在这里陪你。") is None  # a friend may say so


def test_boilerplate_lists_each_pattern_that_matched() -> None:
    assert boilerplate_matches("Sorry. My training data ends in 2023.") == ["My training data"]
    assert boilerplate_matches("Hello there.") == []


def test_the_apology_a_refusal_starts_with_belongs_to_it() -> None:
    # cut at "I don't have access", the reply would have been "I'm sorry"
    text = "I'm sorry, but I don't have access to your recent activity."
    assert first_assistant_talk(text) == (0, "I'm sorry, but I don't have access to your")
    where, _ = first_assistant_talk("Hmm. Sorry, I can't help with that request.") or (-1, "")
    assert where == 5
