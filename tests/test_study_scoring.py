"""A user study's scoring against hand-computed values: Bradley-Terry, win rates, agreement
(Fleiss' kappa, Krippendorff's alpha), the Turing condition's detection rate."""

from __future__ import annotations

import math

import pytest

from rolecast.study.scoring import (
    Vote,
    bootstrap_scores,
    bradley_terry,
    detection,
    fleiss_kappa,
    krippendorff_alpha,
    win_rates,
)


def votes(a: str, b: str, wins: int, losses: int, ties: int = 0) -> list[Vote]:
    out = [Vote(f"i{k}", a, b, "a", f"r{k}") for k in range(wins)]
    out += [Vote(f"j{k}", a, b, "b", f"r{k}") for k in range(losses)]
    out += [Vote(f"t{k}", a, b, "tie", f"r{k}") for k in range(ties)]
    return out


def test_two_systems_bradley_terry_is_the_log_odds_of_winning() -> None:
    scores = bradley_terry(["x", "y"], votes("x", "y", 3, 1))
    # p_x / p_y = 3 / 1; scores are log-strengths centred on 0
    assert scores["x"] == pytest.approx(math.log(3) / 2, abs=1e-6)
    assert scores["y"] == pytest.approx(-math.log(3) / 2, abs=1e-6)
    # a tie counts half a win each: 3 wins, 1 loss and 2 ties is 4 to 2
    tied = bradley_terry(["x", "y"], votes("x", "y", 3, 1, 2))
    assert tied["x"] - tied["y"] == pytest.approx(math.log(2), abs=1e-6)


def test_three_systems_bradley_terry_meets_its_likelihood_equations() -> None:
    vs = votes("a", "b", 4, 2) + votes("b", "c", 3, 1) + votes("a", "c", 5, 1)
    s = bradley_terry(["a", "b", "c"], vs)
    p = {k: math.exp(v) for k, v in s.items()}
    # at the maximum: each system's wins = sum over its games of p_i / (p_i + p_j)
    games = {("a", "b"): 6, ("b", "c"): 4, ("a", "c"): 6}
    wins = {"a": 9, "b": 5, "c": 2}
    for i in "abc":
        expected = sum(
            n * p[i] / (p[i] + p[j])
            for (x, y), n in games.items()
            for j in ((y,) if x == i else (x,) if y == i else ())
        )
        assert expected == pytest.approx(wins[i], abs=1e-4)
    assert s["a"] > s["b"] > s["c"] and sum(s.values()) == pytest.approx(0, abs=1e-9)


def test_a_system_that_never_wins_stays_finite_with_the_prior() -> None:
    s = bradley_terry(["x", "y"], votes("x", "y", 4, 0), prior=0.5)
    # one virtual tie per pair: 4.5 to 0.5
    assert s["x"] - s["y"] == pytest.approx(math.log(9), abs=1e-6)


def test_bootstrap_intervals_hold_the_estimate_and_are_seeded() -> None:
    vs = votes("x", "y", 30, 10)
    a = bootstrap_scores(["x", "y"], vs, rounds=300, seed=1)
    b = bootstrap_scores(["x", "y"], vs, rounds=300, seed=1)
    assert a == b
    low, high = a["x"]
    assert low < math.log(3) / 2 < high and low > 0  # x is better, clearly


def test_win_rates_count_ties_as_half() -> None:
    rates = win_rates(votes("x", "y", 3, 1, 2) + votes("y", "z", 1, 1))
    assert rates[("x", "y")] == (4 / 6, 6)
    assert rates[("y", "z")] == (0.5, 2)


def test_fleiss_kappa_on_the_textbook_table() -> None:
    # Fleiss (1971) as usually worked: 10 subjects, 14 raters, 5 categories -> 0.210
    table = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    assert fleiss_kappa(table) == pytest.approx(0.210, abs=5e-4)
    with pytest.raises(ValueError, match="same number of ratings"):
        fleiss_kappa([[1, 1], [2, 1]])


def test_krippendorff_alpha_by_hand() -> None:
    # two raters, four units: (a,a) (a,b) (b,b) (b,b): D_o = 2/8, D_e = 30/56, alpha = 16/30
    units = {"u1": ["a", "a"], "u2": ["a", "b"], "u3": ["b", "b"], "u4": ["b", "b"]}
    assert krippendorff_alpha(units) == pytest.approx(16 / 30, abs=1e-9)
    assert krippendorff_alpha({"u1": ["a", "a"], "u2": ["b", "b"]}) == 1.0
    # a unit one rater saw is not pairable: it changes nothing
    assert krippendorff_alpha({**units, "u5": ["a"]}) == pytest.approx(16 / 30, abs=1e-9)


def test_detection_rate_of_the_original_line() -> None:
    vs = votes("original", "canon", 7, 3) + votes("persona", "original", 2, 8)
    rate, (low, high), n = detection(vs, "original")
    assert n == 20 and rate == pytest.approx(15 / 20)
    assert low == pytest.approx(0.5313, abs=1e-3) and high == pytest.approx(0.8881, abs=1e-3)
