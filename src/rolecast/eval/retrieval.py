"""Retrieval quality: does canon retrieval find the scene a conversation comes from?

A query is a canon line that the character answers (the nearest spoken line before one
of the character's lines, by someone else); its target is its scene. A scene that holds
the same two lines (a repeated or overlapping excerpt) counts as a hit too. The
``verbatim`` queries are canon lines themselves, so they check that nothing is broken;
``paraphrase`` queries, rewritten once by an LLM and kept in the cache, measure how well
the same question in other words is matched. For each embedder and each mode (dense,
hybrid; and BM25, which needs no embedder) the eval reports recall@k and MRR.

Ranks follow ``CanonIndex.search`` exactly (same scores, same stable tie order): each
query is embedded and BM25-scored once and the three modes are ranked from those scores.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from typing import TYPE_CHECKING, Any

from ..backends.base import LLM, GenerationParams
from ..character.model import Character
from ..errors import InputError
from ..prompt.assemble import template
from . import metrics
from .metrics import normalise
from .report import Cache, to_jsonable
from .runner import Progress, item_seed, run_items

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from ..retrieval.hybrid import CanonIndex

KINDS = ("verbatim", "paraphrase")
KS: tuple[int, ...] = (1, 5, 10)
DEFAULT_QUERIES = 300  # queries drawn when --n is not given: intervals of about +-0.05
MIN_QUERY_CHARS = 4  # shorter lines ("Yes.", "嗯") carry nothing to retrieve on
LEXICAL = "bm25"  # the "embedder" column of the lexical rows
PARAPHRASE_PARAMS = GenerationParams(max_tokens=80, temperature=0.7)
_LABELS = ("paraphrase:", "rewritten:", "rewrite:", "改写：", "改写:", "答：", "答:")


@dataclass(frozen=True)
class Query:
    text: str
    scene_id: str  # the scene the line comes from
    relevant: tuple[str, ...]  # every scene that counts as a hit (the scene and its copies)
    kind: str = "verbatim"
    original: str = ""  # a paraphrase: the canon line it rewrites
    answer: str = ""  # the character's line that follows in the scene

    def key(self) -> dict[str, Any]:
        return {"text": self.original or self.text, "scene": self.scene_id}


def query_candidates(character: Character) -> list[Query]:
    """Every (line, answer) pair of the character's canon usable as a query."""
    where: dict[str, set[str]] = {}
    for scene in character.scenes:
        for ln in scene.lines:
            where.setdefault(normalise(ln.text), set()).add(scene.id)
    order = {s.id: k for k, s in enumerate(character.scenes)}
    seen: set[tuple[str, str]] = set()
    out: list[Query] = []
    for scene in character.scenes:
        lines = scene.lines
        for i, ln in enumerate(lines):
            if i == 0 or not character.is_self(ln.speaker):
                continue
            before = next(
                (p for p in reversed(lines[:i]) if not character.is_narrator(p.speaker)), None
            )
            if before is None or character.is_self(before.speaker):
                continue
            text = before.text.strip()
            if len(normalise(text)) < MIN_QUERY_CHARS or (text, scene.id) in seen:
                continue
            seen.add((text, scene.id))
            both = where[normalise(text)] & where[normalise(ln.text)]
            relevant = tuple(sorted(both, key=order.__getitem__))
            out.append(Query(text, scene.id, relevant, answer=ln.text.strip()))
    return out


def sample_queries(character: Character, n: int | None = None, seed: int = 0) -> list[Query]:
    """``n`` queries drawn with ``seed``; all of them, up to ``DEFAULT_QUERIES``, when
    ``n`` is None."""
    candidates = query_candidates(character)
    if not candidates:
        raise InputError(
            f"{character.name} ({character.id}) has no multi-speaker scene: no line of "
            f"{character.name} answers another speaker, so there is no query to make"
        )
    if n is not None:
        if n < 1:
            raise InputError(f"--n must be at least 1, not {n}")
        if n > len(candidates):
            raise InputError(
                f"--n {n} is more than the {len(candidates)} queries {character.name} has "
                f"(lines of {MIN_QUERY_CHARS}+ characters that {character.name} answers)"
            )
    take = min(DEFAULT_QUERIES, len(candidates)) if n is None else n
    return random.Random(seed).sample(candidates, take)


@cache
def paraphrase_messages(text: str, language: str) -> list[dict[str, str]]:
    prompt = template("paraphrase", language).substitute(line=text).strip()
    return [{"role": "user", "content": prompt}]


def clean_paraphrase(raw: str) -> str:
    """The first non-empty line of a reply, without a label or surrounding quotes."""
    for line in raw.splitlines():
        line = line.strip()
        low = line.casefold()
        for label in _LABELS:
            if low.startswith(label):
                line = line[len(label) :].strip()
                break
        line = line.strip("\"'“”「」『』 ")
        if line:
            return line
    return ""


def check_paraphrases(count: int, queries: Sequence[Query]) -> None:
    """``count`` paraphrases can be made of ``queries`` (checked before a model loads)."""
    if count < 0:
        raise InputError(f"--paraphrases must not be negative, not {count}")
    if count > len(queries):
        raise InputError(f"--paraphrases {count} is more than the {len(queries)} queries")


def paraphrase_queries(
    queries: Sequence[Query],
    llm: LLM,
    language: str,
    count: int,
    *,
    cache: Cache | None = None,
    workers: int = 1,
    progress: Progress | None = None,
    params: GenerationParams = PARAPHRASE_PARAMS,
    seed: int = 0,
) -> tuple[list[Query], int]:
    """Paraphrases of the first ``count`` queries, made by ``llm`` (or read from ``cache``),
    and how many were dropped (empty, or the line unchanged)."""
    check_paraphrases(count, queries)
    chosen = list(queries[:count])

    def make(q: Query) -> dict[str, str]:
        p = replace(params, seed=item_seed(seed, q.text))
        raw = "".join(llm.stream(paraphrase_messages(q.text, language), p))
        return {"paraphrase": clean_paraphrase(raw)}

    values = run_items(chosen, make, key=Query.key, cache=cache, workers=workers, progress=progress)
    out: list[Query] = []
    for q, value in zip(chosen, values, strict=True):
        text = value["paraphrase"]
        if not text or normalise(text) == normalise(q.text):
            continue
        out.append(
            Query(text, q.scene_id, q.relevant, "paraphrase", original=q.text, answer=q.answer)
        )
    return out, len(chosen) - len(out)


def positions(scores: np.ndarray) -> np.ndarray:
    """0-based place of each item when sorted by score, best first, ties in item order
    (as ``CanonIndex.search`` sorts)."""
    import numpy as np

    order = np.argsort(-scores, kind="stable")
    out = np.empty(len(scores), dtype=np.int64)
    out[order] = np.arange(len(scores))
    return out


def query_ranks(
    index: CanonIndex, queries: Sequence[Query], modes: Sequence[str] = ("dense", "hybrid")
) -> dict[str, list[int | None]]:
    """For each mode, the 1-based rank of each query's best relevant scene."""
    import numpy as np

    from ..retrieval.embedders import single_threaded_blas
    from ..retrieval.hybrid import rrf

    slot = {s.id: i for i, s in enumerate(index.character.scenes)}
    n = len(index)
    ranks: dict[str, list[int | None]] = {m: [] for m in modes}
    for q in queries:
        wanted = [slot[s] for s in q.relevant if s in slot]
        need_dense = any(m in ("dense", "hybrid") for m in modes)
        need_lexical = any(m in ("lexical", "hybrid") for m in modes)
        dense = index.dense_scores(q.text) if need_dense else np.zeros(n)
        if need_lexical and index.lexical is not None:
            lexical = index.lexical.scores(q.text)
        else:
            lexical = np.zeros(n, dtype=np.float32)
        with single_threaded_blas():
            for mode in modes:
                if mode == "dense":
                    scores = dense
                elif mode == "lexical":
                    scores = lexical
                elif mode == "hybrid":
                    scores = rrf(positions(dense), positions(lexical))
                else:
                    raise ValueError(f"unknown retrieval mode {mode!r}")
                place = positions(np.asarray(scores))
                ranks[mode].append(int(place[wanted].min()) + 1 if wanted else None)
    return ranks


@dataclass
class RetrievalRow:
    kind: str
    embedder: str
    mode: str
    ranks: list[int | None]
    recall: dict[int, metrics.Interval]
    mrr: metrics.Interval
    seconds: float  # spent ranking these queries (all modes of this embedder)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "embedder": self.embedder,
            "mode": self.mode,
            "queries": len(self.ranks),
            **{f"recall@{k}": iv for k, iv in self.recall.items()},
            "mrr": self.mrr,
            "ms_per_query": round(1000 * self.seconds / max(len(self.ranks), 1), 3),
        }


def _row(
    kind: str,
    embedder: str,
    mode: str,
    ranks: list[int | None],
    ks: Sequence[int],
    seconds: float,
    seed: int,
) -> RetrievalRow:
    recall = {
        k: metrics.mean_interval([float(r is not None and r <= k) for r in ranks], seed=seed)
        for k in ks
    }
    mrr = metrics.mean_interval([metrics.reciprocal_rank(r) for r in ranks], seed=seed)
    return RetrievalRow(kind, embedder, mode, ranks, recall, mrr, seconds)


@dataclass
class RetrievalResult:
    queries: list[Query]
    rows: list[RetrievalRow]
    ks: tuple[int, ...]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data: the rows and each query with its ranks."""
        by_query: dict[tuple[str, str], dict[str, int | None]] = {}
        for row in self.rows:
            for q, r in zip(
                [q for q in self.queries if q.kind == row.kind], row.ranks, strict=True
            ):
                by_query.setdefault((q.kind, q.text), {})[f"{row.embedder}/{row.mode}"] = r
        data: dict[str, Any] = to_jsonable(
            {
                "ks": list(self.ks),
                "results": [row.to_dict() for row in self.rows],
                "notes": self.notes,
                "queries": [
                    {
                        "kind": q.kind,
                        "text": q.text,
                        "original": q.original or None,
                        "scene": q.scene_id,
                        "relevant": list(q.relevant),
                        "ranks": by_query.get((q.kind, q.text), {}),
                    }
                    for q in self.queries
                ],
            }
        )
        return data


def load_indexes(
    character: Character, embedders: Sequence[str]
) -> tuple[dict[str, CanonIndex], dict[str, float]]:
    """The character's index for each embedder, and the seconds each took to load (or
    build, the first time)."""
    from ..retrieval.index import load_index

    indexes, seconds = {}, {}
    for name in embedders:
        started = time.perf_counter()
        indexes[name] = load_index(character, name)
        seconds[name] = round(time.perf_counter() - started, 3)
    return indexes, seconds


def run_retrieval_eval(
    indexes: Mapping[str, CanonIndex],
    queries: Sequence[Query],
    ks: Sequence[int] = KS,
    seed: int = 0,
) -> RetrievalResult:
    """recall@k and MRR for each embedder's index (name -> index of the same character)
    in dense and hybrid mode, and BM25 once, for each kind of query present."""
    if not indexes:
        raise InputError("no embedder given to evaluate")
    if any(k < 1 for k in ks) or not ks:
        raise InputError(f"--k needs positive cut-offs, not {list(ks)}")
    ks = tuple(sorted(set(ks)))
    rows: list[RetrievalRow] = []
    for kind in KINDS:
        qs = [q for q in queries if q.kind == kind]
        if not qs:
            continue
        for i, (name, index) in enumerate(indexes.items()):
            modes = ("dense", "hybrid", "lexical") if i == 0 else ("dense", "hybrid")
            started = time.perf_counter()
            ranks = query_ranks(index, qs, modes)
            took = time.perf_counter() - started
            for mode in ("dense", "hybrid"):
                rows.append(_row(kind, name, mode, ranks[mode], ks, took, seed))
            if "lexical" in ranks:
                rows.append(_row(kind, LEXICAL, "lexical", ranks["lexical"], ks, 0.0, seed))
    return RetrievalResult(list(queries), rows, ks)


def retrieval_markdown(
    result: RetrievalResult, head: Mapping[str, Any], note: str, figures: Sequence[str]
) -> str:
    from .report import markdown_table

    ch = head["character"]
    counts = {k: sum(1 for q in result.queries if q.kind == k) for k in KINDS}
    lines = [
        f"# Canon retrieval: {ch['name']} ({ch['id']})",
        "",
        f"{head.get('scenes')} scenes. Queries: {counts['verbatim']} canon lines that "
        f"{ch['name']} answers (seed {head.get('seed')}), {counts['paraphrase']} paraphrases "
        "of them. A query's target is its scene (or a copy of it); rank = place of the first "
        "target, recall@k = share ranked within k, MRR = mean of 1/rank. "
        "95 % bootstrap intervals.",
        "",
        "Verbatim queries are lines of the indexed canon, so dense retrieval should find "
        "them almost always: they check the pipeline. Paraphrases measure matching.",
        "",
    ]
    if counts["paraphrase"]:
        lines += [note, ""]
    if result.notes:
        lines += [*(f"- {n}" for n in result.notes), ""]
    for kind in KINDS:
        rows = [r for r in result.rows if r.kind == kind]
        if not rows:
            continue
        lines += [
            f"## {kind} queries",
            "",
            markdown_table(
                [
                    "embedder",
                    "mode",
                    "queries",
                    *(f"recall@{k}" for k in result.ks),
                    "MRR",
                    "ms/query",
                ],
                [
                    [
                        r.embedder,
                        r.mode,
                        len(r.ranks),
                        *(str(r.recall[k]) for k in result.ks),
                        str(r.mrr),
                        f"{1000 * r.seconds / max(len(r.ranks), 1):.1f}",
                    ]
                    for r in rows
                ],
            ),
            "",
        ]
    for name in figures:
        lines += [f"![{name}]({name}.png)", ""]
    return "\n".join(lines)


def retrieval_figures(result: RetrievalResult) -> dict[str, Any]:
    from .report import interval_chart

    figs: dict[str, Any] = {}
    groups = [*(f"recall@{k}" for k in result.ks), "MRR"]
    for kind in KINDS:
        rows = [r for r in result.rows if r.kind == kind]
        if rows:
            figs[f"retrieval_{kind}"] = interval_chart(
                f"Retrieval of the source scene ({kind} queries)",
                groups,
                {f"{r.embedder}/{r.mode}": [*r.recall.values(), r.mrr] for r in rows},
                ylabel="share / MRR (95 % CI)",
            )
    return figs


def summary_lines(result: RetrievalResult) -> list[str]:
    """What `rolecast eval retrieval` prints: recall@k and MRR of each row."""
    lines = []
    for row in result.rows:
        recall = "  ".join(f"R@{k} {row.recall[k].mean:.3f}" for k in result.ks)
        lines.append(
            f"{row.kind:10s} {row.embedder:6s} {row.mode:8s} {recall}  MRR {row.mrr.mean:.3f}"
        )
    return lines
