"""A conversation's memory: recall of old turns, the running summary, pinned facts."""

from __future__ import annotations

import pytest

from rolecast.backends.scripted import ScriptedLLM
from rolecast.character import store
from rolecast.errors import InputError
from rolecast.memory import Memory, clean_summary
from rolecast.prompt.assemble import Budget, MemoryView, Turn, assemble
from rolecast.session import Session

FACT = "我家的猫叫煤球，是一只黑猫，最爱偷鱼。"
ASK = "你还记得我家的猫叫什么名字吗？"
TOPICS = [
    "今天渡口的雾比昨天还浓",
    "码头新来了一条运盐的船",
    "镇东的铁匠铺换了招牌",
    "桥下的河水涨了两寸",
    "集市上的糖人卖完了",
    "周伯说明年要修码头的台阶",
    "豆子又把作业本弄丢了",
    "对面茶馆来了个说书先生",
    "夜里的灯笼被风吹灭了",
    "山上的枫叶红了一半",
]


def long_talk(n_turns: int) -> list[Turn]:
    """A conversation of ``n_turns`` turns (a line and a reply each two turns) with the
    cat mentioned at turn 3 (index 2) and never again."""
    turns: list[Turn] = []
    k = 0
    while len(turns) < n_turns:
        if len(turns) == 2:
            turns += [Turn("旅人", FACT), Turn("林小满", "煤球这名字好听，黑得发亮吧。")]
            continue
        topic = TOPICS[k % len(TOPICS)]
        turns += [
            Turn("旅人", f"第{k}回听说{topic}。"),
            Turn("林小满", f"{topic}？那我第{k}回记下了。"),
        ]
        k += 1
    return turns[:n_turns]


@pytest.fixture
def xiaoman():
    return store.load("xiaoman")


def session_with(character, embedder, counter, history, budget=None):  # type: ignore[no-untyped-def]
    return Session(
        character,
        None,
        ScriptedLLM(),
        budget=budget or Budget(),
        counter=counter,
        order="split",
        history=list(history),
        memory=Memory(embedder),
    )


def test_a_fact_said_at_turn_3_is_in_the_prompt_at_turn_200_when_asked_about(
    xiaoman, embedder, counter
) -> None:
    s = session_with(xiaoman, embedder, counter, long_talk(200))
    asked = s.prepare(ASK)
    prompt = "\n".join(m["content"] for m in asked.assembly.messages)
    assert FACT in prompt
    assert 2 in asked.assembly.memory_ids and 3 in asked.assembly.memory_ids  # with its reply
    assert asked.assembly.parts["memory"] > 0
    # the fact is recalled beside the turn's canon, after the history: the history sent is
    # only the newest turns
    late = asked.assembly.messages[-2]
    assert late["role"] == "system" and FACT in late["content"]
    assert all(FACT not in m["content"] for m in asked.assembly.messages[:-2])

    other = s.prepare("今天面摊几点收摊？")
    assert all(FACT not in m["content"] for m in other.assembly.messages)
    assert other.assembly.memory_ids == []


def test_a_recalled_turn_inside_the_history_sent_is_not_sent_twice(
    xiaoman, embedder, counter
) -> None:
    s = session_with(xiaoman, embedder, counter, long_talk(10))
    a = s.prepare(ASK)
    prompt = "\n".join(m["content"] for m in a.assembly.messages)
    assert prompt.count(FACT) == 1 and a.assembly.memory_ids == []


def test_without_memory_the_prompt_is_what_it_was(xiaoman, counter) -> None:
    history = long_talk(12)
    line = Turn("旅人", ASK)
    for order in ("classic", "split", "cache"):
        plain = assemble(xiaoman, xiaoman.scenes[:2], history, line, Budget(), counter, order)
        empty = assemble(
            xiaoman, xiaoman.scenes[:2], history, line, Budget(), counter, order, memory=None
        )
        assert plain.messages == empty.messages and "memory" not in plain.parts


def test_summaries_replace_old_turns_within_budget(xiaoman, embedder, counter) -> None:
    budget = Budget(canon=300, history=240, total=1400, memory=160)
    s = session_with(xiaoman, embedder, counter, long_talk(40), budget)
    llm = s.llm
    assert isinstance(llm, ScriptedLLM)
    window = s.window()
    assert window >= 16  # a 240-token history keeps the newest few turns only
    blocks = window // 8
    for k in range(blocks):
        llm.enqueue(
            f"记忆：第{k}回旅人听说了镇上的事，小满记下了；老周答应替他看着铺子。\n\n多余的一段"
        )
    llm.enqueue("旅人和小满聊了许多镇上的事。")  # the condensing call
    done = s.remember()
    assert s.memory is not None and s.memory.folded == 8 * blocks
    assert done.startswith("folded turns 1-8")
    # each summary request holds the block's turns and nothing later
    first = llm.requests[0][0][-1]["content"]  # after the worked example
    assert "第0回" in first and "第2回" in first
    assert "第3回" not in first and FACT in first
    # the summary is cleaned (no label, first paragraph) and sits after the persona
    a = s.prepare("你好")
    persona, system = (m["content"] for m in a.assembly.messages[:2])
    # the persona's message is as it was (its KV state is kept); the memory follows it
    assert persona == s.prepare("你好").assembly.messages[0]["content"]
    assert s.memory.summary not in persona and a.assembly.messages[1]["role"] == "system"
    assert "多余的一段" not in system and "记忆：" not in system
    assert s.memory.summary in system
    # what the summary says that the turns never did (the worked example's) is left out
    assert "老周" not in s.memory.summary and "第0回旅人听说了镇上的事" in s.memory.summary
    assert a.assembly.parts["total"] <= 1400
    assert a.assembly.parts["memory"] <= 160
    # the folded turns are not sent as history any more
    sent = "\n".join(m["content"] for m in a.assembly.messages[2:])
    assert "第0回听说" not in sent


class Summariser(ScriptedLLM):
    """Answers a block of turns with a long piece of its own words, a request to condense
    with the first sentence of what it is given."""

    def stream(self, messages, params):  # type: ignore[no-untyped-def]
        self.requests.append(([dict(m) for m in messages], params))
        text = messages[-1]["content"]
        if "旅人：" in text:
            said = [ln.split("：", 1)[1] for ln in text.splitlines()]
            yield "旅人说" + "；".join(said) + "。"
        else:
            yield text.split("。")[0] + "。"


def test_the_summary_is_condensed_once_it_outgrows_its_size(xiaoman, embedder, counter) -> None:
    s = session_with(xiaoman, embedder, counter, long_talk(120), Budget(history=200))
    s.llm = Summariser()
    done = s.remember()
    assert s.memory is not None and s.memory.folded >= 80
    assert "condensed the summary" in done
    assert s.memory.pieces[0].startswith("旅人说第0回听说") and s.memory.pieces[0].endswith("。")
    assert counter.count(s.memory.pieces[0]) <= 100
    assert counter.count(s.memory.summary) <= 200 + 80  # never more than a piece over


def test_pinned_facts_are_in_every_prompt_until_forgotten(xiaoman, embedder, counter) -> None:
    s = session_with(xiaoman, embedder, counter, [])
    assert s.memory is not None
    assert s.memory.pin("  我怕黑，\n晚上别熄灯。 ") == 1
    assert s.memory.pin("我怕黑， 晚上别熄灯。") == 1  # the same fact once
    assert s.memory.pin("我叫阿青") == 2
    system = s.prepare("你好").assembly.messages[1]["content"]
    assert "- 我怕黑， 晚上别熄灯。" in system and "- 我叫阿青" in system
    assert "pinned:" in s.memory.listing() and "2. 我叫阿青" in s.memory.listing()
    assert s.memory.forget("1") == "我怕黑， 晚上别熄灯。"
    system = s.prepare("你好").assembly.messages[1]["content"]
    assert "我怕黑" not in system and "我叫阿青" in system
    with pytest.raises(InputError, match="no pinned fact '5'"):
        s.memory.forget("5")
    with pytest.raises(InputError, match="needs something"):
        s.memory.pin("   ")


def test_memory_state_round_trips_and_bad_state_is_refused(embedder) -> None:
    m = Memory(embedder, ["一段梗概"], 8, ["我叫阿青"])
    copy = Memory(embedder)
    copy.restore(m.state())
    assert copy.state() == m.state()
    with pytest.raises(InputError, match="not a multiple"):
        copy.restore({"folded": 3})
    with pytest.raises(InputError, match="not readable"):
        copy.restore({"folded": "many"})


def test_clean_summary_keeps_the_first_paragraph_within_its_size(counter) -> None:
    raw = "摘要：旅人说他家的猫叫煤球。小满笑了。" * 20 + "\n\n另一段"
    text = clean_summary(raw, counter, 30)
    assert text.startswith("旅人说") and text.endswith("。") and counter.count(text) <= 30


def test_the_memory_view_pairs_a_recalled_line_with_its_reply(xiaoman, embedder) -> None:
    history = long_talk(60)
    m = Memory(embedder)
    m.index(history)
    assert len(m.vectors) == 60 and m.index(history) == 0
    view = m.view(ASK, history, xiaoman)
    assert isinstance(view, MemoryView)
    assert [i for i, _ in view.recalled][:2] == [2, 3]


def test_a_summary_keeps_only_what_the_turns_said() -> None:
    from rolecast.memory import grounded

    source = "旅人：我家的猫叫雪团，是一只白猫。\n林小满：这碗面四文。"
    said = "旅人说他家的猫叫雪团，是一只白猫；林小满嘱咐他路上小心、早点回来。这碗面四文。"
    assert grounded(said, source) == "旅人说他家的猫叫雪团，是一只白猫；这碗面四文。"
    english = "Ann said her cat is white; Tom promised to keep an eye on the shop."
    assert grounded(english, "Ann: My cat is white.") == "Ann said her cat is white;"


def test_an_evaluation_copy_starts_with_a_memory_of_its_own(xiaoman, embedder, counter) -> None:
    from rolecast.eval.runner import fresh_session

    proto = session_with(xiaoman, embedder, counter, long_talk(20))
    copy = fresh_session(proto, 7)
    assert copy.memory is not None and proto.memory is not None
    assert copy.memory is not proto.memory and copy.memory.embedder is proto.memory.embedder
    assert copy.history == [] and len(copy.memory.vectors) == 0
