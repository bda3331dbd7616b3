"""eval dials: the shift of each factor between a low and a high dial (hand-computed with a
backend whose answers follow the dial), the blind sorting of essays, the Wilson interval,
and bad input."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from rolecast.backends.base import LLM, GenerationParams
from rolecast.character.personality import POLES
from rolecast.errors import InputError
from rolecast.eval import dials as dl
from rolecast.eval import interview as iv
from rolecast.eval.canon import condition_session

from conftest import make_character

HIGH_WORDS, LOW_WORDS = "星星点点", "规规矩矩"


class DialFollower(LLM):
    """Answers as the dial in its system message says: a character with openness dialled
    high says HIGH_WORDS, dialled low LOW_WORDS. As the judge it rates an openness item's
    answer at the keyed end its words show (a reverse-keyed item turned round) and every
    other item 3; it sorts an essay by its words, or says nothing readable when told to."""

    name = "dial-follower"

    def __init__(self, unreadable_sorts: int = 0) -> None:
        self.model = "dial-follower"
        self.calls: list[str] = []
        self.unreadable = unreadable_sorts

    def stream(self, messages: Sequence[dict[str, str]], params: GenerationParams) -> Iterator[str]:
        system, user = messages[0]["content"], messages[-1]["content"]
        yield self._answer(system, user)

    def _answer(self, system: str, user: str) -> str:
        if system == iv._JUDGE_SYSTEM:
            self.calls.append("rate")
            answer = user.split("answer: ", 1)[1]
            item = next(i for i in iv.ITEMS if f" {i.trait}?" in user)
            if item.factor != "O" or (HIGH_WORDS not in answer and LOW_WORDS not in answer):
                return "3"
            keyed = 5 if HIGH_WORDS in answer else 1
            return str(6 - keyed if item.reverse else keyed)
        if system.startswith("你是心理学研究者"):
            self.calls.append("sort")
            if self.unreadable:
                self.unreadable -= 1
                return "两个都像"
            first = re.search(r"^A：(.*)$", user, re.M)
            assert first is not None
            high_is_a = first.group(1).startswith(POLES[("O", "high")].adjectives_zh)
            writer_high = HIGH_WORDS in user.split("作文：", 1)[1]
            return "A" if high_is_a == writer_high else "B"
        words = HIGH_WORDS if "想象力丰富" in system else LOW_WORDS
        if "高考作文" in user:
            self.calls.append("essay")
            return f"题目：{words}\n\n{words}。" * 3
        self.calls.append("answer")
        return f"我嘛，{words}的。"


@pytest.fixture
def prototype():  # type: ignore[no-untyped-def]
    llm = DialFollower()
    return condition_session("persona", make_character(4), llm)


def test_the_dialled_factor_moves_and_the_others_hold(prototype) -> None:  # type: ignore[no-untyped-def]
    result = dl.run_dials_eval(prototype, None, "O", essays=0)
    o = result.shifts["O"]
    n_open = sum(i.factor == "O" for i in iv.ITEMS)  # 10 openness items, 2 reverse-keyed
    assert (o.low, o.high) == (1.0, 5.0)
    assert o.difference.n == n_open and o.difference.mean == 4.0
    assert (o.difference.low, o.difference.high) == (4.0, 4.0) and o.moved == "up"
    for factor in "CEAN":
        s = result.shifts[factor]
        assert (s.low, s.high, s.difference.mean, s.moved) == (3.0, 3.0, 0.0, "no"), factor
    assert result.sorted == [] and result.to_dict()["essays"]["accuracy"] is None
    calls = prototype.llm.calls
    assert calls.count("answer") == calls.count("rate") == 2 * len(iv.ITEMS)


def test_a_shared_cache_keeps_the_two_dials_apart(prototype, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from rolecast.eval.report import Cache

    # the scope is the undialled character's, as the CLI makes it: the high run must not
    # read the low run's answers back (it did: every shift came out 0)
    cache = Cache(tmp_path / "c", {"eval": "personality", "character": "x"})
    judge_cache = Cache(tmp_path / "c", {"eval": "personality-judge"})
    items = iv.items_for(["O"], per_factor=3)
    result = dl.run_dials_eval(
        prototype, None, "O", items=items, cache=cache, judge_cache=judge_cache
    )
    assert result.shifts["O"].difference.mean == 4.0
    again = dl.run_dials_eval(
        prototype, None, "O", items=items, cache=cache, judge_cache=judge_cache
    )
    assert again.shifts["O"].difference.mean == 4.0  # and a rerun reads each its own


def test_essays_are_written_under_each_dial_and_sorted_blind(prototype, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prototype.llm.unreadable = 1  # the first call cannot be read: it counts as wrong
    result = dl.run_dials_eval(
        prototype, None, "O", items=iv.items_for(per_factor=1), essays=3, essay_dir=tmp_path
    )
    assert {d: len(v) for d, v in result.essays.items()} == {"low": 3, "high": 3}
    assert all(HIGH_WORDS in e.body for e in result.essays["high"])
    assert (tmp_path / "essays-O5" / "essay-01.md").is_file()
    assert (tmp_path / "essays-O1" / "essays.json").is_file()
    k, n, (lo, hi) = result.accuracy
    assert (k, n) == (5, 6)
    assert (round(lo, 4), round(hi, 4)) == (0.4365, 0.9699)  # Wilson, z = 1.96, by hand
    orders = {s.high_first for s in result.sorted}
    assert orders == {True, False}  # the poles' order is drawn per essay
    assert sum(s.choice is None for s in result.sorted) == 1
    text, figures = dl.dials_report(result, {"backend": "x", "model": "y", "judge": None})
    assert "Accuracy **5/6 = 83%**" in text and "44% to 97%" in text
    a_calls = sum(s.choice == "A" for s in result.sorted)
    assert f"The judge answered A in {a_calls} of 6 calls" in text
    assert result.to_dict()["essays"]["answered_a"] == a_calls
    assert "| Openness (O) (dialled) | 1.00 | 5.00 | +4.00 [+4.00, +4.00] | 1 | up |" in text
    assert set(figures) == {"shifts"}


def test_wilson_and_reading_a_choice() -> None:
    lo, hi = dl.wilson(6, 6)
    assert round(lo, 3) == 0.610 and hi == pytest.approx(1.0)
    lo, hi = dl.wilson(0, 4)
    assert lo == 0.0 and round(hi, 3) == 0.490
    assert dl.wilson(0, 0) != dl.wilson(0, 0)  # nan: nothing sorted
    assert dl.parse_choice("B") == "B" and dl.parse_choice("答案：Ａ") == "A"
    assert dl.parse_choice("The writer is B, clearly.") == "B"
    assert dl.parse_choice("Both") is None and dl.parse_choice("") is None


def test_the_sorter_sees_the_poles_not_the_dial() -> None:
    a_high = dl.sort_prompt("文章", "O", "zh", high_first=True)[1]["content"]
    b_high = dl.sort_prompt("文章", "O", "zh", high_first=False)[1]["content"]
    assert "A：想象力丰富" in a_high and "B：想象力丰富" in b_high
    assert "高" not in a_high.replace("想象力丰富", "")[:12]  # no word of which dial wrote it
    en = dl.sort_prompt("Essay", "N", "en", True)[1]["content"]
    assert "A: anxious, moody" in en and "B: calm, steady" in en


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ([], "takes one factor to dial"),
        (["O", "E"], r"given: O, E"),
        (["O", "O=3"], "cannot also be fixed"),
        (["X"], "unknown Big Five factor 'X'"),
    ],
)
def test_eval_dials_wants_one_factor_named_alone(specs: list[str], message: str) -> None:
    from rolecast.cli.eval import dial_factor

    with pytest.raises(InputError, match=message):
        dial_factor(specs)


def test_eval_dials_holds_other_dials_fixed() -> None:
    from rolecast.cli.eval import dial_factor

    assert dial_factor(["o", "N=low,E=4"]) == ("O", {"E": 4, "N": 1})


@pytest.mark.e2e  # a real model
def test_eval_dials_and_essay_end_to_end_with_smollm2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from rolecast.cli.main import main

    local = ["--backend", "local", "--model", "smollm2", "--context-window", "2048"]
    out = tmp_path / "dials"
    argv = ["eval", "dials", "openness-high", "--trait", "O", "--items", "1", "--essays", "1"]
    argv += ["--essay-tokens", "96", "--max-tokens", "24", "--out", str(out), *local]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    data = json.loads((out / "results.json").read_text("utf-8"))
    assert data["model"].startswith("SmolLM2") and data["factor"] == "O"
    assert set(data["shifts"]) == set("OCEAN")
    for s in data["shifts"].values():
        assert s["items"] <= 1 and s["moved"] in {"up", "down", "no"}
    essays = data["essays"]
    assert essays["per_dial"] == {"low": 1, "high": 1} and essays["sorted"] == 2
    assert 0 <= essays["correct"] <= 2
    assert (out / "essays-O1" / "essay-1.md").is_file() or (
        out / "essays-O1" / "essay-01.md"
    ).is_file()
    assert (out / "shifts.png").is_file() and "small-model numbers" in (
        out / "report.md"
    ).read_text("utf-8")
    assert "essays sorted blind:" in printed
    # the same command again: every answer, rating and sorting from the cache (10 + 10 + 2)
    assert main(argv) == 0
    assert "22 items read from the cache" in capsys.readouterr().err

    essay_out = tmp_path / "essay"
    argv = ["essay", "--topic", "灯", "--trait", "O=high", "--n", "1", "--as-character", "yunzhou"]
    argv += ["--max-tokens", "96", "-o", str(essay_out), *local[:4]]
    assert main(argv) == 0
    saved = json.loads((essay_out / "essays.json").read_text("utf-8"))
    assert saved["settings"]["dials"] == {"O": 5} and saved["character"] == "yunzhou"
    assert saved["model"].startswith("SmolLM2") and len(saved["essays"]) == 1
    assert (essay_out / "essay-01.md").read_text("utf-8").startswith("# ")
