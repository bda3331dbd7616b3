"""Lexical side of retrieval: tokenisation (jieba for Chinese and Japanese) and BM25."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_TOKENS = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|[^\W_]+(?:'[^\W_]+)?"
)
_jieba = None


def _segmenter():  # jieba costs ~1 s and ~70 MB to load: only when CJK text is seen
    global _jieba
    if _jieba is None:
        import jieba

        jieba.setLogLevel(logging.WARNING)
        _jieba = jieba
    return _jieba


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens; CJK runs are segmented by jieba."""
    out: list[str] = []
    for run in _TOKENS.findall(text.lower()):
        if _CJK.match(run):
            out.extend(t for t in _segmenter().lcut(run) if t.strip())
        else:
            out.append(run)
    return out


class LexicalIndex:
    """BM25 over one document per scene."""

    def __init__(self, bm25) -> None:  # a bm25s.BM25
        self._bm25 = bm25

    @classmethod
    def build(cls, docs: Sequence[str]) -> LexicalIndex:
        import bm25s

        bm25 = bm25s.BM25()
        bm25.index([tokenize(d) or [""] for d in docs], show_progress=False)
        return cls(bm25)

    def save(self, folder: Path) -> None:
        self._bm25.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex:
        import bm25s

        return cls(bm25s.BM25.load(str(folder), show_progress=False, verbosity=0))

    def scores(self, query: str) -> np.ndarray:
        tokens = tokenize(query)
        if not tokens:
            return np.zeros(self._bm25.scores["num_docs"], dtype=np.float32)
        return np.asarray(self._bm25.get_scores(tokens), dtype=np.float32)
