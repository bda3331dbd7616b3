"""A user study's numbers, from its votes. Pure: no I/O.

    bradley_terry(systems, votes)        -> {system: log-strength, centred on 0}
    bootstrap_scores(systems, votes)     -> {system: (low, high)}   (95 %, votes resampled)
    win_rates(votes)                     -> {(a, b): (a's share, games)}
    krippendorff_alpha(units)            -> agreement between raters (nominal), missing allowed
    fleiss_kappa(table)                  -> agreement, a fixed number of ratings per item
    detection(votes, "original")         -> how often raters picked the real line, Wilson interval

A vote is on a pair (``a``, ``b``) in the study's own order, whatever side the rater saw each
on: ``"a"``, ``"b"`` or ``"tie"`` (can't tell), which counts half a win to each.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

CHOICES = ("a", "b", "tie")


@dataclass(frozen=True)
class Vote:
    pair: str  # the pair's id
    a: str  # system shown as the pair's first
    b: str
    choice: str  # "a", "b" or "tie"
    rater: str = ""


def _wins(
    systems: Sequence[str], votes: Sequence[Vote], prior: float
) -> tuple[dict[str, float], dict[tuple[str, str], float]]:
    wins: dict[str, float] = dict.fromkeys(systems, 0.0)
    games: dict[tuple[str, str], float] = defaultdict(float)
    for v in votes:
        if v.a not in wins or v.b not in wins:
            raise ValueError(f"a vote names a system the study does not have: {v.a} / {v.b}")
        key = (min(v.a, v.b), max(v.a, v.b))
        games[key] += 1
        if v.choice == "a":
            wins[v.a] += 1
        elif v.choice == "b":
            wins[v.b] += 1
        else:
            wins[v.a] += 0.5
            wins[v.b] += 0.5
    if prior:  # a virtual tie in every pair that was played: no system is infinitely bad
        for a, b in list(games):
            games[(a, b)] += 2 * prior
            wins[a] += prior
            wins[b] += prior
    return wins, games


def bradley_terry(
    systems: Sequence[str],
    votes: Sequence[Vote],
    prior: float = 0.0,
    iterations: int = 10_000,
    tolerance: float = 1e-12,
) -> dict[str, float]:
    """Each system's Bradley-Terry log-strength (maximum likelihood by Hunter's MM
    iterations), centred so they sum to 0: a difference d means the first wins a pair with
    chance 1 / (1 + e^-d). ``prior``: virtual ties added to each pair played (0.5 keeps a
    system that never won finite)."""
    wins, games = _wins(systems, votes, prior)
    p = dict.fromkeys(systems, 1.0)
    played = {s for pair in games for s in pair}
    for _ in range(iterations):
        new = {}
        for i in systems:
            if i not in played:
                new[i] = 1.0
                continue
            denom = sum(n / (p[a] + p[b]) for (a, b), n in games.items() if i in (a, b))
            new[i] = max(wins[i], 1e-300) / denom if denom else p[i]
        mean = math.exp(sum(math.log(x) for x in new.values()) / len(new))
        new = {k: x / mean for k, x in new.items()}
        done = max(abs(math.log(new[k]) - math.log(p[k])) for k in systems) < tolerance
        p = new
        if done:
            break
    logs = {k: math.log(x) for k, x in p.items()}
    centre = sum(logs.values()) / len(logs)
    return {k: v - centre for k, v in logs.items()}


def bootstrap_scores(
    systems: Sequence[str],
    votes: Sequence[Vote],
    rounds: int = 1000,
    seed: int = 0,
    prior: float = 0.5,
) -> dict[str, tuple[float, float]]:
    """95 % percentile intervals of each system's score, the votes resampled with
    replacement ``rounds`` times (seeded: the same votes give the same intervals)."""
    rng = random.Random(seed)
    draws: dict[str, list[float]] = {s: [] for s in systems}
    for _ in range(rounds):
        sample = [votes[rng.randrange(len(votes))] for _ in votes] if votes else []
        for s, v in bradley_terry(systems, sample, prior, iterations=500, tolerance=1e-9).items():
            draws[s].append(v)
    out = {}
    for s, xs in draws.items():
        xs.sort()
        out[s] = (xs[int(0.025 * (len(xs) - 1))], xs[int(math.ceil(0.975 * (len(xs) - 1)))])
    return out


def win_rates(votes: Sequence[Vote]) -> dict[tuple[str, str], tuple[float, int]]:
    """Per pair of systems (in the order first seen), the first's share of wins (ties
    half) and the number of votes."""
    score: dict[tuple[str, str], float] = defaultdict(float)
    count: Counter[tuple[str, str]] = Counter()
    order: dict[frozenset[str], tuple[str, str]] = {}
    for v in votes:
        key = order.setdefault(frozenset((v.a, v.b)), (v.a, v.b))
        first_won = {"a": v.a, "b": v.b}.get(v.choice)
        count[key] += 1
        score[key] += 0.5 if first_won is None else float(first_won == key[0])
    return {k: (score[k] / count[k], count[k]) for k in count}


def fleiss_kappa(table: Sequence[Sequence[int]]) -> float:
    """Fleiss' kappa of a table of items x categories, each cell the ratings of that item in
    that category (every item rated the same number of times)."""
    totals = {sum(row) for row in table}
    if len(totals) != 1:
        raise ValueError("Fleiss' kappa needs the same number of ratings for every item")
    n = totals.pop()
    items = len(table)
    if n < 2 or not items:
        return float("nan")
    p_item = [(sum(c * c for c in row) - n) / (n * (n - 1)) for row in table]
    share = [sum(row[j] for row in table) / (items * n) for j in range(len(table[0]))]
    p_bar, p_e = sum(p_item) / items, sum(s * s for s in share)
    return (p_bar - p_e) / (1 - p_e) if p_e < 1 else 1.0


def krippendorff_alpha(units: Mapping[str, Sequence[str]]) -> float:
    """Krippendorff's alpha for nominal values: ``units`` maps each item to the values its
    raters gave (any number; a unit with one value is not pairable and counts for nothing).
    1 is full agreement, 0 what chance gives."""
    coincidence: defaultdict[tuple[str, str], float] = defaultdict(float)
    for values in units.values():
        m = len(values)
        if m < 2:
            continue
        for i, x in enumerate(values):
            for j, y in enumerate(values):
                if i != j:
                    coincidence[(x, y)] += 1 / (m - 1)
    marginal: defaultdict[str, float] = defaultdict(float)
    for (x, _), w in coincidence.items():
        marginal[x] += w
    n = sum(marginal.values())
    if n <= 1:
        return float("nan")
    observed = sum(w for (x, y), w in coincidence.items() if x != y)
    expected = sum(marginal[x] * marginal[y] for x in marginal for y in marginal if x != y)
    if expected == 0:
        return 1.0
    return 1 - (n - 1) * observed / expected


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of ``k`` successes in ``n`` (95 % by default)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def detection(votes: Sequence[Vote], original: str) -> tuple[float, tuple[float, float], int]:
    """The Turing condition: of the votes on pairs with the ``original`` line, the share
    that picked it as more like the character ("can't tell" picks nothing), its Wilson
    interval and the number of votes. 0.5 is chance: fans could not tell."""
    picked = n = 0
    for v in votes:
        if original not in (v.a, v.b):
            continue
        n += 1
        picked += {"a": v.a, "b": v.b}.get(v.choice) == original
    return (picked / n if n else float("nan")), wilson(picked, n), n
