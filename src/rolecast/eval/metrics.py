"""Scores for evaluations, pure over texts and numbers (the embedder is passed in).

- ``rouge_l``: F1 of the longest common subsequence of tokens; a CJK character is a token,
  elsewhere a word is (case-folded, punctuation dropped).
- ``chrf``: character n-gram F-score (Popović 2015) with n = 1..6 and beta = 2: precision
  and recall are averaged over the n-gram orders, then combined; whitespace is removed
  and case is kept. An order that neither text has n-grams of is left out of the averages;
  an order that only one text has counts 0 for both.
- ``cosines``: cosine of the embeddings of two texts, row by row.
- ``mean_interval`` / ``paired_difference``: a mean and its percentile bootstrap interval;
  for paired samples, of the mean of the differences (resampling items, not the two sides
  apart).
- ``recall_at_k`` / ``mrr``: from the 1-based rank of the first relevant result of each
  query (``None`` when it was not ranked at all).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from ..retrieval.embedders import Embedder

CHRF_ORDER = 6  # character n-grams up to this length (the chrF default)
CHRF_BETA = 2.0  # recall weighs beta^2 = 4 times as much as precision (the chrF default)
RESAMPLES = 2000  # bootstrap resamples: enough for stable 95 % bounds at two decimals
CONFIDENCE = 0.95

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_ROUGE_TOKENS = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")


_NORMALISE = re.compile(r"[\s「」『』“”\"']+")


def normalise(text: str) -> str:
    """Text compared for leaks and duplicates: case-folded, without spaces and quotes."""
    return _NORMALISE.sub("", text.casefold())


def rouge_tokens(text: str) -> list[str]:
    """Tokens for ROUGE-L: each CJK character alone, words elsewhere, case-folded."""
    return _ROUGE_TOKENS.findall(text.casefold())


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists."""
    if len(a) < len(b):
        a, b = b, a
    row = [0] * (len(b) + 1)
    for x in a:
        diag = 0  # row[j - 1] of the previous row
        for j, y in enumerate(b, 1):
            up = row[j]
            row[j] = diag + 1 if x == y else max(up, row[j - 1])
            diag = up
    return row[-1]


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 of ``candidate`` against ``reference``: 1 for the same tokens, 0 for none
    shared (two texts without tokens count as the same)."""
    c, r = rouge_tokens(candidate), rouge_tokens(reference)
    if not c or not r:
        return float(not c and not r)
    lcs = lcs_length(c, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(c), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def _ngrams(text: str, n: int) -> Counter[str]:
    return Counter(text[i : i + n] for i in range(len(text) - n + 1))


def chrf(candidate: str, reference: str, order: int = CHRF_ORDER, beta: float = CHRF_BETA) -> float:
    """chrF of ``candidate`` against ``reference`` in [0, 1]."""
    c = "".join(candidate.split())
    r = "".join(reference.split())
    if not c or not r:
        return float(not c and not r)
    precisions: list[float] = []
    recalls: list[float] = []
    for n in range(1, order + 1):
        cand, ref = _ngrams(c, n), _ngrams(r, n)
        if not cand and not ref:
            break  # both texts are shorter than n: so is every higher order
        matched = sum((cand & ref).values())
        precisions.append(matched / sum(cand.values()) if cand else 0.0)
        recalls.append(matched / sum(ref.values()) if ref else 0.0)
    p = sum(precisions) / len(precisions)
    rc = sum(recalls) / len(recalls)
    if p == 0 and rc == 0:
        return 0.0
    b2 = beta * beta
    return (1 + b2) * p * rc / (b2 * p + rc)


def cosines(embedder: Embedder, candidates: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """Cosine of each candidate with its reference (the embedder normalises); an empty
    candidate scores 0."""
    import numpy as np

    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} references")
    if not candidates:
        return np.zeros(0, dtype=np.float64)
    vectors = embedder.embed_documents([*candidates, *references])
    n = len(candidates)
    sims = np.einsum("ij,ij->i", vectors[:n], vectors[n:]).astype(np.float64)
    empty = np.array([not c.strip() for c in candidates])
    sims[empty] = 0.0
    clipped: np.ndarray = np.clip(sims, -1.0, 1.0)
    return clipped


@dataclass(frozen=True)
class Interval:
    """A mean with the bounds of its bootstrap confidence interval, over ``n`` items."""

    mean: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict[str, float | int | None]:
        def num(x: float) -> float | None:
            return None if math.isnan(x) else round(x, 6)

        return {"mean": num(self.mean), "low": num(self.low), "high": num(self.high), "n": self.n}

    @classmethod
    def from_dict(cls, d: dict[str, float | int | None]) -> Interval:
        def num(x: float | int | None) -> float:
            return float("nan") if x is None else float(x)

        return cls(num(d["mean"]), num(d["low"]), num(d["high"]), int(d["n"] or 0))

    def __str__(self) -> str:
        if self.n == 0:
            return "n/a"
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


def mean_interval(
    values: Sequence[float],
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Interval:
    """The mean of ``values`` with a percentile bootstrap interval (same seed, same bounds)."""
    import numpy as np

    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        nan = float("nan")
        return Interval(nan, nan, nan, 0)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, not {confidence}")
    mean = float(x.mean())
    if x.size == 1 or resamples < 1:
        return Interval(mean, mean, mean, int(x.size))
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(mean, float(min(low, mean)), float(max(high, mean)), int(x.size))


def paired_difference(
    a: Sequence[float],
    b: Sequence[float],
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Interval:
    """Mean of ``a[i] - b[i]`` with its paired bootstrap interval."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} and {len(b)}")
    return mean_interval([x - y for x, y in zip(a, b, strict=True)], resamples, confidence, seed)


def recall_at_k(ranks: Sequence[int | None], k: int) -> float:
    """Share of queries whose first relevant result is among the top ``k`` (ranks from 1)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    if not ranks:
        return float("nan")
    return sum(1 for r in ranks if r is not None and r <= k) / len(ranks)


def reciprocal_rank(rank: int | None) -> float:
    return 0.0 if rank is None else 1.0 / rank


def mrr(ranks: Sequence[int | None]) -> float:
    """Mean reciprocal rank over all queries (an unranked query adds 0)."""
    if not ranks:
        return float("nan")
    return sum(reciprocal_rank(r) for r in ranks) / len(ranks)
