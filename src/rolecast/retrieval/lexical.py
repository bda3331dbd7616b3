"""Lexical side of retrieval: tokenisation (jieba for Chinese and Japanese) and BM25."""

from __future__ import annotations

import logging
import re
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..files import write_atomic

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_TOKENS = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|[^\W_]+(?:'[^\W_]+)?"
)
JIEBA_MIN_FREQ = 5  # dictionary words rarer than this are dropped: 137k of 349k words kept,
# 24 MB instead of 59 MB resident; rare words still come out of jieba's HMM for unknown words
LEXICAL_VERSION = f"jieba-min{JIEBA_MIN_FREQ}/words-v1"  # stored in each index: a change rebuilds
_jieba: Any = None  # a jieba.Tokenizer (jieba has no type hints), made on first use


def _trimmed_dictionary(jieba_module: Any) -> str:  # the jieba module (no type hints)
    src = Path(jieba_module.__file__).with_name("dict.txt")
    version = getattr(jieba_module, "__version__", "0")
    dest = Path(tempfile.gettempdir()) / f"rolecast-jieba-{version}-min{JIEBA_MIN_FREQ}.txt"
    if not dest.is_file():
        with open(src, encoding="utf-8") as f:
            kept = [ln for ln in f if int(ln.split(" ", 2)[1]) >= JIEBA_MIN_FREQ]
        write_atomic(dest, "".join(kept))
    return str(dest)


def _segmenter() -> Any:  # a jieba.Tokenizer
    """jieba with a trimmed dictionary, loaded on the first CJK text seen (~0.5 s)."""
    global _jieba
    if _jieba is None:
        with warnings.catch_warnings():  # jieba 0.42 imports pkg_resources, which warns
            warnings.simplefilter("ignore")
            import jieba

        jieba.setLogLevel(logging.WARNING)
        _jieba = jieba.Tokenizer(dictionary=_trimmed_dictionary(jieba))
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


def _bm25s() -> Any:  # the bm25s module (no type hints)
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it sets itself to DEBUG on import
    return bm25s


class LexicalIndex:
    """BM25 over one document per scene."""

    def __init__(self, bm25: Any) -> None:  # a bm25s.BM25 (bm25s has no type hints)
        self._bm25 = bm25

    @classmethod
    def build(cls, docs: Sequence[str]) -> LexicalIndex:
        bm25 = _bm25s().BM25()
        bm25.index([tokenize(d) or [""] for d in docs], show_progress=False)
        return cls(bm25)

    def save(self, folder: Path) -> None:
        self._bm25.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex:
        return cls(_bm25s().BM25.load(str(folder), show_progress=False, verbosity=0))

    def scores(self, query: str) -> np.ndarray:
        tokens = tokenize(query)
        if not tokens:
            return np.zeros(self._bm25.scores["num_docs"], dtype=np.float32)
        return np.asarray(self._bm25.get_scores(tokens), dtype=np.float32)
