from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rolecast.backends.scripted import ScriptedLLM
from rolecast.character.model import Line, Scene
from rolecast.errors import BackendError, NoReplyError
from rolecast.prompt.assemble import Turn, fixed_texts
from rolecast.retrieval.index import load_index
from rolecast.session import Recital, ReplyCleaner, Session, speaker_stops

from conftest import make_character, make_english_character

CLEANER = ReplyCleaner.for_character(make_character())


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("小满:「好咧，马上来。」", "好咧，马上来。"),
        ("小满：「全角冒号」", "全角冒号"),
        ("满老板:「别名也认」", "别名也认"),
        ("小满:「第一句。」\n小满:「第二句。」", "第一句。第二句。"),
        ("小满:「来了」(端上一碗面)", "来了(端上一碗面)"),
        ("小满:「吃吧。」\n旅人:「谢谢！」\n小满:「不客气」", "吃吧。"),
        ("小满:「吃吧。」旅人:「谢谢！」", "吃吧。」"[:-1]),
        ("好的，马上。\n旁白:她转身去煮面", "好的，马上。"),
        ("Sure.\nSure again.", "Sure. Sure again."),
        ("注意：汤很烫", "注意：汤很烫"),  # a colon in speech is not a speaker
        ("陌生人:「你是谁」", ""),
        ("作为小满，我觉得汤该加点葱。", "我觉得汤该加点葱。"),  # the role named, not played
        ("小满:「作为满老板，我请客。」", "我请客。"),
        ("作为旅人，我也想吃面。", "作为旅人，我也想吃面。"),  # someone else's role is speech
        ("蓝猫煤球：", ""),  # a label and nothing said: no reply (seen in a real study)
        ("罗伯:\n「船桨松了」", ""),
        ("好的。\n蓝猫煤球：", "好的。"),
        ("Leonard:", ""),
        ("What I love most:\nthe soup", "What I love most: the soup"),  # a header is speech
        ("注意：", ""),  # a word and a colon alone say nothing either: no reply
    ],
)
def test_reply_cleaning(raw: str, clean: str) -> None:
    assert CLEANER.clean(raw) == clean


@given(
    st.sampled_from(
        [
            "小满:「好咧，马上来。」",
            "小满:「第一句。」\n小满:「第二句。」\n旅人:「嗯」",
            "小满：「来了」(端上一碗面)",
            "今天的汤特别鲜，你尝尝看，不好喝不要钱咯。",
            "Sure, one bowl coming.\nNarrator: she turns away",
        ]
    ),
    st.lists(st.integers(1, 7), min_size=1, max_size=40),
)
def test_streamed_pieces_join_to_the_clean_reply(raw: str, cuts: list[int]) -> None:
    chunks, i = [], 0
    for n in cuts:
        chunks.append(raw[i : i + n])
        i += n
    chunks.append(raw[i:])
    assert "".join(CLEANER.stream(c for c in chunks if c)) == CLEANER.clean(raw)


@pytest.fixture
def session(tmp_path: Path, embedder) -> Session:
    c = make_character()
    return Session(c, load_index(c, embedder), ScriptedLLM())


def test_a_turn_goes_through_retrieval_prompt_backend_and_history(session: Session) -> None:
    session.llm.enqueue("小满:「煤球又偷鱼？」\n小满:「看我不收拾它，今晚它一口汤也别想喝。」")
    pieces = list(session.say("那只黑猫又来偷鱼了！"))
    assert "".join(pieces) == "煤球又偷鱼？看我不收拾它，今晚它一口汤也别想喝。"
    assert len(pieces) > 1  # streamed, clause by clause
    messages, params = session.llm.requests[0]
    assert "煤球！给我把鱼放下" in messages[0]["content"]  # the canon scene was retrieved
    assert messages[-1]["content"] == "那只黑猫又来偷鱼了！"
    assert "\n旅人:" in params.stop
    assert session.history == [
        Turn("旅人", "那只黑猫又来偷鱼了！"),
        Turn("小满", pieces[0] + "".join(pieces[1:])),
    ]
    assert session.last is not None and session.last.hits[0].scene.id == "s002"


def test_history_is_sent_on_the_next_turn(session: Session) -> None:
    session.llm.enqueue("第一答").enqueue("第二答")
    session.reply("第一问")
    session.reply("第二问", as_role="旁白")
    messages = session.llm.requests[1][0]
    assert [m["content"] for m in messages[1:]] == ["第一问", "第一答", "旁白:第二问"]


def test_failed_turn_leaves_history_as_it_was(session: Session) -> None:
    session.llm.enqueue("好")
    session.reply("你好")
    before = list(session.history)
    session.llm.enqueue(["半句", BackendError("connection dropped")])
    with pytest.raises(BackendError, match="connection dropped"):
        list(session.say("再来"))
    assert session.history == before


def test_interrupted_reply_is_not_recorded(session: Session) -> None:
    session.llm.enqueue("".join(chr(0x4E00 + 7 * i) for i in range(50)))  # no loop in it
    stream = session.say("说点什么")
    next(stream)
    stream.close()  # what Ctrl-C does to the consumer
    assert session.history == []
    session.llm.enqueue("还在")
    assert session.reply("还在吗") == "还在"


def test_empty_message_is_refused(session: Session) -> None:
    with pytest.raises(ValueError, match="empty message"):
        list(session.say("   "))


def test_budget_follows_the_context_window(tmp_path: Path, embedder) -> None:
    c = make_character()
    s = Session(c, None, ScriptedLLM(context_window=2048))
    assert s.budget is not None and s.budget.total == 2048 - s.params.max_tokens


def test_empty_canon_chats_on_persona(tmp_path: Path, embedder) -> None:
    c = make_character(0)
    s = Session(c, load_index(c, embedder), ScriptedLLM(["你好呀"]))
    assert s.reply("你好") == "你好呀"
    system = s.llm.requests[0][0][0]["content"]
    assert system.startswith(c.persona) and "只说小满自己的话" in system and "原作" not in system


def test_an_empty_reply_is_sampled_again_with_another_seed_and_temperature(
    session: Session,
) -> None:
    session.params = replace(session.params, seed=5)
    session.llm.enqueue("旅人:「我替他说了」").enqueue("").enqueue("小满:「这回是我。」")
    assert session.reply("你好") == "这回是我。"
    params = [p for _, p in session.llm.requests]
    assert len(params) == 3
    assert len({p.seed for p in params}) == 3  # the same seed would write the same text
    assert params[0].temperature < params[1].temperature < params[2].temperature
    assert session.history[-1] == Turn("小满", "这回是我。")
    assert session.last is not None and session.last.tries == 3


def test_gives_up_after_two_retries_and_says_so(session: Session) -> None:
    for _ in range(4):
        session.llm.enqueue("旅人:「又是我」")
    with pytest.raises(NoReplyError, match="no answer as 小满 after 3 tries.*旅人"):
        session.reply("你好")
    assert len(session.llm.requests) == 3  # at most twice more
    assert session.history == [] and session.pending is None


class _SlowLLM(ScriptedLLM):
    """Each reply takes ``delay`` seconds per chunk: a model that speaks only for others."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def stream(self, messages, params):  # type: ignore[no-untyped-def]
        self.requests.append(([dict(m) for m in messages], params))
        for chunk in ["旅人", ":「", "我", "来", "说", "」"]:
            time.sleep(self.delay)
            yield chunk


def test_retries_take_at_most_one_more_reply_of_time(tmp_path: Path, embedder) -> None:
    import rolecast.session as session_module

    c = make_character()
    s = Session(c, load_index(c, embedder), _SlowLLM(0.1))
    first = 6 * 0.1
    old = session_module.RETRY_FLOOR_S
    session_module.RETRY_FLOOR_S = 0.0
    try:
        started = time.monotonic()
        with pytest.raises(NoReplyError):
            s.reply("你好")
        took = time.monotonic() - started
    finally:
        session_module.RETRY_FLOOR_S = old
    # the first try, then retries cut off once another try's worth of time is spent
    assert took < 2 * first + 0.35, took
    assert len(s.llm.requests) <= 3


def test_every_known_speaker_stops_generation(session: Session) -> None:
    stops = session.params.stop
    for name in ("旅人", "旁白"):
        assert f"\n{name}:" in stops and f"{name}：「" in stops
    assert not any(s.endswith(("小满:", "小满：")) or "满老板" in s for s in stops)
    rich = replace(
        make_character(),
        scenes=[
            Scene(
                "x",
                "",
                (Line("周伯", "来碗面。"), Line("豆子", "我也要！"), Line("小满", "好咧。")),
            )
        ],
    )
    stops = speaker_stops(rich)
    assert "\n周伯：" in stops and "豆子:「" in stops and "\n旅人:" in stops


def test_lore_entries_join_the_canon_when_their_keys_come_up(session: Session) -> None:
    from rolecast.character.model import LoreEntry

    session.character.lore = [
        LoreEntry(("青雾渡",), "青雾渡的雾每年只散一天。", "渡口"),
        LoreEntry(("Lantern",), "桥头的灯是小满的爷爷留下的。", "灯"),
        LoreEntry(("煤球",), "煤球是一只黑猫。", "猫", {"enabled": False}),
        LoreEntry((), "故事发生在一条河边的小镇。", "世界", {"constant": True}),
    ]
    report = session.prepare("听说青雾渡的LANTERN很旧了？煤球呢？")
    system = report.assembly.messages[0]["content"]
    assert "青雾渡的雾每年只散一天。" in system and "爷爷留下的" in system  # case-insensitive
    assert "煤球是一只黑猫" not in system  # disabled
    assert "一条河边的小镇" in system  # constant
    assert report.assembly.scene_ids[:3] == ["lore:渡口", "lore:灯", "lore:世界"]
    assert "一天" not in session.prepare("今天吃什么？").assembly.messages[0]["content"]


def test_a_backend_caps_the_canon_budget(tmp_path: Path, embedder) -> None:
    class Small(ScriptedLLM):
        canon_budget = 100

    c = make_character()
    index = load_index(c, embedder)
    capped = Session(c, index, Small(context_window=4096))
    assert capped.budget is not None and capped.budget.canon == 100
    assert (
        capped.budget.history == Session(c, index, ScriptedLLM(context_window=4096)).budget.history
    )
    assert Session(c, index, Small()).budget.canon == 100  # no window known: capped too
    assert Session(c, index, ScriptedLLM(context_window=4096)).budget.canon > 1000
    from rolecast.backends.local import LocalLLM

    assert LocalLLM.prompt_order == "split" and LocalLLM.canon_budget is not None


def test_a_reply_that_says_the_users_line_back_is_held_and_sampled_again(
    session: Session,
) -> None:
    session.llm.enqueue("晚上好，今天过得怎么样？").enqueue("小满:「哟，来得正好，汤刚滚。」")
    pieces = list(session.say("晚上好呀，今天过得怎么样？"))
    assert "".join(pieces) == "哟，来得正好，汤刚滚。"  # the echo was never shown
    first, second = (p for _, p in session.llm.requests)
    assert second.presence_penalty > first.presence_penalty and second.seed != first.seed
    assert session.history[-1] == Turn("小满", "哟，来得正好，汤刚滚。")


def test_an_earlier_reply_said_again_is_sampled_again(session: Session) -> None:
    session.llm.enqueue("中西").enqueue("中西").enqueue("雾散了再说。")
    assert session.reply("你好") == "中西"
    assert session.reply("你是谁？") == "雾散了再说。"
    assert len(session.llm.requests) == 3


def test_a_retry_may_not_begin_as_a_failed_try_did(session: Session) -> None:
    # seen on the gate: Sheldon's "I'm Leonard." three times over, whatever the seed
    session.llm.enqueue("中西").enqueue("小满:「中西」").enqueue("中西").enqueue("雾散了再说。")
    assert session.reply("你好") == "中西"
    assert session.reply("你是谁？") == "雾散了再说。"
    first, second, third = (p for _, p in session.llm.requests[1:])
    header = fixed_texts(session.character)[-1]
    assert first.avoid == (header,)  # no reply begins by reciting the canon block
    assert second.avoid == (header, "小满:「中西」", "中西")  # how it began, raw and cleaned
    assert third.avoid == second.avoid  # the same text adds nothing
    assert session.last is not None and session.last.tries == 3


def test_a_try_that_stopped_at_once_began_as_someone_else(session: Session) -> None:
    # the model wrote "旅人:「…" and the stop string ended it before any text came
    session.llm.enqueue("").enqueue("雾散了再说。")
    assert session.reply("你好") == "雾散了再说。"
    retry = session.llm.requests[1][1]
    assert {"旅人", "旁白", session.character.user_role} <= set(retry.avoid)
    assert "小满" not in retry.avoid


def test_a_claim_to_be_someone_else_is_sampled_again(session: Session) -> None:
    session.llm.enqueue("我是旅人。").enqueue("哎，我就是旅人啊，你忘啦？").enqueue("雾散了再说。")
    assert session.reply("你最好的朋友是谁？") == "雾散了再说。"
    assert len(session.llm.requests) == 3
    assert session.llm.requests[2][1].avoid[-2:] == ("我是旅人。", "哎，我就是旅人啊，你忘啦？")
    # what comes before the claim is kept when it is a reply of its own
    session.llm.enqueue("汤刚滚，先坐下吃一碗。我是旅人。")
    assert session.reply("饿了") == "汤刚滚，先坐下吃一碗。"
    assert session.talk("汤好了。我是旅人。") == (4, "我是旅人")
    assert session.talk("我是小满。") is None


def test_a_canon_line_copied_is_cut_and_a_whole_copy_sampled_again(session: Session) -> None:
    # seen on the gate: "根据你的叙述…韩小川病了，三天没出摊了" from another scene
    session.llm.enqueue("哎，这钟啊。发条松了，拧紧就好，修不好不收钱。")
    assert session.reply("钟怎么了？") == "哎，这钟啊。"
    session.llm.enqueue("发条松了，拧紧就好，修不好不收钱。").enqueue("我看看，明天来取。")
    assert session.reply("这钟还能修吗？") == "我看看，明天来取。"
    # a classic line under the run length is said (the web page shows its frame): not cut
    from rolecast.session import unrecited

    said = "".join(unrecited(iter(["煤球！", "给我把鱼放下！"]), session.recital))
    assert said == "煤球！给我把鱼放下！"
    # a scene kept out of the prompt (an evaluation's held-out one) cannot have been copied
    held = next(sc for sc in session.character.scenes if "发条松了" in sc.lines[-1].text)
    report = session.prepare("这钟还能修吗？", exclude={held.id})
    session.llm.enqueue("发条松了，拧紧就好，修不好不收钱。")
    assert (
        "".join(session.say("这钟还能修吗？", report=report))
        == "发条松了，拧紧就好，修不好不收钱。"
    )
    # a copy every time is said rather than nothing
    for _ in range(3):
        session.llm.enqueue("煤球！给我把鱼放下，不然今晚没你的汤。")
    assert session.reply("猫又来了") == "煤球！给我把鱼放下，不然今晚没你的汤。"


def test_a_reply_that_loops_is_cut_where_it_says_its_words_again() -> None:
    from rolecast.session import unrecited

    # seen from the default model as Sheldon: a biography whose sentences come round again
    bio = (
        "I grew up in a small village near the river, with my sister. "
        "I read comics every night. "
        "I grew up in a small village near the river, with my sister. I read"
    )
    pieces = [w + " " for w in bio.split(" ")]
    mia = Recital.for_character(make_english_character())
    out = "".join(unrecited(iter(pieces), mia))
    said_once = "I grew up in a small village near the river, with my sister. "
    assert out == said_once + "I read comics every night."
    # a phrase said twice, shorter than the run length, is no loop
    twice = "Noodles, noodles, and more noodles for you, my friend. Noodles for you too."
    assert "".join(unrecited(iter([twice]), mia)) == twice


def test_an_echo_every_time_is_said_rather_than_nothing(session: Session) -> None:
    for _ in range(3):
        session.llm.enqueue("我明天就要走了。")
    assert session.reply("我明天就要走了") == "我明天就要走了。"
    assert len(session.llm.requests) == 3


def test_a_reply_of_its_own_streams_at_once() -> None:
    from rolecast.session import _Unfit, unechoed

    out = unechoed(iter(["哟，", "来得正好，", "汤刚滚，", "坐下吃面。"]), "你好呀，今天怎么样")
    # released as soon as it can no longer end as the line: too much of it is not the line
    assert next(out) == "哟，来得正好，汤刚滚，"
    assert list(out) == ["坐下吃面。"]
    # held while it reads like the line, released whole once it goes its own way
    assert list(unechoed(iter(["你最喜欢", "吃什么？我最", "喜欢面。"]), "你最喜欢吃什么？")) == [
        "你最喜欢吃什么？我最喜欢面。"
    ]
    assert list(unechoed(iter(["你好呀"]), "你好")) == ["你好呀"]  # too short to guard
    with pytest.raises(_Unfit):  # an earlier reply of two characters is guarded
        list(unechoed(iter(["中西"]), "你是谁？", ["中西"]))
    with pytest.raises(_Unfit):
        list(unechoed(iter(["晚上好，", "今天过得怎么样？"]), "晚上好呀，今天过得怎么样？"))
    assert list(unechoed(iter(["Hi"]), "")) == ["Hi"]


def test_the_users_line_said_back_behind_a_word_of_its_own_is_an_echo() -> None:
    from rolecast.session import _Unfit, unechoed

    # seen from the default model: the line back with "Yes," before it, or a word left out
    line = "I saw you on my way here earlier."
    with pytest.raises(_Unfit):
        list(unechoed(iter(["Yes", ", I saw", " you on my way", " here earlier."]), line))
    with pytest.raises(_Unfit):
        list(unechoed(iter(["I'm", " homesick."]), "I'm a bit homesick."))
    with pytest.raises(_Unfit):
        list(unechoed(iter(["是啊，", "我明天就要走了。"]), "我明天就要走了。"))
    # an answer that takes up the line's words but says more is no echo
    answer = ["Yes", ", I saw you too.", " You were late for the lab", " again, as always."]
    assert "".join(unechoed(iter(answer), line)) == "".join(answer)


XIAOMAN_PERSONA = (
    "你是林小满，十九岁，在青雾渡石桥头守着一个夜面摊“满记”，白天顺手帮街坊修伞、修钟。"
)


def _recital(persona: str = XIAOMAN_PERSONA):  # type: ignore[no-untyped-def]
    from rolecast.session import Recital

    return Recital.for_character(replace(make_character(), persona=persona))


def test_a_reply_that_recites_the_persona_is_cut_where_the_recital_starts() -> None:
    from rolecast.session import unrecited

    reply = "我是林小满，19岁。在青雾渡石桥头守着一个夜面摊“满记”，白天顺手帮街坊修伞、修钟。"
    pieces = [reply[i : i + 3] for i in range(0, len(reply), 3)]
    assert "".join(unrecited(iter(pieces), _recital())) == "我是林小满"
    # the standing rules recited back, from the first word: nothing is left
    rules = "现在由你来当小满。旅人会对你说话，有时旁白会交代发生的事。"
    assert "".join(unrecited(iter([rules]), _recital())) == ""
    # the persona's own catchphrase, which the canon also says, is no recital
    own = "拿来我补，两文钱，补完比新的还结实。"
    r = _recital("你是小满。你常说：拿来我补，两文钱，补完比新的还结实。")
    assert "".join(unrecited(iter([own[:5], own[5:]]), r)) == own
    # 8 characters of the persona in a row are a recital too (as the gate counts a leak)
    said = "我也说不清，那人白天顺手帮街坊修伞呢。"
    assert "".join(unrecited(iter([said]), _recital())) == "我也说不清"
    nine = "白天顺手帮街坊修伞"  # 9 < RECITE_CJK: only the prompt's shorter check finds it
    assert nine in XIAOMAN_PERSONA and len(nine) == 9
    # an ordinary reply streams, only the last few tokens held back until the end
    out = unrecited(iter(["哟，来得正好，汤刚滚，", "坐下先吃一碗再说吧。"]), _recital())
    assert next(out) == "哟，来得正好，汤刚滚"  # whole clauses, once they cannot start one
    assert "".join(out) == "，坐下先吃一碗再说吧。"


def test_assistant_talk_is_cut_and_a_refusal_from_the_first_word_raises() -> None:
    from rolecast.session import _Unfit, unrecited

    closer = "You're welcome! If there's anything else you'd like to know, feel free to ask."
    pieces = [closer[i : i + 6] for i in range(0, len(closer), 6)]
    assert "".join(unrecited(iter(pieces), _recital())) == "You're welcome!"
    zh = "我去看看汤。如果你还有其他问题，随时问我。"
    assert "".join(unrecited(iter([zh[:4], zh[4:]]), _recital())) == "我去看看汤。"
    for refusal in (
        "I'm sorry, but I can't assist with that. Anything else?",
        "很抱歉，我无法协助完成这个请求。",
        "作为一个人工智能，我没有家乡。",
    ):
        with pytest.raises(_Unfit):
            list(unrecited(iter([refusal[:5], refusal[5:]]), _recital()))
    # sorry in character is no refusal
    own = "I'm sorry, but that is simply not how thermodynamics works."
    assert "".join(unrecited(iter([own[:9], own[9:]]), _recital())) == own


def test_a_refusal_is_sampled_again_and_said_only_when_every_try_refuses(
    session: Session,
) -> None:
    session.llm.enqueue("I'm sorry, but I can't assist with that.").enqueue("雾散了再说。")
    assert session.reply("要下雨了。") == "雾散了再说。"
    assert len(session.llm.requests) == 2
    for _ in range(3):
        session.llm.enqueue("很抱歉，我无法协助完成这个请求。")
    assert session.reply("你明天还来吗？") == "很抱歉，我无法协助完成这个请求。"
    assert len(session.llm.requests) == 5


def test_the_last_try_goes_without_the_canon_when_the_one_before_talked_about_it(
    session: Session,
) -> None:
    analysis = "从旅人和林小满的对话中，我们可以推断出她很爱笑。"
    session.llm.enqueue(analysis).enqueue(analysis).enqueue("雾散了再说。")
    assert session.reply("你最好的朋友是谁？") == "雾散了再说。"
    systems = [req[0][0]["content"] for req in session.llm.requests]
    assert "经典片段" in systems[0] and "经典片段" in systems[1]
    assert "经典片段" not in systems[2]  # the persona alone
    assert all("经典片段" not in m["content"] for m in session.llm.requests[2][0])
    # a retry after the first try keeps the canon
    session.llm.enqueue("很抱歉，我无法协助完成这个请求。").enqueue("明天照开，八文一碗。")
    assert session.reply("明天还开摊吗？") == "明天照开，八文一碗。"
    assert "经典片段" in session.llm.requests[-1][0][0]["content"]


def test_a_recital_is_cut_in_a_session_and_an_all_recital_reply_sampled_again(
    tmp_path: Path, embedder
) -> None:
    c = replace(make_character(), persona=XIAOMAN_PERSONA)
    s = Session(c, load_index(c, embedder), ScriptedLLM())
    s.llm.enqueue("我是林小满，19岁。在青雾渡石桥头守着一个夜面摊“满记”，白天顺手帮街坊修伞。")
    assert s.reply("你是谁？") == "我是林小满"
    s.llm.enqueue("在青雾渡石桥头守着一个夜面摊“满记”。").enqueue("雾散了再说。")
    assert s.reply("你住哪？") == "雾散了再说。"


@pytest.mark.parametrize("order", ["split", "cache", "classic"])
def test_warm_gives_the_backend_the_start_every_prompt_of_the_chat_shares(
    order: str, tmp_path: Path, embedder
) -> None:
    c = make_character()
    warmed: list[list[dict[str, str]]] = []

    class Warmable(ScriptedLLM):
        def warm(self, prefix):  # type: ignore[no-untyped-def]
            warmed.append([dict(m) for m in prefix])
            return "built"

    llm = Warmable(context_window=4096)
    s = Session(c, load_index(c, embedder), llm, order=order)  # type: ignore[arg-type]
    assert s.warm() == "built"
    llm.enqueue("哟，来了。")
    s.reply("今天的面多少钱？")
    prompt = llm.requests[-1][0]
    prefix = warmed[0]
    assert prefix and prefix[0]["role"] == "system" and c.name in prefix[0]["content"]
    if order == "classic":  # the canon joins the persona's message: they share its start
        assert prompt[0]["content"].startswith(prefix[0]["content"]) and len(prefix) == 1
    else:  # the persona's message whole, and nothing that changes from turn to turn
        assert prompt[: len(prefix)] == prefix
    assert len(prefix) == 1  # the persona's message: the same for every chat with them
    # every turn warms it first (a backend that already holds it does nothing; one that
    # served another character since loads it), and the history never joins it
    assert warmed == [prefix, prefix]
    llm.enqueue("还是八文。")
    s.reply("能便宜点吗？")
    assert warmed == [prefix] * 3 and s.warm() == "built" and warmed[-1] == prefix
    assert ScriptedLLM().warm(prefix) == "none"  # a backend without a cache has nothing to do


def test_prefill_evaluates_the_next_prompts_start_while_the_user_types(
    tmp_path: Path, embedder
) -> None:
    c = make_character()
    filled: list[list[dict[str, str]]] = []

    class Prefillable(ScriptedLLM):
        def prefill(self, prefix):  # type: ignore[no-untyped-def]
            filled.append([dict(m) for m in prefix])
            return "evaluated"

    llm = Prefillable(context_window=4096)
    s = Session(c, load_index(c, embedder), llm, order="split")  # type: ignore[arg-type]
    assert s.budget is not None
    s.budget = replace(s.budget, history=90)  # a short history: the kept part steps soon
    assert s.prefill() == "none"  # nothing said yet: the persona is warm() 's
    lines = ["今天的面多少钱？", "能便宜点吗？", "煤球是谁的猫？", "明天还开摊吗？", "雾大吗？"]
    answers = [
        "八文一碗，不讲价。",
        "便宜不了，葱花多给你。",
        "煤球是河对岸张婆的猫。",
        "开，雾再大也开。",
        "大得看不见船灯。",
    ]
    for line, answer in zip(lines, answers, strict=True):
        llm.enqueue(answer)
        s.reply(line)
        assert s.prefill() == "evaluated"
        prefix = filled[-1]
        assert prefix[0]["role"] == "system" and prefix[-1]["content"] == answer
        llm.enqueue("好。")
        s.reply("嗯。")
        sent = llm.requests[-1][0]
        assert sent[: len(prefix)] == prefix  # the next prompt begins with what was evaluated
        s.history = s.history[:-2]  # as if "嗯" was not said: the loop goes on from the reply
    starts = {f[1]["content"] for f in filled}
    assert len(starts) > 1  # the kept history stepped on the way, and prefill followed it
    assert ScriptedLLM().prefill(filled[-1]) == "none"  # a backend without a cache
