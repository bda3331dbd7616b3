"""The Big Five interview: the item table, judging and scoring with a scripted judge, labels,
and one short run with a real model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rolecast.backends.base import GenerationParams
from rolecast.backends.scripted import ScriptedLLM
from rolecast.errors import InputError, ParseError
from rolecast.eval import interview as iv
from rolecast.session import Session

from conftest import make_character, make_english_character

# John & Srivastava's BFI scoring key, written out independently of the module's table
KEY = {
    "E": "1 6R 11 16 21R 26 31R 36",
    "A": "2R 7 12R 17 22 27R 32 37R 42",
    "C": "3 8R 13 18R 23R 28 33 38 43R",
    "N": "4 9R 14 19 24R 29 34R 39",
    "O": "5 10 15 20 25 30 35R 40 41R 44",
}


def interview(replies: list[str], ratings: list[str] = (), character=None, **options):
    """``run_personality_eval`` with a scripted backend answering and a scripted judge;
    the result and both backends."""
    llm, judge = ScriptedLLM(replies), ScriptedLLM(ratings)
    prototype = Session(character or make_english_character(), None, llm)
    return iv.run_personality_eval(prototype, judge, **options), llm, judge


# ------------------------------------------------------------------------------ items


def test_the_item_table_matches_the_published_key() -> None:
    assert [i.number for i in iv.ITEMS] == list(range(1, 45))
    table = {f: " ".join(i.key for i in iv.ITEMS if i.factor == f) for f in iv.FACTORS}
    assert table == KEY
    counts = {f: sum(i.factor == f for i in iv.ITEMS) for f in iv.FACTORS}
    assert counts == {"E": 8, "A": 9, "C": 9, "N": 8, "O": 10}
    keys = [k for keys in KEY.values() for k in keys.split()]
    assert sorted(int(k.rstrip("R")) for k in keys) == list(range(1, 45))  # each item once
    assert iv.FACTOR_NAMES["N"] == "Neuroticism"


def test_every_question_is_written_in_both_languages_and_unique() -> None:
    for attr in ("question_en", "question_zh", "trait"):
        texts = [getattr(i, attr).strip() for i in iv.ITEMS]
        assert all(texts), attr
        assert len(set(texts)) == 44, attr
    assert all(i.question_en.endswith(("?", ".")) for i in iv.ITEMS)
    assert all(i.question_zh.endswith(("？", "。")) for i in iv.ITEMS)
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in i.question_zh) for i in iv.ITEMS)
    assert not any(any("\u4e00" <= ch <= "\u9fff" for ch in i.question_en) for i in iv.ITEMS)


def test_question_language_follows_the_character() -> None:
    item = iv.ITEMS[0]
    assert item.question("zh") == item.question("zh-TW") == item.question_zh
    assert item.question("en") == item.question("ja") == item.question_en
    assert iv.items_for(per_factor=1) == list(iv.ITEMS[:5])
    assert [i.number for i in iv.items_for(["neuroticism"], per_factor=2)] == [4, 9]
    with pytest.raises(InputError, match="unknown Big Five factor 'X'.*Extraversion"):
        iv.items_for(["X"])


# ---------------------------------------------------------------------------- interview


def test_each_question_is_asked_in_a_fresh_conversation() -> None:
    items = iv.items_for(per_factor=1)
    seen: list[tuple[int, int]] = []
    result, llm, judge = interview(
        [f"answer {n}" for n in range(5)],
        ["3"] * 5,
        items=items,
        progress=lambda *a: seen.append(a),
    )
    answers = [j.answer for j in result.judged]
    assert [a.reply for a in answers] == [f"answer {n}" for n in range(5)]
    assert [a.question for a in answers] == [i.question_en for i in items]
    # answers then ratings, counted together: each phase reports its start (cached items)
    assert seen == [(n, 10) for n in range(0, 6)] + [(n, 10) for n in range(5, 11)]
    for (messages, _), item in zip(llm.requests, items, strict=True):
        assert item.question_en in messages[-1]["content"]
        assert [m["role"] for m in messages] == ["system", "user"]  # no earlier turns
    assert len(judge.requests) == 5 and "answer 4" in judge.requests[-1][0][-1]["content"]


def test_each_item_has_its_own_seed_the_same_on_every_run() -> None:
    items = iv.items_for(per_factor=2)
    first, llm, _ = interview(["a"] * 10, ["3"] * 10, items=items, seed=5)
    seeds = [params.seed for _, params in llm.requests]
    assert len(set(seeds)) == 10 and None not in seeds
    _, again, _ = interview(["a"] * 10, ["3"] * 10, items=items, seed=5)
    assert [params.seed for _, params in again.requests] == seeds
    _, other, _ = interview(["a"] * 10, ["3"] * 10, items=items, seed=6)
    assert [params.seed for _, params in other.requests] != seeds
    assert first.meta["seed"] == 5 and first.meta["judge_params"]["temperature"] == 0.0


def test_a_chinese_character_is_asked_in_chinese() -> None:
    c = make_character()
    result, llm, _ = interview(["我话多着呢"], ["4"], c, items=iv.ITEMS[:1])
    assert result.language == "zh"
    assert result.judged[0].answer.question == iv.ITEMS[0].question_zh
    assert iv.ITEMS[0].question_zh in llm.requests[0][0][-1]["content"]


def test_answers_and_ratings_come_from_the_cache_the_second_time(tmp_path: Path) -> None:
    from rolecast.eval.report import Cache

    items = iv.items_for(per_factor=1)
    answers = Cache(tmp_path / "a", {"eval": "personality"})
    ratings = Cache(tmp_path / "r", {"eval": "personality-judge"})
    first, _, _ = interview(
        [f"answer {n}" for n in range(5)],
        ["4"] * 5,
        items=items,
        cache=answers,
        judge_cache=ratings,
    )
    # nothing is queued: any request would fail
    again, llm, judge = interview([], [], items=items, cache=answers, judge_cache=ratings)
    assert not llm.requests and not judge.requests
    assert again.judged == first.judged and answers.hits == 5 and ratings.hits == 5


# -------------------------------------------------------------------------------- judge


def test_judge_prompt_names_the_trait_and_asks_for_a_number() -> None:
    item = iv.ITEMS[5]  # 6R
    [system, user] = iv.judge_prompt("Mia", item, "Q?", "I keep to myself.")
    assert system["role"] == "system" and user["role"] == "user"
    text = user["content"]
    assert "Mia holds back and keeps to themselves around others" in text
    assert "Q?" in text and "I keep to myself." in text
    assert "number only" in text and '{"score": 4}' in text


ALL_FIVES = {
    # forward items get 5, reversed ones 6 - 5 = 1
    "E": (5 * 5 + 1 * 3) / 8,  # 1 11 16 26 36 | 6R 21R 31R
    "A": (5 * 5 + 1 * 4) / 9,  # 7 17 22 32 42 | 2R 12R 27R 37R
    "C": (5 * 5 + 1 * 4) / 9,  # 3 13 28 33 38 | 8R 18R 23R 43R
    "N": (5 * 5 + 1 * 3) / 8,  # 4 14 19 29 39 | 9R 24R 34R
    "O": (5 * 8 + 1 * 2) / 10,  # 5 10 15 20 25 30 40 44 | 35R 41R
}


def judge_all(answers, judge, name="the character"):
    return [iv.judge_answer(name, a, judge) for a in answers]


def test_a_judge_that_always_says_5_gives_the_hand_computed_scores() -> None:
    answers = [iv.Answer(item, item.question_en, "something") for item in iv.ITEMS]
    judge = ScriptedLLM(["5"] * 44)
    judged = judge_all(answers, judge, "Mia")
    assert [j.score for j in judged] == [5] * 44
    assert [j.keyed for j in judged if j.answer.item.reverse] == [1] * 16
    scores = iv.big_five(judged)
    assert list(scores) == list(iv.FACTORS)
    for f, expected in ALL_FIVES.items():
        assert scores[f].score == pytest.approx(expected)
        assert scores[f].items == scores[f].asked == len(KEY[f].split())
    assert scores["E"].score == 3.5 and scores["O"].score == pytest.approx(4.2)
    assert "Mia" in judge.requests[0][0][-1]["content"]
    assert judge.requests[0][1].temperature == 0.0


def test_known_answers_give_known_scores() -> None:
    items = [iv.ITEMS[0], iv.ITEMS[5], iv.ITEMS[1], iv.ITEMS[3]]  # 1 E, 6R E, 2R A, 4 N
    answers = [iv.Answer(i, i.question_en, f"reply {i.number}") for i in items]
    judge = ScriptedLLM(["4", "Score: 2/5", '{"score": 5}', "**1**"])
    scores = iv.big_five(judge_all(answers, judge))
    assert scores["E"].score == (4 + (6 - 2)) / 2
    assert scores["A"].score == 6 - 5 and scores["N"].score == 1
    assert scores["C"].score is None and scores["C"].asked == 0
    assert scores["O"].to_dict() == {"name": "Openness", "score": None, "items": 0, "asked": 0}


def test_an_unreadable_rating_is_asked_again_once() -> None:
    items = iv.ITEMS[:3]
    answers = [iv.Answer(i, i.question_en, "an answer") for i in items]
    answers.append(iv.Answer(iv.ITEMS[3], iv.ITEMS[3].question_en, "  "))
    judge = ScriptedLLM(["She seems chatty.", "4", "3 or 4", "somewhere between", "2"])
    judged = judge_all(answers, judge)
    assert [j.score for j in judged] == [4, None, 2, None]
    assert [j.status for j in judged] == ["ok", "unparsed", "ok", "empty"]
    assert judged[0].judge_replies == ("She seems chatty.", "4")
    retry = judge.requests[1][0]
    assert [m["role"] for m in retry] == ["system", "user", "assistant", "user"]
    assert retry[2]["content"] == "She seems chatty." and "1 to 5" in retry[3]["content"]
    assert len(judge.requests) == 5  # nothing asked about the empty answer
    scores = iv.big_five(judged)
    assert (scores["A"].items, scores["A"].asked) == (0, 1)  # unparsed: left out, counted
    assert scores["C"].score == 2 and scores["N"].asked == 1 and scores["N"].score is None


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("4", 4),
        (" 3\n", 3),
        ("Score: 4/5", 4),
        ("score = 2", 2),
        ("**4**", 4),
        ("Rating: **5** out of 5", 5),
        ('{"score": 4}', 4),
        ('```json\n{"score": 2}\n```', 2),
        ('{"Score": "3"}', 3),
        ("I'd rate it 2 out of 5.", 2),
        ("On a scale of 1 to 5, I give 3.", 3),
        ("1-5: 2", 2),
        ("Rating: 4 (it would be 5 if she had offered help)", 4),
        ("评分：4分", 4),
        ("４", 4),
        ("4.0", 4),
        ("<think>2 or 5?</think>\n5", 5),
        ("6", None),
        ("0", None),
        ("Score: 7/10", None),
        ("Score: 3.5", None),
        ('{"score": 9}', None),
        ('{"score": true}', None),
        ("3 or 4", None),
        ("The answer does not say.", None),
        ("", None),
    ],
)
def test_parse_score(text: str, score: int | None) -> None:
    assert iv.parse_score(text) == score


@given(
    st.integers(1, 5),
    st.sampled_from(["{}", "**{}**", "Score: {}", "{}/5", '{{"score": {}}}', "评分：{}分", "{}."]),
)
def test_parse_score_reads_any_usual_form(n: int, form: str) -> None:
    assert iv.parse_score(form.format(n)) == n


@given(st.text())
def test_parse_score_never_fails(text: str) -> None:
    assert iv.parse_score(text) in {None, 1, 2, 3, 4, 5}


# ------------------------------------------------------------------------------- labels


def test_compare_with_hand_computed_errors() -> None:
    scores = {
        "E": iv.FactorScore("E", 3.5, 8, 8),
        "A": iv.FactorScore("A", 29 / 9, 9, 9),
        "C": iv.FactorScore("C", None, 0, 9),
        "N": iv.FactorScore("N", 3.5, 8, 8),
        "O": iv.FactorScore("O", 4.2, 10, 10),
    }
    labels = {"E": 4.2, "A": "low", "C": "high", "N": 2, "O": 3}
    out = iv.compare(scores, labels)
    f = out["factors"]
    assert f["E"]["abs_error"] == pytest.approx(0.7) and f["E"]["side_correct"] is True
    assert f["A"]["abs_error"] is None and f["A"]["side_correct"] is False  # 3.22 is high
    assert f["C"]["score"] is None and f["C"]["side_correct"] is None  # no score: left out
    assert f["N"]["abs_error"] == pytest.approx(1.5) and f["N"]["side_correct"] is False
    assert f["O"]["abs_error"] == pytest.approx(1.2) and f["O"]["label_side"] is None
    assert out["mean_abs_error"] == pytest.approx((0.7 + 1.5 + 1.2) / 3)
    assert out["n_error"] == 3
    assert out["side_accuracy"] == pytest.approx(1 / 3) and out["n_side"] == 3
    assert f["N"]["name"] == "Neuroticism"
    json.dumps(out)


def test_compare_plain_numbers_and_a_score_on_the_midpoint() -> None:
    out = iv.compare({"E": 3.0, "O": 1.0}, {"extraversion": "high", "O": "L"})
    assert out["factors"]["E"]["side_correct"] is False  # on the midpoint: neither side
    assert out["factors"]["O"]["side_correct"] is True
    assert out["side_accuracy"] == 0.5 and out["mean_abs_error"] is None


def test_labels_from_json_and_toml(tmp_path: Path) -> None:
    j = tmp_path / "labels.json"
    j.write_text('{"E": 4.2, "A": "low", "Neuroticism": 2, "o": "HIGH", "C": "3.5"}')
    expected = {"E": 4.2, "A": "low", "N": 2.0, "O": "high", "C": 3.5}
    assert iv.read_labels(j) == expected
    t = tmp_path / "labels.toml"
    t.write_text('E = 4.2\nA = "low"\nNeuroticism = 2\no = "HIGH"\nC = "3.5"\n')
    assert iv.read_labels(t) == expected
    bare = tmp_path / "labels"
    bare.write_text('E = "high"\n')
    assert iv.read_labels(bare) == {"E": "high"}


INCHARACTER = {  # the InCharacter label file's shape, with made-up figures
    "annotation": {
        "haruhi-zh": {
            "BFI": {
                "Extraversion": {"score": 4.5, "type": "H"},
                "Neuroticism": {"score": 2.0, "type": "L"},
                "Conscientiousness": {"score": 2.8, "type": "X"},
                "Agreeableness": {"score": 2.1, "type": "L"},
                "Openness": {"score": 4.4, "type": "H"},
            },
            "16Personalities": {"E/I": {"score": 80, "type": "E"}},
        },
        "haruhi-en": {"BFI": {"Extraversion": {"score": 4.4, "type": "H"}}},
        "kyon-zh": {"BFI": {}},
    }
}


def test_an_incharacter_label_file_gives_one_roles_scores_and_sides(tmp_path: Path) -> None:
    from rolecast.character.personality import Scored

    path = tmp_path / "labels.json"
    path.write_text(json.dumps(INCHARACTER))
    labels = iv.read_labels(path, "haruhi-zh")
    assert labels == {
        "E": Scored(4.5, "high"),
        "N": Scored(2.0, "low"),
        "C": Scored(2.8, None),
        "A": Scored(2.1, "low"),
        "O": Scored(4.4, "high"),
    }
    figures = zip("ENCAO", (4.0, 3.5, 3.5, 2.0, 2.5), strict=True)
    scores = {f: iv.FactorScore(f, v, 8, 8) for f, v in figures}
    out = iv.compare(scores, labels)
    # the error counts all five (X too); the side only H and L, as the published accuracy
    assert out["n_error"] == 5 and out["n_side"] == 4
    assert out["mean_abs_error"] == pytest.approx((0.5 + 1.5 + 0.7 + 0.1 + 1.9) / 5)
    assert out["side_accuracy"] == pytest.approx(2 / 4)  # E and A right, N and O wrong
    assert out["factors"]["C"]["label"] == "2.8 (X)" and out["factors"]["C"]["side_correct"] is None
    json.dumps(out)
    lines = iv.summary_lines(iv.InterviewResult("春日", "zh", [], {}, out, None, {}))
    assert lines[-1].startswith("mean abs error 0.94 (5 factors), high/low side right 50%")


@pytest.mark.parametrize(
    ("role", "message"),
    [
        (None, r"pick a role with --role \(haruhi-en, haruhi-zh, kyon-zh\)"),
        ("haruhi", "no role 'haruhi' in the label file; did you mean haruhi-en, haruhi-zh"),
        ("sheldon-en", "no role 'sheldon-en' .*; roles: haruhi-en, haruhi-zh, kyon-zh"),
        ("kyon-zh", "role 'kyon-zh' has no BFI labels"),
    ],
)
def test_an_incharacter_file_needs_a_role_it_has(
    tmp_path: Path, role: str | None, message: str
) -> None:
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(INCHARACTER))
    with pytest.raises(ParseError, match=message):
        iv.read_labels(path, role)


def test_a_role_for_a_plain_labels_file_and_a_bad_type_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    path.write_text('{"E": 4}')
    with pytest.raises(ParseError, match="--role haruhi-zh is for an InCharacter label file"):
        iv.read_labels(path, "haruhi-zh")
    bad = {"annotation": {"r": {"BFI": {"Openness": {"score": 4, "type": "Q"}}}}}
    path.write_text(json.dumps(bad))
    with pytest.raises(ParseError, match=r'"type": "H", "L" or "X"'):
        iv.read_labels(path, "r")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"X": 3}', r"unknown Big Five factor 'X'; known: O, C, E, A, N"),
        ('{"E": "medium"}', r'E \(Extraversion\) must be a number from 1 to 5 or "high"'),
        ('{"N": 7}', r"N \(Neuroticism\) must be a number from 1 to 5"),
        ('{"E": true}', r"must be a number"),
        ('{"E": 4, "extraversion": 2}', r"label for E \(Extraversion\) given twice"),
        ("[1, 2]", r"labels must be a table"),
        ("{not json", r"not JSON"),
    ],
)
def test_bad_labels_say_what_is_wrong(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "labels.json"
    path.write_text(content)
    with pytest.raises(ParseError, match=message) as err:
        iv.read_labels(path)
    assert str(path) in str(err.value)


def test_bad_toml_and_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "l.toml"
    path.write_text("E = = 3")
    with pytest.raises(ParseError, match="not TOML"):
        iv.read_labels(path)
    with pytest.raises(ParseError, match="cannot read the labels file"):
        iv.read_labels(tmp_path / "none.json")
    with pytest.raises(InputError, match="unknown Big Five factor"):
        iv.compare({}, {"Q": 1})


# ------------------------------------------------------------------------ whole interview


def test_run_personality_eval_serialises_and_renders() -> None:
    c = make_english_character()
    items = iv.items_for(per_factor=1)
    # the session samples an empty reply twice more before it records it
    replies = ["I talk all day.", "", "", "", "Done right.", "Never sad.", "New ways!"]
    seen: list[tuple[int, int]] = []
    result, _, _ = interview(
        replies,
        ["5", "4", "1", "2"],
        c,
        items=items,
        labels={"E": "high"},
        progress=lambda *a: seen.append(a),
    )
    assert seen[-1] == (10, 10) and (5, 10) in seen
    assert [j.status for j in result.judged] == ["ok", "empty", "ok", "ok", "ok"]
    assert result.scores["E"].score == 5 and result.scores["N"].score == 1
    assert result.comparison is not None and result.comparison["side_accuracy"] == 1.0
    data = json.loads(json.dumps(result.to_dict(), ensure_ascii=False))
    assert data["eval"] == "personality" and data["judge_model"] == "scripted"
    assert data["scores"]["E"] == {"name": "Extraversion", "score": 5, "items": 1, "asked": 1}
    assert data["empty"] == 1 and data["unparsed"] == 0
    assert [iv.Judged.from_dict(a) for a in data["answers"]] == result.judged
    md = iv.markdown(result)
    assert md.startswith("## Personality: Mia\n")
    assert "| Extraversion (E) | 5.00 | 1/1 | high | – | yes |" in md
    assert "| Agreeableness (A) | – | 0/1 | – | – | – |" in md
    assert "| 2R | A | – | – | empty |" in md


# ------------------------------------------------------------------------- a real model


@pytest.fixture(scope="module")
def smollm2():
    from rolecast.backends.local import LocalLLM

    llm = LocalLLM(model="smollm2", n_ctx=2048, seed=7)
    yield llm
    llm.close()


def test_an_interview_with_a_real_model(smollm2, tmp_path: Path, embedder) -> None:
    from rolecast.retrieval.index import load_index

    c = make_english_character()  # SmolLM2 speaks English only
    index = load_index(c, embedder)
    params = GenerationParams(max_tokens=32, seed=3)
    prototype = Session(c, index, smollm2, params=params)
    items = iv.items_for(per_factor=1)  # one item of each factor
    judge_params = GenerationParams(max_tokens=32, temperature=0.0, top_p=1.0, seed=0)
    result = iv.run_personality_eval(prototype, items=items, judge_params=judge_params)
    assert len(result.judged) == 5
    assert any(j.answer.reply for j in result.judged)
    for j in result.judged:
        assert j.status in {"ok", "unparsed", "empty"}
        assert j.score is None or 1 <= j.score <= 5
        assert len(j.judge_replies) <= 2
        assert (j.status == "empty") == (not j.answer.reply) == (not j.judge_replies)
    for s in result.scores.values():
        assert s.asked == 1 and s.items in {0, 1}
        assert s.score is None or 1 <= s.score <= 5
    assert result.judge_model.endswith(".gguf")
    json.dumps(result.to_dict())
    assert iv.markdown(result).count("\n| ") >= 10
