"""Big Five dials: levels, --trait parsing, the persona text a dial becomes, and what a dial
goes against."""

from __future__ import annotations

import pytest

from rolecast.character import personality as pp
from rolecast.errors import InputError


@pytest.mark.parametrize(
    ("value", "level"),
    [("high", 5), ("low", 1), ("mid", 3), ("HIGH", 5), (" 2 ", 2), (4, 4), (4.0, 4), ("高", 5)],
)
def test_a_level_is_1_to_5_or_low_mid_high(value: object, level: int) -> None:
    assert pp.parse_level(value) == level


@pytest.mark.parametrize("bad", [0, 6, 2.5, "loud", True, None, "", "3.5"])
def test_a_bad_level_says_what_a_level_is(bad: object) -> None:
    with pytest.raises(InputError, match=r"for O \(openness\) is .*1-5 or low/mid/high"):
        pp.parse_level(bad, "O")


def test_traits_parse_from_flags_and_comma_lists_in_factor_order() -> None:
    assert pp.parse_traits(["N=low", "O=high,E=2"]) == {"O": 5, "E": 2, "N": 1}
    assert list(pp.parse_traits(["N=low", "O=high"])) == ["O", "N"]  # O, C, E, A, N
    assert pp.parse_traits(["openness=high", "神经质=低"]) == {"O": 5, "N": 1}
    assert pp.parse_traits(["O=low", "O=4"]) == {"O": 4}  # the later one wins
    assert pp.parse_traits([]) == {}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("O", "FACTOR=LEVEL such as O=high"),
        ("X=high", "unknown Big Five factor 'X'"),
        ("O=very", r"O \(openness\) is 1-5 or low/mid/high, not 'very'"),
        ("O=", "FACTOR=LEVEL"),
    ],
)
def test_a_bad_trait_names_the_part_that_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        pp.parse_traits([spec])


def test_a_table_with_a_factor_twice_is_refused() -> None:
    assert pp.parse_dials({"o": "high", "Neuroticism": 2}) == {"O": 5, "N": 2}
    with pytest.raises(InputError, match="openness dial .* given twice"):
        pp.parse_dials({"O": "high", "openness": "low"})


def test_trait_names_alone_for_eval_dials() -> None:
    assert pp.parse_trait_names(["O", "n,O", "extraversion"]) == ["O", "N", "E"]


def test_the_dial_text_describes_each_pole_in_the_characters_language() -> None:
    zh = pp.dial_text({"O": 5, "N": 2, "E": 3}, "zh")
    lines = zh.splitlines()
    assert lines[0] == "你的脾性（比上面说的更要紧）："
    # one line a factor, in O C E A N order, without the factor's name; 2 only "somewhat"
    assert lines[1].startswith("- 想象力丰富、好奇") and "开放性" not in zh
    assert lines[2] == "- 既不算特别健谈，也不算特别内敛，看时候和场合。"
    assert lines[3].startswith("- 有几分冷静、沉稳") and lines[3].endswith("，但不过分。")
    assert lines[4].startswith("这些脾性体现在你怎么说话")
    en = pp.dial_text({"O": 1, "A": 4}, "en")
    assert "- Conventional, practical, down-to-earth, at home with the familiar: you keep" in en
    assert "- Somewhat kind, warm" in en and "you think of others first" in en
    assert en.endswith("never describe yourself with these words.")
    assert pp.dial_summary({"O": 5, "N": 2}, "zh") == "开放性很高，神经质较低"
    assert pp.dial_summary({"O": 1, "A": 4}, "en") == "very low openness; high agreeableness"
    assert pp.dial_text({}, "zh") == ""
    assert pp.dial_text({"O": 5}, "ja").startswith("你的脾性")  # the Chinese templates' rule


def test_each_pole_has_distinct_text_and_markers_in_both_languages() -> None:
    texts = set()
    for factor in pp.FACTORS:
        for side in ("high", "low"):
            p = pp.POLES[(factor, side)]
            assert p.adjectives_zh and p.behaviour_zh and p.markers_zh and p.markers_en
            texts.add(p.adjectives_zh)
        high, low = pp.POLES[(factor, "high")], pp.POLES[(factor, "low")]
        assert not set(high.markers_zh) & set(low.markers_zh)
        assert not set(high.markers_en) & set(low.markers_en)
    assert len(texts) == 10


def test_the_persona_leaning_reads_marker_words_of_one_pole_only() -> None:
    persona = (
        "林小满，十六岁，好奇又爱幻想，做事一丝不苟。She is quiet around strangers. "
        "嘴上刻薄，心里体贴。"
    )
    leaning = pp.persona_leaning(persona)
    assert leaning["O"] == ("high", ["好奇", "爱幻想"])
    assert leaning["C"] == ("high", ["一丝不苟"])
    assert leaning["E"] == ("low", ["quiet"])
    assert "A" not in leaning  # 刻薄 and 体贴: both poles, so neither
    assert "N" not in leaning
    assert pp.persona_leaning("the quietly curious") == {"O": ("high", ["curious"])}


def test_conflicts_name_the_canon_label_first_then_the_persona() -> None:
    persona = "她好奇、爱幻想，冷静从容。"
    found = pp.conflicts({"O": 1, "N": 5, "E": 3, "A": 5}, {"A": 1.8}, persona)
    assert found == [
        "O=1 (openness low) goes against the persona, which reads high (好奇, 爱幻想)",
        "A=5 (agreeableness high) goes against the canon, where it is low (1.8)",
        "N=5 (neuroticism high) goes against the persona, which reads low (冷静, 从容)",
    ]
    assert pp.conflicts({"O": 5}, {"O": "high"}, "守旧") == []  # the label wins over the words
    assert pp.conflicts({"O": 5}, {}, "") == []


# ------------------------------------------------------------- in the package and the prompt


def test_the_personality_table_round_trips_and_bad_ones_are_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from rolecast.character.package import load_character, save_character
    from rolecast.errors import ParseError

    from conftest import make_english_character

    c = make_english_character()
    c.personality = {"O": 5, "N": 2}
    c.canon_personality = {"O": 4.2, "E": "low"}
    save_character(c, tmp_path / "mia")
    toml = tmp_path / "mia" / "character.toml"
    text = toml.read_text(encoding="utf-8")
    assert "[personality]" in text and "[personality.canon]" in text
    back = load_character(tmp_path / "mia")
    assert back.personality == {"O": 5, "N": 2}
    assert back.canon_personality == {"O": 4.2, "E": "low"}
    for old, new, message in (
        ("N = 2", 'N = "loud"', r"\[personality\]: a trait level for N \(neuroticism\)"),
        ('E = "low"', "E = 9", r"\[personality\]: label for E \(Extraversion\) must be"),
        ("N = 2", "Q = 2", r"\[personality\]: unknown Big Five factor 'Q'"),
        ("[personality.canon]\nO = 4.2", "canon = 3\n[x]\nO = 4.2", "'canon' must be a table"),
    ):
        assert old in text
        toml.write_text(text.replace(old, new), encoding="utf-8")
        with pytest.raises(ParseError, match=message):
            load_character(tmp_path / "mia")


def test_the_dial_text_joins_the_persona_in_the_stable_system_prefix() -> None:
    from dataclasses import replace

    from rolecast.prompt.assemble import Budget, Turn, assemble, fixed_texts, persona_text
    from rolecast.prompt.tokens import quicktok_counter

    from conftest import make_character

    c = make_character(4)
    dialled = replace(c, personality={"O": 5})
    assert persona_text(dialled) == c.persona.strip() + "\n\n" + pp.dial_text({"O": 5}, "zh")
    assert fixed_texts(dialled)[0] == persona_text(dialled)  # an echo of it is a leak
    counter, line = quicktok_counter(), Turn(c.user_role, "今天吃什么？")
    for order in ("classic", "split", "cache"):
        plain = assemble(c, [c.scenes[0]], [], line, Budget(), counter, order=order)
        tuned = assemble(dialled, [c.scenes[0]], [], line, Budget(), counter, order=order)
        first = tuned.messages[0]["content"]
        assert first.startswith(persona_text(dialled)), order  # before any canon or history
        assert "想象力丰富" in first and "想象力丰富" not in plain.messages[0]["content"]
        assert tuned.messages[1:] == plain.messages[1:], order  # nothing else moves


# ------------------------------------------------------------------- rolecast new


def test_new_starts_a_character_from_dials(rolecast_home, capsys) -> None:  # type: ignore[no-untyped-def]
    from rolecast.character import store
    from rolecast.cli.main import main
    from rolecast.prompt.assemble import persona_text

    assert main(["new", "阿青", "--from-traits", "O=high,E=low", "--id", "aqing"]) == 0
    assert "想象力丰富" in capsys.readouterr().out
    c = store.load("aqing")
    assert c.name == "阿青" and c.personality == {"O": 5, "E": 1} and c.scenes == []
    assert c.user_role == "来客" and c.description == "按性格拨盘起的角色：开放性很高，外向性很低"
    # what the model sees: the name and the dials, not the draft's note to the writer
    assert persona_text(c) == "你是阿青。\n\n" + pp.dial_text({"O": 5, "E": 1}, "zh")
    assert main(["new", "阿青", "--from-traits", "N=2", "--id", "aqing"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["new", "阿青", "--from-traits", "N=2", "--id", "aqing", "--force"]) == 0
    assert store.load("aqing").personality == {"N": 2}
    assert main(["new", "Wren", "--from-traits", "N=5", "--language", "en"]) == 0
    wren = store.load("Wren")
    assert wren.user_role == "visitor" and "Anxious, moody" in persona_text(wren)
    for bad, says in ((",", "at least one dial"), ("O=7", "a trait level for O")):
        assert main(["new", "Z", "--from-traits", bad]) == 1
        assert says in capsys.readouterr().err
