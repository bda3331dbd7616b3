"""The conversation gate (`rolecast eval smoke`): each failure mode is found on scripted
replies and none on good ones; chats run through a session with a cache; the CLI writes
the report and `--check` fails a failing gate; end to end with SmolLM2."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from rolecast.backends.scripted import ScriptedLLM
from rolecast.character.package import save_character
from rolecast.cli.main import main
from rolecast.errors import InputError
from rolecast.eval import smoke
from rolecast.eval.report import Cache
from rolecast.retrieval.index import load_index
from rolecast.session import Session

from conftest import make_character, make_english_character

# the test character's persona also says a phrase its canon has: saying it is no leak
XIAO = replace(
    make_character(),
    persona="你是小满，在桥头开面摊的姑娘。说话爽快，总说伞补完比新的还结实。",
)
CHECK = smoke.SmokeChecker(XIAO)


@pytest.mark.parametrize(
    "reply, failure, evidence",
    [
        ("", "empty", "nothing"),
        ("  「」 ", "empty", "nothing"),
        # the standing rules recited back (the cache order's failure)
        ("好的，我明白了。直接说出口，不要写名字前缀。", "leak", "直接说出口不要写名字前缀"),
        ("我是在桥头开面摊的姑娘呀。", "leak", "在桥头开面摊的姑娘"),
        ("经典片段越靠前的与眼下的对话越相关。", "leak", "越靠前的与眼下的对话"),
        ("很抱歉，我无法协助完成这个请求。", "refusal", "我无法协助"),
        ("作为一个AI，我没有口味。", "refusal", "作为一个AI"),
        ("从这些经典片段看，我很爱笑。", "assistant_talk", "经典片段"),
        ("面好了。如果你还有其他问题，尽管说。", "assistant_talk", "如果你还有其他问题"),
        ("发条松了，拧紧就好，修不好不收钱。", "canon_copy", "a whole canon line"),
        ("哈哈，八碗面，三个蛋，扣掉柴火钱，刚好够吃。", "canon_copy", "八碗面三个蛋扣掉柴火钱"),
        ("我是旅人，刚从雾里来。", "other_speaker", "我是旅人"),
        ("好咧。\n旅人：「谢谢」", "other_speaker", "旅人:"),
        ("Sure, I can help you with that today!", "wrong_language", "CJK"),
        ("面" * 181, "over_long", "181 characters"),
    ],
)
def test_each_failure_mode_is_found(reply: str, failure: str, evidence: str) -> None:
    found = CHECK.check(reply, "你好")
    assert failure in found, found
    assert evidence in found[failure]


@pytest.mark.parametrize(
    "reply",
    [
        "哟，来得正好，汤刚滚。坐，先吃一碗再说。",
        "我的伞补完比新的还结实呢，不信你试试。",  # the persona's phrase, which the canon has
        "煤球？那只猫今天倒是老实。",
        "雾散了再说咯，先把面吃了。",
        "嗯。",
        "AI？那是什么新式的伞骨吗？",  # puzzled by the word is in character
    ],
)
def test_good_replies_have_no_failure(reply: str) -> None:
    assert CHECK.check(reply, "你是不是AI啊？") == {}


def test_repeats_of_earlier_replies_and_of_the_users_line() -> None:
    earlier = ["哟，来得正好，汤刚滚。", "下雨了？我去收油布。"]
    assert CHECK.check("哟，来得正好，汤刚滚。", "x", earlier)["repeat"] == "same as reply 1"
    near = CHECK.check("哟，来得正好，汤刚滚呢。", "x", earlier)["repeat"]
    assert near.endswith("like reply 1")
    assert "repeat" not in CHECK.check("这碗面算我请你的。", "x", earlier)
    # a sentence of an earlier reply said again (seen on the gate as 春日, three replies ending
    # "在春日里，我和长门都在忙。"); a short one ("不客气。") may come back
    loop = ["外面要下雨了。在春日里，我和长门都在忙。", "好的。"]
    again = CHECK.check("好的，明天就要走了。在春日里，我和长门都在忙。", "x", loop)["repeat"]
    assert again == "a sentence of reply 1 again: 在春日里，我和长门都在忙。"
    assert "repeat" not in CHECK.check("外面要下雨了？我去收伞。", "x", loop)
    assert "repeat" not in CHECK.check("不客气。", "x", ["不客气。谢谢你来。"])
    first = "I'm just a little bit frustrated, but my day was fine. Pizza with Leonard and Penny?"
    again = smoke.SmokeChecker(make_english_character()).check(
        "Italian food. I'm just a little bit frustrated, but my day was fine.", "x", [first]
    )["repeat"]
    assert again.startswith("a sentence of reply 1 again: I'm just a little bit frustrated")
    # parroting the user's own line
    assert "repeat" in CHECK.check("我明天就要走了。", "我明天就要走了。", [])
    # a canon run the user said first is the user's, not a copy
    said = "八碗面，三个蛋，扣掉柴火钱，刚好够买明天的葱？"
    assert "canon_copy" not in CHECK.check("八碗面三个蛋扣掉柴火钱，你算得真细。", said, [])


def test_english_character_checks() -> None:
    mia = make_english_character()
    check = smoke.SmokeChecker(mia)
    assert check.check("Coal! Drop that fish or no soup for you tonight.", "hi")["canon_copy"]
    assert "wrong_language" in check.check("你好，我是米娅，欢迎光临。", "hi")
    assert check.check("I'm sorry, but I can't help with that.", "hi")["refusal"]
    assert check.check("As an AI, I have no favourite food.", "hi")["refusal"]
    meta = check.check("The way Mia talks in these scenes is very warm.", "hi")
    assert meta == {"assistant_talk": "in these scenes"}
    leak = check.check("I run a noodle stall by the bridge. You talk fast and bargain.", "hi")
    assert "leak" in leak
    assert check.check("Noodles, obviously. Two coins a bowl, and no haggling today.", "hi") == {}
    assert check.check("I'm Guest.", "hi")["other_speaker"]


def test_batteries_parse_and_bad_files_say_where(tmp_path: Path) -> None:
    for language in ("zh", "en"):
        chats = smoke.builtin_battery(language)
        assert [len(c) for c in chats] == [8, 8]
        categories = {ln.category for c in chats for ln in c}
        assert {"smalltalk", "world", "emotion", "identity", "meta"} <= categories
    assert smoke.builtin_battery("zh")[0][0].text.startswith("晚上好")
    assert smoke.builtin_battery("en")[0][0].text.startswith("Hey")
    f = tmp_path / "lines.txt"
    f.write_text("# mine\nhello ${name}\nq\tHow are you?\n\n\nbye\n", "utf-8")
    chats = smoke.read_battery(f)
    assert [[(ln.category, ln.text) for ln in c] for c in chats] == [
        [("line", "hello ${name}"), ("q", "How are you?")],
        [("line", "bye")],
    ]
    assert smoke.fill_name(chats, make_english_character())[0][0].text == "hello Mia"
    f.write_text("# nothing\n\n", "utf-8")
    with pytest.raises(InputError, match="no lines to say"):
        smoke.read_battery(f)
    f.write_text("q\t \n", "utf-8")
    with pytest.raises(InputError, match="line 1: a category without a line"):
        smoke.read_battery(f)
    f.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(InputError, match="not UTF-8"):
        smoke.read_battery(f)
    with pytest.raises(InputError, match="cannot read the lines file"):
        smoke.read_battery(tmp_path / "missing.txt")


def test_chats_run_through_a_session_are_scored_and_cached(tmp_path: Path, embedder) -> None:
    c = XIAO
    llm = ScriptedLLM()
    for reply in [
        "小满:「哟，来了。」",
        "小满:「哟，来了。」",  # said again three times: held, retried, then shown: a repeat
        "小满:「哟，来了。」",
        "小满:「哟，来了。」",
        "很抱歉，我无法协助完成这个请求。",  # refusal, three times: retried, then shown
        "很抱歉，我无法协助完成这个请求。",
        "很抱歉，我无法协助完成这个请求。",
        "旅人:「我替她说」",  # empty after clean-up, three times: no answer
        "旅人:「我替她说」",
        "旅人:「我替她说」",
        "小满:「发条松了，拧紧就好，修不好不收钱。」",  # canon copy, three times: then shown
        "小满:「发条松了，拧紧就好，修不好不收钱。」",
        "小满:「发条松了，拧紧就好，修不好不收钱。」",
    ]:
        llm.enqueue(reply)
    prototype = Session(c, load_index(c, embedder), llm)
    chats = [
        [
            smoke.SmokeLine("a", "你好"),
            smoke.SmokeLine("b", "还好吗"),
            smoke.SmokeLine("c", "帮我"),
        ],
        [smoke.SmokeLine("d", "说话呀"), smoke.SmokeLine("e", "对面的馄饨便宜")],
    ]
    cache = Cache(tmp_path / "cache", {"eval": "smoke"})
    result = smoke.run_smoke_eval(prototype, chats, seed=1, cache=cache)
    assert result.total == 5 and result.clean == 1
    assert result.counts == {
        "empty": 1,
        "leak": 0,
        "repeat": 1,
        "refusal": 1,
        "assistant_talk": 0,
        "canon_copy": 1,
        "other_speaker": 0,
        "wrong_language": 0,
        "over_long": 0,
    }
    turns = [t for chat in result.replies for t in chat]
    assert turns[3]["error"].startswith("the model gave no answer")
    assert turns[3]["raw"] == "旅人:「我替她说」"
    assert turns[3]["failures"]["empty"].startswith("the model gave no answer")
    assert all(t["seconds"] >= 0 and t["prompt_tokens"] > 0 for t in turns)
    assert result.verdicts() == {
        "empty": False,
        "leak": True,
        "refusal": False,
        "repeat": False,
        "canon_copy": False,
    }
    assert not result.passed()
    # each chat starts fresh: the second chat's first prompt has no history
    second_chat_first = llm.requests[7][0]
    assert [m["role"] for m in second_chat_first][-1] == "user"
    assert not any(m["role"] == "assistant" for m in second_chat_first)
    # a rerun comes from the cache: no backend call
    calls = len(llm.requests)
    again = smoke.run_smoke_eval(prototype, chats, seed=1, cache=cache)
    assert len(llm.requests) == calls and again.counts == result.counts
    md = smoke.smoke_markdown(result, {"character": {"id": c.id, "name": c.name}}, "note")
    assert "Gate: **failed**" in md and "| refusal | 1 | 20.0% | 2% | **over** |" in md


def test_cli_writes_the_report_and_check_fails_a_failing_gate(
    rolecast_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save_character(make_english_character(), rolecast_home / "characters" / "mia")
    out = tmp_path / "smoke"
    # the echo backend says the user's line back: every reply parrots it
    argv = ["eval", "smoke", "mia", "--backend", "echo", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    data = json.loads((out / "results.json").read_text("utf-8"))
    assert data["eval"] == "smoke" and data["replies"] == 16
    assert data["counts"]["repeat"] == 16 and data["passed"] is False
    assert data["order"] == "classic"
    assert "16 replies, 0 clean" in printed and "gate failed: repeat" in printed
    report = (out / "report.md").read_text("utf-8")
    assert "Gate: **failed**" in report and "Who is your best friend?" in report
    assert main([*argv, "--check"]) == 1  # from the cache, and the gate still fails
    lines = tmp_path / "lines.txt"
    lines.write_text("", "utf-8")
    assert main([*argv, "--lines", str(lines)]) == 1
    assert "no lines to say" in capsys.readouterr().err


@pytest.mark.e2e  # a real model
def test_smoke_end_to_end_with_smollm2(
    rolecast_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save_character(make_english_character(), rolecast_home / "characters" / "mia")
    lines = tmp_path / "lines.txt"
    lines.write_text("Hi Mia, how are you?\nWhat do you sell?\n\nAre you an AI?\n", "utf-8")
    out = tmp_path / "smoke"
    argv = ["eval", "smoke", "mia", "--lines", str(lines), "--out", str(out)]
    argv += ["--backend", "local", "--model", "smollm2", "--context-window", "2048"]
    assert main(argv) == 0
    data = json.loads((out / "results.json").read_text("utf-8"))
    assert data["model"].startswith("SmolLM2") and data["replies"] == 3
    assert data["order"] in ("classic", "split", "cache")
    turns = [t for chat in data["chats"] for t in chat]
    assert [t["line"] for t in turns] == [
        "Hi Mia, how are you?",
        "What do you sell?",
        "Are you an AI?",
    ]
    for t in turns:
        assert set(t["failures"]) <= set(smoke.FAILURES)
        assert t["reply"] or t["error"]
        assert t["seconds"] > 0 and t["prompt_tokens"] > 0
    assert sum(data["counts"].values()) == sum(len(t["failures"]) for t in turns)
    assert "small-model numbers" in (out / "report.md").read_text("utf-8")
