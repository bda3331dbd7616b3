"""Ranking canon scenes for a query: dense (embedding) and lexical (BM25), fused by RRF.

Pure over arrays: building and loading live in ``index.py``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..character.model import Character, Scene
from .embedders import Embedder, single_threaded_blas
from .lexical import LexicalIndex

Mode = Literal["hybrid", "dense", "lexical"]
MODES: tuple[Mode, ...] = ("hybrid", "dense", "lexical")
RRF_K = 60  # reciprocal rank fusion constant (Cormack et al. 2009): damps the top ranks' weight


@dataclass(frozen=True)
class Hit:
    scene: Scene
    score: float  # the score ranked on: fused RRF score, cosine or BM25 depending on mode
    dense: float  # best cosine between the query and a line of the scene
    lexical: float  # BM25 score of the scene
    best_line: int | None = None  # the index in scene.lines of that closest line (dense only)


def dense_units(character: Character) -> tuple[list[str], list[int]]:
    """The texts embedded for each scene, and the scene index of each.

    A user's line is compared with what people say: every spoken line of a scene is a
    unit; narration is left to BM25. A scene with no spoken line contributes its
    title and narration as one unit.
    """
    texts: list[str] = []
    owner: list[int] = []
    for i, scene in enumerate(character.scenes):
        spoken = [scene.lines[j].text for j in unit_lines(character, scene)]
        if not spoken:
            spoken = [" ".join([scene.title, *(ln.text for ln in scene.lines)]).strip()]
        texts.extend(spoken)
        owner.extend([i] * len(spoken))
    return texts, owner


def unit_lines(character: Character, scene: Scene) -> list[int]:
    """The indexes in ``scene.lines`` of its dense units: its spoken lines (none: the scene
    is one unit of title and narration)."""
    return [j for j, ln in enumerate(scene.lines) if not character.is_narrator(ln.speaker)]


def lexical_document(scene: Scene) -> str:
    return "\n".join([scene.title, *(f"{ln.speaker} {ln.text}" for ln in scene.lines)])


def rrf(*rankings: np.ndarray, k: int = RRF_K) -> np.ndarray:
    """Fused scores from arrays of ranks (0 = best) over the same items."""
    return sum((1.0 / (k + 1 + r) for r in rankings), np.zeros(len(rankings[0])))


def _ranks(scores: np.ndarray) -> np.ndarray:
    order = np.argsort(-scores, kind="stable")
    ranks = np.empty(len(scores), dtype=np.int64)
    ranks[order] = np.arange(len(scores))
    return ranks


class CanonIndex:
    def __init__(
        self,
        character: Character,
        embedder: Embedder,
        vectors: np.ndarray,
        unit_scene: np.ndarray,
        lexical: LexicalIndex | None,
    ) -> None:
        self.character = character
        self.embedder = embedder
        self.vectors = vectors
        self.unit_scene = unit_scene
        self.lexical = lexical
        n = len(character.scenes)
        # units are grouped by scene in order, so a scene's best line is one reduceat away
        self._starts = np.searchsorted(unit_scene, np.arange(n)) if n else np.zeros(0, np.int64)
        self._ids = {s.id: i for i, s in enumerate(character.scenes)}
        # each unit's line in its scene (as dense_units makes them; -1: a scene's title unit)
        self._unit_line: list[int] = []
        for scene in character.scenes:
            self._unit_line.extend(unit_lines(character, scene) or [-1])

    def _unit_sims(self, query: str) -> np.ndarray:
        query_vector = self.embedder.embed_query(query)
        with single_threaded_blas():
            sims: np.ndarray = self.vectors @ query_vector
        return sims

    def __len__(self) -> int:
        return len(self.character.scenes)

    def dense_scores(self, query: str) -> np.ndarray:
        if not len(self):
            return np.zeros(0, dtype=np.float32)
        return np.maximum.reduceat(self._unit_sims(query), self._starts)

    def _best_line(self, sims: np.ndarray | None, i: int) -> int | None:
        """The line of scene ``i`` closest to the query, by the units' cosines."""
        if sims is None or len(self._unit_line) != len(sims):
            return None
        start = int(self._starts[i])
        end = int(self._starts[i + 1]) if i + 1 < len(self._starts) else len(sims)
        line = self._unit_line[start + int(np.argmax(sims[start:end]))]
        return line if line >= 0 else None

    def search(
        self,
        query: str,
        k: int = 8,
        mode: Mode = "hybrid",
        exclude: Collection[str] = (),
    ) -> list[Hit]:
        """The ``k`` best scenes for ``query``, best first; ``exclude`` holds scene ids to skip."""
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r}; known modes: {', '.join(MODES)}")
        if not len(self) or k <= 0:
            return []
        sims = self._unit_sims(query) if mode != "lexical" else None
        dense = np.maximum.reduceat(sims, self._starts) if sims is not None else np.zeros(len(self))
        lexical = (
            self.lexical.scores(query)
            if self.lexical is not None and mode != "dense"
            else np.zeros(len(self))
        )
        if mode == "dense":
            fused = dense
        elif mode == "lexical":
            fused = lexical
        else:
            fused = rrf(_ranks(dense), _ranks(lexical))
        if exclude:
            fused = fused.astype(np.float64, copy=True)
            for sid in exclude:
                if sid in self._ids:
                    fused[self._ids[sid]] = -np.inf
        take = min(k, len(self) - sum(1 for s in exclude if s in self._ids))
        top = np.argsort(-fused, kind="stable")[: max(take, 0)]
        scenes = self.character.scenes
        return [
            Hit(
                scenes[i],
                float(fused[i]),
                float(dense[i]),
                float(lexical[i]),
                self._best_line(sims, i),
            )
            for i in top
        ]
