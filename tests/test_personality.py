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
    assert lines[0].startswith("性格设定")
    # one line a factor, in O C E A N order; 5 is "very", 2 only "somewhat"
    assert lines[1].startswith("- 开放性很高：想象力丰富")
    assert lines[2].startswith("- 外向性适中")
    assert lines[3].startswith("- 神经质较低：冷静")
    en = pp.dial_text({"O": 1, "A": 4}, "en")
    assert "- Very low openness: conventional, practical" in en
    assert "- High agreeableness: kind, warm" in en and "It thinks of others first" in en
    assert pp.dial_text({}, "zh") == ""
    assert pp.dial_text({"O": 5}, "ja").startswith("性格设定")  # the Chinese templates' rule


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
