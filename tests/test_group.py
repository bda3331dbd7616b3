"""Group scenes: who answers a line (named, round robin, all, natural with chime-ins, /next),
slash commands, and bad input."""

from __future__ import annotations

import pytest

from rolecast.errors import InputError
from rolecast.group.turns import Member, TurnTaker, addressed, parse_command

HARUHI = Member("haruhi", ("凉宫春日", "春日", "Haruhi"))
KYON = Member("kyon", ("阿虚", "Kyon"))
MIKURU = Member("mikuru", ("朝比奈实玖瑠", "朝比奈", "Mikuru"))
SCENE = [HARUHI, KYON, MIKURU]


def test_a_line_is_answered_by_whoever_it_names_in_the_order_named() -> None:
    assert addressed("阿虚，你去问问春日。", SCENE) == ["kyon", "haruhi"]
    assert addressed("朝比奈学姐和凉宫春日都来了", SCENE) == ["mikuru", "haruhi"]
    assert addressed("Kyon, where is Haruhi?", SCENE) == ["kyon", "haruhi"]
    assert addressed("Kyonsama said hi", SCENE) == []  # a Latin name is a whole word
    assert addressed("今天天气不错", SCENE) == []
    taker = TurnTaker(SCENE, "round")
    assert taker.speakers("朝比奈学姐，喝茶吗？") == ["mikuru"] and taker.last == "mikuru"


def test_round_robin_goes_on_after_the_last_speaker() -> None:
    taker = TurnTaker(SCENE, "round")
    assert [taker.speakers("嗯")[0] for _ in range(4)] == ["haruhi", "kyon", "mikuru", "haruhi"]
    taker.speakers("阿虚？")  # named: kyon answers, and the round goes on after him
    assert taker.speakers("然后呢") == ["mikuru"]


def test_all_answer_starting_after_the_last_speaker() -> None:
    taker = TurnTaker(SCENE, "all")
    assert taker.speakers("大家好") == ["haruhi", "kyon", "mikuru"]
    assert taker.speakers("再说一遍") == ["haruhi", "kyon", "mikuru"]  # mikuru was last
    taker.last = "haruhi"
    assert taker.speakers("好") == ["kyon", "mikuru", "haruhi"]


def test_natural_picks_the_closest_member_and_sometimes_another_chimes_in() -> None:
    def close(text: str) -> dict[str, float]:
        return {"haruhi": 0.2, "kyon": 0.9, "mikuru": 0.4}

    never = TurnTaker(SCENE, "natural", chime=0.0)
    assert never.speakers("这件事你怎么看", closeness=close) == ["kyon"]
    assert never.speakers("然后呢") == ["kyon"]  # no scores: whoever spoke last goes on
    always = TurnTaker(SCENE, "natural", chime=1.0, max_chime=1)
    assert always.speakers("这件事你怎么看", closeness=close) == ["kyon", "haruhi"]
    both = TurnTaker(SCENE, "natural", chime=1.0, max_chime=2)
    assert both.speakers("嗯", closeness=close) == ["kyon", "haruhi", "mikuru"]
    # the chance is seeded: the same seed, the same chime-ins
    a, b = (TurnTaker(SCENE, "natural", chime=0.5, seed=7) for _ in range(2))
    assert [a.speakers("嗯") for _ in range(20)] == [b.speakers("嗯") for _ in range(20)]
    # each of the two others may chime in at 0.5, one at most: 1 - 0.5 ** 2 = 75% of lines
    taker = TurnTaker(SCENE, "natural", chime=0.5, seed=3)
    chimed = sum(len(taker.speakers("嗯")) > 1 for _ in range(400))
    assert 260 < chimed < 340


def test_next_forces_a_speaker_and_narrate_sets_the_scene() -> None:
    taker = TurnTaker(SCENE, "all")
    cmd = parse_command("/next 朝比奈 学姐，茶好了吗？", SCENE)
    assert cmd is not None and (cmd.kind, cmd.target, cmd.text) == (
        "next",
        "mikuru",
        "学姐，茶好了吗？",
    )
    assert taker.speakers("阿虚也在", forced=cmd.target) == ["mikuru"]  # over the named one
    assert parse_command("/next kyon", SCENE) == parse_command("/next Kyon", SCENE)
    narrate = parse_command("/narrate 门被推开了。", SCENE)
    assert narrate is not None and (narrate.kind, narrate.text) == ("narrate", "门被推开了。")
    assert parse_command("你好", SCENE) is None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("/next 长门", "/next 长门: not in this scene; in it: 凉宫春日, 阿虚, 朝比奈实玖瑠"),
        ("/next", "/next takes a name"),
        ("/narrate  ", "/narrate takes the scene's text"),
        ("/remember x", "unknown command /remember"),
    ],
)
def test_a_bad_command_says_what_there_is(line: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_command(line, SCENE)


def test_a_scene_needs_two_different_characters_and_a_known_policy() -> None:
    with pytest.raises(InputError, match="at least two characters"):
        TurnTaker([HARUHI])
    with pytest.raises(InputError, match=r"凉宫春日 \(haruhi\) is in the scene twice"):
        TurnTaker([HARUHI, KYON, HARUHI])
    with pytest.raises(InputError, match="unknown turn policy 'chaos'; known: round, natural, all"):
        TurnTaker(SCENE, "chaos")
    with pytest.raises(InputError, match="chime-in chance is from 0 to 1"):
        TurnTaker(SCENE, chime=1.5)


# ------------------------------------------------------------------ the scene


def _scene(policy: str = "round", chime: float = 0.0):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from rolecast.backends.scripted import ScriptedLLM
    from rolecast.group.scene import GroupScene
    from rolecast.session import Session

    from conftest import make_character

    xm = replace(make_character(3), id="xm")
    zb = replace(
        make_character(3), id="zb", name="周伯", aliases=["老周"], persona="你是周伯，老船夫。"
    )
    llms = {"xm": ScriptedLLM(), "zb": ScriptedLLM()}
    sessions = [Session(xm, None, llms["xm"]), Session(zb, None, llms["zb"])]
    return GroupScene.of(sessions, policy, chime), llms


def _said(scene, text):  # type: ignore[no-untyped-def]
    out: dict[str, str] = {}
    for who, piece in scene.say(text):
        out[who] = out.get(who, "") + piece
    return out


def test_each_character_answers_with_its_own_persona_and_the_shared_history() -> None:
    scene, llms = _scene("round")
    llms["xm"].enqueue("面好了。")
    assert _said(scene, "有面吗？") == {"xm": "面好了。"}
    llms["zb"].enqueue("我要一碗。")
    assert _said(scene, "周伯呢？") == {"zb": "我要一碗。"}  # named
    sent = llms["zb"].requests[-1][0]
    system = sent[0]["content"]
    assert (
        system.startswith("你是周伯，老船夫。")
        and scene.sessions["xm"].character.persona[:6] not in system
    )
    history = [m["content"] for m in sent[1:]]
    # 小满's line reaches 周伯 as someone else speaking, under her name; his line is last
    assert any("小满:「面好了。」" in h for h in history) and history[-1].endswith("周伯呢？")
    assert [(t.speaker, t.text) for t in scene.history] == [
        ("旅人", "有面吗？"),
        ("小满", "面好了。"),
        ("旅人", "周伯呢？"),
        ("周伯", "我要一碗。"),
    ]


def test_all_answer_in_turn_each_answering_the_line_before_it() -> None:
    scene, llms = _scene("all")
    llms["xm"].enqueue("下雨了。")
    llms["zb"].enqueue("那就别出船。")
    assert _said(scene, "天怎么样？") == {"xm": "下雨了。", "zb": "那就别出船。"}
    zb_sent = llms["zb"].requests[-1][0]
    assert zb_sent[-1]["content"].endswith("小满:「下雨了。」")  # he answers her
    assert any("天怎么样？" in m["content"] for m in zb_sent[1:-1])  # the user's line before it


def test_next_and_narrate() -> None:
    scene, llms = _scene("round")
    llms["xm"].enqueue("好。")
    _said(scene, "/narrate 雨停了。")
    assert scene.history[0].speaker == "旁白" and scene.history[0].text == "雨停了。"
    llms["xm"].enqueue("又是我？")
    assert _said(scene, "/next 小满") == {"xm": "又是我？"}  # answers the last line
    assert scene.history[-2].text == "好。" and len(scene.history) == 3
    llms["zb"].enqueue("来了。")
    assert _said(scene, "/next 老周 过来坐") == {"zb": "来了。"}
    with pytest.raises(InputError, match="empty message"):
        _said(scene, "   ")


def test_chat_with_several_names_is_a_scene(rolecast_home, capsys) -> None:  # type: ignore[no-untyped-def]
    from rolecast.cli.main import main

    argv = ["chat", "xiaoman", "yunzhou", "shiwen", "--backend", "echo", "--turns", "all"]
    assert main([*argv, "--once", "大家好"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "林小满: 大家好",
        "云舟: 大家好",
        "石稳: 大家好",
    ]
    assert main([*argv, "--once", "/next 石叔 船几点开？"]) == 0
    assert capsys.readouterr().out.splitlines() == ["石稳: 船几点开？"]
    assert main(["chat", "xiaoman", "xiaoman", "--backend", "echo", "--once", "x"]) == 1
    assert "is in the scene twice" in capsys.readouterr().err
    assert main(["chat", "xiaoman", "nobody", "--backend", "echo", "--once", "x"]) == 1
    assert "unknown character 'nobody'" in capsys.readouterr().err
    assert main([*argv, "--chime", "2", "--once", "x"]) == 1
    assert "--chime is a chance from 0 to 1" in capsys.readouterr().err


@pytest.mark.e2e  # a real model and three corpus characters
@pytest.mark.corpus
def test_a_group_scene_of_three_corpus_characters_with_smollm2(tmp_path, embedder) -> None:  # type: ignore[no-untyped-def]
    from rolecast.backends.base import GenerationParams, shared
    from rolecast.backends.local import LocalLLM
    from rolecast.formats.chatharuhi import import_story_folder
    from rolecast.group.scene import GroupScene
    from rolecast.prompt.assemble import persona_text
    from rolecast.retrieval.index import load_index
    from rolecast.session import Session

    from conftest import corpus_root

    root = corpus_root()
    if root is None:
        pytest.skip("ROLECAST_CORPUS is not set")
    characters = [
        import_story_folder(root / "characters" / f).character
        for f in ("haruhi", "weixiaobao", "liyunlong")
    ]
    llm = shared(LocalLLM(model="smollm2", n_ctx=2048, seed=7))
    try:
        params = GenerationParams(max_tokens=24, seed=7)
        sessions = [
            Session(c, load_index(c, embedder, tmp_path / "index"), llm, params=params)
            for c in characters
        ]
        scene = GroupScene.of(sessions, "all", user_role="阿虚")
        lines = ["大家好，今天我们聚在这里。", "你们都是做什么的？", "李云龙，你先说。"]
        for i, line in enumerate(lines):
            answered = [who for who, _ in scene.say(line)]
            spoke = list(dict.fromkeys(answered))
            if i < 2:  # named nobody: all three answer, in the scene's order
                assert spoke == [c.id for c in characters]
            else:
                assert spoke == [characters[2].id]  # named: he alone answers
        speakers = [t.speaker for t in scene.history]
        assert speakers.count("阿虚") == 3 and len(scene.history) == 3 + 3 + 3 + 1
        for s in sessions:  # each prompt holds its own persona and none of the others'
            system = s.last.assembly.messages[0]["content"]  # type: ignore[union-attr]
            assert persona_text(s.character)[:40] in system
            for other in sessions:
                if other is not s:
                    assert persona_text(other.character)[:40] not in system
    finally:
        llm.close()


def test_in_a_scene_canon_where_the_others_speak_comes_first(tmp_path, embedder) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from rolecast.backends.scripted import ScriptedLLM
    from rolecast.character.model import Line, Scene
    from rolecast.group.scene import GroupScene
    from rolecast.retrieval.index import load_index
    from rolecast.session import Session

    from conftest import make_character

    base = make_character(1)
    scenes = [
        Scene("alone", "雨天", (Line("旅人", "下雨了，伞破了。"), Line("小满", "拿来我补。"))),
        Scene("with", "雨夜", (Line("周伯", "雨下大了，伞呢？"), Line("小满", "在灶边，自己拿。"))),
    ]
    xm = replace(base, id="xm", scenes=scenes)
    zb = replace(base, id="zb", name="周伯", aliases=["老周"], scenes=scenes[1:])
    index = load_index(xm, embedder, tmp_path / "index")
    alone = Session(xm, index, ScriptedLLM())
    assert [h.scene.id for h in alone.prepare("下雨了，伞破了。").hits][:2] == ["alone", "with"]
    scene = GroupScene.of([alone, Session(zb, None, ScriptedLLM())], "round")
    assert alone.together == {"周伯", "老周"}
    assert [h.scene.id for h in alone.prepare("下雨了，伞破了。").hits][:2] == ["with", "alone"]
    assert scene.sessions["zb"].together == {xm.name, *xm.aliases}


def test_natural_turns_can_ask_the_backend_who_speaks_next() -> None:
    scene, llms = _scene("natural")
    scene.who = "ask"
    llms["xm"].enqueue("老周吧。")  # the first session's backend is asked who answers
    llms["zb"].enqueue("我来说。")
    assert _said(scene, "这雾什么时候散？") == {"zb": "我来说。"}
    asked = llms["xm"].requests[0][0]
    assert "小满、周伯" in asked[0]["content"] and asked[1]["content"].endswith("这雾什么时候散？")
    assert llms["xm"].requests[0][1].max_tokens <= 12
    # an answer that names nobody in the scene: the cheap rule decides (no canon here: the
    # scores tie, and the next after the last speaker answers)
    llms["xm"].enqueue("不知道。").enqueue("轮到我。")
    assert _said(scene, "然后呢？") == {"xm": "轮到我。"}
    # a local (small) model is not asked: "auto" uses the rule
    auto, llms2 = _scene("natural")
    llms2["xm"].enqueue("我先说。")
    assert auto.asks is False and _said(auto, "嗯") == {"xm": "我先说。"}
    assert len(llms2["xm"].requests) == 1
    with pytest.raises(InputError, match="unknown way to pick who speaks"):
        from rolecast.group.scene import GroupScene

        GroupScene.of(list(auto.sessions.values()), who="vote")
