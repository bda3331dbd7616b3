from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rolecast.character.model import Line, Scene
from rolecast.prompt.assemble import MESSAGE_OVERHEAD, Budget, Turn, assemble
from rolecast.prompt.tokens import truncate

from conftest import make_character


def _total(messages, counter) -> int:
    return sum(counter.count(m["content"]) + MESSAGE_OVERHEAD for m in messages)


def test_classic_order_layout(character, counter) -> None:
    history = [Turn("旅人", "晚上好"), Turn("小满", "来啦，坐。")]
    a = assemble(
        character, character.scenes[:2], history, Turn("旅人", "今天吃什么？"), Budget(), counter
    )
    roles = [m["role"] for m in a.messages]
    assert roles == ["system", "user", "assistant", "user"]
    assert a.messages[0]["content"].startswith(character.persona)
    assert "旅人:「下雨了，伞又破了一个洞。」" in a.messages[0]["content"]
    assert a.messages[1]["content"] == "晚上好"  # the user's lines go as said
    assert a.messages[2]["content"] == "来啦，坐。"
    assert a.messages[3]["content"] == "今天吃什么？"
    assert a.scene_ids == ["s000", "s001"]
    assert a.parts["total"] == _total(a.messages, counter)


def test_cache_order_puts_what_changes_last(character, counter) -> None:
    pinned = [character.scenes[5]]
    a = assemble(
        character,
        character.scenes[:2],
        [],
        Turn("旅人", "你好"),
        Budget(),
        counter,
        order="cache",
        pinned=pinned,
    )
    system, last = a.messages[0]["content"], a.messages[-1]["content"]
    assert "你想不想离开这个小镇" in system  # pinned canon is in the stable part
    assert "伞又破了" not in system and "伞又破了" in last
    assert last.endswith("\n\n你好")
    assert a.scene_ids == ["s005", "s000", "s001"]


def test_narrator_line(character, counter) -> None:
    a = assemble(character, [], [], Turn("旁白", "雨停了"), Budget(), counter)
    assert a.messages[-1] == {"role": "user", "content": "旁白:雨停了"}


def test_scene_that_does_not_fit_is_skipped_and_filling_goes_on(character, counter) -> None:
    huge = Scene("huge", "长", tuple(Line("小满", "很长的一句话。" * 40) for _ in range(5)))
    small = character.scenes[:3]
    a = assemble(character, [huge, *small], [], Turn("旅人", "你好"), Budget(canon=300), counter)
    assert "huge" in a.skipped_ids
    assert a.scene_ids == ["s000", "s001", "s002"]
    assert a.parts["canon"] <= 300


def test_newest_turn_is_shortened_not_dropped(character, counter) -> None:
    history = [Turn("旅人", "第一句"), Turn("小满", "很长的回答，" * 100 + "最后几个字")]
    a = assemble(character, [], history, Turn("旅人", "嗯"), Budget(history=60), counter)
    assert a.history_turns == 1
    kept = a.messages[1]["content"]
    assert kept.endswith("最后几个字") and len(kept) < len(history[1].text)
    assert a.parts["history"] <= 60


def test_history_stops_at_first_older_turn_that_does_not_fit(character, counter) -> None:
    history = [Turn("旅人", "老的短句"), Turn("小满", "中间很长的话。" * 50), Turn("旅人", "新的")]
    a = assemble(character, [], history, Turn("旅人", "嗯"), Budget(history=40), counter)
    assert [m["content"] for m in a.messages[1:-1]] == ["新的"]


def test_budget_from_context_window() -> None:
    b = Budget.for_context(4096, reply_tokens=512)
    assert b.total == 3584 and 1400 <= b.canon <= 1600 and 1100 <= b.history <= 1300
    with pytest.raises(ValueError, match="must not be negative"):
        Budget(canon=-1)


def test_truncate_never_exceeds(counter) -> None:
    text = "今天的面特别好吃，汤是用河虾熬的。" * 20
    for n in (0, 1, 5, 50):
        assert counter.count(truncate(counter, text, n)) <= n
        assert counter.count(truncate(counter, text, n, keep="end")) <= n
    assert truncate(counter, "短", 10) == "短"


_words = st.text(alphabet="面汤雨伞猫灯河桥钟abc xyz，。！?", min_size=0, max_size=120)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    scenes=st.lists(st.lists(_words.filter(bool), min_size=1, max_size=6), max_size=8),
    history=st.lists(
        st.tuples(st.sampled_from(["旅人", "小满", "旁白"]), _words.filter(bool)), max_size=10
    ),
    line=_words.filter(bool),
    persona=_words,
    canon=st.integers(0, 400),
    hist=st.integers(0, 400),
    total=st.one_of(st.none(), st.integers(24, 600)),
    order=st.sampled_from(["classic", "split", "cache"]),
)
def test_budget_is_never_exceeded(
    counter, scenes, history, line, persona, canon, hist, total, order
) -> None:
    c = make_character(0)
    c.persona = persona
    cands = [Scene(f"x{i}", "", tuple(Line("小满", t) for t in s)) for i, s in enumerate(scenes)]
    turns = [Turn(s, t) for s, t in history]
    budget = Budget(canon, hist, total)
    a = assemble(c, cands, turns, Turn("旅人", line), budget, counter, order=order)
    assert a.parts["canon"] <= canon
    assert a.parts["history"] <= (hist + canon if order == "cache" else hist)  # cache: shared
    assert a.parts["total"] == _total(a.messages, counter)
    if total is not None:
        assert a.parts["total"] <= total
    included = [s.id for s in cands if s.id in a.scene_ids]
    assert a.scene_ids == included  # rank order kept
    assert a.messages[-1]["role"] == "user"


def test_cache_order_keeps_sent_canon_in_history_and_adds_only_new_scenes(character, counter):
    first = assemble(
        character,
        character.scenes[:3],
        [],
        Turn("旅人", "下雨了"),
        Budget(),
        counter,
        order="cache",
    )
    assert first.turn_scene_ids == ("s000", "s001", "s002") and first.turn_canon
    sent = Turn("旅人", "下雨了", first.turn_canon, first.turn_scene_ids)
    history = [sent, Turn("小满", "拿伞来。")]
    second = assemble(
        character,
        character.scenes[1:5],
        history,
        Turn("旅人", "猫呢？"),
        Budget(),
        counter,
        order="cache",
    )
    # the earlier turn is sent exactly as before: the prompt so far is a prefix of this one
    assert second.messages[1]["content"] == first.messages[-1]["content"]
    assert second.turn_scene_ids == ("s003", "s004")  # scenes shown before are not repeated
    assert counter.count(second.turn_canon) <= Budget().canon // 3


def test_cache_order_history_moves_in_steps(character, counter) -> None:
    history = [Turn("旅人" if i % 2 == 0 else "小满", f"第{i}句话，" * 20) for i in range(12)]
    kept = []
    for n in range(6, 13):
        a = assemble(
            character,
            [],
            history[:n],
            Turn("旅人", "嗯"),
            Budget(history=400),
            counter,
            order="cache",
        )
        kept.append(n - a.history_turns)  # index of the first kept message
        assert a.parts["history"] <= 400 + Budget().canon
    assert all(k % 4 == 0 for k in kept)  # the start moves only in steps


def test_split_order_puts_the_canon_in_a_system_message_before_the_line(counter) -> None:
    from dataclasses import replace

    c = replace(make_character(), persona="<!-- DRAFT: edit me -->\n你是小满。")
    history = [Turn("旅人", "你好"), Turn("小满", "来碗面？")]
    a = assemble(c, c.scenes[:2], history, Turn("旅人", "多少钱？"), Budget(), counter, "split")
    roles = [m["role"] for m in a.messages]
    assert roles == ["system", "user", "assistant", "system", "user"]
    assert a.messages[0]["content"].startswith("你是小满。")  # the draft marker is not sent
    assert "DRAFT" not in "".join(m["content"] for m in a.messages)
    assert "经典片段" in a.messages[3]["content"] and "经典片段" not in a.messages[0]["content"]
    assert a.messages[-1]["content"] == "多少钱？"
    assert a.scene_ids == [c.scenes[0].id, c.scenes[1].id]
    # the next turn keeps the same prefix (persona + history) for the KV cache
    b = assemble(
        c,
        c.scenes[2:3],
        [*history, Turn("旅人", "多少钱？"), Turn("小满", "八文。")],
        Turn("旅人", "好"),
        Budget(),
        counter,
        "split",
    )
    assert b.messages[:3] == a.messages[:3]


def test_the_users_lines_go_as_said_and_other_roles_keep_their_names(counter) -> None:
    c = make_character()
    history = [Turn("旅人", "你好"), Turn("小满", "坐。"), Turn("周伯", "来碗面。")]
    a = assemble(c, [], history, Turn("旁白", "雾更浓了。"), Budget(), counter)
    assert [m["content"] for m in a.messages[1:]] == [
        "你好",
        "坐。",
        "周伯:「来碗面。」",
        "旁白:雾更浓了。",
    ]
