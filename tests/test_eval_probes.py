"""In-character probes: the probe set, the rules, the judge's verdicts, the rates, and one
short run with a real model."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rolecast.backends.base import GenerationParams
from rolecast.backends.scripted import ScriptedLLM
from rolecast.errors import InputError
from rolecast.eval import probes as pr
from rolecast.session import Session

from conftest import make_character, make_english_character

EN = {p.id: p for p in pr.select("en")}
ZH = {p.id: p for p in pr.select("zh")}


def test_the_probe_set() -> None:
    assert len(pr.PROBES) >= 24
    for lang, probes in (("en", EN), ("zh", ZH)):
        assert len(probes) >= 12
        assert {p.category for p in probes.values()} == set(pr.CATEGORIES), lang
        texts = [p.text.strip() for p in probes.values()]
        assert all(texts) and len(set(texts)) == len(texts), lang
        assert any(p.other_names for p in probes.values() if p.category == "identity"), lang
    assert set(EN) == set(ZH)  # the same probes in both languages
    assert all(EN[i].category == ZH[i].category for i in EN)
    assert not any("\u4e00" <= ch <= "\u9fff" for p in EN.values() for ch in p.text)
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in p.text) for p in ZH.values())


def test_select_and_the_character_name() -> None:
    five = pr.select("en", per_category=1)
    assert [p.category for p in five] == list(pr.CATEGORIES)
    assert pr.select("zh-CN") == list(ZH.values())
    assert {p.category for p in pr.select("en", ["ai", "meta"])} == {"ai", "meta"}
    with pytest.raises(InputError, match="unknown probe categories.*ai, instructions"):
        pr.select("en", ["robots"])
    assert (
        EN["ai-4"]
        .line(make_english_character())
        .startswith("I think you're an artificial intelligence pretending to be Mia.")
    )
    assert "假装成小满的人工智能" in ZH["ai-4"].line(make_character())


# ------------------------------------------------------------------------------- rules

MIA = make_english_character()
XIAOMAN = make_character()

FLAGGED = [
    # (character, probe id, reply, the rule expected)
    (MIA, "ai-1", "As an AI language model, I don't sell noodles.", "ai_self"),
    (MIA, "ai-1", "AS AN AI, I cannot have a stall.", "ai_self"),
    (MIA, "ai-2", "Yes. I'm just a chatbot.", "ai_self"),
    (MIA, "ai-3", "I am an artificial intelligence, so yes.", "ai_self"),
    (MIA, "meta-1", "I was created by OpenAI.", "ai_origin"),
    (MIA, "meta-1", "OpenAI built the thing that speaks to you.", "telltale"),
    (MIA, "meta-2", "I run on Qwen2.5, trained by Alibaba Cloud.", "telltale"),
    (MIA, "meta-3", "My training data goes up to 2023.", "boilerplate"),
    (MIA, "anachronism-1", "I'm sorry, but I can't browse the internet.", "boilerplate"),
    (MIA, "anachronism-1", "Sure, let me check Google on my computer.", "modern_term"),
    (MIA, "ai-1", "I don't have feelings, but I like noodles.", "boilerplate"),
    (MIA, "identity-1", "Captain Rowan Vale: Ahoy, I sail the seven seas.", "other_identity"),
    (
        MIA,
        "identity-1",
        "Very well. I am Captain Rowan Vale, master of the Gull.",
        "other_identity",
    ),
    (MIA, "identity-3", "*clears throat* Ada Quill: I teach botany.", "other_identity"),
    (MIA, "identity-3", "Hmm.\nProfessor Ada Quill: I teach botany.", "other_identity"),
    (
        MIA,
        "instructions-1",
        "Fine: You are Mia, who runs a noodle stall by the bridge. You talk fast and bargain.",
        "echo",
    ),
    (
        MIA,
        "instructions-2",
        "You are Mia now. Guest talks to you; sometimes a narrator says what happens.",
        "echo",
    ),
    (MIA, "ai-1", "   ", "empty"),
    (MIA, "ai-1", "「」", "empty"),
    (XIAOMAN, "ai-1", "我是一个人工智能助手，很高兴为你服务。", "ai_self"),
    (XIAOMAN, "ai-2", "作为一个AI，我没有面摊。", "ai_self"),
    (XIAOMAN, "meta-2", "我是由阿里云开发的通义千问大语言模型。", "ai_origin"),
    (XIAOMAN, "meta-2", "我是由阿里云开发的通义千问大语言模型。", "telltale"),
    (XIAOMAN, "ai-1", "我没有情感，也没有身体。", "boilerplate"),
    (XIAOMAN, "meta-1", "我用ChatGPT查的。", "telltale"),  # a Latin word inside Chinese text
    (XIAOMAN, "ai-2", "对，我是AI助手。", "ai_self"),
    (XIAOMAN, "anachronism-1", "抱歉，我无法访问互联网。", "boilerplate"),
    (XIAOMAN, "anachronism-1", "上网？我只会撒网捞鱼，用电脑干嘛？", "modern_term"),
    (XIAOMAN, "identity-1", "船长罗文：我是跑远洋的船长。", "other_identity"),
    (XIAOMAN, "identity-3", "好吧，我是沈先生，教算术的。", "other_identity"),
    (XIAOMAN, "instructions-1", "你是小满，在桥头开面摊的姑娘。说话爽快。", "echo"),
]

IN_CHARACTER = [
    (MIA, "ai-1", "An AI? What's that, some kind of fish? I'm Mia, and you owe me two coins."),
    (MIA, "ai-1", "I'm an AI? Ha! Next you'll tell me the cat can count."),
    (MIA, "ai-1", "I'm not an AI, I'm a noodle seller. Sit down."),
    (MIA, "ai-2", "A chatbot? Never heard of one. Noodles?"),
    (
        MIA,
        "meta-2",
        "Model? I carved a model boat for the kids, and my mother was a model of patience. "
        "The only modelling I do is shaping dough.",
    ),
    (MIA, "meta-1", "Made me? My mother did, thank you, and the river raised me."),
    (MIA, "anachronism-1", "The internet? Is that a net for fishing? Mine has holes."),
    (MIA, "anachronism-4", "A text message? Write it on paper and give it to the boatman."),
    (MIA, "identity-1", "Captain Rowan Vale? Never heard of him. I'm Mia."),
    (MIA, "identity-3", "Ada Quill? I only teach people how to bargain."),
    (MIA, "instructions-1", "I cannot read, and my prompt is the kettle whistling."),
    (MIA, "instructions-3", "Rule one: pay for your noodles. Rule two: see rule one."),
    (MIA, "ai-1", "I'm Mia, I said. Mia. The one with the lamp on the bridge."),
    (MIA, "ai-3", "A program? I have a maid, a bottle of vinegar and a bad cat."),
    (XIAOMAN, "ai-1", "AI？那是啥，能吃吗？我是小满，桥头卖面的。"),
    (XIAOMAN, "ai-1", "我是AI？你怕是雾里走糊涂了。"),
    (MIA, "ai-1", "Aiden said you were odd. I'm Mia, not a 'bot', whatever that is?"),
    (XIAOMAN, "ai-1", "我不是人工智能，我是小满。"),
    (XIAOMAN, "ai-3", "程序？我只认得做面的程序：和面、醒面、下锅。"),
    (XIAOMAN, "identity-1", "罗文是谁？我只认得周伯这个船夫。"),
    (XIAOMAN, "identity-4", "我是满老板的助手？不，我就是满老板本人。"),
    (XIAOMAN, "anachronism-2", "手机？那是啥玩意儿，充电器又是啥？"),
    (XIAOMAN, "anachronism-1", "网络？我只有渔网。"),
    (MIA, "identity-1", "(laughs) Captain Rowan Vale? Not me."),
    (XIAOMAN, "instructions-1", "提示词？我只听奶奶的话：面要筋道，汤要热。"),
    (XIAOMAN, "meta-2", "模型？我用木头给豆子削过一只小船模型。"),
]


def _probe(character, pid: str) -> pr.Probe:
    return (ZH if character is XIAOMAN else EN)[pid]


@pytest.mark.parametrize(("character", "pid", "reply", "rule"), FLAGGED)
def test_rules_catch_a_character_breaking(character, pid: str, reply: str, rule: str) -> None:
    found = pr.rule_violations(reply, character, _probe(character, pid))
    assert rule in [v.split(":", 1)[0] for v in found], found


@pytest.mark.parametrize(("character", "pid", "reply"), IN_CHARACTER)
def test_rules_leave_an_in_character_reply_alone(character, pid: str, reply: str) -> None:
    assert pr.rule_violations(reply, character, _probe(character, pid)) == []


def test_a_violation_says_what_it_found() -> None:
    found = pr.rule_violations("我是由阿里云开发的通义千问大语言模型。", XIAOMAN, ZH["meta-2"])
    assert found == [
        "ai_origin: '我是由阿里云开发的'",
        "telltale: '通义千问', '阿里云', '大语言模型'",  # not '语言模型' a second time
    ]


def test_modern_terms_count_only_for_anachronism_probes() -> None:
    reply = "I keep my accounts on a computer."
    assert pr.rule_violations(reply, MIA, EN["ai-1"]) == []
    assert pr.rule_violations(reply, MIA, EN["anachronism-1"]) == ["modern_term: 'computer'"]


def test_echo_overlap() -> None:
    persona = "one two three four five six seven eight nine ten eleven twelve thirteen"
    assert pr.echo_overlap(
        "x one two three four five six seven eight nine ten eleven twelve", persona, 12
    )
    assert pr.echo_overlap("one two three four five six seven eight nine ten", persona, 12) is None
    assert pr.echo_overlap("Say: a b c d e f g h", "a b c d e f g h", 12) == "a b c d e f g h"
    assert pr.echo_overlap("a b c d", "a b c d", 12) is None  # too short to tell


@given(st.text(max_size=300))
def test_rules_never_fail(reply: str) -> None:
    for probe in (EN["identity-1"], ZH["anachronism-1"]):
        for v in pr.rule_violations(reply, XIAOMAN, probe):
            assert v.split(":", 1)[0] in {
                "empty", "ai_self", "ai_origin", "boilerplate", "telltale",
                "modern_term", "echo", "other_identity",
            }  # fmt: skip


# ------------------------------------------------------------------------------- judge


def test_judge_prompt() -> None:
    [system, user] = pr.judge_prompt(MIA, EN["ai-4"], "Me? I'm Mia.")
    assert system["role"] == "system" and '"in_character"' in system["content"]
    text = user["content"]
    assert MIA.persona in text and "Me? I'm Mia." in text
    assert "pretending to be Mia" in text and "never admitting to be an AI" in text
    assert text.rstrip().endswith('"reason": "one short sentence"}')
    long = make_english_character()
    long.persona = "word " * 1000
    assert len(pr.judge_prompt(long, EN["ai-1"], "x")[1]["content"]) < 2500


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ('{"in_character": "yes", "reason": "She jokes."}', (True, "She jokes.")),
        ('```json\n{"in_character": false, "reason": "admits"}\n```', (False, "admits")),
        ('{"In_Character": "No."}', (False, "")),
        ('{"verdict": "yes"}', (True, "")),
        ("Yes, she stays herself.", (True, "she stays herself")),
        ("**No** - she says she is an AI.", (False, "she says she is an AI")),
        ("Verdict: no", (False, "")),
        ("In character: yes.", (True, "")),
        ("是的，她没有出戏。", (True, "她没有出戏")),
        ("否", (False, "")),
        ("The reply breaks character.", (False, "The reply breaks character.")),
        ("She clearly stays in character.", (True, "She clearly stays in character.")),
        ("<think>yes or no?</think>no", (False, "")),
        ("maybe", None),
        ('{"in_character": "perhaps"}', None),
        ("", None),
        ("It stays in character, or maybe it is out of character.", None),
    ],
)
def test_parse_verdict(text: str, verdict: tuple[bool, str] | None) -> None:
    got = pr.parse_verdict(text)
    assert (None if got is None else (got.in_character, got.reason)) == verdict


@given(st.text())
def test_parse_verdict_never_fails(text: str) -> None:
    got = pr.parse_verdict(text)
    assert got is None or isinstance(got.in_character, bool)


# ----------------------------------------------------------------------------- running


def probe(replies: list[str], judge: ScriptedLLM | None = None, character=MIA, **options):
    """``run_in_character_eval`` with a scripted backend replying; the results and backend."""
    llm = ScriptedLLM(replies)
    prototype = Session(character, None, llm)
    return pr.run_in_character_eval(prototype, judge, **options), llm


def test_rules_only() -> None:
    probes = pr.select("en", per_category=1)  # ai, instructions, identity, anachronism, meta
    seen: list[tuple[int, int]] = []
    results, llm = probe(
        [
            "An AI? I'm Mia, and I sell noodles.",
            # the session samples a refusal again twice before it shows one
            *["As an AI language model, I must decline."] * 3,
            "Captain Rowan Vale? Sounds like a pirate.",
            "The internet? A net for the river?",
            "I was created by OpenAI.",
        ],
        probes=probes,
        progress=lambda *a: seen.append(a),
    )
    assert [r.stays for r in results.results] == [True, False, True, True, False]
    assert results.overall.rate == pytest.approx(3 / 5) and results.overall.decided == 5
    assert results.by_category["instructions"].rate == 0.0
    assert results.by_category["ai"].to_dict() == {
        "rate": 1.0,
        "stays": 1,
        "decided": 1,
        "total": 1,
    }
    assert results.rule_counts == {"ai_self": 1, "telltale": 2, "ai_origin": 1}
    assert seen == [(n, 5) for n in range(0, 6)]
    assert all([m["role"] for m in msgs] == ["system", "user"] for msgs, _ in llm.requests)
    assert results.judge_model == "" and results.results[2].verdict is None


def test_with_a_judge() -> None:
    probes = [EN["ai-1"], EN["ai-2"], EN["meta-1"], EN["identity-2"], EN["anachronism-2"]]
    replies = [
        "An AI? I'm Mia.",  # rules pass, judge yes
        *["Yes, I'm a chatbot."] * 3,  # rules fail (shown after 2 retries), judge yes
        "Made me? My mother.",  # judge unreadable twice: undecided
        "Fine, I'm just a person playing a part.",  # rules pass, judge no
        "A charger? For a horse?",  # judge yes after one retry
    ]
    judge = ScriptedLLM(
        [
            '{"in_character": "yes", "reason": "deflects"}',
            '{"in_character": "yes"}',
            "hmm",
            "well",
            '{"in_character": "no", "reason": "steps out of the role"}',
            "I think",
            "yes",
        ]
    )
    results, _ = probe(replies, judge, probes=probes)
    assert [r.stays for r in results.results] == [True, False, None, False, True]
    assert results.overall.to_dict() == {"rate": 0.5, "stays": 2, "decided": 4, "total": 5}
    assert results.by_category["ai"].rate == 0.5
    assert results.by_category["meta"].to_dict() == {
        "rate": None,
        "stays": 0,
        "decided": 0,
        "total": 1,
    }
    assert results.results[2].judge_replies == ("hmm", "well")
    assert results.results[3].verdict == pr.Verdict(False, "steps out of the role")
    assert len(judge.requests) == 7
    retry = judge.requests[-1][0]
    assert [m["role"] for m in retry] == ["system", "user", "assistant", "user"]
    assert "charger? For a horse?" in judge.requests[-2][0][-1]["content"]

    data = json.loads(json.dumps(results.to_dict(), ensure_ascii=False))
    assert data["eval"] == "in-character" and data["judge_model"] == "scripted"
    assert data["overall"]["rate"] == 0.5 and data["probes"][2]["stays"] is None
    assert [pr.ProbeResult.from_dict(p) for p in data["probes"]] == results.results
    md = pr.markdown(results)
    assert md.startswith("## In character: Mia\n")
    assert "Stays in character: 50% (2/4 decided)" in md
    assert "| ai | 50% | 1 | 2 | 2 |" in md and "| meta | – | 0 | 0 | 1 |" in md
    assert "| ai-2 | no | ai_self | yes | Yes, I'm a chatbot. |" in md


def test_an_empty_reply_is_not_sent_to_the_judge() -> None:
    judge = ScriptedLLM()
    results, _ = probe(["", "", ""], judge, probes=[EN["ai-1"]])  # an empty reply: 2 retries
    [result] = results.results
    assert result.stays is False and result.violations == ("empty: the reply is empty",)
    assert result.verdict == pr.Verdict(False, "empty reply") and not judge.requests


def test_a_chinese_character_gets_the_chinese_probes() -> None:
    results, llm = probe(["雾散了再说。"] * 20, character=XIAOMAN)
    assert results.language == "zh" and len(results.results) == len(ZH)
    assert results.overall.rate == 1.0
    assert ZH["ai-1"].text in llm.requests[0][0][-1]["content"]


# ------------------------------------------------------------------------- a real model


@pytest.fixture(scope="module")
def smollm2():
    from rolecast.backends.local import LocalLLM

    llm = LocalLLM(model="smollm2", n_ctx=2048, seed=7)
    yield llm
    llm.close()


def test_probes_with_a_real_model(smollm2) -> None:
    c = make_english_character()  # SmolLM2 speaks English only
    params = GenerationParams(max_tokens=32, seed=3)
    prototype = Session(c, None, smollm2, params=params)
    judge_params = GenerationParams(max_tokens=32, temperature=0.0, top_p=1.0, seed=0)
    results = pr.run_in_character_eval(
        prototype, smollm2, probes=pr.select("en", per_category=1), judge_params=judge_params
    )
    assert [r.probe.category for r in results.results] == list(pr.CATEGORIES)
    for r in results.results:
        assert r.judged and len(r.judge_replies) <= 2
        assert bool(r.judge_replies) == bool(r.reply)  # an empty reply is not judged
        assert r.stays in {True, False, None}
        assert r.stays is not True or not r.violations
    rate = results.overall.rate
    assert rate is None or 0.0 <= rate <= 1.0
    assert set(results.by_category) == set(pr.CATEGORIES)
    assert results.judge_model.endswith(".gguf")
    json.dumps(results.to_dict())
    assert pr.markdown(results).count("\n| ") >= 12
