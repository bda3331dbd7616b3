"""`rolecast study report`: the votes of a prepared study, scored and written as the eval
reports are (``results.json``, ``report.md``, ``scores.png``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from .definition import ORIGINAL
from .scoring import (
    CHOICES,
    Vote,
    bootstrap_scores,
    bradley_terry,
    detection,
    fleiss_kappa,
    krippendorff_alpha,
    win_rates,
)

PRIOR = 0.5  # virtual ties per pair played: a system that never won keeps a finite score


def to_votes(prepared: Mapping[str, Any], rows: Sequence[Sequence[Any]]) -> list[Vote]:
    """The store's vote rows as scoring's votes; rows for a pair the study does not have
    are left out (they cannot be: the server refuses them)."""
    pairs = {p["id"]: p for p in prepared["pairs"]}
    out = []
    for pair_id, rater, choice, *_ in rows:
        p = pairs.get(pair_id)
        if p is not None and choice in CHOICES:
            out.append(Vote(pair_id, p["a"], p["b"], choice, rater))
    return out


def _character(prepared: Mapping[str, Any]) -> dict[str, str]:
    items = {it["id"]: it["character"] for it in prepared["items"]}
    return {p["id"]: items[p["item"]] for p in prepared["pairs"]}


def score_study(
    prepared: Mapping[str, Any], rows: Sequence[Sequence[Any]], rounds: int = 1000
) -> dict[str, Any]:
    systems = list(prepared["systems"])
    votes = to_votes(prepared, rows)
    scores = bradley_terry(systems, votes, PRIOR)
    intervals = bootstrap_scores(systems, votes, rounds=rounds, prior=PRIOR)
    units: dict[str, list[str]] = defaultdict(list)
    for v in votes:
        units[v.pair].append(v.choice)
    counts = [[u.count(c) for c in CHOICES] for u in units.values() if len(u) >= 2]
    same = len({sum(row) for row in counts}) == 1 and counts
    by_character: dict[str, dict[str, float]] = {}
    whose = _character(prepared)
    for cid in dict.fromkeys(whose.values()):
        mine = [v for v in votes if whose[v.pair] == cid]
        if mine:
            by_character[cid] = bradley_terry(systems, mine, PRIOR)
    result: dict[str, Any] = {
        "title": prepared["title"],
        "votes": len(votes),
        "raters": len({v.rater for v in votes}),
        "pairs": len(prepared["pairs"]),
        "pairs_voted": len(units),
        "systems": systems,
        "scores": {
            s: {"score": scores[s], "low": intervals[s][0], "high": intervals[s][1]}
            for s in systems
        },
        "win_rates": [
            {"a": a, "b": b, "a_wins": share, "votes": n}
            for (a, b), share_n in win_rates(votes).items()
            for share, n in [share_n]
        ],
        "agreement": {
            "krippendorff_alpha": krippendorff_alpha(units),
            "fleiss_kappa": fleiss_kappa(counts) if same else None,
            "units": len(counts),
        },
        "by_character": by_character,
    }
    if ORIGINAL in systems:
        rate, (low, high), n = detection(votes, ORIGINAL)
        result["turing"] = {"picked_original": rate, "low": low, "high": high, "votes": n}
    return result


def _f(x: float | None, digits: int = 2) -> str:
    return "-" if x is None or x != x else f"{x:+.{digits}f}" if digits == 2 else f"{x:.{digits}f}"


def study_markdown(result: Mapping[str, Any]) -> str:
    out = [
        f"# User study: {result['title']}",
        "",
        f"{result['votes']} votes by {result['raters']} "
        f"{'rater' if result['raters'] == 1 else 'raters'} on {result['pairs_voted']} of "
        f"{result['pairs']} pairs.",
        "",
        "## Bradley-Terry scores (log-strength, 95% bootstrap interval)",
        "",
        "A difference d between two systems: the first is preferred with chance 1/(1+e^-d). "
        f"Can't tell counts half to each; {PRIOR} virtual tie per pair played.",
        "",
        "| system | score | interval |",
        "|---|---|---|",
    ]
    ranked = sorted(result["scores"].items(), key=lambda kv: -kv[1]["score"])
    for s, v in ranked:
        out.append(f"| {s} | {_f(v['score'])} | [{_f(v['low'])}, {_f(v['high'])}] |")
    out += ["", "## Pairwise win rates", "", "| pair | first wins | votes |", "|---|---|---|"]
    for w in result["win_rates"]:
        out.append(f"| {w['a']} vs {w['b']} | {w['a_wins']:.0%} | {w['votes']} |")
    ag = result["agreement"]
    out += [
        "",
        "## Agreement between raters",
        "",
        f"Krippendorff's alpha (nominal; a, b, can't tell): {_f(ag['krippendorff_alpha'], 3)} "
        f"over {ag['units']} pairs with two votes or more."
        + (
            f" Fleiss' kappa: {_f(ag['fleiss_kappa'], 3)}."
            if ag["fleiss_kappa"] is not None
            else " (Fleiss' kappa needs as many votes on every pair: not given.)"
        ),
    ]
    if "turing" in result:
        t = result["turing"]
        out += [
            "",
            "## Can fans tell the original line?",
            "",
            f"Of {t['votes']} votes on a pair with the original line, {t['picked_original']:.0%} "
            f"picked it as more like the character (95% Wilson interval "
            f"[{t['low']:.0%}, {t['high']:.0%}]; 50% would be chance).",
        ]
    if len(result["by_character"]) > 1:
        out += ["", "## Per character", "", "| character | " + " | ".join(result["systems"]) + " |"]
        out.append("|---" * (len(result["systems"]) + 1) + "|")
        for cid, sc in result["by_character"].items():
            out.append(f"| {cid} | " + " | ".join(_f(sc[s]) for s in result["systems"]) + " |")
    out += ["", "![scores](scores.png)", ""]
    return "\n".join(out)


def study_figure(result: Mapping[str, Any]) -> Any:
    from ..eval.report import new_figure, plot_context

    with plot_context():
        fig = new_figure(6.4, 3.4)
        ax = fig.add_subplot()
        ranked = sorted(result["scores"].items(), key=lambda kv: kv[1]["score"])
        ys = list(range(len(ranked)))
        scores = [v["score"] for _, v in ranked]
        left = [v["score"] - v["low"] for _, v in ranked]
        right = [v["high"] - v["score"] for _, v in ranked]
        ax.errorbar(scores, ys, xerr=[left, right], fmt="o", capsize=4, color="#4c72b0")
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(ys, [s for s, _ in ranked])
        ax.set_xlabel("Bradley-Terry score (95% bootstrap interval)")
        ax.set_title(str(result["title"]))
    return fig
