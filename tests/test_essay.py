"""rolecast essay: the request (student or character, dials), reading the essay back, its
length, the saved set and its cache, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rolecast.backends.scripted import ScriptedLLM
from rolecast.character.personality import dial_text
from rolecast.errors import InputError
from rolecast.essay import (
    MIN_LENGTH,
    Settings,
    essay_length,
    essay_messages,
    parse_essay,
    write_essays,
)

from conftest import make_character, make_english_character

ESSAY = "题目：《门外的雾》\n\n推开门，雾就进来了。\n我想知道雾的那头是什么。\n\n结尾：门一直开着。"


def test_the_request_is_the_exam_with_the_dials_after_the_writer() -> None:
    system, user = essay_messages("门", "zh", {"O": 5})
    assert system["role"] == "system" and user["role"] == "user"
    assert system["content"].startswith("你是一名正在参加高考的高三学生")
    assert system["content"].endswith(dial_text({"O": 5}, "zh"))
    assert "“门”为题" in user["content"] and "不少于800字" in user["content"]
    plain = essay_messages("门", "zh", {})
    assert "你的脾性" not in plain[0]["content"] and plain[1] == user  # only the dials differ
    en = essay_messages("Doors", "en", {"O": 1})
    assert (
        "At least 500 words" in en[1]["content"] and "Conventional, practical" in en[0]["content"]
    )


def test_as_a_character_the_persona_writes_with_the_dials_over_its_own() -> None:
    c = make_character(3)
    c.personality = {"E": 2}
    system, user = essay_messages("门", "zh", {"O": 5}, c)
    assert system["content"].startswith(c.persona.strip())
    assert "想象力丰富" in system["content"] and "有几分内敛" in system["content"]
    assert user["content"].startswith(f"这次不是聊天：请以{c.name}的身份")
    mia = make_english_character()
    assert "write as Mia" in essay_messages("Doors", "en", {}, mia)[1]["content"]


def test_an_essay_is_read_back_title_first_and_counted() -> None:
    e = parse_essay(ESSAY, "zh", seed=7)
    assert e.title == "门外的雾" and e.seed == 7
    assert e.body.split("\n\n") == [
        "推开门，雾就进来了。 我想知道雾的那头是什么。",
        "结尾：门一直开着。",
    ]
    assert e.length == len("推开门雾就进来了我想知道雾的那头是什么结尾门一直开着")
    assert parse_essay("<think>plan</think># Doors\n\nA door, two doors.", "en").title == "Doors"
    assert essay_length("A door, two doors. It's 3 o'clock", "en") == 7
    untitled = parse_essay("我" * 60 + "。\n\n第二段。", "zh")
    assert untitled.title == "" and untitled.body.startswith("我" * 60)  # no title line
    assert parse_essay("   \n", "zh").length == 0


def test_a_set_is_saved_with_its_settings_and_a_rerun_makes_no_calls(tmp_path: Path) -> None:
    llm = ScriptedLLM()
    for i in range(3):
        llm.enqueue(ESSAY.replace("雾", "风" * (i + 1)))
    settings = Settings("门", "zh", {"O": 5}, n=3, seed=1)
    got = write_essays(llm, settings, tmp_path / "o")
    assert [e.title for e in got.essays] == ["门外的风", "门外的风风", "门外的风风风"]
    seeds = [p.seed for _, p in llm.requests]
    assert len(set(seeds)) == 3  # an essay's own seed...
    saved = json.loads((tmp_path / "o" / "essays.json").read_text(encoding="utf-8"))
    assert saved["settings"]["dials"] == {"O": 5} and saved["settings"]["topic"] == "门"
    assert saved["backend"] == "scripted" and saved["short"] == 3
    assert saved["min_length"] == MIN_LENGTH["zh"]
    assert [e["file"] for e in saved["essays"]] == ["essay-01.md", "essay-02.md", "essay-03.md"]
    assert (tmp_path / "o" / "essay-02.md").read_text(encoding="utf-8").startswith("# 门外的风风\n")
    again = write_essays(llm, settings, tmp_path / "o")  # nothing queued: a call would fail
    assert again.essays == got.essays and len(llm.requests) == 3
    low = ScriptedLLM()
    for _ in range(3):
        low.enqueue(ESSAY)
    write_essays(low, Settings("门", "zh", {"O": 1}, n=3, seed=1), tmp_path / "low")
    assert [p.seed for _, p in low.requests] == seeds  # ...the same in the other condition


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (Settings("  "), "--topic is empty"),
        (Settings("门" * 201), "at most 200"),
        (Settings("门", n=0), "--n must be 1 to 100"),
    ],
)
def test_bad_settings_are_refused_before_any_call(settings: Settings, message: str) -> None:
    llm = ScriptedLLM()
    with pytest.raises(InputError, match=message):
        write_essays(llm, settings)
    assert not llm.requests


def test_the_cli_writes_essays_and_refuses_a_bad_trait(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from rolecast.cli.main import main

    out = tmp_path / "e"
    assert main(["essay", "--topic", "门", "--n", "2", "--backend", "echo", "-o", str(out)]) == 0
    assert "2 essays as a student, dials none" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir() if p.suffix) == [
        "essay-01.md",
        "essay-02.md",
        "essays.json",
    ]
    assert main(["essay", "--topic", "门", "--trait", "O=loud", "--backend", "echo"]) == 1
    assert "a trait level for O" in capsys.readouterr().err
